"""The benchmark's retrieve-then-rerank case (`--only=rerank`): trained Wikipedia runs of
two methods with learned, non-separable similarity rerank the shortlists of two cheap
first stages, at several K.

For each seed S of `--rerank_runs` (DIR/wikipedia/METHOD/seed_S, as
experiments.reproduce lays its runs out) and each reranked method, its best-by-validation
checkpoint ranks the 462 test queries of each direction against the 462 test items of the
other modality:

- exhaustively: every pair scored (`ranking.score_split`), each row sorted;
- by a first stage alone: semantic matching fitted on the run's own training features
  with its regularisations chosen on validation (`shortlists.SemanticMatching`), or the
  ranking of the HCMSL run of the same seed (`shortlists.TrainedRun`), each over the whole
  gallery;
- in two stages: each query's top K of that first stage reranked by the method
  (`rerank.two_stage`), the rest in the first stage's order.

Each is scored by mAP@50 (R of results.json) and mAP@100 (both directions' mean), and a
two-stage ranking also by the recall of the exhaustive top 50 inside the shortlist. The
times are of both directions, each measured after an untimed call that compiles: the
exhaustive ranking (encoding, all-pairs scoring, sorting), a first stage's ranking (and
semantic matching's fit and selection apart: once per dataset, shared by the seeds, as
it has no seed), and the second stage (the method's
encoding of the test split, the K pairs per query scored, sorted). Figures are the mean
and sample standard deviation over the seeds; each entry keeps its per-seed values.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np

from crossmodal_jax import data as data_lib
from crossmodal_jax import methods
from crossmodal_jax import metrics
from crossmodal_jax import ranking
from crossmodal_jax import rerank
from crossmodal_jax import shortlists
from crossmodal_jax import runs
from . import wikipedia

RERANKED = ("drsl", "scanet")  # methods whose similarity is learned and not separable
FIRST_STAGES = ("sm", "hcmsl")
KS = (20, 50, 100, 200)
MAP_RS = (50, 100)
RECALL_R = 50
DIRECTIONS = ranking.DIRECTIONS


def _dataset(config, cache: dict):
  key = json.dumps(runs.flatten(config.data), sort_keys=True, default=str)
  if key not in cache:
    cache[key] = data_lib.load_dataset(config.data)
  return cache[key]


def _semantic_matching(config, dataset, cache: dict) -> shortlists.SemanticMatching:
  """Semantic matching fitted (and chosen on validation) once per dataset: it has no
  seed, so every seed's runs on the same features share it."""
  key = ("sm", json.dumps(runs.flatten(config.data), sort_keys=True, default=str))
  if key not in cache:
    cache[key] = shortlists.SemanticMatching(dataset, config.eval).fit()
  return cache[key]


def _run(runs_dir: str, method: str, seed: int, source: wikipedia.Source):
  """(workdir, config pointed at the data folder and cache) of a trained run."""
  workdir = os.path.join(runs_dir, "wikipedia", method, f"seed_{seed}")
  config = runs.load(workdir)
  if source.wikipedia_dir:
    source.apply(config.data)
  return workdir, config


