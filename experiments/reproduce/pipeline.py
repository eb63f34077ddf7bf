"""The whole table: `reproduce(...)` plans the runs, fits (or reuses) the baselines,
trains (or reuses) every run under the table's protocol, builds the rows of each dataset
and ablation, and writes the table, or merges it into an earlier one (--amend)."""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import baselines as baselines_lib
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation as evaluate_lib
from crossmodal_jax import reporting
from . import amend as amend_lib
from . import plan as plan_lib
from . import runner
from . import table

# The running command's workdir and run (None between runs), for `interrupted`.
_CURRENT: dict[str, Any] = {}


def reproduce(
    workdir: str,
    methods: Sequence[str],
    datasets: Sequence[str],
    seeds: int,
    preset: str = "full",
    overrides: Sequence[str] = (),
    manual_dirs: dict[str, str] | None = None,
    baselines: Sequence[str] = baselines_lib.BASELINES,
    baseline_text: Sequence[str] = (),
    cca_components: Sequence[int] | None = None,
    sm_c: Sequence[float] | None = None,
    cca_solver: str = "exact",
    command: str = "",
    out=None,
    execute_fn: Callable[[plan_lib.Run, runner.DatasetCache], dict[str, Any]] = runner.execute,
    ablations: Sequence[str] = (),
    protocol: str = "default",
    amend: str | None = None,
    amend_note: str = "",
) -> dict[str, Any]:
  """Runs (or reuses) every run, baseline and ablation variant (names of
  `plan.ABLATIONS`), scored under `protocol` (a key of `protocols.PROTOCOLS`); writes and
  returns the results: in `workdir`, or with `amend` (a folder) merged into the table
  there (`amend.amend_table`, noting `amend_note`)."""
  out = out or sys.stdout
  manual_dirs = manual_dirs or {}
  info = runner.protocol_info(protocol)
  if amend_note and not amend:
    raise errors.UserError("--amend_note says why rows of a table were re-run: give --amend=DIR.")
  if amend:
    amended = amend_lib.load_table(amend, protocol)
    amend_lib.check_amendable(
        amended,
        os.path.join(amend, evaluate_lib.results_file(protocol)),
        protocol,
        preset,
        range(seeds),
    )
  for b in baselines:
    if b not in baselines_lib.BASELINES:
      raise errors.UserError(f"Unknown baseline {b!r}; choose from {baselines_lib.BASELINES}.")
  for t in baseline_text:
    if t not in data_lib.TEXT_FEATURES:
      raise errors.UserError(
          f"Unknown --baseline_text {t!r}; choose from {data_lib.TEXT_FEATURES}."
      )
  planned = plan_lib.plan(
      methods, datasets, seeds, workdir, preset, overrides, manual_dirs, ablations
  )
  # A default variant's run is its method's: trained (or reused) once.
  first: dict[str, plan_lib.Run] = {}
  for run in planned:
    first.setdefault(run.workdir, run)
  runs = list(first.values())
  if not sm_c:
    sm_c = runner.CI_C_GRID if preset == "ci" else baselines_lib.DEFAULT_C_GRID
  if not cca_components and preset == "ci":
    cca_components = runner.CI_COMPONENTS
  parsed = plan_lib.parse_overrides(overrides)
  baseline_configs = {}  # dataset -> [(text label, data config)]
  for d in datasets:
    texts = list(baseline_text) if (d == "wikipedia" and baseline_text) else [None]
    baseline_configs[d] = [
        (t, plan_lib.baseline_data_config(d, preset, parsed, manual_dirs, t)) for t in texts
    ]
    if d in plan_lib.FILE_DATASETS and baselines and not baseline_configs[d][0][1].manual_dir:
      raise errors.UserError(f"The {d} dataset needs its folder: --manual_dir={d}=DIR.")
  _CURRENT.update(workdir=workdir, run=None)
  cache = runner.DatasetCache()
  if amend:
    for run in runs:
      if plan_lib.is_finished(run):
        runner.check_own_run(run)
    # The table's splits against this command's, before anything trains.
    for d in datasets:
      if d not in amended["datasets"]:
        continue
      data_config = next((r.config.data for r in runs if r.dataset == d), None)
      data = cache.get(data_config if data_config is not None else baseline_configs[d][0][1])
      sizes = {"num_test": len(data.splits[info["query_split"]])}
      sizes["num_gallery"] = len(data.splits[info["gallery_split"]])
      amend_lib.same_sizes(amended["datasets"][d], sizes, f"dataset {d!r}")
  eval_config = default_configs.eval_config()
  baseline_results: dict[str, list[dict[str, Any]]] = {d: [] for d in datasets}
  for d in datasets:
    for text_label, data_config in baseline_configs[d]:
      for b in baselines:
        baseline_results[d].append(
            runner.run_baseline(
                b,
                d,
                data_config,
                workdir,
                cache,
                cca_components,
                sm_c,
                text_label,
                eval_config,
                out,
                cca_solver,
                protocol,
            )
        )
  progress = runner.Progress(runs, out)
  summaries: list[dict[str, Any]] = []  # of `runs`, in order
  for k, run in enumerate(runs, start=1):
    _CURRENT["run"] = run
    if plan_lib.is_finished(run):
      # Trained before (under any protocol): evaluated under this one unless it was.
      current = runner.protocol_current(run, protocol)
      status = "finished before, reused"
      if protocol != "default":
        status += f"; {protocol} results reused" if current else f"; evaluating under {protocol}"
      progress.line(k, run, status, runs[k:])
      if not current:
        runner.evaluate_run(run, cache, protocol)
      summaries.append(runner.run_summary(run, runner.run_info(run, cache), True, protocol))
      continue
    progress.line(k, run, "training", runs[k - 1 :])
    t0 = time.perf_counter()
    trained = execute_fn(run, cache)
    if protocol != "default":
      runner.evaluate_run(run, cache, protocol)
    progress.record(run, time.perf_counter() - t0)
    summaries.append(runner.run_summary(run, trained, False, protocol))
    metric = summaries[-1]["metric"]
    m = summaries[-1][metric]
    where = info["query_split"]
    if info["gallery_split"] != where:
      where += f" vs {info['gallery_split']} gallery"
    print(
        f"[reproduce] run {k}/{len(runs)} done: {where} {reporting.metric_name(metric)} i2t "
        f"{m['i2t']:.4f} t2i {m['t2i']:.4f} avg {m['avg']:.4f}",
        file=out,
        flush=True,
    )
  _CURRENT["run"] = None
  results = {
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "machine": table.machine(),
      "command": command or "experiments.reproduce.reproduce(...)",
      "preset": preset,
      "seeds": list(range(seeds)),
      "protocol": info,
      "std": "sample standard deviation over seeds (ddof=1)",
      "datasets": {},
  }
  by_workdir = {s["workdir"]: s for s in summaries}

  def summaries_of(dataset: str, method: str, ablation=None, variant=None) -> list[dict]:
    return [
        by_workdir[r.workdir]
        for r in planned
        if (r.dataset, r.method, r.ablation, r.variant) == (dataset, method, ablation, variant)
    ]

  def sizes(dataset: str, rows: Sequence[dict]) -> dict[str, Any]:
    """A dataset entry's test pairs, gallery pairs and figure's key, from its runs (any
    of the table's) or else its baselines."""
    found = [s for s in summaries if s["dataset"] == dataset] + baseline_results[dataset]
    num_test = next((s["num_queries"] for s in found if s.get("num_queries")), None)
    num_gallery = next((s["num_gallery"] for s in found if s.get("num_gallery")), None)
    metric = rows[0]["metric"] if rows else info["metric"]
    return {"num_test": num_test, "num_gallery": num_gallery, "metric": metric}

  for d in datasets:
    rows = [table.baseline_row(r) for r in baseline_results[d]]
    for m in methods:
      mine = summaries_of(d, m)
      if mine:
        rows.append(table.method_row(m, mine))
    results["datasets"][d] = {**sizes(d, rows), "rows": rows}
  if ablations:
    results["ablations"] = {}
  for a in dict.fromkeys(ablations):
    ablation = plan_lib.ABLATIONS[a]
    defaults = {(r.dataset, r.variant) for r in planned if r.ablation == a and r.default}
    entry = {
        "method": ablation.method,
        "title": ablation.title,
        "fields": sorted({f for _, fields in ablation.variants for f in fields}),
        "datasets": {},
    }
    for d in datasets:
      rows = [
          table.variant_row(
              a, label, (d, label) in defaults, summaries_of(d, ablation.method, a, label)
          )
          for label, _ in ablation.variants
      ]
      entry["datasets"][d] = {**sizes(d, rows), "rows": rows}
    results["ablations"][a] = entry
  results = _relative_runs(results, workdir)
  if amend:
    merged = amend_lib.amend_table(amended, results, results["command"], amend_note)
    if len(merged.get("amended", [])) == len(amended.get("amended", [])):
      print(f"[reproduce] --amend: every row equals {amend}'s; nothing recorded.", file=out)
    return table.write_outputs(merged, amend)
  return table.write_outputs(results, workdir)


def interrupted(workdir: str) -> str:
  """What a Ctrl-C kept: the finished runs (under the running command's workdir, else
  `workdir`) and the running one's last checkpoint."""
  workdir = _CURRENT.get("workdir") or workdir
  run = _CURRENT.get("run")
  now = f"; {run.workdir} keeps its last checkpoint" if run is not None else ""
  return (
      f"finished runs are kept under {workdir} (runs/, ablations/){now}; re-run the same "
      "command to go on (finished runs are reused)."
  )


def _relative_runs(results: dict[str, Any], workdir: str) -> dict[str, Any]:
  """`results` with each run's "workdir" relative to the table's workdir (runs/...)."""

  def visit(x):
    if isinstance(x, dict):
      return {
          k: (
              os.path.relpath(v, workdir)
              if k == "workdir" and isinstance(v, str) and os.path.isabs(v)
              else visit(v)
          )
          for k, v in x.items()
      }
    if isinstance(x, list):
      return [visit(v) for v in x]
    return x

  return visit(results)
