"""The package's layout rules: no import circle between its modules, and training,
scoring and evaluation name no method."""

import ast

from conftest import REPO

PACKAGE = REPO / "crossmodal_jax"


def _module_name(path) -> str:
  parts = list(path.relative_to(REPO).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
  """module -> the crossmodal_jax modules it imports (anywhere in its body)."""
  modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  graph = {name: set() for name in modules}
  for name, path in modules.items():
    for node in ast.walk(ast.parse(path.read_text())):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        # `from pkg import sub` imports the module pkg.sub when there is one.
        targets = [
            f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
            for a in node.names
        ]
      graph[name] |= {t for t in targets if t in modules and t != name}
  return graph


def _cycle(graph):
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state and (found := visit(nxt)):
        return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state and (found := visit(node)):
      return found
  return None


def test_no_import_circle():
  graph = import_graph()
  assert "crossmodal_jax.methods.drsl" in graph
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))
  # And the cycle finder does find one when there is one.
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


METHOD_NAMES = ("drsl", "scanet", "mcsm", "hcmsl")
# Shared code: imports no method and names none (metrics and protocols may cite a paper's
# convention, so for them only the imports are checked).
SHARED = (
    "training", "scoring", "evaluation", "ranking", "reporting", "results_layout", "checkpoint",
    "parallel", "sampling", "losses", "runs", "optimizers", "rerank", "shortlists",
)  # fmt: skip


def test_shared_code_names_no_method():
  graph = import_graph()
  for shared in (*SHARED, "metrics", "protocols"):
    for name in METHOD_NAMES:
      assert f"crossmodal_jax.methods.{name}" not in graph[f"crossmodal_jax.{shared}"], shared
  for shared in SHARED:
    source = (PACKAGE / f"{shared}.py").read_text().lower()
    for name in METHOD_NAMES:
      assert name not in source, f"{shared}.py names {name}"
  assert (
      not {"crossmodal_jax.training", "crossmodal_jax.evaluation"}
      & graph["crossmodal_jax.checkpoint"]
  )
  assert "crossmodal_jax.training" not in graph["crossmodal_jax.evaluation"]


def test_configs_are_data():
  """The config files import nothing of the library or the experiments, and leave
  sys.path alone."""
  for path in sorted((REPO / "configs").glob("*.py")):
    source = path.read_text()
    assert "sys.path" not in source, path.name
    for node in ast.walk(ast.parse(source)):
      names = []
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module]
      for name in names:
        assert not name.startswith(("crossmodal_jax", "experiments")), (path.name, name)
