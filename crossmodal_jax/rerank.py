"""Retrieve, then rerank: a cheap first stage shortlists, the method's own scorer reranks.

A method whose similarity is learned and not separable puts every (query, gallery item)
pair through its scorer, which is costly at gallery scale. Ranking in two stages scores
K pairs per query instead of the whole gallery:

1. the first stage (`shortlists`, from `eval.shortlist`: semantic matching, or another
   trained run's own ranking) ranks the whole gallery cheaply and keeps each query's top K
   (`eval.rerank_k`), the shortlist;

2. the second stage (`rerank`) scores just those K pairs per query with the method's
   `score` (a [1, K] block per query: `candidate_channels`), ranks them by its
   `retrieval_scores` and reorders the K by them. Equal scores keep the lower gallery
   index first, as every ranking of the library does, so that a shortlist of the whole
   gallery gives exactly the exhaustive ranking. A `retrieval_scores` that is not a
   function of each pair's own channels (a per-query normalisation over the row) cannot
   rank part of a row: it is refused (one `errors.UserError` naming the method) unless
   the shortlist is the whole gallery;

3. a query's final ranked list (`two_stage`) is its reranked K, then the rest of the
   first stage's ranking in its order: an item outside the shortlist never ranks in the
   first K, and the metrics of the whole ranking stay defined.

`protocols.evaluate_split` computes a split's figures from the final lists, `retrieve`
lists chosen queries' top k. This module names no method and imports neither
`protocols` nor `evaluation` (they import it).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from crossmodal_jax import errors
from crossmodal_jax import ranking
from crossmodal_jax import scoring
from crossmodal_jax import shortlists
from crossmodal_jax.data import common
from crossmodal_jax.methods import base

DIRECTIONS = base.DIRECTIONS
# Tolerance of the check that a ranking function is a function of each pair's channels.
_RTOL, _ATOL = 1e-5, 1e-6


# --------------------------------------------------------------------------------------
# The second stage
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _candidate_rows(
    score_fn, images_query, query_chunk, item_block, variables, queries, gallery, candidates
):
  """[rows] queries x their [rows, width] candidates -> channels [rows, width]: chunks
  of `query_chunk` queries (lax.map), each scoring `item_block` of its candidates at a
  time, one [1, item_block] block per query (vmap)."""
  rows, width = candidates.shape
  cq, kb = query_chunk, item_block

  def pair_scores(q, items):  # one query and its block of items -> channels [kb]
    one = jax.tree.map(lambda x: x[None], q)
    if images_query:
      return jax.tree.map(lambda s: s[0], score_fn(variables, one, items))
    return jax.tree.map(lambda s: s[:, 0], score_fn(variables, items, one))

  def chunk(args):
    q, idx = args  # [cq, ...], [cq, width]
    blocks = jnp.swapaxes(idx.reshape(cq, width // kb, kb), 0, 1)  # [nb, cq, kb]

    def block(ib):
      items = jax.tree.map(lambda g: g[ib], gallery)  # [cq, kb, ...]
      return jax.vmap(pair_scores)(q, items)

    out = jax.lax.map(block, blocks)  # [nb, cq, kb]
    return jax.tree.map(lambda t: jnp.swapaxes(t, 0, 1).reshape(cq, width), out)

  q = jax.tree.map(lambda x: x.reshape((rows // cq, cq) + x.shape[1:]), queries)
  out = jax.lax.map(chunk, (q, candidates.reshape(rows // cq, cq, width)))
  return jax.tree.map(lambda t: t.reshape(rows, width), out)


def candidate_plan(
    method: base.Method, query_enc: Any, gallery_enc: Any, width: int, direction: str, eval_config
) -> tuple[int, int, int]:
  """(query rows per jitted call, queries per chunk, candidates per scored block) of
  `candidate_channels`: a chunk's pairs times their bytes (the method's `pair_bytes`,
  the gathered gallery encoding and its channels) within eval.memory_budget_mb, the
  candidates evened out into as many blocks as needed, none larger."""
  images = (query_enc, gallery_enc) if direction == "i2t" else (gallery_enc, query_enc)
  item_bytes = sum(
      math.prod(x.shape[1:]) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(gallery_enc)
  )
  per_pair = method.pair_bytes(*images) + item_bytes + 16
  budget = ranking.memory_budget(eval_config)
  most = max(1, budget // per_pair)
  blocks = math.ceil(width / min(width, most))
  kb = math.ceil(width / blocks)
  cq = max(1, min(eval_config.query_block, budget // (kb * per_pair)))
  n = scoring.num_items(query_enc)
  cq = min(cq, n)
  return cq * max(1, min(eval_config.query_block, n) // cq), cq, kb


def candidate_channels(
    method: base.Method,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    candidates: np.ndarray,
    direction: str,
    eval_config,
) -> Any:
  """The method's score channels of each query's candidates, K pairs per query.

  Each query's encoding is scored against the encodings of its own K candidates (a
  [1, K] block of `method.score`, or [K, 1] for text queries), never the whole gallery,
  in chunks of queries within eval.memory_budget_mb (`candidate_plan`).

  Args:
    method, variables: the method and its variables.
    query_enc, gallery_enc: encodings of the queries (images for "i2t", texts for "t2i")
      and of the whole gallery (the other modality).
    candidates: int [n_query, K] gallery indices.
    direction: "i2t" or "t2i".
    eval_config: the eval section (query block, memory budget).

  Returns:
    `method.score`'s pytree of float32 numpy [n_query, K] channels, column j the pair of
    the query and its candidate j.
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"Unknown direction {direction!r}; choose one of {DIRECTIONS}.")
  idx = np.asarray(candidates, np.int32)
  n, width = idx.shape
  if n != scoring.num_items(query_enc):
    raise ValueError(f"{n} rows of candidates for {scoring.num_items(query_enc)} queries.")
  bq, cq, kb = candidate_plan(method, query_enc, gallery_enc, width, direction, eval_config)
  padded_width = kb * math.ceil(width / kb)
  idx = np.pad(idx, [(0, math.ceil(n / bq) * bq - n), (0, padded_width - width)])
  q_pad = scoring.pad_to(query_enc, idx.shape[0])
  out = None
  for start in range(0, n, bq):
    q = jax.tree.map(lambda x: x[start : start + bq], q_pad)
    rows = jax.device_get(
        _candidate_rows(
            method.score,
            direction == "i2t",
            cq,
            kb,
            variables,
            q,
            gallery_enc,
            jnp.asarray(idx[start : start + bq]),
        )
    )
    if out is None:
      out = jax.tree.map(lambda r: np.empty((n, width), np.float32), rows)
    stop = min(start + bq, n)

    def put(o, r):
      o[start:stop] = r[: stop - start, :width]

    jax.tree.map(put, out, rows)
  return out


