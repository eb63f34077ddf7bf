"""Ranking with a method: encode each item once, score its pairs, rank by the method.

The glue between a method (`base.Method`) and the method-free blockwise scorer
(`scoring`): each item of a split is encoded once by the method's jitted encoders
(`encode_split`), every (image, text) pair is scored in tiles within
`eval.memory_budget_mb` by the method's `score` and `pair_bytes` (`method_channels`,
`split_channels`), and each direction is ranked by the method's `retrieval_scores`
(`ranking_scores`, `score_split`).

For galleries too large for the whole matrices, `top_k` streams each query's best k
gallery items: a method that ranks by its one score channel streams the gallery on the
device (`scoring.top_k`); one that overrides `retrieval_scores` (a fusion that normalises
each query's row over the whole gallery) is streamed by query rows (`scoring.top_k_of_rows`):
a few queries are scored against the whole gallery, ranked by `retrieval_scores` and cut to
their top k. That is exact for a row-wise `retrieval_scores` (each query's row depends on
that row alone); one that is not, or whose single row exceeds the budget, is one
`errors.UserError` naming the method (rank it with eval.ranking="full"). `retrieve` ranks
chosen queries this way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from crossmodal_jax import errors
from crossmodal_jax import scoring
from crossmodal_jax.data import common
from crossmodal_jax.methods import base

DIRECTIONS = base.DIRECTIONS
RANKINGS = ("auto", "full", "top_k")
# eval.select_by: the best checkpoint by validation mAP, or the latest.
SELECT_BY = ("validation_map", "latest")


def streaming_settings(eval_config) -> tuple[str, float, int]:
  """(eval.ranking, eval.full_matrix_mb, eval.top_k), checked with the other eval fields
  a run reads (eval.select_by, eval.memory_budget_mb)."""
  if eval_config.select_by not in SELECT_BY:
    raise errors.UserError(
        f"Unknown eval.select_by {eval_config.select_by!r}; choose one of {SELECT_BY}."
    )
  ranking = eval_config.ranking
  if ranking not in RANKINGS:
    raise errors.UserError(f"Unknown eval.ranking {ranking!r}; choose one of {RANKINGS}.")
  limit = float(eval_config.full_matrix_mb)
  if not limit > 0:
    raise errors.UserError(f"eval.full_matrix_mb must be > 0, got {limit}.")
  k = eval_config.top_k
  if isinstance(k, bool) or not isinstance(k, int) or k < 0:
    raise errors.UserError(f"eval.top_k must be an integer >= 0, got {k!r}.")
  budget = eval_config.memory_budget_mb
  if not budget > 0:
    raise errors.UserError(f"eval.memory_budget_mb must be > 0, got {budget}.")
  return ranking, limit, k


def memory_budget(eval_config) -> int:
  """eval.memory_budget_mb in bytes: what one scored tile may take."""
  return int(eval_config.memory_budget_mb * 2**20)


# --------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _jitted_encoders(method: base.Method):
  # Cached per method so per-epoch validation does not retrace the encoders.
  return jax.jit(method.encode_image), jax.jit(method.encode_text)


def encode(encode_fn: Callable[[Any], Any], inputs: Any, batch_size: int) -> Any:
  """Applies a jitted per-item encoder over `inputs` in padded batches; drops nothing.

  Only `batch_size` items are taken from `inputs` at a time (a lazily read split column
  is never read whole); the last batch is padded to the same shape.
  """
  return encode_many([(encode_fn, inputs)], batch_size)[0]


def encode_many(jobs: Sequence[tuple[Callable[[Any], Any], Any]], batch_size: int) -> list[Any]:
  """`encode` of several (encoder, inputs) jobs over the same items, batch by batch: each
  batch of items is taken from every job's inputs in turn (the image and text of a lazily
  read split then come from one read of its rows)."""
  if not jobs:
    return []
  n = scoring.num_items([inputs for _, inputs in jobs])
  batch_size = min(batch_size, n)
  parts: list[list[Any]] = [[] for _ in jobs]
  for start in range(0, n, batch_size):
    for (encode_fn, inputs), out in zip(jobs, parts):
      chunk = jax.tree.map(lambda x: x[start : start + batch_size], inputs)
      out.append(encode_fn(scoring.pad_to(chunk, batch_size)))
  return [jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0)[:n], *out) for out in parts]


def encode_split(
    method: base.Method,
    variables: Any,
    split: common.Split,
    eval_config,
    images: bool = True,
    texts: bool = True,
) -> tuple:
  """(image encodings, text encodings) of every item of `split`, each encoded once by the
  method's encoders (jitted once per method) in batches of eval.batch_size; None for a
  modality not asked for."""
  encode_image, encode_text = _jitted_encoders(method)
  jobs = []
  if images:
    jobs.append((lambda x: encode_image(variables, x), method.image_input(split.arrays)))
  if texts:
    jobs.append((lambda x: encode_text(variables, x), method.text_input(split.arrays)))
  encodings = iter(encode_many(jobs, eval_config.batch_size))
  return (next(encodings) if images else None), (next(encodings) if texts else None)


# --------------------------------------------------------------------------------------
# Whole matrices
# --------------------------------------------------------------------------------------


def method_channels(
    method: base.Method, variables: Any, image_enc: Any, text_enc: Any, eval_config
) -> Any:
  """`method.score` over every (image, text) pair of the encodings, chunked within
  eval.memory_budget_mb by the method's `pair_bytes`; channels [n_images, n_texts]."""
  return scoring.score_matrix(
      method.score,
      variables,
      image_enc,
      text_enc,
      eval_config.query_block,
      eval_config.gallery_block,
      pair_bytes=method.pair_bytes(image_enc, text_enc),
      memory_budget=memory_budget(eval_config),
  )


