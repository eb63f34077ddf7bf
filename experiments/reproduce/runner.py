"""Running a table's runs and baselines: each dataset loaded once, the progress line,
training and evaluating a run or reusing a finished one (under the table's protocol),
a run's figures, time and size, and the classical baselines, fitted or reused."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import atomic
from crossmodal_jax import baselines as baselines_lib
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation as evaluate_lib
from crossmodal_jax import methods as methods_lib
from crossmodal_jax import protocols
from crossmodal_jax import reporting
from crossmodal_jax import runs as runs_lib
from crossmodal_jax import training as train_lib
from crossmodal_jax.data import common
from . import plan as plan_lib
from . import table

# Per run workdir: what the table needs beyond results.json.
RUN_INFO = "reproduce_run.json"
# RUN_INFO's mark of a run this command trained (in the table's workdir, where it stays).
TRAINED_BY = "experiments.reproduce"
# The baselines' grids with --preset=ci (unless given): a quick selection.
CI_COMPONENTS = (4, 16)
CI_C_GRID = (0.1, 10.0)


class DatasetCache:
  """Each (dataset, data config) loaded once."""

  def __init__(self):
    self._cache: dict[str, common.Dataset] = {}

  def get(self, data_config: ml_collections.ConfigDict) -> common.Dataset:
    key = json.dumps(runs_lib.flatten(data_config), sort_keys=True, default=str)
    if key not in self._cache:
      with errors.config_values():
        self._cache[key] = data_lib.load_dataset(data_config)
    return self._cache[key]


class Progress:
  """The progress line: run k of N, elapsed, and the time left estimated from the runs
  trained so far (the mean of the same method, variant and dataset, else of the same
  method and dataset, else of all)."""

  def __init__(self, runs: Sequence[plan_lib.Run], out=None):
    self.runs = list(runs)
    self.out = out or sys.stdout
    self.start = time.perf_counter()
    self.seconds: dict[tuple[str, str, str | None, str | None], list[float]] = {}

  @staticmethod
  def _key(run: plan_lib.Run) -> tuple[str, str, str | None, str | None]:
    return run.method, run.dataset, run.ablation, run.variant

  def estimate(self, run: plan_lib.Run) -> float | None:
    same = self.seconds.get(self._key(run))
    if same:
      return float(np.mean(same))
    method = [s for k, v in self.seconds.items() if k[:2] == self._key(run)[:2] for s in v]
    if method:
      return float(np.mean(method))
    every = [s for v in self.seconds.values() for s in v]
    return float(np.mean(every)) if every else None

  def time_left(self, remaining: Sequence[plan_lib.Run]) -> float | None:
    estimates = [self.estimate(r) for r in remaining]
    if any(e is None for e in estimates):
      return None
    return float(sum(estimates))

  def line(self, k: int, run: plan_lib.Run, status: str, remaining: Sequence[plan_lib.Run]) -> str:
    left = self.time_left(remaining)
    left_text = (
        f"about {table.format_seconds(left)} left"
        if left is not None
        else "time left known after the first training"
    )
    text = (
        f"[reproduce] run {k}/{len(self.runs)}: {run.describe()}: {status} (elapsed "
        f"{table.format_seconds(time.perf_counter() - self.start)}, {left_text})"
    )
    print(text, file=self.out, flush=True)
    return text

  def record(self, run: plan_lib.Run, seconds: float):
    self.seconds.setdefault(self._key(run), []).append(seconds)


# --------------------------------------------------------------------------------------
# The protocol a table is scored under
# --------------------------------------------------------------------------------------


def protocol_info(protocol: str) -> dict[str, Any]:
  """What results.json records of a protocol (one error listing the choices for an
  unknown one)."""
  spec = protocols.protocol_spec(protocol)
  return {
      "name": protocol,
      "query_split": spec.query_split,
      "gallery_split": spec.gallery_split,
      "metric": spec.metric,
      "metric_name": reporting.metric_name(spec.metric),
      "description": spec.description,
  }


def figure_key(result: dict[str, Any], protocol: str) -> str:
  """The key of a run's or baseline's figure under `protocol`: the one its results name
  (a results.json of the default protocol names none: mAP@ALL)."""
  return result.get("protocol", {}).get("metric") or protocols.PROTOCOLS[protocol].metric


def protocol_current(run: plan_lib.Run, protocol: str) -> bool:
  """Whether a finished run has results of `protocol` for its checkpoint: those of the
  default are its results.json; another's results_PROTOCOL.json must name the protocol
  and results.json's checkpoint (a run trained further since is evaluated again)."""
  if protocol == "default":
    return True
  path = os.path.join(run.workdir, evaluate_lib.results_file(protocol))
  if not os.path.exists(path):
    return False
  with open(path) as f:
    stored = json.load(f)
  with open(os.path.join(run.workdir, evaluate_lib.results_file())) as f:
    trained = json.load(f)
  return stored.get("protocol", {}).get("name") == protocol and all(
      stored.get(k) == trained[k] for k in ("checkpoint_step", "checkpoint") if k in trained
  )


