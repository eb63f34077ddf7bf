"""The layout of a split's figures in results.json: its keys and how they are built.

A split is ranked in both directions (image -> text "i2t", text -> image "t2i"); each
direction's metrics come from one sort per query (`metrics.retrieval_metrics`, or
`metrics.topk_metrics` for a streamed top-k). This module lays them out as results.json
holds them, the same for a method (`metrics.split_metrics`, `protocols.evaluate_split`)
and a classical baseline (`baselines.evaluate_scores`):

- "map_all": {"i2t", "t2i", "avg"}, mAP@ALL (absent from a streamed ranking short of the
  whole gallery);
- "map_at_{R}": {"i2t", "t2i", "avg"}, mAP@R with R capped at the gallery size;
- "precision_at_k": {"i2t": {"K": P@K}, "t2i": ...}, the K of eval.precision_ks up to the
  gallery size;
- "pr_curve": {"i2t": {"recall", "precision"}, "t2i": ...}, PR_POINTS recall levels (only
  with every rank);
- "precision_scope": {"scopes": [...], "i2t": [...], "t2i": [...]}, P@K at the SCOPES up
  to the gallery size (and the k kept, streamed);
- with pair-level relevance (eval.relevance="pair"): "recall_at_k": {"i2t": {"K": R@K},
  "t2i": ..., "avg": ...}, the K of eval.recall_ks, and "median_rank": {"i2t", "t2i",
  "avg"}, the median rank of each query's first relevant item.

Evaluation adds what ranked the split beside them (`evaluate.evaluate`): "top_k",
"map_all_by_channel", "protocol", "calibrated", the splits, the checkpoint, and for a
two-stage ranking (eval.shortlist) "rerank": {"first_stage" ("sm", "own" or the trained
run's method; "first_stage_workdir": its workdir as given), "k", "r",
"recall_of_exhaustive_top_r": {"i2t", "t2i", "avg"} or None}.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

DIRECTIONS = ("i2t", "t2i")
SCOPES = (10, 25, 50, 100, 200, 300, 400, 500, 750, 1000)  # precision-scope cut-offs
PR_POINTS = 11  # recall levels of the PR curve
MAP_AT = "map_at_"  # the prefix of an mAP@R key


def map_key(r: int) -> str:
  """The key of mAP@R: "map_at_{R}"."""
  return f"{MAP_AT}{r}"


def cutoffs(
    n_gallery: int, map_r: int, precision_ks: Sequence[int], top: int | None = None
) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
  """(R, the K of P@K, the scopes) a split's figures are reported at.

  Args:
    n_gallery: the gallery size; R is capped at it, and K and the scopes beyond it dropped.
    map_r: R of mAP@R; precision_ks: K of P@K.
    top: the ranks kept per query (a streamed top-k; None: every rank): scopes beyond it
      are dropped too.
  """
  r = min(map_r, n_gallery)
  ks = tuple(k for k in precision_ks if k <= n_gallery)
  deepest = n_gallery if top is None else min(n_gallery, top)
  return r, ks, tuple(s for s in SCOPES if s <= deepest)


def split_result(
    per_direction: Mapping[str, Mapping[str, Any]],
    r: int | None = None,
    scopes: Sequence[int] = (),
) -> dict[str, Any]:
  """A split's results dict from each direction's metrics.

  Args:
    per_direction: {"i2t", "t2i"}: a `metrics.retrieval_metrics` / `metrics.topk_metrics`
      dict each, with "map_all" (unless streamed short of the whole gallery) and, when `r`
      is given, "map_r", "precision_at_k", "precision_scope" (if any scope) and "pr_curve"
      (if every rank).
    r: R of the "map_r" figures (None: mAP@ALL alone is reported).
    scopes: the scopes of the precision-scope figures.

  Returns:
    The keys of the module docstring, in its order, each mAP with its "avg" over the two
    directions.
  """
  first = per_direction[DIRECTIONS[0]]

  def each(key: str) -> dict[str, Any]:
    return {d: per_direction[d][key] for d in DIRECTIONS}

  result: dict[str, Any] = {}
  averaged = []
  if "map_all" in first:
    result["map_all"] = each("map_all")
    averaged.append("map_all")
  if r is not None:
    result[map_key(r)] = each("map_r")
    averaged.append(map_key(r))
    result["precision_at_k"] = each("precision_at_k")
    if "pr_curve" in first:
      result["pr_curve"] = each("pr_curve")
    result["precision_scope"] = {"scopes": list(scopes)}
    for d in DIRECTIONS:  # no scope within the gallery: an empty curve
      result["precision_scope"][d] = per_direction[d].get("precision_scope", [])
  if "recall_at_k" in first:
    result["recall_at_k"] = each("recall_at_k")
    result["recall_at_k"]["avg"] = {
        k: float(np.mean([result["recall_at_k"][d][k] for d in DIRECTIONS]))
        for k in first["recall_at_k"]
    }
  if all("median_rank" in per_direction[d] for d in DIRECTIONS):
    result["median_rank"] = each("median_rank")
    averaged.append("median_rank")
  for key in averaged:
    result[key]["avg"] = float(np.mean([result[key][d] for d in DIRECTIONS]))
  return result