def _name(method: base.Method) -> str:
  return method.config.get("method", type(method).__name__)


def _check_pairwise(method, variables, channels, scores: np.ndarray, direction: str):
  """Raises UserError if `retrieval_scores` is not a function of each pair's own
  channels: a few queries' scores, each half of their row ranked apart and each query
  ranked alone, must equal the same rows' scores ranked together."""
  rows = min(8, scores.shape[0])
  half = scores.shape[1] // 2
  parts = [
      (slice(0, rows), slice(0, half)),
      (slice(0, rows), slice(half, None)),
      (slice(0, 1), slice(None)),
  ]
  scale = max(1.0, float(np.abs(scores[:rows]).max()))
  for r, c in parts:
    got = np.asarray(
        method.retrieval_scores(variables, jax.tree.map(lambda x: x[r, c], channels), direction),
        np.float32,
    )
    want = scores[r, c]
    if got.shape != want.shape or not np.allclose(got, want, rtol=_RTOL, atol=_ATOL * scale):
      raise errors.UserError(
          f"Cannot rerank a shortlist with method {_name(method)!r}: its retrieval_scores "
          "is not a function of each (query, item) pair's own scores (a query's scores "
          "change with the other items of its row), so part of a row cannot be ranked by "
          "it. Set eval.rerank_k to the gallery size, or eval.shortlist='' (exhaustive)."
      )


def candidate_scores(
    method: base.Method,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    candidates: np.ndarray,
    direction: str,
    eval_config,
) -> np.ndarray:
  """float32 [n_query, K]: the method's ranking scores of each query's candidates.

  The candidates' channels (`candidate_channels`) are ranked by `method.retrieval_scores`
  on [n_query, K]: a method that ranks by its one channel is ranked by it; one that
  overrides `retrieval_scores` must give each pair a score of its own channels alone
  (checked on a few rows), unless every query's candidates are the whole gallery in
  gallery order (then its rows are the exhaustive ranking's).

  Raises:
    UserError: a `retrieval_scores` that cannot rank part of a row, naming the method.
    ValueError: a NaN ranking score.
  """
  channels = candidate_channels(
      method, variables, query_enc, gallery_enc, candidates, direction, eval_config
  )
  scores = np.asarray(method.retrieval_scores(variables, channels, direction), np.float32)
  idx = np.asarray(candidates)
  whole = idx.shape[1] == scoring.num_items(gallery_enc) and np.array_equal(
      idx, np.broadcast_to(np.arange(idx.shape[1]), idx.shape)
  )
  if not ranking.ranks_by_score(method) and not whole and idx.shape[1] > 1:
    _check_pairwise(method, variables, channels, scores, direction)
  nan = np.isnan(scores).any(axis=1)
  if nan.any():
    raise ValueError(f"ranking scores contain NaN (query {int(np.flatnonzero(nan)[0])})")
  return scores


