"""Single-metric reference functions for the tests of crossmodal_jax.metrics.

Each computes one metric and sorts the scores itself, with the library's per-block code
(`metrics._iter_ranked`, `_ap_from_ranked`, `_precision_sums`, `_pr_sums`, ...):
tests/test_metrics.py checks that `metrics.retrieval_metrics` (every metric from ONE sort
per query) and `metrics.topk_metrics` equal them exactly, and checks them against its
plain-Python references (loops over queries and ranks). The library computes mAP@ALL
alone with `metrics.map_at_all`; everything else through `retrieval_metrics`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from crossmodal_jax import metrics as M


def ranked_relevance(
    scores,
    query_labels,
    gallery_labels,
    top: int | None = None,
    *,
    chunk_size: int = M.DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
  """Relevance of the gallery items in rank order, per query.

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    top: keep only the first ``top`` ranks (clipped to n_gallery); None keeps all.
    chunk_size: number of queries sorted at a time.

  Returns:
    bool array ``[n_query, top or n_gallery]``; entry ``[i, j]`` says whether the
    gallery item at rank ``j + 1`` for query ``i`` is relevant. Ties in score are
    broken by gallery index (lower index ranks first).

  Raises:
    ValueError: on shape mismatches, NaN scores or a non-positive ``top``.
  """
  q, g = M._check_labels(query_labels, gallery_labels)
  s = M._check_scores(scores, q, g)
  chunk_size = M._check_chunk(chunk_size)
  t = None if top is None else M._check_r(top, s.shape[1])
  return np.concatenate(list(M._iter_ranked(s, q, g, t, chunk_size)), axis=0)


def average_precisions(
    scores,
    query_labels,
    gallery_labels,
    r: int | None = None,
    *,
    chunk_size: int = M.DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
  """Average precision of every query.

  With ``r=None`` this is AP over the whole ranking: the mean over the ranks k of the
  relevant items of precision@k, i.e. the sum of those precisions divided by the
  number of relevant gallery items. With ``r`` given, only the top ``r`` ranks count
  and the sum is divided by the number of relevant items *found* in the top ``r``
  (the convention of the common evaluation code, not the total number of relevant
  items). A query with no relevant item (in the gallery, resp. in the top ``r``) has
  AP 0.

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    r: cut-off rank (clipped to n_gallery), or None for the whole gallery.
    chunk_size: number of queries sorted at a time.

  Returns:
    float64 array ``[n_query]`` of APs.

  Raises:
    ValueError: on shape mismatches, NaN scores or ``r < 1``.
  """
  q, g = M._check_labels(query_labels, gallery_labels)
  s = M._check_scores(scores, q, g)
  chunk_size = M._check_chunk(chunk_size)
  t = None if r is None else M._check_r(r, s.shape[1])
  return np.concatenate([M._ap_from_ranked(rel) for rel in M._iter_ranked(s, q, g, t, chunk_size)])


def map_at_r(
    scores, query_labels, gallery_labels, r: int, *, chunk_size: int = M.DEFAULT_CHUNK_SIZE
) -> float:
  """Mean average precision over the top ``r`` ranks (mAP@R).

  Only the first ``r`` ranks count. Following the common evaluation code, the AP
  denominator is the number of relevant items FOUND in the top ``r`` (not the total
  number of relevant gallery items), so a query whose top ``r`` holds one relevant
  item at rank 1 has AP 1. A query with no relevant item in the top ``r`` has AP 0.

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    r: cut-off rank, >= 1 (clipped to n_gallery).
    chunk_size: number of queries sorted at a time.

  Returns:
    mAP@R as a Python float.

  Raises:
    ValueError: on shape mismatches, NaN scores or ``r < 1``.
  """
  if r is None:
    raise ValueError("r must be an int >= 1 (use map_at_all for the whole gallery)")
  return float(
      average_precisions(scores, query_labels, gallery_labels, r, chunk_size=chunk_size).mean()
  )


def map_at_r_from_topk(
    topk_indices,
    query_labels,
    gallery_labels,
    r: int,
    *,
    chunk_size: int = M.DEFAULT_CHUNK_SIZE,
) -> float:
  """mAP@R from precomputed top-k gallery indices (for galleries too big to score densely).

  Same convention as :func:`map_at_r`: AP denominator = number of relevant items
  found in the top ``r``; AP 0 when none is found. The indices must already be in rank
  order (as produced by a streaming top-k scorer); to match :func:`map_at_r` exactly,
  the scorer must break ties by gallery index as well.

  Args:
    topk_indices: int array ``[n_query, K]`` with ``K >= min(r, n_gallery)``; row i
      lists gallery indices for query i, best first.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    r: cut-off rank, >= 1 (clipped to n_gallery).
    chunk_size: number of queries processed at a time.

  Returns:
    mAP@R as a Python float.

  Raises:
    ValueError: if shapes do not match, K is smaller than r, or an index is out of
      range.
  """
  q, g = M._check_labels(query_labels, gallery_labels)
  idx = M._check_topk_shape(topk_indices, q, g)
  r = M._check_r(r, g.shape[0])
  if idx.shape[1] < r:
    raise ValueError(f"topk_indices has shape {idx.shape}; need at least r = {r} columns")
  idx = M._check_topk_range(idx[:, :r], g.shape[0])
  chunk_size = M._check_chunk(chunk_size)
  aps = [M._ap_from_ranked(rel) for rel in M._iter_topk_ranked(idx, q, g, chunk_size)]
  return float(np.concatenate(aps).mean())


def _mean_precision_at(
    s: np.ndarray, q: np.ndarray, g: np.ndarray, kk: np.ndarray, chunk_size: int
) -> np.ndarray:
  """Mean precision at each (already clipped) k in ``kk``."""
  total = np.zeros(kk.shape[0], dtype=np.float64)
  for rel in M._iter_ranked(s, q, g, int(kk.max()), chunk_size):
    total += M._precision_sums(M._hits(rel), kk)
  return total / s.shape[0]


def precision_at_k(
    scores,
    query_labels,
    gallery_labels,
    ks: Sequence[int],
    *,
    chunk_size: int = M.DEFAULT_CHUNK_SIZE,
) -> dict[int, float]:
  """Mean precision@k over queries, for each k.

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    ks: cut-offs, each >= 1; a k above n_gallery is evaluated at n_gallery.
    chunk_size: number of queries sorted at a time.

  Returns:
    ``{k: mean precision@k}`` keyed by the k as given, values Python floats.

  Raises:
    ValueError: on shape mismatches, NaN scores, empty ``ks`` or a k < 1.
  """
  q, g = M._check_labels(query_labels, gallery_labels)
  s = M._check_scores(scores, q, g)
  chunk_size = M._check_chunk(chunk_size)
  ks_list, kk = M._check_ks(ks, s.shape[1])
  vals = _mean_precision_at(s, q, g, kk, chunk_size)
  return {k: float(v) for k, v in zip(ks_list, vals)}


def precision_scope(
    scores,
    query_labels,
    gallery_labels,
    scopes: Sequence[int],
    *,
    chunk_size: int = M.DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
  """Precision-scope curve: mean precision@K for each scope K.

  This is the curve plotted in the DRSL paper (Fig. 3): precision of the top K
  retrieved items, averaged over queries, as a function of K.

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    scopes: scopes K, each >= 1; a K above n_gallery is evaluated at n_gallery.
    chunk_size: number of queries sorted at a time.

  Returns:
    float64 array ``[len(scopes)]`` of mean precisions, in the order of ``scopes``.

  Raises:
    ValueError: on shape mismatches, NaN scores, empty ``scopes`` or a K < 1.
  """
  q, g = M._check_labels(query_labels, gallery_labels)
  s = M._check_scores(scores, q, g)
  chunk_size = M._check_chunk(chunk_size)
  _, kk = M._check_ks(scopes, s.shape[1], "scopes")
  return _mean_precision_at(s, q, g, kk, chunk_size)


def pr_curve(
    scores,
    query_labels,
    gallery_labels,
    num_points: int = 11,
    *,
    chunk_size: int = M.DEFAULT_CHUNK_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
  """Interpolated precision-recall curve, averaged over queries.

  Recall levels are ``i / (num_points - 1)`` for ``i = 0 .. num_points - 1`` (0, 0.1,
  .., 1 for the standard 11 points). For one query, the interpolated precision at
  level r is the maximum precision@k over all ranks k whose recall (relevant items
  in the top k / relevant items in the gallery) is >= r; recall comparisons are done
  in exact integer arithmetic. The curve is averaged over the queries that have at
  least one relevant gallery item; if no query has one, precision is all zeros.

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    num_points: number of recall levels, >= 2.
    chunk_size: number of queries sorted at a time.

  Returns:
    ``(recall, precision)``, two float64 arrays ``[num_points]``.

  Raises:
    ValueError: on shape mismatches, NaN scores or ``num_points < 2``.
  """
  q, g = M._check_labels(query_labels, gallery_labels)
  s = M._check_scores(scores, q, g)
  chunk_size = M._check_chunk(chunk_size)
  num_points = M._check_num_points(num_points)
  total = np.zeros(num_points, dtype=np.float64)
  n_valid = 0
  for rel in M._iter_ranked(s, q, g, None, chunk_size):
    sums, count = M._pr_sums(M._hits(rel), num_points)
    if count:
      total += sums
      n_valid += count
  return M._pr_recall(num_points), (total / n_valid if n_valid else total)