def _figures(ranked: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
  """mAP@R for each R of MAP_RS, the mean of both directions, from ranked lists."""
  out = {}
  for r in MAP_RS:
    per = [metrics.topk_metrics(ranked[d], labels, labels, r=r, ks=())["map_r"] for d in DIRECTIONS]
    out[f"map_at_{r}"] = float(np.mean(per))
  return out


def _timed(fn, warm: bool = True):
  """(fn()'s value, its seconds), after an untimed call that compiles when `warm`."""
  if warm:
    fn()
  start = time.perf_counter()
  value = fn()
  return value, time.perf_counter() - start


def _order(scores: np.ndarray) -> np.ndarray:
  return np.argsort(-scores, axis=1, kind="stable").astype(np.int32)


def _one_seed(runs_dir: str, seed: int, source: wikipedia.Source, cache: dict, ks) -> list[dict]:
  """Every (method, first stage, K) measurement of one seed, as flat rows."""
  out = []
  hcmsl_dir, hcmsl_config = _run(runs_dir, "hcmsl", seed, source)
  hcmsl_data = _dataset(hcmsl_config, cache)
  for name in RERANKED:
    workdir, config = _run(runs_dir, name, seed, source)
    dataset = _dataset(config, cache)
    method = methods.get_method(config, dataset.dims(), dataset.meta)
    variables, _ = runs.restore_variables(workdir, method, dataset.train, "best")
    test, labels, n = dataset.test, dataset.test["label"], len(dataset.test)
    ce = config.eval
    rows = []

    def exhaustive():
      scores = ranking.score_split(method, variables, test, ce)
      return {d: _order(scores[d]) for d in DIRECTIONS}

    full, full_seconds = _timed(exhaustive)
    rows.append(
        {"method": name, "stage": "exhaustive", "seconds": full_seconds, **_figures(full, labels)}
    )
    sm = _semantic_matching(config, dataset, cache)
    trained = shortlists.TrainedRun(hcmsl_dir, config, dataset, other_dataset=hcmsl_data)
    stages = {"sm": sm, "hcmsl": trained}
    for first_name in FIRST_STAGES:
      stage = stages[first_name]
      first, first_seconds = _timed(lambda: {d: stage.top(test, test, d, n) for d in DIRECTIONS})
      extra = {"fit_seconds": sm.fit_seconds, "chosen": sm.chosen} if first_name == "sm" else {}
      rows.append(
          {
              "method": name,
              "stage": "first_stage",
              "first_stage": first_name,
              "seconds": first_seconds,
              **extra,
              **_figures(first, labels),
          }
      )
      for k in ks:

        def second(k=k, first=first):
          q_images, q_texts = ranking.encode_split(method, variables, test, ce)
          enc = {"i2t": (q_images, q_texts), "t2i": (q_texts, q_images)}
          return {
              d: rerank.two_stage(method, variables, *enc[d], first[d], k, d, ce)[0]
              for d in DIRECTIONS
          }

        ranked, seconds = _timed(second)
        recall = np.mean(
            [rerank.recall_of_top(full[d][:, :RECALL_R], first[d][:, :k]) for d in DIRECTIONS]
        )
        rows.append(
            {
                "method": name,
                "stage": "two_stage",
                "first_stage": first_name,
                "k": k,
                "seconds": seconds,
                "recall": float(recall),
                **_figures(ranked, labels),
            }
        )
    out += [{**r, "n": n} for r in rows]
    print(f"[rerank] seed {seed}: {name} measured", flush=True)
  return out


def _stat(values: Sequence[float]) -> tuple[float, float | None]:
  v = np.asarray(values, np.float64)
  return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def bench_rerank(
    runs_dir: str, source: wikipedia.Source, seeds: Sequence[int], ks: Sequence[int] = KS
) -> list[dict[str, Any]]:
  """The entries: per reranked method its exhaustive ranking, each first stage alone, and
  each (first stage, K) in two stages, over `seeds` (see the module docstring)."""
  cache: dict = {}
  per_seed = {s: _one_seed(runs_dir, s, source, cache, ks) for s in seeds}

  def key(row):
    return (row["method"], row["stage"], row.get("first_stage"), row.get("k"))

  groups: dict[tuple, list[dict]] = {}
  for s in seeds:
    for row in per_seed[s]:
      groups.setdefault(key(row), []).append({**row, "seed": s})
  entries = {}
  for (name, stage, first_name, k), rows in groups.items():
    if stage == "exhaustive":
      entry_name = f"rerank/wikipedia/{name}/exhaustive"
    elif stage == "first_stage":
      entry_name = f"rerank/wikipedia/{name}/{first_name}/alone"
    else:
      entry_name = f"rerank/wikipedia/{name}/{first_name}/k{k}"
    entry: dict[str, Any] = {
        "name": entry_name,
        "method": name,
        "first_stage": first_name,
        "k": k,
        "queries_per_direction": rows[0]["n"],
        "gallery": rows[0]["n"],
        "seeds": [r["seed"] for r in rows],
    }
    fields = ["map_at_50", "map_at_100", "seconds"]
    fields += ["recall"] if stage == "two_stage" else []
    fields += ["fit_seconds"] if first_name == "sm" and stage == "first_stage" else []
    for field in fields:
      out = f"recall_of_exhaustive_top_{RECALL_R}" if field == "recall" else field
      entry[out], entry[f"{out}_std"] = _stat([r[field] for r in rows])
    entry["per_seed"] = [{k_: v for k_, v in r.items() if k_ not in ("method", "n")} for r in rows]
    entries[entry_name] = entry
  # The exhaustive and first-stage-alone figures and times beside each two-stage entry,
  # so that one row of a table reads them from one entry.
  for entry in entries.values():
    if entry["k"] is None:
      continue
    full = entries[f"rerank/wikipedia/{entry['method']}/exhaustive"]
    alone = entries[f"rerank/wikipedia/{entry['method']}/{entry['first_stage']}/alone"]
    entry.update(
        {
            "exhaustive_map_at_50": full["map_at_50"],
            "exhaustive_map_at_100": full["map_at_100"],
            "exhaustive_seconds": full["seconds"],
            "first_stage_map_at_50": alone["map_at_50"],
            "first_stage_map_at_100": alone["map_at_100"],
            "first_stage_seconds": alone["seconds"],
            "beats_both": bool(
                entry["map_at_50"] > max(full["map_at_50"], alone["map_at_50"])
                and entry["map_at_100"] > max(full["map_at_100"], alone["map_at_100"])
            ),
        }
    )
  for entry in entries.values():
    entry["n_seeds"] = len(entry["seeds"])
  return list(entries.values())