def rerank(
    method: base.Method,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    shortlist: np.ndarray,
    direction: str,
    eval_config,
) -> tuple[np.ndarray, np.ndarray]:
  """Each query's shortlist reordered by the method's ranking scores.

  The shortlist's items are scored in gallery order (`candidate_scores`) and sorted by
  descending score; equal scores keep the lower gallery index first.

  Args:
    method, variables: the method and its variables.
    query_enc, gallery_enc: the queries' and the whole gallery's encodings.
    shortlist: int [n_query, K] gallery indices, each at most once per row.
    direction: "i2t" or "t2i".
    eval_config: the eval section.

  Returns:
    (gallery indices int32 [n_query, K], their ranking scores float32 [n_query, K]), best
    first.
  """
  items = np.sort(np.asarray(shortlist, np.int32), axis=1)
  scores = candidate_scores(
      method, variables, query_enc, gallery_enc, items, direction, eval_config
  )
  order = np.argsort(-scores, axis=1, kind="stable")
  return (
      np.take_along_axis(items, order, axis=1),
      np.take_along_axis(scores, order, axis=1),
  )


def two_stage(
    method: base.Method,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    first: np.ndarray,
    k: int,
    direction: str,
    eval_config,
) -> tuple[np.ndarray, np.ndarray]:
  """Each query's final ranked list: its first K (the shortlist) reranked, then the rest
  of the first stage's ranking in its order.

  Args:
    first: int [n_query, D] the first stage's ranking, best first, D >= 1 (the whole
      gallery or its top D).
    k: K, the shortlist length (at most D).
    others: as for `rerank`.

  Returns:
    (int32 [n_query, D] gallery indices, best first; float32 [n_query, K] the ranking
    scores of the first K).
  """
  first = np.asarray(first, np.int32)
  k = min(int(k), first.shape[1])
  top, scores = rerank(
      method, variables, query_enc, gallery_enc, first[:, :k], direction, eval_config
  )
  return np.concatenate([top, first[:, k:]], axis=1), scores


def recall_of_top(exhaustive: np.ndarray, shortlist: np.ndarray) -> float:
  """The mean over queries of the fraction of each query's exhaustive top items ([n, R]
  gallery indices) found in its shortlist ([n, K])."""
  exhaustive, shortlist = np.asarray(exhaustive), np.asarray(shortlist)
  rows = max(1, 2**24 // max(1, exhaustive.shape[1] * shortlist.shape[1]))
  found = [
      (exhaustive[s : s + rows, :, None] == shortlist[s : s + rows, None, :]).any(axis=2)
      for s in range(0, len(exhaustive), rows)
  ]
  return float(np.concatenate(found).mean())


def retrieve(
    method: base.Method,
    variables: Any,
    query_split: common.Split,
    gallery_split: common.Split,
    direction: str,
    k: int,
    eval_config,
    stage: shortlists.FirstStage,
    queries: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
  """The top-k gallery items of chosen queries in two stages: `stage`'s shortlist of
  eval.rerank_k items (at most the gallery) reranked, then the rest of its ranking.

  Args:
    query_split, gallery_split: splits of `stage`'s dataset (the very objects).
    k: items per query, 1 <= k <= the gallery size; queries: rows of query_split (None:
      every row).
    others: as for `ranking.retrieve`.

  Returns:
    (ranking scores float32 [n, k]: the method's for the reranked ranks, NaN after them;
    gallery indices int32 [n, k]).
  """
  _, rerank_k = shortlists.settings(eval_config)
  n_gallery = len(gallery_split)
  shortlist_k = min(rerank_k, n_gallery)
  rows = None if queries is None else np.asarray(queries, np.int64).reshape(-1)
  first = stage.top(query_split, gallery_split, direction, max(k, shortlist_k), queries=rows)
  if rows is not None:
    query_split = common.Split({key: v[rows] for key, v in query_split.arrays.items()})
  images = direction == "i2t"
  q_images, q_texts = ranking.encode_split(
      method, variables, query_split, eval_config, images, not images
  )
  g_images, g_texts = ranking.encode_split(
      method, variables, gallery_split, eval_config, not images, images
  )
  query_enc, gallery_enc = (q_images, g_texts) if images else (q_texts, g_images)
  ranked, top_scores = two_stage(
      method, variables, query_enc, gallery_enc, first, shortlist_k, direction, eval_config
  )
  scores = np.full((len(ranked), k), np.nan, np.float32)
  shown = min(k, shortlist_k)
  scores[:, :shown] = top_scores[:, :shown]
  return scores, ranked[:, :k]
