"""MCSM's bidirectional hinge and how it picks each anchor's negative and positive in
the global batch: drawn at random (by label), the hardest, or all of them in expectation
(pure jax.numpy)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from crossmodal_jax import losses


def _draw_one(key: jax.Array, candidates: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One column drawn uniformly from each row's True entries of `candidates` [n, n], by
  one uniform number per entry from `key`; (index [n] int32, found [n] bool), a row
  without a candidate giving its own index and found False."""
  u = jax.random.uniform(key, candidates.shape)
  # u >= 0 beats -1, so the argmax is a candidate whenever there is one.
  drawn = jnp.argmax(jnp.where(candidates, u, -1.0), axis=1).astype(jnp.int32)
  found = jnp.any(candidates, axis=1)
  return jnp.where(found, drawn, jnp.arange(candidates.shape[0], dtype=jnp.int32)), found


def different_label_negatives(key: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One random item of a different label for each item of a batch (MCSM's negatives).

  Row k's negative is drawn uniformly from {j : S[k, j] == 0}, S =
  `losses.label_agreement` (int labels: a different label; multi-hot: no shared label), by
  one uniform number per (k, j) from `key`: the draw is a function of (key, labels) only.

  Args:
    key: a PRNG key.
    labels: [n] int labels or [n, C] multi-hot labels of the batch.

  Returns:
    (negative [n] int32, found [n] bool): negative[k] indexes the batch; where row k has
    no item of a different label, found[k] is False and negative[k] is k itself.
  """
  return _draw_one(key, losses.label_agreement(labels, labels) == 0)


def same_label_positives(key: jax.Array, labels: jax.Array) -> jax.Array:
  """One random item relevant to each item of a batch, the item itself included.

  Row k's positive is drawn uniformly from {k} and {j : S[k, j] == 1}, S =
  `losses.label_agreement`, as `different_label_negatives` draws its negatives: a
  class-level positive in place of the item's own match.

  Args:
    key: a PRNG key.
    labels: [n] int labels or [n, C] multi-hot labels of the batch.

  Returns:
    positive [n] int32, indexing the batch (k itself where nothing else is relevant).
  """
  n = labels.shape[0]
  return _draw_one(key, (losses.label_agreement(labels, labels) > 0) | jnp.eye(n, dtype=bool))[0]


def hardest_negatives(scores: jax.Array, different: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Each row's highest-scoring column among its `different` ones (the hardest negative).

  Args:
    scores: [n, m] an anchor's similarity to each candidate.
    different: [n, m] bool, which candidates may be the anchor's negative.

  Returns:
    (negative [n] int32, found [n] bool): the argmax of `scores` over the row's
    candidates (the first on ties); where a row has none, found is False and negative 0.
    The index is an integer: no gradient flows through the choice itself.
  """
  masked = jnp.where(different, scores, -jnp.inf)
  found = jnp.any(different, axis=1)
  negative = jnp.argmax(masked, axis=1).astype(jnp.int32)
  return jnp.where(found, negative, 0), found


def bidirectional_hinge(
    image: jax.Array,
    text: jax.Array,
    negative_text: jax.Array,
    negative_image: jax.Array,
    margin: float,
    negative_text_found: jax.Array | None = None,
    negative_image_found: jax.Array | None = None,
    positive_text: jax.Array | None = None,
    positive_image: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """MCSM's bidirectional hinge with one sampled negative per anchor, per anchor.

  Row k of `image` and `text` is a matching pair; s(a, b) = a . b (the cosine when the
  rows are unit vectors). Image anchor k: max(0, m - s(image_k, text_k) +
  s(image_k, negative_text_k)); text anchor k: max(0, m - s(image_k, text_k) +
  s(negative_image_k, text_k)). An anchor whose `*_found` is False contributes 0.
  `positive_text` / `positive_image` replace the match in the image / text anchors'
  positive term (a class-level positive: s(image_k, positive_text_k) and
  s(positive_image_k, text_k)).

  Args:
    image, text: [n, D] the anchors' encodings (matching rows).
    negative_text: [n, D] the sampled negative text of each image anchor.
    negative_image: [n, D] the sampled negative image of each text anchor.
    margin: m.
    negative_text_found, negative_image_found: [n] bool, whether each anchor has a
      negative (None: all do).
    positive_text, positive_image: [n, D] each image / text anchor's positive (None:
      its match, row k of `text` / `image`).

  Returns:
    (image-anchor hinges [n], text-anchor hinges [n]); the caller sums or averages them.
  """
  positive_text = text if positive_text is None else positive_text
  positive_image = image if positive_image is None else positive_image
  i2t = jnp.maximum(
      0.0,
      margin - jnp.sum(image * positive_text, axis=-1) + jnp.sum(image * negative_text, axis=-1),
  )
  t2i = jnp.maximum(
      0.0,
      margin - jnp.sum(positive_image * text, axis=-1) + jnp.sum(negative_image * text, axis=-1),
  )
  if negative_text_found is not None:
    i2t = jnp.where(negative_text_found, i2t, 0.0)
  if negative_image_found is not None:
    t2i = jnp.where(negative_image_found, t2i, 0.0)
  return i2t, t2i


def expected_hinge(
    positive: jax.Array, scores: jax.Array, different: jax.Array, margin: float
) -> jax.Array:
  """Each anchor's hinge averaged over all its candidate negatives: the expectation of
  `bidirectional_hinge`'s hinge over a negative drawn uniformly among them (what
  `different_label_negatives` draws), without the draw's noise.

  Args:
    positive: [n] each anchor's score with its positive (its match, or a same-label
      item).
    scores: [n, m] each anchor's score with every candidate.
    different: [n, m] bool, which candidates may be its negative.
    margin: m.

  Returns:
    [n]: mean over the row's candidates of max(0, m - positive + scores); 0 for a row
    without candidates.
  """
  hinge = jnp.where(different, jnp.maximum(0.0, margin - positive[:, None] + scores), 0.0)
  count = jnp.sum(different, axis=1)
  return jnp.sum(hinge, axis=1) / jnp.maximum(count, 1)