def split_channels(method: base.Method, variables: Any, split: common.Split, eval_config) -> Any:
  """The score channels of every (image, text) pair of a split: `method.score`'s pytree,
  each channel [n_images, n_texts], every item encoded once (`encode_split`)."""
  image_enc, text_enc = encode_split(method, variables, split, eval_config)
  return method_channels(method, variables, image_enc, text_enc, eval_config)


def oriented(channels: Any) -> dict[str, Any]:
  """A split's [n_images, n_texts] channels laid out query x gallery for each direction."""
  return {"i2t": channels, "t2i": jax.tree.map(np.transpose, channels)}


def rank(
    method: base.Method, variables: Any, by_direction: dict[str, Any]
) -> dict[str, np.ndarray]:
  """Each direction's float32 ranking scores (`method.retrieval_scores`) from its query x
  gallery channels."""
  return {
      d: np.asarray(method.retrieval_scores(variables, by_direction[d], d), np.float32)
      for d in DIRECTIONS
  }


def ranking_scores(method: base.Method, variables: Any, channels: Any) -> dict[str, np.ndarray]:
  """Each direction's ranking scores from a split's score channels.

  Returns:
    {"i2t": [n_images, n_texts], "t2i": [n_texts, n_images]} float32 arrays.
  """
  return rank(method, variables, oriented(channels))


def score_split(
    method: base.Method, variables: Any, split: common.Split, eval_config
) -> dict[str, np.ndarray]:
  """The ranking scores of each direction for every (image, text) pair of a split.

  Returns:
    {"i2t": [n_images, n_texts], "t2i": [n_texts, n_images]} float32 arrays.
  """
  return ranking_scores(method, variables, split_channels(method, variables, split, eval_config))


def num_channels(method: base.Method, variables: Any, split: common.Split) -> int:
  """How many score channels `method.score` gives (traced on two rows; nothing runs)."""
  rows = {k: v[:2] for k, v in split.arrays.items()}

  def channels(v, image, text):
    return method.score(v, method.encode_image(v, image), method.encode_text(v, text))

  shapes = jax.eval_shape(channels, variables, method.image_input(rows), method.text_input(rows))
  return len(jax.tree.leaves(shapes))


# --------------------------------------------------------------------------------------
# Streamed top-k
# --------------------------------------------------------------------------------------


def ranks_by_score(method: base.Method) -> bool:
  """Whether `method` ranks by its one score channel (the face's `retrieval_scores`)."""
  return type(method).retrieval_scores is base.Method.retrieval_scores


