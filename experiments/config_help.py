"""The config's fields with their values and one-line meanings: what `--help` lists.

Generated, not kept by hand: the fields and values are those of the config itself, and
each field's meaning is the comment the config files give it where they set it, read
with `tokenize`: the comment at the end of the line that sets the field, else the
comment lines right above it (or above the group of lines it belongs to). The files read are `configs/default.py`, the method's
`configs/<METHOD>.py` and the config files that one imports (drsl_code takes DRSL's model
fields); the first line setting a field with a comment gives its meaning. A field that no
comment explains is listed without one (tests/test_cli.py checks there is none).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import textwrap
import tokenize
from typing import Any

import ml_collections

WIDTH = 100


def _comments(source: str) -> tuple[dict[int, str], dict[int, str]]:
  """(comment at the end of a line of code, comment line alone) by line number."""
  trailing, alone = {}, {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      row, col = tok.start
      text = tok.string.lstrip("#").strip()
      (trailing if tok.line[:col].strip() else alone)[row] = text
  return trailing, alone


def _path(node: ast.expr, aliases: dict[str, str]) -> str | None:
  """`config.model.dim` / `model.dim` / `t.b1` -> "model.dim" / "train.b1", or None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if not parts or not isinstance(node, ast.Name) or node.id not in aliases:
    return None
  return ".".join(([aliases[node.id]] if aliases[node.id] else []) + parts[::-1])


def _assignments(tree: ast.Module) -> list[tuple[str, int, int]]:
  """(field path, first line, last line) of each `X.field = value` in the functions.

  `config` is the whole config; in a function named `SECTION_config` another local
  `ml_collections.ConfigDict()` is that section (`evaluation` in `eval_config`); a local
  `t = config.train` is an alias of its section.
  """
  found = []
  for fn in ast.walk(tree):
    if not isinstance(fn, ast.FunctionDef):
      continue
    aliases = {"config": ""}
    statements = sorted(
        (n for n in ast.walk(fn) if isinstance(n, ast.Assign)), key=lambda n: n.lineno
    )
    for node in statements:
      if len(node.targets) != 1:
        continue
      target = node.targets[0]
      if isinstance(target, ast.Name):
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "ConfigDict":
          if fn.name.endswith("_config") and target.id != "config":
            aliases[target.id] = fn.name[: -len("_config")]
        elif (section := _path(value, aliases)) is not None:
          aliases[target.id] = section
        continue
      path = _path(target, aliases)
      if path is not None:
        found.append((path, node.lineno, node.end_lineno))
  return sorted(found, key=lambda f: f[1])


def _file_help(source: str) -> dict[str, str]:
  """field path -> meaning, from one config file's source.

  A field's meaning is the comment ending its line (followed by the comment lines right
  above it, in parentheses, when there are both), else the comment lines right above it,
  else those of its group: the fields on the lines right below a field with comment lines
  above it share them until a line with its own comment or a gap (`# Synthetic
  benchmark.` over the synthetic_* fields).
  """
  trailing, alone = _comments(source)
  meanings: dict[str, str] = {}
  heading, previous_last = None, None
  for path, first, last in _assignments(ast.parse(source)):
    above, row = [], first - 1
    while row in alone:
      above.append(alone[row])
      row -= 1
    own = next((trailing[r] for r in range(first, last + 1) if r in trailing), None)
    if above:
      heading = " ".join(above[::-1])
      text = f"{own} ({heading})" if own else heading
    else:
      if own or previous_last != first - 1:
        heading = None  # the group ends at a field with its own comment, or a gap
      text = own or heading
    previous_last = last
    if text and path not in meanings:
      meanings[path] = text
  return meanings


def _config_modules(method: str) -> list[Any]:
  """configs.default, the config modules the method's file imports, the method's file."""
  package = "crossmodal_jax.configs"
  module = importlib.import_module(f"{package}.{method}")
  imported = [
      v
      for v in vars(module).values()
      if inspect.ismodule(v) and v.__name__.startswith(f"{package}.") and v is not module
  ]
  return [importlib.import_module(f"{package}.default"), *imported, module]


def meanings(method: str) -> dict[str, str]:
  """field path ("model.dim") -> its one-line meaning, for `method`'s config."""
  out: dict[str, str] = {}
  for module in _config_modules(method):
    for path, text in _file_help(inspect.getsource(module)).items():
      out.setdefault(path, text)
  return out


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """field path -> value of every leaf of a config."""
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(leaves(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def listing(config: ml_collections.ConfigDict, spec: str) -> str:
  """The `--help` text: every field of `config` (named by `spec`), value and meaning."""
  help_of = meanings(config.method)
  fields = leaves(config)
  column = 36
  lines = [
      "",
      f"config fields of --config={spec}",
      "(set one with --config.FIELD=VALUE after --config=...; a sequence field as a tuple:",
      "--config.model.image_layers='(512, 300)'):",
  ]
  for path, value in fields.items():
    head = f"  {path}={value!r}"
    meaning = help_of.get(path, "")
    if not meaning:
      lines.append(head)
      continue
    if len(head) + 2 > column:
      lines.append(head)
      head = ""
    lines.extend(
        textwrap.wrap(
            meaning,
            WIDTH,
            initial_indent=head.ljust(column),
            subsequent_indent=" " * column,
        )
    )
  return "\n".join(lines) + "\n"
