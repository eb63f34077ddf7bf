"""Retrieval metrics for cross-modal retrieval, in vectorised numpy.

Conventions (docs/evaluation.md gives the protocols they serve):

* ``scores`` is a float array ``[n_query, n_gallery]``; higher means more similar.
* Labels are either integer arrays of shape ``[n]`` (single label; a gallery item is
  relevant to a query when the labels are equal) or 0/1 multi-hot arrays ``[n, C]``
  (relevant when query and gallery item share at least one label).
* Ranking: for each query the gallery is sorted by descending score with
  ``np.argsort(-scores, axis=1, kind="stable")``, so equal scores are broken by gallery
  index (the lower index ranks first) and every result is deterministic.
* AP of a query = mean over the ranks k of its relevant items of precision@k. For
  mAP@ALL the denominator is the number of relevant gallery items (as the DRSL and
  DSCMR evaluation code do); for mAP@R it is the number of relevant items *found* in the
  top R (the common code's convention). A query with no relevant item has AP 0.

Functions that sort take a ``chunk_size`` keyword: queries are processed in blocks of
``chunk_size`` rows, so peak memory is about ``chunk_size * n_gallery`` of int64 plus a
few bool/float arrays of the same size. Nothing loops over gallery items.

:func:`retrieval_metrics` computes every metric of one direction (mAP@ALL, mAP@R,
precision@k, the precision-scope and precision-recall curves) from ONE sort of each
query's scores; :func:`topk_metrics` the same from each query's streamed top-K gallery
items. :func:`split_metrics` computes both directions of a split, laid out as
results.json holds them (the layout and its keys: ``results_layout``). Single-metric
versions that sort for themselves, with the same per-block code, are the tests'
references (``tests/reference_metrics.py``).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from crossmodal_jax import results_layout

__all__ = [
    "relevance",
    "map_at_all",
    "retrieval_metrics",
    "topk_metrics",
    "split_metrics",
]

DEFAULT_CHUNK_SIZE = 1024


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _as_labels(labels, name: str) -> np.ndarray:
  """Returns labels as an array, checking they are [n] or multi-hot 0/1 [n, C]."""
  arr = np.asarray(labels)
  if arr.ndim == 1:
    return arr
  if arr.ndim == 2:
    if arr.dtype != np.bool_:
      if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} has shape {arr.shape}: 2-D labels must be 0/1 multi-hot")
      arr = arr.astype(bool)
    return arr
  raise ValueError(
      f"{name} must have shape [n] (int labels) or [n, C] (multi-hot), got {arr.shape}"
  )


def _check_labels(query_labels, gallery_labels) -> tuple[np.ndarray, np.ndarray]:
  q = _as_labels(query_labels, "query_labels")
  g = _as_labels(gallery_labels, "gallery_labels")
  if q.ndim != g.ndim:
    raise ValueError(
        "query_labels and gallery_labels must both be [n] or both [n, C]; got "
        f"shapes {q.shape} and {g.shape}"
    )
  if q.ndim == 2 and q.shape[1] != g.shape[1]:
    raise ValueError(
        "multi-hot query_labels and gallery_labels differ in number of classes: "
        f"shapes {q.shape} and {g.shape}"
    )
  return q, g


def _check_scores(scores, q: np.ndarray, g: np.ndarray) -> np.ndarray:
  s = np.asarray(scores)
  if s.ndim != 2:
    raise ValueError(f"scores must have shape [n_query, n_gallery], got {s.shape}")
  if s.shape != (q.shape[0], g.shape[0]):
    raise ValueError(
        f"scores has shape {s.shape} but query_labels has shape {q.shape} and "
        f"gallery_labels has shape {g.shape}; expected scores of shape "
        f"{(q.shape[0], g.shape[0])}"
    )
  if s.shape[0] == 0 or s.shape[1] == 0:
    raise ValueError(f"scores must have at least one query and one gallery item, got {s.shape}")
  if not np.issubdtype(s.dtype, np.floating):
    s = s.astype(np.float64)
  if np.isnan(s).any():
    raise ValueError("scores contain NaN")
  return s


def _check_chunk(chunk_size: int) -> int:
  chunk_size = int(chunk_size)
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  return chunk_size


def _check_r(r, n_gallery: int) -> int:
  r = int(r)
  if r < 1:
    raise ValueError(f"r must be >= 1, got {r}")
  return min(r, n_gallery)


def _check_ks(ks, n_gallery: int, name: str = "ks") -> tuple[list[int], np.ndarray]:
  ks_list = [int(k) for k in np.atleast_1d(np.asarray(ks)).tolist()]
  if not ks_list:
    raise ValueError(f"{name} must not be empty")
  if any(k < 1 for k in ks_list):
    raise ValueError(f"{name} must all be >= 1, got {ks_list}")
  return ks_list, np.minimum(np.asarray(ks_list, dtype=np.int64), n_gallery)


def _optional_cutoffs(values, n_gallery: int, name: str) -> tuple[list[int], np.ndarray | None]:
  """Like ``_check_ks`` but an empty sequence gives ``([], None)``."""
  if np.atleast_1d(np.asarray(values)).size == 0:
    return [], None
  return _check_ks(values, n_gallery, name)


# --------------------------------------------------------------------------------------
# Relevance and ranking
# --------------------------------------------------------------------------------------


def _relevance(q: np.ndarray, g: np.ndarray) -> np.ndarray:
  """Relevance for already-validated labels."""
  if q.ndim == 1:
    return q[:, None] == g[None, :]
  # Shared-label count via a float32 matmul (exact for < 2**24 classes).
  return (q.astype(np.float32) @ g.astype(np.float32).T) > 0


def relevance(query_labels, gallery_labels) -> np.ndarray:
  """Relevance matrix between queries and gallery items.

  Args:
    query_labels: int labels ``[n_query]`` or 0/1 multi-hot labels ``[n_query, C]``.
    gallery_labels: labels of the same kind, ``[n_gallery]`` or ``[n_gallery, C]``.

  Returns:
    bool array ``[n_query, n_gallery]``: True where the labels are equal (int labels)
    or share at least one class (multi-hot labels).

  Raises:
    ValueError: if the label arrays are of different kinds, have different numbers
      of classes, or 2-D labels are not 0/1.
  """
  q, g = _check_labels(query_labels, gallery_labels)
  return _relevance(q, g)


def _iter_ranked(
    s: np.ndarray, q: np.ndarray, g: np.ndarray, top: int | None, chunk_size: int
) -> Iterator[np.ndarray]:
  """Yields ranked relevance ``[c, top or ng]`` for successive query blocks."""
  n_query, n_gallery = s.shape
  top = n_gallery if top is None else top
  for start in range(0, n_query, chunk_size):
    stop = min(start + chunk_size, n_query)
    order = np.argsort(-s[start:stop], axis=1, kind="stable")[:, :top]
    if q.ndim == 1:
      yield q[start:stop, None] == g[order]
    else:
      rel = _relevance(q[start:stop], g)
      yield np.take_along_axis(rel, order, axis=1)


def _check_topk_shape(topk_indices, q: np.ndarray, g: np.ndarray) -> np.ndarray:
  """topk_indices as an int array [n_query, K], for at least one query and gallery item."""
  idx = np.asarray(topk_indices)
  if idx.ndim != 2 or idx.shape[0] != q.shape[0]:
    raise ValueError(
        f"topk_indices has shape {idx.shape}; expected [n_query, K] with "
        f"n_query = {q.shape[0]} (query_labels shape {q.shape})"
    )
  if not np.issubdtype(idx.dtype, np.integer):
    raise ValueError(f"topk_indices must be integers, got dtype {idx.dtype}")
  if q.shape[0] == 0 or g.shape[0] == 0:
    raise ValueError(
        f"need at least one query and one gallery item, got query_labels {q.shape} "
        f"and gallery_labels {g.shape}"
    )
  return idx


def _check_topk_range(idx: np.ndarray, n_gallery: int) -> np.ndarray:
  if idx.size and (idx.min() < 0 or idx.max() >= n_gallery):
    raise ValueError(
        f"topk_indices must lie in [0, {n_gallery}), got range [{idx.min()}, {idx.max()}]"
    )
  return idx


def _iter_topk_ranked(
    idx: np.ndarray, q: np.ndarray, g: np.ndarray, chunk_size: int
) -> Iterator[np.ndarray]:
  """Yields ranked relevance ``[c, K]`` of successive query blocks of top-k indices."""
  for start in range(0, idx.shape[0], chunk_size):
    stop = min(start + chunk_size, idx.shape[0])
    block = idx[start:stop]
    if q.ndim == 1:
      yield q[start:stop, None] == g[block]
    else:
      yield (
          np.einsum(
              "qc,qrc->qr",
              q[start:stop].astype(np.float32),
              g[block].astype(np.float32),
          )
          > 0
      )


# --------------------------------------------------------------------------------------
# Average precision, precision at k, precision-recall
# --------------------------------------------------------------------------------------


def _hits(rel: np.ndarray) -> np.ndarray:
  """Relevant items in the top k, for every k: int64 cumulative sum of a ranked block."""
  return np.cumsum(rel, axis=1, dtype=np.int64)


def _ap_from_ranked(rel: np.ndarray, cum: np.ndarray | None = None) -> np.ndarray:
  """AP per row of a ranked relevance block; denominator = relevant items in the block.

  Args:
    rel: bool ``[c, t]`` ranked relevance (the first ``t`` ranks of ``c`` queries).
    cum: ``_hits(rel)``, when the caller already has it.

  Returns:
    float64 ``[c]``.
  """
  if cum is None:
    cum = _hits(rel)
  ranks = np.arange(1, rel.shape[1] + 1, dtype=np.float64)
  prec_sum = np.where(rel, cum / ranks, 0.0).sum(axis=1)
  n_rel = cum[:, -1]
  return np.where(n_rel > 0, prec_sum / np.maximum(n_rel, 1), 0.0)


def _precision_sums(cum: np.ndarray, kk: np.ndarray) -> np.ndarray:
  """Precision@k summed over the queries of a ranked block, for each k in ``kk``.

  Args:
    cum: ``_hits`` of a ranked block of at least ``kk.max()`` ranks.
    kk: int64 cut-offs, already clipped to ``[1, n_gallery]``.

  Returns:
    float64 ``[len(kk)]``.
  """
  return (cum[:, kk - 1] / kk).sum(axis=0)


def _check_num_points(num_points) -> int:
  num_points = int(num_points)
  if num_points < 2:
    raise ValueError(f"num_points must be >= 2, got {num_points}")
  return num_points


def _pr_recall(num_points: int) -> np.ndarray:
  """The recall levels of the PR curve: ``i / (num_points - 1)``."""
  return np.arange(num_points, dtype=np.int64) / (num_points - 1)


def _pr_sums(cum: np.ndarray, num_points: int) -> tuple[np.ndarray, int]:
  """Interpolated precision at each recall level, summed over the queries of a block.

  For one query, the interpolated precision at level r is the maximum precision@k over
  all ranks k whose recall (relevant items in the top k / relevant items in the gallery)
  is >= r; recall comparisons are done in exact integer arithmetic. Only queries with at
  least one relevant gallery item count; the curve is their average (all zeros if none
  has one).

  Args:
    cum: ``_hits`` of a ranked block over the WHOLE gallery ``[c, n_gallery]``.
    num_points: number of recall levels ``i / (num_points - 1)``, >= 2.

  Returns:
    ``(sums, count)``: float64 ``[num_points]`` and the number of queries summed.
  """
  n_rel = cum[:, -1]
  keep = n_rel > 0
  if not keep.any():
    return np.zeros(num_points, dtype=np.float64), 0
  cum, n_rel = cum[keep], n_rel[keep]
  steps = num_points - 1
  levels = np.arange(num_points, dtype=np.int64)
  prec = cum / np.arange(1, cum.shape[1] + 1, dtype=np.float64)
  # suffix maximum: best precision at this rank or any later one
  suff = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
  # relevant items needed to reach recall level i: ceil(i * n_rel / steps)
  need = -((-levels[None, :] * n_rel[:, None]) // steps)  # [c, P]
  # recall is non-decreasing, so the ranks reaching level i form a suffix that
  # starts at the first rank with cum >= need; cum >= 1 there unless need == 0.
  first = np.empty_like(need)
  for i in range(num_points):  # loop over recall levels, not queries or items
    first[:, i] = (cum < need[:, i : i + 1]).sum(axis=1)
  return np.take_along_axis(suff, first, axis=1).sum(axis=0), cum.shape[0]


# --------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------


def retrieval_metrics(
    scores,
    query_labels,
    gallery_labels,
    r: int | None = None,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    scopes: Sequence[int] = (),
    pr_points: int | None = None,
    recall_ks: Sequence[int] = (),
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict:
  """Every metric of one retrieval direction from ONE sort of each query's scores.

  Queries are ranked a block of ``chunk_size`` rows at a time (one ``np.argsort`` per
  block, nothing else sorts) and every requested metric is accumulated from that
  ranking, block by block (the tests check each value against single-metric functions
  with the same per-block code, and against plain-Python loops).

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    r: if given, also report mAP@R (only the first r ranks count; the AP denominator is
      the number of relevant items FOUND in the top r, as in the common evaluation code).
    ks: cut-offs for precision@k (each >= 1, clipped to n_gallery); may be empty.
    scopes: scopes K of the precision-scope curve, mean precision@K for each (each >= 1,
      clipped to n_gallery; the curve of the DRSL paper's figure 3); empty (the default)
      skips the curve.
    pr_points: number of recall levels ``i / (pr_points - 1)`` of the interpolated
      precision-recall curve (>= 2; 11 for the standard curve, see ``_pr_sums``); None
      (the default) skips the curve.
    recall_ks: cut-offs K of Recall@K, the fraction of queries with a relevant item in
      their top K (each >= 1, clipped to n_gallery); with them the median rank of each
      query's first relevant item is reported too. Empty (the default) skips both.
    chunk_size: number of queries sorted at a time.

  Returns:
    JSON-serialisable dict with

    * ``"map_all"``: float, mAP@ALL;
    * ``"map_r"``: float, mAP@R (only when ``r`` is given);
    * ``"precision_at_k"``: ``{str(k): float}`` in the order of ``ks``;
    * ``"precision_scope"``: list of floats in the order of ``scopes`` (only when
      ``scopes`` is not empty);
    * ``"pr_curve"``: ``{"recall": [...], "precision": [...]}``, lists of
      ``pr_points`` floats (only when ``pr_points`` is given);
    * ``"recall_at_k"``: ``{str(k): float}`` in the order of ``recall_ks``, and
      ``"median_rank"``: float, the median over the queries that have a relevant item of
      the 1-based rank of their first one (only when ``recall_ks`` is given).

  Raises:
    ValueError: on shape mismatches, NaN scores, ``r < 1``, a k or scope < 1 or
      ``pr_points < 2``.
  """
  q, g = _check_labels(query_labels, gallery_labels)
  s = _check_scores(scores, q, g)
  chunk_size = _check_chunk(chunk_size)
  cutoffs = _cutoffs(s.shape[1], r, ks, scopes, pr_points, recall_ks)
  return _metrics_of_ranked(_iter_ranked(s, q, g, None, chunk_size), s.shape[0], cutoffs, True)


def map_at_all(
    scores, query_labels, gallery_labels, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> float:
  """Mean average precision over the whole gallery (mAP@ALL).

  :func:`retrieval_metrics`' mAP@ALL alone (one sort per query). AP per query = mean
  over the ranks k of the relevant gallery items of precision@k; the denominator is the
  number of relevant gallery items (as in the DRSL and DSCMR evaluation code). A query
  with no relevant gallery item has AP 0. Ties in score are broken by gallery index.

  Args:
    scores: float array ``[n_query, n_gallery]``, higher = more similar.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    chunk_size: number of queries sorted at a time.

  Returns:
    mAP as a Python float.

  Raises:
    ValueError: on shape mismatches or NaN scores.
  """
  return retrieval_metrics(scores, query_labels, gallery_labels, ks=(), chunk_size=chunk_size)[
      "map_all"
  ]


def _cutoffs(n_gallery: int, r, ks, scopes, pr_points, recall_ks=()) -> dict:
  """The validated cut-offs of :func:`retrieval_metrics` / :func:`topk_metrics`."""
  ks_list, kk = _optional_cutoffs(ks, n_gallery, "ks")
  recall_list, recall_kk = _optional_cutoffs(recall_ks, n_gallery, "recall_ks")
  return {
      "r": None if r is None else _check_r(r, n_gallery),
      "ks": ks_list,
      "kk": kk,
      "scopes": _optional_cutoffs(scopes, n_gallery, "scopes")[1],
      "pr_points": None if pr_points is None else _check_num_points(pr_points),
      "recall_ks": recall_list,
      "recall_kk": recall_kk,
  }


def _first_relevant(rel: np.ndarray) -> np.ndarray:
  """The 1-based rank of each query's first relevant item in a ranked block, inf where
  the block holds none."""
  found = rel.any(axis=1)
  return np.where(found, np.argmax(rel, axis=1) + 1, np.inf)


def _metrics_of_ranked(
    blocks: Iterator[np.ndarray], n_query: int, cutoffs: dict, whole: bool
) -> dict:
  """The metrics of :func:`retrieval_metrics` from ranked relevance blocks ``[c, t]``.

  Args:
    blocks: ranked relevance of successive query blocks, over the first t ranks.
    n_query: the number of queries the blocks cover.
    cutoffs: from ``_cutoffs``; every cut-off must be <= t.
    whole: whether the blocks cover the whole gallery (t = n_gallery): then mAP@ALL and
      the PR curve (if asked) are computed, else they cannot be.
  """
  rr, kk, scope_kk = cutoffs["r"], cutoffs["kk"], cutoffs["scopes"]
  num_points = cutoffs["pr_points"]
  aps_all, aps_r = [], []
  prec_total = np.zeros(len(cutoffs["ks"]), dtype=np.float64)
  scope_total = np.zeros(0 if scope_kk is None else len(scope_kk), dtype=np.float64)
  pr_total = np.zeros(num_points or 0, dtype=np.float64)
  recall_kk = cutoffs["recall_kk"]
  firsts = []
  n_valid = 0
  for rel in blocks:
    if recall_kk is not None:
      firsts.append(_first_relevant(rel))
    cum = _hits(rel)
    if whole:
      aps_all.append(_ap_from_ranked(rel, cum))
    if rr is not None:
      aps_r.append(_ap_from_ranked(rel[:, :rr], cum[:, :rr]))
    if kk is not None:
      prec_total += _precision_sums(cum, kk)
    if scope_kk is not None:
      scope_total += _precision_sums(cum, scope_kk)
    if num_points is not None:
      sums, count = _pr_sums(cum, num_points)
      if count:
        pr_total += sums
        n_valid += count

  out: dict = {}
  if whole:
    out["map_all"] = float(np.concatenate(aps_all).mean())
  if rr is not None:
    out["map_r"] = float(np.concatenate(aps_r).mean())
  out["precision_at_k"] = {str(k): float(v) for k, v in zip(cutoffs["ks"], prec_total / n_query)}
  if scope_kk is not None:
    out["precision_scope"] = (scope_total / n_query).tolist()
  if num_points is not None:
    precision = pr_total / n_valid if n_valid else pr_total
    out["pr_curve"] = {
        "recall": _pr_recall(num_points).tolist(),
        "precision": precision.tolist(),
    }
  if recall_kk is not None:
    first = np.concatenate(firsts)
    out["recall_at_k"] = {str(k): float((first <= k).mean()) for k in cutoffs["recall_ks"]}
    # With every rank, a query without a relevant item has no rank and is left out; with a
    # streamed top-K, the median is known only when it lies within the K ranks.
    ranked = first[np.isfinite(first)] if whole else first
    median = float(np.median(ranked)) if len(ranked) else float("nan")
    if np.isfinite(median):
      out["median_rank"] = median
  return out


def topk_metrics(
    topk_indices,
    query_labels,
    gallery_labels,
    r: int | None = None,
    ks: Sequence[int] = (1, 5, 10, 50, 100),
    scopes: Sequence[int] = (),
    pr_points: int | None = None,
    recall_ks: Sequence[int] = (),
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict:
  """:func:`retrieval_metrics` from each query's top-K gallery items (a streamed ranking).

  mAP@R, precision@k and the precision-scope curve only read the first ranks, so K of
  them per query suffice: with the indices of a ranking that breaks ties by gallery index
  (as ``scoring.top_k`` does), the values equal :func:`retrieval_metrics`' on the full
  score matrix, from the same per-block code. mAP@ALL (its AP denominator counts every
  relevant gallery item, wherever it ranks) and the PR curve need every rank: they are
  computed only when K = n_gallery. Memory: the indices, and ``chunk_size * K`` labels
  and flags at a time.

  Args:
    topk_indices: int array ``[n_query, K]``, row i the gallery indices of query i's best
      K items, best first, each at most once.
    query_labels: int labels ``[n_query]`` or multi-hot ``[n_query, C]``.
    gallery_labels: int labels ``[n_gallery]`` or multi-hot ``[n_gallery, C]``.
    r: if given, also report mAP@R (clipped to n_gallery; must be <= K).
    ks: cut-offs for precision@k (clipped to n_gallery; each <= K); may be empty.
    scopes: scopes of the precision-scope curve (clipped to n_gallery; each <= K).
    pr_points: recall levels of the PR curve (needs K = n_gallery); None skips it.
    recall_ks: cut-offs of Recall@K (each <= K); the median rank is reported when it
      lies within the K ranks.
    chunk_size: number of queries processed at a time.

  Returns:
    The dict of :func:`retrieval_metrics`, without ``"map_all"`` when K < n_gallery.

  Raises:
    ValueError: on shape mismatches, an index out of range or repeated within a row, a
      cut-off beyond K, or ``pr_points`` with K < n_gallery.
  """
  q, g = _check_labels(query_labels, gallery_labels)
  idx = _check_topk_range(_check_topk_shape(topk_indices, q, g), g.shape[0])
  chunk_size = _check_chunk(chunk_size)
  n_gallery, top = g.shape[0], idx.shape[1]
  for start in range(0, idx.shape[0], chunk_size):
    ordered = np.sort(idx[start : start + chunk_size], axis=1)
    repeated = np.nonzero(ordered[:, 1:] == ordered[:, :-1])
    if repeated[0].size:
      row = start + int(repeated[0][0])
      raise ValueError(
          f"topk_indices row {row} lists gallery index {ordered[row - start, repeated[1][0]]} "
          "more than once"
      )
  cutoffs = _cutoffs(n_gallery, r, ks, scopes, pr_points, recall_ks)
  deepest = max(
      [cutoffs["r"] or 0]
      + [
          int(c.max())
          for c in (cutoffs["kk"], cutoffs["scopes"], cutoffs["recall_kk"])
          if c is not None
      ]
  )
  if deepest > top:
    raise ValueError(
        f"topk_indices has {top} ranks per query, but a cut-off asks for {deepest} "
        f"(r={r}, ks={list(ks)}, scopes={list(scopes)}, recall_ks={list(recall_ks)})"
    )
  whole = top == n_gallery
  if cutoffs["pr_points"] is not None and not whole:
    raise ValueError(f"the PR curve needs every rank: topk_indices has {top} of the {n_gallery}")
  return _metrics_of_ranked(_iter_topk_ranked(idx, q, g, chunk_size), idx.shape[0], cutoffs, whole)


# --------------------------------------------------------------------------------------
# Both directions of a split
# --------------------------------------------------------------------------------------


def split_metrics(
    scores: dict[str, np.ndarray],
    labels,
    map_r: int = 50,
    precision_ks: Sequence[int] = (1, 5, 10, 50, 100),
    full: bool = True,
    gallery_labels=None,
    recall_ks: Sequence[int] = (),
) -> dict:
  """A split's retrieval metrics in both directions, as results.json holds them.

  Queries are the items of one modality, the gallery the items of the other: of the same
  split (one `labels` for both), or of another split (`gallery_labels`). Each direction's
  scores are sorted once per query (:func:`retrieval_metrics`).

  Args:
    scores: {"i2t": [n_query, n_gallery] image x text, "t2i": [n_query, n_gallery] text x
      image} ranking scores.
    labels: the queries' labels ([n] ints or [n, C] multi-hot); a pair's image and text
      share them, so both directions' queries have these.
    map_r: R of mAP@R (capped at n_gallery); precision_ks: K of P@K (those <= n_gallery).
    full: False gives mAP@ALL alone (one sort per query all the same).
    gallery_labels: the gallery's labels (None: `labels`, queries and gallery from one
      split).
    recall_ks: K of Recall@K (those <= n_gallery), with the median rank; with `full`
      only (empty: neither).

  Returns:
    `results_layout.split_result`'s dict: {"map_all": {"i2t", "t2i", "avg"}} and, if
    `full`, "map_at_{R}" (with "avg"), "precision_at_k", "pr_curve" and "precision_scope"
    (with its "scopes"), and with `recall_ks` "recall_at_k" and "median_rank".
  """
  gallery_labels = labels if gallery_labels is None else gallery_labels
  r, ks, scopes = results_layout.cutoffs(len(gallery_labels), map_r, precision_ks)
  if not full:
    per_direction = {
        d: retrieval_metrics(scores[d], labels, gallery_labels, ks=())
        for d in results_layout.DIRECTIONS
    }
    return results_layout.split_result(per_direction)
  per_direction = {
      d: retrieval_metrics(
          scores[d],
          labels,
          gallery_labels,
          r=r,
          ks=ks,
          scopes=scopes,
          pr_points=results_layout.PR_POINTS,
          recall_ks=tuple(k for k in recall_ks if k <= len(gallery_labels)),
      )
      for d in results_layout.DIRECTIONS
  }
  return results_layout.split_result(per_direction, r, scopes)
