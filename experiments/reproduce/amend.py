"""Amending a table (--amend): loading the table in a folder, checking that this
command's rows compare with its own (protocol, preset, seeds, splits), and merging them
in, row by row, with an entry in its "amended" list."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from crossmodal_jax import errors
from crossmodal_jax import evaluation as evaluate_lib


def load_table(folder: str, protocol: str) -> dict[str, Any]:
  """The table of `protocol` in `folder` (`evaluate.results_file`), as
  `table.write_outputs` writes it; one error naming the file when it is missing or is not
  such a table."""
  path = os.path.join(folder, evaluate_lib.results_file(protocol))
  try:
    with open(path) as f:
      table = json.load(f)
  except FileNotFoundError:
    raise errors.UserError(f"--amend: no table at {path}.") from None
  except (OSError, json.JSONDecodeError) as e:
    raise errors.UserError(f"--amend: cannot read {path}: {e}.") from None
  if not isinstance(table, dict) or not isinstance(table.get("datasets"), dict):
    raise errors.UserError(f"--amend: {path} is not a results table (no 'datasets').")
  return table


def check_amendable(
    table: dict[str, Any], path: str, protocol: str, preset: str, seeds: Sequence[int]
) -> None:
  """One error when `table` (read from `path`) was made under another protocol, preset or
  set of seeds than the rows that would amend it: its rows would not compare."""
  have = {
      "protocol": (table.get("protocol") or {}).get("name"),
      "preset": table.get("preset"),
      "seeds": table.get("seeds"),
  }
  want = {"protocol": protocol, "preset": preset, "seeds": list(seeds)}
  for key, value in want.items():
    if have[key] != value:
      raise errors.UserError(
          f"--amend: {path} has {key} {have[key]!r}, this command {value!r}; its rows would "
          "not compare."
      )


def _without_reuse(x):
  """`x` without its "reused" flags (at any depth): a reused run or baseline is the same
  result as the one stored."""
  if isinstance(x, dict):
    return {k: _without_reuse(v) for k, v in x.items() if k != "reused"}
  if isinstance(x, list):
    return [_without_reuse(v) for v in x]
  return x


def _replace_rows(old: list[dict], new: Sequence[dict]) -> tuple[list[dict], list[str]]:
  """(`old` with each row of `new` in place of the old row of its name, appended if none;
  the names of the rows that changed)."""
  rows, changed = list(old), []
  for row in new:
    at = [k for k, r in enumerate(rows) if r["name"] == row["name"]]
    if at and _without_reuse(rows[at[0]]) == _without_reuse(json.loads(json.dumps(row))):
      continue
    changed.append(row["name"])
    if at:
      rows[at[0]] = row
    else:
      rows.append(row)
  return rows, changed


def same_sizes(old: dict[str, Any], new: dict[str, Any], where: str) -> None:
  """One error when a dataset entry of the table (`old`) and this command's (`new`) have
  other test or gallery sizes (other splits); `where` names the entry."""
  for key in ("num_test", "num_gallery"):
    if None not in (old.get(key), new.get(key)) and old[key] != new[key]:
      raise errors.UserError(
          f"--amend: {where} has {key} {old[key]} in the table and {new[key]} in this "
          "command's data (other splits); the rows would not compare."
      )


def _merge_datasets(
    have: dict[str, Any], new: dict[str, Any], where: Callable[[str], str]
) -> dict[str, list[str]]:
  """Merges the dataset entries `new` into `have` in place: a dataset absent from `have`
  is added whole, else each of its rows replaces the row of its name (`_replace_rows`)
  once its splits are checked (`same_sizes`, naming it by `where(dataset)`). Returns
  {dataset: names of the rows added or changed}, without datasets where none were."""
  done = {}
  for d, ds in new.items():
    if d not in have:
      have[d] = ds
      done[d] = [r["name"] for r in ds["rows"]]
      continue
    same_sizes(have[d], ds, where(d))
    have[d]["rows"], changed = _replace_rows(have[d]["rows"], ds["rows"])
    if changed:
      done[d] = changed
  return done


def amend_table(
    table: dict[str, Any], new: dict[str, Any], command: str, note: str = ""
) -> dict[str, Any]:
  """`table` with the rows of `new` (a table of the same protocol, preset and seeds)
  replacing its rows of the same name and dataset, and the same for each ablation of
  `new`; a dataset or ablation absent from `table` is added whole. Every other row stays.
  When a row changed (a row equal to the stored one but for "reused" flags does not), an
  entry {"date", "command", "machine", "rows": {dataset: [row names]}, "ablations":
  {ablation: {dataset: [variant names]}}, "reused": {dataset: {row name: [seeds]}}, "note"}
  is appended to table["amended"]; "reused" names the changed rows' runs that the command
  found finished (trained before it) rather than trained."""
  out = json.loads(json.dumps(table))
  rows_done = _merge_datasets(out["datasets"], new["datasets"], lambda d: f"dataset {d!r}")
  ablations_done: dict[str, dict[str, list[str]]] = {}
  for name, entry in new.get("ablations", {}).items():
    have = out.setdefault("ablations", {}).setdefault(name, {**entry, "datasets": {}})
    done = _merge_datasets(
        have["datasets"], entry["datasets"], lambda d, name=name: f"ablation {name!r} on {d!r}"
    )
    if done:
      ablations_done[name] = done
  if rows_done or ablations_done:
    out.setdefault("amended", []).append(
        {
            "date": new["date"],
            "command": command,
            "machine": new["machine"]["summary"],
            "rows": rows_done,
            "ablations": ablations_done,
            "reused": _reused_runs(new["datasets"], rows_done),
            "note": note,
        }
    )
  return out


def _reused_runs(datasets: dict[str, Any], names: dict[str, list[str]]) -> dict[str, Any]:
  """{dataset: {row name: [seeds]}}: the runs of the rows `names` that were reused (found
  finished), leaving out rows with none."""
  out: dict[str, Any] = {}
  for d, rows in names.items():
    for r in datasets[d]["rows"]:
      seeds = [run["seed"] for run in r.get("runs", []) if run.get("reused")]
      if r["name"] in rows and seeds:
        out.setdefault(d, {})[r["name"]] = seeds
  return out