def top_k(
    method: base.Method,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    direction: str,
    k: int,
    eval_config,
) -> tuple[np.ndarray, np.ndarray]:
  """Each query's k best gallery items by `direction`'s ranking scores, streamed.

  A method that ranks by its one score channel streams the gallery on the device
  (`scoring.top_k`); one that overrides `retrieval_scores` streams blocks of whole query
  rows through it (`scoring.top_k_of_rows`, exact for a row-wise ranking). Either holds
  the result (n_query x k x 8 bytes) and one tile within `eval.memory_budget_mb`.

  Args:
    method, variables: the method and its variables.
    query_enc, gallery_enc: encodings of the queries (images for "i2t", texts for "t2i")
      and of the gallery (the other modality).
    direction: "i2t" or "t2i".
    k: items kept per query, 1 <= k <= n_gallery.
    eval_config: the eval section (block sizes, memory budget).

  Returns:
    (ranking scores float32 [n_query, k], gallery indices int32 [n_query, k]), best
    first; ties keep the lower gallery index first.

  Raises:
    UserError: a ranking that cannot be streamed within the budget or is not row-wise,
      naming the method.
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"Unknown direction {direction!r}; choose one of {DIRECTIONS}.")
  streaming_settings(eval_config)
  images_query = direction == "i2t"
  image_enc, text_enc = (query_enc, gallery_enc) if images_query else (gallery_enc, query_enc)
  kwargs = dict(
      query_block=eval_config.query_block,
      gallery_block=eval_config.gallery_block,
      queries_are_images=images_query,
      pair_bytes=method.pair_bytes(image_enc, text_enc),
      memory_budget=memory_budget(eval_config),
  )
  try:
    if ranks_by_score(method):
      return scoring.top_k(method.score, variables, query_enc, gallery_enc, k, **kwargs)
    # `retrieval_scores` of this direction, on blocks of whole query rows.
    ranking = functools.partial(method.retrieval_scores, variables, direction=direction)
    return scoring.top_k_of_rows(
        method.score, ranking, variables, query_enc, gallery_enc, k, **kwargs
    )
  except scoring.StreamingError as e:
    name = method.config.get("method", type(method).__name__)
    raise errors.UserError(
        f"Cannot stream the {direction} ranking of method {name!r}: {e}. Raise "
        "eval.memory_budget_mb, or rank the full matrices (eval.ranking='full')."
    ) from e


def check_nonempty(split: common.Split, role: str):
  """A UserError when `split` (the `role` side of a ranking) has no items."""
  if len(split) == 0:
    raise errors.UserError(f"The {role} split is empty: nothing to rank.")


def retrieve(
    method: base.Method,
    variables: Any,
    query_split: common.Split,
    gallery_split: common.Split,
    direction: str,
    k: int,
    eval_config,
    queries: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
  """The top-k gallery items of chosen queries, streamed (any gallery size).

  Args:
    method, variables: the method and its variables.
    query_split: the queries' split (its images for "i2t", its texts for "t2i").
    gallery_split: the gallery's split (the other modality's items).
    direction: "i2t" or "t2i".
    k: items per query, 1 <= k <= len(gallery_split).
    eval_config: the eval section.
    queries: row indices of query_split (None: every row); only these are encoded.

  Returns:
    (ranking scores float32 [n, k], gallery indices int32 [n, k]) for the n queries.
  """
  check_nonempty(gallery_split, "gallery")
  if queries is not None:
    rows = np.asarray(queries, dtype=np.int64).reshape(-1)
    bad = rows[(rows < 0) | (rows >= len(query_split))]
    if bad.size:
      raise errors.UserError(
          f"Query row {int(bad[0])} is out of range: the query split has {len(query_split)} "
          "items."
      )
    query_split = common.Split({key: v[rows] for key, v in query_split.arrays.items()})
  check_nonempty(query_split, "query")
  if not 1 <= k <= len(gallery_split):
    raise errors.UserError(f"k={k} must be in [1, {len(gallery_split)}] (the gallery size).")
  images = direction == "i2t"  # the queries' modality; the gallery is the other
  q_images, q_texts = encode_split(method, variables, query_split, eval_config, images, not images)
  g_images, g_texts = encode_split(
      method, variables, gallery_split, eval_config, not images, images
  )
  if images:
    return top_k(method, variables, q_images, g_texts, direction, k, eval_config)
  return top_k(method, variables, q_texts, g_images, direction, k, eval_config)
