"""The README and docs stay true: every results figure equals the committed results JSON it
names, every speed figure the benchmark JSON it names; no page cites a file outside the
repository, a work item or a machine's folder."""

import json
import math
import re

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_NUMBER = r"\d[\d,]*(?:\.\d+)?"
# unit -> (the JSON fields it is read from, the factor from a field's value to the unit)
_UNITS = {
    "ms": ("seconds", 1e3),
    "s": ("seconds", 1.0),
    "min": ("seconds", 1 / 60),
    "h": ("seconds", 1 / 3600),
    "M pairs/s": ("pairs_per_s", 1e-6),
    "GFLOP/s": ("gflops_per_s", 1.0),
    "TFLOP/s": ("gflops_per_s", 1e-3),
    "GB/s": ("gbytes_per_s", 1.0),
    "GFLOP": ("flops", 1e-9),
    "TFLOP": ("flops", 1e-12),
    "PFLOP": ("flops", 1e-15),
    "MB": ("mb", 1.0),
    "GB": ("mb", 1e-3),
    "M parameters": ("params", 1e-6),
    "%": ("share", 100.0),
    "rows/s": ("rows_per_second", 1.0),
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
# "0.14 / 0.92 / 0.18 ms", "71-74 s", "743 s": numbers that one unit follows.
_FIGURE = re.compile(rf"(?<![\w.\-])({_NUMBER}(?:\s*(?:/|-)\s*{_NUMBER})*)\s*({_UNIT_RE})(?![\w/])")
_SOURCE = re.compile(r"benchmarks/([\w.\-]+\.json)|`([a-z_+]+(?:/[\w+.\-]+)+)`")


def _field_values(result: dict, kind: str) -> list[float]:
  """The values of a benchmark entry's fields of one kind, in the field's base unit."""
  out = []
  for key, value in result.items():
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      continue
    if kind == "seconds":
      scale = 60.0 if "minutes" in key else 3600.0 if "hours" in key else 1.0
      if "second" in key or "minutes" in key or "hours" in key:
        out.append(value * scale)
    elif kind == "mb" and "_mb" in key:
      out.append(value)
    elif kind == "flops" and key.startswith(("flops", "measured_flops")):
      out.append(value)
    elif kind == "share" and "share" in key:
      out.append(value)
    elif key == kind:
      out.append(value)
  return out


def _matches(shown: str, values: list[float], factor: float) -> bool:
  """A shown figure is a value rounded to the digits shown."""
  digits = len(shown.split(".")[1]) if "." in shown else 0
  x = float(shown.replace(",", ""))
  return any(
      math.isclose(round(v * factor, digits), x)
      or abs(v * factor - x) <= 0.5 * 10**-digits * (1 + 1e-9)
      for v in values
  )


def _separator(line: str) -> bool:
  return bool(re.fullmatch(r"\|[\s|:\-]+\|?", line.strip()))


def _table_rows(text: str):
  """(line number, cells) of every markdown table body row (not headers)."""
  lines = text.splitlines()
  for i, line in enumerate(lines):
    header = i + 1 < len(lines) and _separator(lines[i + 1])
    if line.startswith("|") and not _separator(line) and not header:
      yield i + 1, [c.strip() for c in line.strip().strip("|").split("|")]


def speed_rows(text: str):
  """(line, figure cells, [(json file, entry name)]) of each table row whose last cell
  names benchmark JSON entries."""
  for i, cells in _table_rows(text):
    if "benchmarks/" not in cells[-1]:
      continue
    sources, current = [], None
    for file, name in _SOURCE.findall(cells[-1]):
      if file:
        current = file
      elif current:
        sources.append((current, name))
    yield i, cells[:-1], sources


def check_speed(text: str, where: str) -> list[str]:
  """Problems with the speed figures of a page: each figure with a unit must be a field of
  the entries its row names, rounded as shown."""
  problems = []
  for line, cells, sources in speed_rows(text):
    entries = []
    for file, name in sources:
      path = REPO / "benchmarks" / file
      results = json.loads(path.read_text())["results"]
      found = [r for r in results if r["name"] == name]
      if not found:
        problems.append(f"{where}:{line}: {file} has no entry {name!r}")
      entries += found
    if not entries:
      problems.append(f"{where}:{line}: the row names no benchmark entry")
      continue
    for cell in cells:
      for numbers, unit in _FIGURE.findall(cell):
        kind, factor = _UNITS[unit]
        values = [v for e in entries for v in _field_values(e, kind)]
        for shown in re.split(r"\s*[/\-]\s*", numbers):
          if not _matches(shown, values, factor):
            problems.append(f"{where}:{line}: {shown} {unit} is in none of {sources}")
  return problems


def _results_tables(text: str):
  """(line, JSON path, dataset, rows) of each table captioned by a line that names a
  results JSON and its dataset: "... (`results/X/results.json`, dataset `wikipedia`)"."""
  lines = text.splitlines()
  for i, line in enumerate(lines):
    found = re.search(r"(results/[\w.\-/]+\.json)\b.*?dataset `(\w+)`", line)
    if not found:
      continue
    rows, j = [], i + 1
    while j < len(lines) and not lines[j].startswith("|"):
      j += 1
    header = [c.strip() for c in lines[j].strip().strip("|").split("|")] if j < len(lines) else []
    for _, cells in _table_rows("\n".join(lines[j + 2 :]).split("\n\n")[0]):
      rows.append(dict(zip(header, cells)))
    yield i + 1, found.group(1), found.group(2), rows


def check_results(text: str, where: str) -> list[str]:
  """Problems with the results tables of a page: each i2t / t2i / avg figure must be its
  row's mean (± sample std) in the JSON, to the digits shown."""
  problems = []
  for line, path, dataset, rows in _results_tables(text):
    table = json.loads((REPO / path).read_text())
    by_label = {r["label"]: r for r in table["datasets"][dataset]["rows"]}
    if not rows:
      problems.append(f"{where}:{line}: no table after the caption")
    for row in rows:
      label = re.sub(r"[*`]", "", next(iter(row.values())))
      if label not in by_label:
        problems.append(f"{where}:{line}: {path} ({dataset}) has no row {label!r}")
        continue
      stats = by_label[label][by_label[label]["metric"]]
      for column in ("i2t", "t2i", "avg"):
        cell = re.sub(r"[*`]", "", row.get(column, ""))
        shown = re.findall(_NUMBER, cell)
        if not shown:
          problems.append(f"{where}:{line}: {label} has no {column} figure")
          continue
        expected = [stats[column]["mean"]] + (
            [stats[column]["std"]] if stats[column]["std"] is not None else []
        )
        for s, v in zip(shown, expected):
          if not _matches(s, [v], 1.0):
            problems.append(f"{where}:{line}: {label} {column} shows {s}, the JSON {v:.4f}")
        if len(shown) != len(expected):
          problems.append(f"{where}:{line}: {label} {column} {cell!r} is not mean ± std")
      problems += _check_time_and_size(row, by_label[label], f"{where}:{line}: {label}")
  return problems


def _check_time_and_size(row: dict, stored: dict, where: str) -> list[str]:
  """A row's training time and parameter count, where shown, as results.md writes them."""
  from experiments.reproduce import table  # pylint: disable=import-outside-toplevel

  problems = []
  shown = row.get("training time per run")
  if shown is not None:
    if stored["kind"] == "baseline":
      expected = f"{table.format_seconds(stored['fit_seconds'])} (fit + selection)"
    else:
      expected = table._cell_time(stored["train_seconds"])
    if not shown.startswith(expected):
      problems.append(f"{where}: training time {shown!r}, the JSON {expected!r}")
  shown = row.get("parameters")
  if shown is not None and shown != table._params(stored["num_params"]):
    problems.append(
        f"{where}: parameters {shown!r}, the JSON {table._params(stored['num_params'])!r}"
    )
  return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_figures_equal_the_json_they_name(page):
  text = page.read_text()
  where = str(page.relative_to(REPO))
  problems = check_speed(text, where) + check_results(text, where)
  assert not problems, "\n".join(problems)


def test_speed_page_names_its_sources():
  speed = (REPO / "docs" / "speed.md").read_text()
  rows = list(speed_rows(speed))
  assert len(rows) >= 30
  assert all(sources for _, _, sources in rows)
  # Every table row of the page names its JSON.
  assert len(rows) == sum(1 for _ in _table_rows(speed))


def test_the_checks_catch_a_figure_changed_by_hand():
  speed = (REPO / "docs" / "speed.md").read_text()
  assert "| 743 s (2.15 M pairs/s) |" in speed
  assert check_speed(speed, "speed") == []
  changed = speed.replace("| 743 s (2.15 M pairs/s) |", "| 28 s (2.15 M pairs/s) |")
  assert any("28 s" in p for p in check_speed(changed, "speed"))
  readme = (REPO / "README.md").read_text()
  tables = list(_results_tables(readme))
  assert tables, "the README has no results table naming its JSON"
  rows = tables[0][3]
  avg = rows[0]["avg"]
  figure = re.findall(_NUMBER, avg)[0]
  wrong = f"{float(figure) + 0.01:.3f}"
  changed = readme.replace(f"| {avg} |", f"| {avg.replace(figure, wrong, 1)} |", 1)
  assert changed != readme and check_results(readme, "README") == []
  assert any(wrong in p for p in check_results(changed, "README"))


_OUTSIDE = re.compile(
    r"SPEC\.md|METHODS-NOTES|shared/seeds|seed 00\d|\bissue \d+|the issue'?s|/work/|"
    r"/home/|/root/",
    re.IGNORECASE,
)


def test_no_page_or_source_cites_outside_files_or_work_items():
  files = [
      *PAGES,
      *(REPO / "crossmodal_jax").rglob("*.py"),
      *(REPO / "experiments").rglob("*.py"),
      *(REPO / "configs").rglob("*.py"),
      *(p for p in (REPO / "tests").rglob("*.py") if p.name != "test_docs.py"),
      *(REPO / "results").rglob("*.json"),
      *(REPO / "results").rglob("*.md"),
      *(REPO / "benchmarks").rglob("*.json"),
  ]
  found = [
      f"{p.relative_to(REPO)}:{i}: {m.group(0)}"
      for p in files
      for i, line in enumerate(p.read_text().splitlines(), 1)
      for m in _OUTSIDE.finditer(line)
  ]
  assert not found, "\n".join(found)