def evaluate_run(run: plan_lib.Run, cache: DatasetCache, protocol: str) -> None:
  """Evaluates a trained run under `protocol` from the checkpoint results.json was
  computed with (the best by validation): writes its results_PROTOCOL.json."""
  evaluate_lib.evaluate(
      run.workdir, config=run.config, dataset=cache.get(run.config.data), protocol=protocol
  )


# --------------------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------------------


def train_seconds(workdir: str) -> tuple[float | None, int]:
  """(sum of the epochs' training seconds, epochs) from metrics.jsonl (no validation)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None, 0
  total, epochs = 0.0, 0
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      if record.get("kind") == "epoch" and "epoch_seconds" in record:
        total += record["epoch_seconds"]
        epochs += 1
  return total, epochs


def count_params(config: ml_collections.ConfigDict, dataset: common.Dataset) -> int:
  """The method's trainable parameters (shapes only: nothing is computed)."""
  with errors.config_values():
    method = methods_lib.get_method(config, dataset.dims(), dataset.meta)
    variables = runs_lib.abstract_variables(method, dataset.train)
  return train_lib.num_params(variables["params"])


def execute(run: plan_lib.Run, cache: DatasetCache) -> dict[str, Any]:
  """Trains (or resumes) and evaluates one run; writes its RUN_INFO."""
  dataset = cache.get(run.config.data)
  t0 = time.perf_counter()
  train_lib.train(run.config, run.workdir, dataset=dataset)
  evaluate_lib.evaluate(run.workdir, config=run.config, dataset=dataset)
  info = {
      "num_params": count_params(run.config, dataset),
      "wall_seconds": time.perf_counter() - t0,
      "trained_by": TRAINED_BY,
  }
  with open(os.path.join(run.workdir, RUN_INFO), "w") as f:
    json.dump(info, f, indent=2)
  return info


def check_own_run(run: plan_lib.Run) -> None:
  """--amend merges only runs this command trained in its own workdir: a finished run
  there without RUN_INFO's mark (trained by experiments.train elsewhere and copied in)
  is one error."""
  path = os.path.join(run.workdir, RUN_INFO)
  info = {}
  if os.path.exists(path):
    with open(path) as f:
      info = json.load(f)
  if info.get("trained_by") != TRAINED_BY:
    raise errors.UserError(
        f"--amend: {run.workdir} holds a finished run that experiments.reproduce did not "
        "train there; an amendment merges only its own runs (remove that folder to train "
        "it here)."
    )


def run_info(run: plan_lib.Run, cache: DatasetCache) -> dict[str, Any]:
  """A finished run's RUN_INFO (computed, loading its dataset, if a run trained by
  experiments.train lacks it)."""
  path = os.path.join(run.workdir, RUN_INFO)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  info = {"num_params": count_params(run.config, cache.get(run.config.data)), "wall_seconds": None}
  with open(path, "w") as f:
    json.dump(info, f, indent=2)
  return info


def run_summary(
    run: plan_lib.Run, info: dict[str, Any], reused: bool, protocol: str = "default"
) -> dict[str, Any]:
  """A run's figures under `protocol` (from its results file of it), time and size."""
  with open(os.path.join(run.workdir, evaluate_lib.results_file(protocol))) as f:
    result = json.load(f)
  metric = figure_key(result, protocol)
  if metric not in result:
    raise errors.UserError(
        f"{run.workdir}/{evaluate_lib.results_file(protocol)} has no {reporting.metric_name(metric)}: "
        f"its gallery was ranked by streamed top-{result.get('top_k')} (larger than "
        "eval.full_matrix_mb); the table needs --override=eval.ranking=full or "
        "eval.top_k=<the gallery size>."
    )
  seconds, epochs = train_seconds(run.workdir)
  return {
      "method": run.method,
      "dataset": run.dataset,
      "seed": run.seed,
      "workdir": run.workdir,
      "reused": reused,
      "metric": metric,
      metric: result[metric],
      **{k: result[k] for k in ("recall_at_k", "median_rank") if k in result},
      # A two-stage ranking (eval.shortlist): its first stage and K, for the row's notes.
      **({"rerank": _rerank_note(result["rerank"])} if "rerank" in result else {}),
      "pr_curve": result.get("pr_curve"),
      "checkpoint_step": result.get("checkpoint_step"),
      "num_queries": result.get("num_queries"),
      "num_gallery": result.get("num_gallery"),
      "train_seconds": seconds,
      "epochs": epochs,
      "num_params": info.get("num_params"),
      "wall_seconds": info.get("wall_seconds"),
  }


