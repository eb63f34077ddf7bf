"""Blockwise query x gallery scoring from per-item encodings, within a memory budget.

Everything here takes a score function and encodings, nothing of a method: a
`score_fn(variables, image_block, text_block)` maps a block of P image encodings and a
block of Q text encodings to their [P, Q] pair scores (or a pytree of such score
channels), with `variables` passed through as a traced argument. Scoring a whole gallery
walks the (query, gallery) plane in tiles: one jitted call scores a block of `bq` queries
against the whole gallery, `lax.map`ping over chunks of `cq` queries x `cg` gallery items,
so device memory holds one chunk's intermediates and one block's output row, never all
pairs' inputs. The chunk comes from the memory budget and the bytes one scored pair's
intermediates take (`pair_bytes`): a non-separable scorer that builds a joint vector per
pair is chunked finely, a separable one keeps large tiles. Query and gallery are padded up
to whole chunks and the padding is cut off (or masked out of the top-k) afterwards: no
item is ever dropped.

- `score_matrix` returns the full [n_query, n_gallery] score channels on the host (what
  mAP@ALL needs; 4k x 4k floats is 64 MB).
- `top_k` streams the gallery and keeps only each query's k best (score, index) pairs,
  for galleries too large to hold all scores: one jitted call takes a block of queries
  through the gallery, merging each block of scores into the running top-k.
- `top_k_of_rows` does the same for a ranking that needs a query's whole row of score
  channels (a row-wise fusion such as a per-query min-max normalisation): it scores a few
  query rows against the whole gallery at a time, ranks them on the host and keeps their
  top k.

Both keep ties in gallery-index order (the lower index first), as the metrics' stable
sort does, so their rankings equal the full matrix's. What each holds in memory is in its
docstring: O(n_query x k) on the host plus one tile within the memory budget. A method's
encoders, `score` and `pair_bytes` are brought here by `ranking`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from crossmodal_jax import kernels

# (variables, image_enc_block, text_enc_block) -> [P, Q] scores (or a pytree of them).
ScoreFn = Callable[[Any, Any, Any], Any]


def num_items(tree: Any) -> int:
  """The number of items of a pytree of per-item arrays (their common leading size, > 0)."""
  sizes = {x.shape[0] for x in jax.tree.leaves(tree)}
  if len(sizes) != 1:
    raise ValueError(f"Encodings disagree on the number of items: {sorted(sizes)}.")
  n = sizes.pop()
  if n == 0:
    raise ValueError("Nothing to score or encode: zero items.")
  return n


def pad_to(tree: Any, n: int) -> Any:
  """Every leaf zero-padded along its leading axis up to `n` items."""

  def pad(x):
    x = jnp.asarray(x)
    extra = n - x.shape[0]
    return jnp.pad(x, [(0, extra)] + [(0, 0)] * (x.ndim - 1)) if extra else x

  return jax.tree.map(pad, tree)


def _blocks(tree: Any, block: int) -> Any:
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // block, block) + x.shape[1:]), tree)


@dataclasses.dataclass(frozen=True)
class Plan:
  """How a query x gallery plane is walked.

  Attributes:
    query_rows: queries per jitted call (a multiple of query_chunk).
    query_chunk: queries per scored chunk.
    gallery_chunk: gallery items per scored chunk.
  """

  query_rows: int
  query_chunk: int
  gallery_chunk: int

  @property
  def chunk_pairs(self) -> int:
    return self.query_chunk * self.gallery_chunk


def plan(
    n_query: int,
    n_gallery: int,
    query_block: int = 512,
    gallery_block: int = 512,
    pair_bytes: int | None = None,
    memory_budget: int | None = None,
) -> Plan:
  """Chunks of at most query_block x gallery_block pairs, and of at most
  memory_budget // pair_bytes pairs when both are given (never below one pair)."""
  if query_block < 1 or gallery_block < 1:
    raise ValueError(f"Block sizes must be >= 1, got {query_block} x {gallery_block}.")
  qb, gb = min(query_block, n_query), min(gallery_block, n_gallery)
  if pair_bytes is None or memory_budget is None:
    return Plan(qb, qb, gb)
  pairs = max(1, int(memory_budget) // max(int(pair_bytes), 1))
  cg = min(gb, pairs)
  cq = min(qb, max(1, pairs // cg))
  return Plan(cq * max(1, qb // cq), cq, cg)


def _tile(fn: ScoreFn, variables: Any, query_chunk: Any, gallery_chunks: Any) -> Any:
  """[cq] x [nb, cg] -> channels [cq, nb * cg]."""
  tiles = jax.lax.map(lambda g: fn(variables, query_chunk, g), gallery_chunks)  # [nb, cq, cg]

  def join(t):
    nb, cq, cg = t.shape
    return jnp.transpose(t, (1, 0, 2)).reshape(cq, nb * cg)

  return jax.tree.map(join, tiles)


def _rows(
    fn: ScoreFn, variables: Any, query_rows: Any, gallery_chunks: Any, query_chunk: int
) -> Any:
  """[bq] x [nb, cg] -> channels [bq, nb * cg], `query_chunk` queries at a time."""
  bq = num_items(query_rows)
  if bq == query_chunk:
    return _tile(fn, variables, query_rows, gallery_chunks)
  rows = jax.lax.map(
      lambda q: _tile(fn, variables, q, gallery_chunks), _blocks(query_rows, query_chunk)
  )  # [bq / cq, cq, nb * cg]
  return jax.tree.map(lambda r: r.reshape((bq,) + r.shape[2:]), rows)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _score_rows(
    fn: ScoreFn, variables: Any, query_rows: Any, gallery_chunks: Any, query_chunk: int
) -> Any:
  """`_rows`, jitted."""
  return _rows(fn, variables, query_rows, gallery_chunks, query_chunk)


def score_matrix(
    score_fn: ScoreFn,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    query_block: int = 512,
    gallery_block: int = 512,
    queries_are_images: bool = True,
    pair_bytes: int | None = None,
    memory_budget: int | None = None,
) -> Any:
  """All [n_query, n_gallery] scores, computed chunk by chunk.

  Args:
    score_fn: (variables, image_enc_block, text_enc_block) -> [P, Q] scores, or a pytree
      of [P, Q] score channels. Must be hashable (e.g. a bound method): it is a
      static argument of the jitted tile function.
    variables: the model variables passed to score_fn.
    query_enc, gallery_enc: per-item encodings (pytrees, leading axis = items).
    query_block, gallery_block: the largest chunk sides.
    queries_are_images: if False the queries are texts: score_fn is called as
      score_fn(variables, gallery_block, query_block) and each tile is transposed.
    pair_bytes: bytes of the intermediates of one scored pair, with
    memory_budget: bytes one chunk's intermediates may take; together they bound the
      chunk (see `plan`).

  Returns:
    float32 numpy array(s) [n_query, n_gallery], in score_fn's output structure.
  """
  nq, ng = num_items(query_enc), num_items(gallery_enc)
  p = plan(nq, ng, query_block, gallery_block, pair_bytes, memory_budget)
  fn = score_fn if queries_are_images else _Transposed(score_fn)
  q_pad = pad_to(query_enc, math.ceil(nq / p.query_rows) * p.query_rows)
  g_chunks = _blocks(
      pad_to(gallery_enc, math.ceil(ng / p.gallery_chunk) * p.gallery_chunk), p.gallery_chunk
  )
  out = None
  for start in range(0, nq, p.query_rows):
    q = jax.tree.map(lambda x: x[start : start + p.query_rows], q_pad)
    rows = jax.device_get(_score_rows(fn, variables, q, g_chunks, p.query_chunk))
    if out is None:
      out = jax.tree.map(lambda r: np.empty((nq, ng), dtype=np.float32), rows)
    stop = min(start + p.query_rows, nq)

    def put(o, r):
      o[start:stop] = r[: stop - start, :ng]

    jax.tree.map(put, out, rows)
  return out


class _Transposed:
  """score_fn with the roles swapped: (text_block, image_block) -> [texts, images]."""

  def __init__(self, score_fn: ScoreFn):
    self.score_fn = score_fn

  def __call__(self, variables, query_block, gallery_block):
    return jax.tree.map(jnp.transpose, self.score_fn(variables, gallery_block, query_block))

  def __hash__(self):
    return hash((_Transposed, self.score_fn))

  def __eq__(self, other):
    return isinstance(other, _Transposed) and other.score_fn == self.score_fn


# Bytes per candidate of a top-k merge, for sizing it within the budget: its score and
# gallery index, in the concatenated candidates and in top_k's working copies.
MERGE_BYTES = 32
# Gallery items scored between two merges into the running top-k, at least (each merge
# is a top_k over k + that many candidates per query: fewer, larger merges are cheaper).
MIN_MERGE = 4096
# Bytes per (query, gallery item) that a ranking of whole rows (`top_k_of_rows`) allows its
# `rank_fn` for temporaries: a dozen float64 arrays of the row block (a per-query min-max
# fusion makes about eight).
RANK_BYTES = 96


class StreamingError(ValueError):
  """A ranking that cannot be streamed as asked: one query row over the memory budget, or
  a `rank_fn` whose rows depend on the other queries."""


@dataclasses.dataclass(frozen=True)
class TopKPlan:
  """How `top_k` walks the (query, gallery) plane.

  Attributes:
    query_rows: queries per jitted call (a multiple of query_chunk).
    query_chunk: queries per scored chunk.
    gallery_chunk: gallery items per scored chunk.
    merge_block: gallery items scored before each merge into the running top-k (whole
      chunks, at least k and MIN_MERGE unless the gallery is smaller).
  """

  query_rows: int
  query_chunk: int
  gallery_chunk: int
  merge_block: int


def top_k_plan(
    n_query: int,
    n_gallery: int,
    k: int,
    query_block: int = 512,
    gallery_block: int = 4096,
    pair_bytes: int | None = None,
    memory_budget: int | None = None,
) -> TopKPlan:
  """The tiles of a streamed top-k within `memory_budget` bytes (None: no limit).

  Half the budget bounds one scored chunk's intermediates (`plan` with `pair_bytes`), the
  other half a call's merge: query_rows x (k + merge_block) candidates of MERGE_BYTES
  and query_rows x merge_block scores. One query row never goes below one; a k so large
  that a single row's merge exceeds the budget is the caller's choice.
  """
  half = None if memory_budget is None else max(1, int(memory_budget) // 2)
  p = plan(n_query, n_gallery, query_block, gallery_block, pair_bytes, half)
  cg, cq, bq = p.gallery_chunk, p.query_chunk, p.query_rows
  merge = cg * math.ceil(max(k, gallery_block, MIN_MERGE) / cg)
  merge = min(merge, cg * math.ceil(n_gallery / cg))
  if half is not None:
    rows = max(1, half // ((k + merge) * MERGE_BYTES + merge * 4))
    if rows < bq:
      cq = min(cq, rows)
      bq = cq * max(1, rows // cq)
  return TopKPlan(bq, cq, cg, merge)


def _one_channel(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  if len(leaves) != 1:
    raise ValueError(
        f"top_k ranks by one score channel; the score function gives {len(leaves)}: rank "
        "their combination with top_k_of_rows."
    )
  return leaves[0]


def _rankable(s: jax.Array) -> jax.Array:
  """float32 scores with -0.0 as 0.0: `lax.top_k` orders -0.0 below 0.0, the metrics'
  sort (and IEEE comparison) count them equal."""
  s = s.astype(jnp.float32)
  return jnp.where(s == 0, jnp.zeros_like(s), s)


def native_top_k(*trees: Any) -> bool:
  """Whether `top_k` merges with the native CPU kernel (`crossmodal_jax.kernels`, in
  place of XLA's `lax.top_k`): where it is available and the call runs on the CPU (the
  default backend, and no array of `trees` lives elsewhere)."""
  if jax.default_backend() != "cpu" or not kernels.available():
    return False
  for leaf in jax.tree.leaves(trees):
    if isinstance(leaf, jax.Array) and any(d.platform != "cpu" for d in leaf.devices()):
      return False
  return True


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _top_k_rows_xla(fn, query_chunk, k, variables, query_rows, gallery_blocks, num_valid):
  """[bq] x [nm, mg / cg, cg] -> (scores [bq, k], indices [bq, k], NaN seen [bq]): merge
  block after merge block, each merged into the running top-k by `lax.top_k`."""
  bq = num_items(query_rows)
  nm, per_block, cg = jax.tree.leaves(gallery_blocks)[0].shape[:3]
  mg = per_block * cg

  def block(g, offset):
    s = _rankable(_one_channel(_rows(fn, variables, query_rows, g, query_chunk)))
    idx = offset + jnp.arange(mg, dtype=jnp.int32)
    valid = idx < num_valid
    nan = jnp.any(jnp.isnan(s) & valid[None, :], axis=1)
    # Padding sits after every real item, so it loses every tie (also with -inf scores).
    s = jnp.where(valid[None, :], s, -jnp.inf)
    return s, jnp.broadcast_to(idx, (bq, mg)), nan

  s, idx, nan = block(jax.tree.map(lambda x: x[0], gallery_blocks), 0)
  best_s, pos = jax.lax.top_k(s, k)  # mg >= k
  best_i = jnp.take_along_axis(idx, pos, axis=1)

  def step(carry, inputs):
    best_s, best_i, nan = carry
    s, idx, block_nan = block(*inputs)
    # The running best (all of lower gallery index) come first, and top_k keeps the
    # first of equal values: ties resolve to the lower gallery index.
    top_s, pos = jax.lax.top_k(jnp.concatenate([best_s, s], axis=1), k)
    top_i = jnp.take_along_axis(jnp.concatenate([best_i, idx], axis=1), pos, axis=1)
    return (top_s, top_i, nan | block_nan), None

  rest = jax.tree.map(lambda x: x[1:], gallery_blocks)
  offsets = jnp.arange(1, nm, dtype=jnp.int32) * mg
  (best_s, best_i, nan), _ = jax.lax.scan(step, (best_s, best_i, nan), (rest, offsets))
  return best_s, best_i, nan


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _top_k_rows_native(fn, query_chunk, k, variables, query_rows, gallery_blocks, num_valid):
  """Gallery chunk after gallery chunk, each chunk's scores merged into every row's k
  best by the native kernel (no merge block, no concatenation), ranked once at the end.
  Same ranking as `_top_k_rows_xla`."""
  bq = num_items(query_rows)
  nm, per_block, cg = jax.tree.leaves(gallery_blocks)[0].shape[:3]
  chunks = jax.tree.map(lambda x: x.reshape((nm * per_block,) + x.shape[2:]), gallery_blocks)

  def step(state, inputs):
    g, offset = inputs
    if bq == query_chunk:
      s = fn(variables, query_rows, g)
    else:
      s = jax.lax.map(lambda q: fn(variables, q, g), _blocks(query_rows, query_chunk))
      s = jax.tree.map(lambda r: r.reshape((bq,) + r.shape[2:]), s)
    return kernels.top_k_merge(state, _one_channel(s), offset, num_valid, k), None

  offsets = jnp.arange(nm * per_block, dtype=jnp.int32) * cg
  state, _ = jax.lax.scan(step, kernels.top_k_start(bq, k), (chunks, offsets))
  return kernels.top_k_finish(state, k)


def _check_k(k: int, n_gallery: int) -> int:
  if not 1 <= k <= n_gallery:
    raise ValueError(f"k must be in [1, n_gallery={n_gallery}], got {k}.")
  return int(k)


def _nan_error(rows: np.ndarray, start: int) -> ValueError:
  return ValueError(f"scores contain NaN (query {start + int(np.flatnonzero(rows)[0])})")


def _top_k_layout(
    score_fn, variables, query_enc, gallery_enc, k, query_block=512, gallery_block=4096,
    queries_are_images=True, pair_bytes=None, memory_budget=None,
) -> tuple[int, ScoreFn, TopKPlan, Callable, Any, Any]:  # fmt: skip
  """(k, score function, plan, jitted call, padded queries, gallery blocks [nm, mg / cg,
  cg, ...]) of a streamed top-k. The XLA merge walks `top_k_plan`'s merge blocks; the
  native merge takes one gallery chunk at a time, the chunks and query rows evened out
  (as many of them, none larger) so that little padding is scored."""
  nq, ng = num_items(query_enc), num_items(gallery_enc)
  k = _check_k(k, ng)
  p = top_k_plan(nq, ng, k, query_block, gallery_block, pair_bytes, memory_budget)
  fn = score_fn if queries_are_images else _Transposed(score_fn)
  native = native_top_k(variables, query_enc, gallery_enc)
  if native:
    even = lambda n, block: math.ceil(n / math.ceil(n / block))  # as many, none larger
    cg, rows = even(ng, p.gallery_chunk), even(nq, p.query_rows)
    cq = rows if p.query_rows == p.query_chunk else p.query_chunk
    p = TopKPlan(cq * math.ceil(rows / cq), cq, cg, cg)
  q_pad = pad_to(query_enc, math.ceil(nq / p.query_rows) * p.query_rows)
  g_pad = pad_to(gallery_enc, math.ceil(ng / p.merge_block) * p.merge_block)
  g_blocks = jax.tree.map(
      lambda x: x.reshape(
          (x.shape[0] // p.merge_block, p.merge_block // p.gallery_chunk, p.gallery_chunk)
          + x.shape[1:]
      ),
      g_pad,
  )
  return k, fn, p, (_top_k_rows_native if native else _top_k_rows_xla), q_pad, g_blocks


def top_k(
    score_fn: ScoreFn,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    k: int,
    query_block: int = 512,
    gallery_block: int = 4096,
    queries_are_images: bool = True,
    pair_bytes: int | None = None,
    memory_budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Each query's k best gallery items by one score channel, streaming the gallery.

  One jitted call takes `query_rows` queries through the whole gallery. On the CPU with
  the native kernels (`native_top_k`) it merges each gallery chunk's scores, as they are
  scored, into every query's k best (a vector of candidates at a time compared with the
  worst kept); the chunks and query rows are evened out (as many, none larger) so that
  little padding is scored. Elsewhere it scores a merge block of gallery items (chunk by
  chunk, as `score_matrix` does) and merges it into the running top-k with `lax.top_k`,
  block after block in gallery order. Either way the ranking equals a stable descending
  sort of the full score matrix: equal scores keep the lower gallery index first (-0.0
  counts as 0.0); padding never enters the top k.

  Memory: the result, n_query x k x 8 bytes on the host; on the device, one call's
  query_rows x (k + merge_block) merge candidates (natively less: query_rows x (k +
  max(2k, 64)) kept and buffered, and one chunk's query_rows x gallery_chunk scores) and
  one chunk's intermediates, which `top_k_plan` keeps within `memory_budget` (half each;
  `top_k_memory` reads what XLA allocates).

  Args:
    score_fn: (variables, image_block, text_block) -> [P, Q] scores (a pytree with one
      leaf may hold them); hashable, as for `score_matrix`.
    variables: the model variables passed to score_fn.
    query_enc, gallery_enc: per-item encodings (pytrees, leading axis = items).
    k: items kept per query, 1 <= k <= n_gallery.
    query_block, gallery_block: the largest query block and gallery chunk.
    queries_are_images: False when the queries are texts (see `score_matrix`).
    pair_bytes, memory_budget: the budget of one call (see `top_k_plan`); None: blocks
      as given.

  Returns:
    (scores float32 [n_query, k], indices int32 [n_query, k]) in rank order.

  Raises:
    ValueError: k out of range, several score channels, or a NaN score.
  """
  nq, ng = num_items(query_enc), num_items(gallery_enc)
  k, fn, p, rows, q_pad, g_blocks = _top_k_layout(
      score_fn, variables, query_enc, gallery_enc, k, query_block, gallery_block,
      queries_are_images, pair_bytes, memory_budget,
  )  # fmt: skip
  scores = np.empty((nq, k), dtype=np.float32)
  indices = np.empty((nq, k), dtype=np.int32)
  for start in range(0, nq, p.query_rows):
    q = jax.tree.map(lambda x: x[start : start + p.query_rows], q_pad)
    s, i, nan = jax.device_get(rows(fn, p.query_chunk, k, variables, q, g_blocks, jnp.int32(ng)))
    stop = min(start + p.query_rows, nq)
    if nan[: stop - start].any():
      raise _nan_error(nan[: stop - start], start)
    scores[start:stop] = s[: stop - start]
    indices[start:stop] = i[: stop - start]
  return scores, indices


def top_k_memory(score_fn: ScoreFn, variables: Any, query_enc: Any, gallery_enc: Any, k: int, **kw):
  """One `top_k` call's tiles (`TopKPlan`'s fields), whether it merges natively, and the
  device memory XLA gives it (compiled, not run): "temp_bytes" (its intermediates, what
  `memory_budget` bounds), "argument_bytes" (a query block, the padded gallery, the
  variables), "output_bytes"; None where the backend does not say. `kw`: as for `top_k`."""
  k, fn, p, rows, q_pad, g_blocks = _top_k_layout(
      score_fn, variables, query_enc, gallery_enc, k, **kw
  )
  q = jax.tree.map(lambda x: x[: p.query_rows], q_pad)
  ng = jnp.int32(num_items(gallery_enc))
  stats = rows.lower(fn, p.query_chunk, k, variables, q, g_blocks, ng).compile().memory_analysis()
  out = {**dataclasses.asdict(p), "native": rows is _top_k_rows_native}
  for key in ("temp", "argument", "output"):
    out[f"{key}_bytes"] = None if stats is None else int(getattr(stats, f"{key}_size_in_bytes"))
  return out


@functools.partial(jax.jit, static_argnums=(1,))
def _top_k_dense(s: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  return jax.lax.top_k(_rankable(s), k)  # the first of equal values: the lower index


def row_entry_bytes(num_channels: int) -> int:
  """Bytes per (query, gallery item) of `top_k_of_rows`' row block: the score channels
  on the device and on the host, the float32 ranking scores, top_k's working copies and
  RANK_BYTES for `rank_fn`'s temporaries."""
  return 8 * num_channels + 4 + MERGE_BYTES + RANK_BYTES


def top_k_of_rows(
    score_fn: ScoreFn,
    rank_fn: Callable[[Any], np.ndarray],
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    k: int,
    query_block: int = 512,
    gallery_block: int = 512,
    queries_are_images: bool = True,
    pair_bytes: int | None = None,
    memory_budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Each query's k best gallery items by `rank_fn` of its whole row of score channels.

  For a ranking that is a row-wise function of the channels over the whole gallery (a
  query's min-max normalisation needs its row's minimum and maximum): a block of query
  rows is scored against the whole gallery (`score_matrix`'s chunks), ranked by
  `rank_fn` on the host, and only its top k is kept. This is exact when `rank_fn` is
  row-wise: a query's ranking scores depend on its own row alone, not on which other
  queries share its block. That is checked on the first block (its first query ranked
  alone must match); a `rank_fn` that fails it raises `StreamingError`.

  Memory: the result, n_query x k x 8 bytes on the host, plus one block of query_rows
  whole rows: `row_entry_bytes(channels)` per (query, gallery item), the block sized to
  half of `memory_budget`, and one scored chunk's intermediates within the other half.

  Args:
    score_fn: as for `score_matrix` (a pytree of channels allowed).
    rank_fn: channels oriented query x gallery ([rows, n_gallery] numpy arrays, in
      score_fn's structure) -> [rows, n_gallery] ranking scores, higher first.
    variables, query_enc, gallery_enc, k, query_block, gallery_block, queries_are_images,
      pair_bytes, memory_budget: as for `top_k`.

  Returns:
    (ranking scores float32 [n_query, k], indices int32 [n_query, k]) in rank order; ties
    keep the lower gallery index first.

  Raises:
    StreamingError: one query's row exceeds half the budget, or `rank_fn` is not
      row-wise. ValueError: k out of range, or a NaN ranking score.
  """
  nq, ng = num_items(query_enc), num_items(gallery_enc)
  k = _check_k(k, ng)
  fn = score_fn if queries_are_images else _Transposed(score_fn)
  one = jax.tree.map(lambda x: x[:1], query_enc)
  g_one = jax.tree.map(lambda x: x[:1], gallery_enc)
  num_channels = len(jax.tree.leaves(jax.eval_shape(fn, variables, one, g_one)))
  row_bytes = ng * row_entry_bytes(num_channels)
  rows = nq if memory_budget is None else int(memory_budget) // 2 // row_bytes
  if rows < 1:
    raise StreamingError(
        f"one query's row of {ng} gallery items takes {row_bytes / 2**20:.1f} MB "
        f"({row_entry_bytes(num_channels)} bytes per item: {num_channels} score channels, "
        f"the ranking and its temporaries), over half the memory budget of "
        f"{int(memory_budget) / 2**20:.1f} MB"
    )
  half = None if memory_budget is None else int(memory_budget) // 2
  bq = min(rows, query_block, nq)
  p = plan(bq, ng, bq, gallery_block, pair_bytes, half)
  bq = p.query_rows
  q_pad = pad_to(query_enc, math.ceil(nq / bq) * bq)
  g_chunks = _blocks(
      pad_to(gallery_enc, math.ceil(ng / p.gallery_chunk) * p.gallery_chunk), p.gallery_chunk
  )
  scores = np.empty((nq, k), dtype=np.float32)
  indices = np.empty((nq, k), dtype=np.int32)
  for start in range(0, nq, bq):
    stop = min(start + bq, nq)
    q = jax.tree.map(lambda x: x[start : start + bq], q_pad)
    channels = jax.tree.map(
        lambda c: c[: stop - start, :ng],
        jax.device_get(_score_rows(fn, variables, q, g_chunks, p.query_chunk)),
    )
    ranking = np.asarray(rank_fn(channels), np.float32)
    if ranking.shape != (stop - start, ng):
      raise ValueError(f"rank_fn gave shape {ranking.shape} for channels of {stop - start} x {ng}.")
    nan = np.isnan(ranking).any(axis=1)
    if nan.any():
      raise _nan_error(nan, start)
    if start == 0 and stop > 1:
      _check_row_wise(rank_fn, channels, ranking)
    padded = np.zeros((bq, ng), np.float32)
    padded[: stop - start] = ranking
    s, i = jax.device_get(_top_k_dense(padded, k))
    scores[start:stop] = s[: stop - start]
    indices[start:stop] = i[: stop - start]
  return scores, indices


def _check_row_wise(rank_fn: Callable[[Any], np.ndarray], channels: Any, ranking: np.ndarray):
  """Raises StreamingError if the first query's ranking changes when ranked alone."""
  alone = np.asarray(rank_fn(jax.tree.map(lambda c: c[:1], channels)), np.float32)
  scale = max(1.0, float(np.abs(ranking[0]).max()))
  if alone.shape != ranking[:1].shape or not np.allclose(
      alone, ranking[:1], rtol=1e-5, atol=1e-6 * scale
  ):
    raise StreamingError(
        "its ranking is not row-wise: the first query's ranking scores change when it is "
        "ranked without the other queries of its block, so a gallery cannot be streamed "
        "query block by query block"
    )
