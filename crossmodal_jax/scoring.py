"""Blockwise query x gallery scoring from per-item encodings, within a memory budget.

A method's `score(variables, image_block, text_block)` maps a block of P image encodings
and a block of Q text encodings to their [P, Q] pair scores (or a pytree of such score
channels). Scoring a whole gallery walks the (query, gallery) plane in tiles: one jitted
call scores a block of `bq` queries against the whole gallery, `lax.map`ping over chunks
of `cq` queries x `cg` gallery items, so device memory holds one chunk's intermediates
and one block's output row, never all pairs' inputs. The chunk comes from the memory
budget and the method's cost per pair (`Method.pair_bytes`): a non-separable scorer that
builds a joint vector per pair is chunked finely, a separable one keeps large tiles.
Query and gallery are padded up to whole chunks and the padding is cut off (or masked out
of the top-k) afterwards: no item is ever dropped.

- `score_matrix` returns the full [n_query, n_gallery] score channels on the host (what
  mAP@ALL needs; 4k x 4k floats is 64 MB).
- `top_k` streams the gallery and keeps only each query's k best (score, index) pairs,
  for galleries too large to hold all scores. Ties keep the lower gallery index first.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# (variables, image_enc_block, text_enc_block) -> [P, Q] scores (or a pytree of them).
ScoreFn = Callable[[Any, Any, Any], Any]


def _num_items(tree: Any) -> int:
  sizes = {x.shape[0] for x in jax.tree.leaves(tree)}
  if len(sizes) != 1:
    raise ValueError(f"Encodings disagree on the number of items: {sorted(sizes)}.")
  n = sizes.pop()
  if n == 0:
    raise ValueError("Nothing to score or encode: zero items.")
  return n


def _pad_to(tree: Any, n: int) -> Any:
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


@functools.partial(jax.jit, static_argnums=(0, 4))
def _score_rows(
    fn: ScoreFn, variables: Any, query_rows: Any, gallery_chunks: Any, query_chunk: int
) -> Any:
  """[bq] x [nb, cg] -> channels [bq, nb * cg], `query_chunk` queries at a time."""
  bq = _num_items(query_rows)
  if bq == query_chunk:
    return _tile(fn, variables, query_rows, gallery_chunks)
  rows = jax.lax.map(
      lambda q: _tile(fn, variables, q, gallery_chunks), _blocks(query_rows, query_chunk)
  )  # [bq / cq, cq, nb * cg]
  return jax.tree.map(lambda r: r.reshape((bq,) + r.shape[2:]), rows)


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
      of [P, Q] score channels. Must be hashable (e.g. a method's bound `score`): it is a
      static argument of the jitted tile function.
    variables: the model variables passed to score_fn.
    query_enc, gallery_enc: per-item encodings (pytrees, leading axis = items).
    query_block, gallery_block: the largest chunk sides.
    queries_are_images: if False the queries are texts: score_fn is called as
      score_fn(variables, gallery_block, query_block) and each tile is transposed.
    pair_bytes: intermediates per scored pair (`Method.pair_bytes`), with
    memory_budget: bytes one chunk's intermediates may take; together they bound the
      chunk (see `plan`).

  Returns:
    float32 numpy array(s) [n_query, n_gallery], in score_fn's output structure.
  """
  nq, ng = _num_items(query_enc), _num_items(gallery_enc)
  p = plan(nq, ng, query_block, gallery_block, pair_bytes, memory_budget)
  fn = score_fn if queries_are_images else _Transposed(score_fn)
  q_pad = _pad_to(query_enc, math.ceil(nq / p.query_rows) * p.query_rows)
  g_chunks = _blocks(
      _pad_to(gallery_enc, math.ceil(ng / p.gallery_chunk) * p.gallery_chunk), p.gallery_chunk
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


@functools.partial(jax.jit, static_argnums=(0, 5))
def _top_k_row(
    score_fn: ScoreFn,
    variables: Any,
    query_block: Any,
    gallery_blocks: Any,
    num_valid: jax.Array,
    k: int,
) -> tuple[jax.Array, jax.Array]:
  nb = jax.tree.leaves(gallery_blocks)[0].shape[0]
  bg = jax.tree.leaves(gallery_blocks)[0].shape[1]
  bq = jax.tree.leaves(query_block)[0].shape[0]

  def step(carry, inputs):
    best_s, best_i = carry
    g, offset = inputs
    s = score_fn(variables, query_block, g)
    idx = offset + jnp.arange(bg, dtype=jnp.int32)
    s = jnp.where(idx[None, :] < num_valid, s, -jnp.inf)
    # Earlier (lower-index) candidates come first, and top_k keeps the first of equal
    # values, so ties resolve to the lower gallery index.
    all_s = jnp.concatenate([best_s, s], axis=1)
    all_i = jnp.concatenate([best_i, jnp.broadcast_to(idx, (bq, bg))], axis=1)
    top_s, pos = jax.lax.top_k(all_s, k)
    return (top_s, jnp.take_along_axis(all_i, pos, axis=1)), None

  init = (
      jnp.full((bq, k), -jnp.inf, jnp.float32),
      jnp.full((bq, k), jnp.iinfo(jnp.int32).max, jnp.int32),
  )
  offsets = jnp.arange(nb, dtype=jnp.int32) * bg
  (best_s, best_i), _ = jax.lax.scan(step, init, (gallery_blocks, offsets))
  return best_s, best_i


def top_k(
    score_fn: ScoreFn,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    k: int,
    query_block: int = 512,
    gallery_block: int = 4096,
    queries_are_images: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  """Each query's k best gallery items, streaming the gallery block by block.

  Returns:
    (scores float32 [n_query, k], indices int32 [n_query, k]) in rank order.
  """
  nq, ng = _num_items(query_enc), _num_items(gallery_enc)
  if not 1 <= k <= ng:
    raise ValueError(f"k must be in [1, n_gallery={ng}], got {k}.")
  query_block, gallery_block = min(query_block, nq), min(gallery_block, ng)
  fn = score_fn if queries_are_images else _Transposed(score_fn)
  q_pad = _pad_to(query_enc, math.ceil(nq / query_block) * query_block)
  g_blocks = _blocks(
      _pad_to(gallery_enc, math.ceil(ng / gallery_block) * gallery_block), gallery_block
  )
  scores = np.empty((nq, k), dtype=np.float32)
  indices = np.empty((nq, k), dtype=np.int32)
  for start in range(0, nq, query_block):
    q = jax.tree.map(lambda x: x[start : start + query_block], q_pad)
    s, i = _top_k_row(fn, variables, q, g_blocks, jnp.int32(ng), k)
    stop = min(start + query_block, nq)
    scores[start:stop] = np.asarray(s)[: stop - start]
    indices[start:stop] = np.asarray(i)[: stop - start]
  return scores, indices


def encode(encode_fn: Callable[[Any], Any], inputs: Any, batch_size: int) -> Any:
  """Applies a jitted per-item encoder over `inputs` in padded batches; drops nothing."""
  n = _num_items(inputs)
  batch_size = min(batch_size, n)
  padded = _pad_to(inputs, math.ceil(n / batch_size) * batch_size)
  parts = []
  for start in range(0, n, batch_size):
    parts.append(encode_fn(jax.tree.map(lambda x: x[start : start + batch_size], padded)))
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0)[:n], *parts)


def method_channels(method: Any, variables: Any, image_enc: Any, text_enc: Any, eval_config) -> Any:
  """`method.score` over every (image, text) pair of the encodings, chunked within
  `eval_config.memory_budget_mb` by the method's `pair_bytes`; channels [n_images, n_texts]."""
  return score_matrix(
      method.score,
      variables,
      image_enc,
      text_enc,
      eval_config.query_block,
      eval_config.gallery_block,
      pair_bytes=method.pair_bytes(image_enc, text_enc),
      memory_budget=int(eval_config.memory_budget_mb * 2**20),
  )


def split_channels(method: Any, variables: Any, arrays: Any, eval_config, encoders) -> Any:
  """A split's score channels: every item encoded once by `encoders` (jitted
  (encode_image, encode_text)), then `method_channels`."""
  encode_image, encode_text = encoders
  image_enc = encode(
      lambda x: encode_image(variables, x), method.image_input(arrays), eval_config.batch_size
  )
  text_enc = encode(
      lambda x: encode_text(variables, x), method.text_input(arrays), eval_config.batch_size
  )
  return method_channels(method, variables, image_enc, text_enc, eval_config)