def _rerank_note(rerank: dict[str, Any]) -> dict[str, Any]:
  """What a table says of a two-stage ranking: its first stage (and workdir) and K."""
  keys = ("first_stage", "first_stage_workdir", "k")
  return {k: rerank[k] for k in keys if k in rerank}


# --------------------------------------------------------------------------------------
# The baselines
# --------------------------------------------------------------------------------------


def _baseline_settings(data_config, components, c_grid, solver) -> dict[str, Any]:
  data = {
      k: v
      for k, v in runs_lib.flatten(plan_lib.json_roundtrip(data_config)).items()
      if not k.startswith(("data_dir", "manual_dir"))
  }
  return {"data": data, "components": components, "c": list(c_grid), "solver": solver}


def _same_settings(stored: dict | None, settings: dict[str, Any]) -> bool:
  """A stored baseline's settings equal `settings`; a data field absent from `stored`
  (added to the code since) takes the value it ran with, as for the runs
  (`runs.data_defaults`)."""
  if not stored:
    return False
  before = runs_lib.data_defaults(settings["data"]["name"])
  data = {
      **{k: v for k, v in before.items() if k in settings["data"]},
      **(stored.get("data") or {}),
  }
  return {**stored, "data": data} == settings


def run_baseline(
    name: str,
    dataset_name: str,
    data_config,
    workdir: str,
    cache: DatasetCache,
    components: Sequence[int] | None,
    c_grid: Sequence[float],
    text_label: str | None,
    eval_config=None,
    out=None,
    solver: str = "exact",
    protocol: str = "default",
) -> dict[str, Any]:
  """One baseline on one dataset, scored under `protocol` (its queries, gallery and
  metric), reused from WORKDIR/baselines/DATASET/TAG.json (TAG_PROTOCOL.json under
  another protocol) when its settings match."""
  out = out or sys.stdout
  eval_config = eval_config if eval_config is not None else default_configs.eval_config()
  spec = protocols.protocol_spec(protocol)
  if spec.query_split != "test":
    raise errors.UserError(
        f"The baselines take their queries from the test split, not the {spec.query_split} "
        f"split of protocol {protocol!r}."
    )
  tag = name + (f"-{text_label}" if text_label else "")
  suffix = "" if protocol == "default" else f"_{protocol}"
  path = os.path.join(workdir, "baselines", dataset_name, f"{tag}{suffix}.json")
  settings = _baseline_settings(
      data_config, list(components) if components else None, c_grid, solver
  )
  if protocol != "default":
    settings["protocol"] = protocol
  settings = json.loads(json.dumps(settings, default=str))
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    if _same_settings(stored.get("settings"), settings):
      print(f"[reproduce] baseline {tag} on {dataset_name}: reused", file=out, flush=True)
      stored["reused"] = True
      stored.setdefault("metric", figure_key(stored, protocol))
      return stored
  print(f"[reproduce] baseline {tag} on {dataset_name}: fitting", file=out, flush=True)
  dataset = cache.get(data_config)
  result = baselines_lib.run(
      name,
      dataset,
      components,
      c_grid,
      eval_config,
      solver,
      gallery_split=spec.gallery_split,
      map_r=spec.map_r,
      relevance=spec.relevance or eval_config.relevance,
  )
  info = protocol_info(protocol)
  info["metric"] = protocols.protocol_metric(protocol, result["num_gallery"], eval_config)
  result.update(
      {
          "settings": settings,
          "text_feature": text_label,
          "tag": tag,
          "protocol": info,
          "metric": info["metric"],
      }
  )
  atomic.atomic_write(path, lambda f: json.dump(result, f, indent=2), binary=False)
  result["reused"] = False
  return result
