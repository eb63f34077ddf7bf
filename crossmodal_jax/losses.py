"""Losses of the methods (pure jax.numpy functions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORMALIZERS = ("sum", "batch", "mean")


def label_agreement(labels_a: jax.Array, labels_b: jax.Array) -> jax.Array:
  """S[p, q] = 1 where items p and q are relevant to each other, else 0 (float32).

  Int labels [n]: equal labels. Multi-hot labels [n, C]: at least one shared label.
  """
  if labels_a.ndim == 1:
    return (labels_a[:, None] == labels_b[None, :]).astype(jnp.float32)
  return (labels_a.astype(jnp.float32) @ labels_b.astype(jnp.float32).T > 0).astype(jnp.float32)


def relation_loss(r: jax.Array, s: jax.Array, normalizer: str, global_batch: int) -> jax.Array:
  """DRSL's ||R - S||_F^2 over the (rows of the) batch's all-pairs matrix, normalised.

  Args:
    r, s: [P, Q] predicted and target similarities (P may be this device's row shard).
    normalizer: "sum" (the paper's plain Frobenius norm), "batch" (divide by B, as the
      authors' code does: it divides by sqrt of the B^2 entries), or "mean" (by B^2).
    global_batch: B, the number of pairs in the global batch.
  """
  total = jnp.sum(jnp.square(r - s))
  if normalizer == "sum":
    return total
  if normalizer == "batch":
    return total / float(global_batch)
  if normalizer == "mean":
    return total / float(global_batch) ** 2
  raise ValueError(f"Unknown loss normalizer {normalizer!r}; choose one of {NORMALIZERS}.")


def global_loss(scores: jax.Array, positive: jax.Array, margin: float, lam: float) -> jax.Array:
  """The global loss of Kumar et al. (CVPR 2016), SCANet's objective.

  (var+ + var-) + lam * max(0, m - (mean+ - mean-)), where mean+/var+ (mean-/var-) are
  the mean and population variance of the scores of the batch's matching (non-matching)
  pairs. A batch without one of the two kinds counts that kind's mean and variance as 0.

  Args:
    scores: [n] pair similarities (SCANet: sigmoid outputs in (0, 1)).
    positive: [n] 1 for a matching pair, 0 for a non-matching one.
    margin: m, the least gap wanted between the two means.
    lam: lambda, the weight of the mean-gap hinge.
  """
  pos = positive.astype(scores.dtype)
  neg = 1.0 - pos

  def moments(w):
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(w * scores) / n
    return mean, jnp.sum(w * jnp.square(scores - mean)) / n

  mean_pos, var_pos = moments(pos)
  mean_neg, var_neg = moments(neg)
  return var_pos + var_neg + lam * jnp.maximum(0.0, margin - (mean_pos - mean_neg))


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

  Row k's negative is drawn uniformly from {j : S[k, j] == 0}, S = `label_agreement`
  (int labels: a different label; multi-hot: no shared label), by one uniform number per
  (k, j) from `key`: the draw is a function of (key, labels) only.

  Args:
    key: a PRNG key.
    labels: [n] int labels or [n, C] multi-hot labels of the batch.

  Returns:
    (negative [n] int32, found [n] bool): negative[k] indexes the batch; where row k has
    no item of a different label, found[k] is False and negative[k] is k itself.
  """
  return _draw_one(key, label_agreement(labels, labels) == 0)


def same_label_positives(key: jax.Array, labels: jax.Array) -> jax.Array:
  """One random item relevant to each item of a batch, the item itself included.

  Row k's positive is drawn uniformly from {k} and {j : S[k, j] == 1}, S =
  `label_agreement`, as `different_label_negatives` draws its negatives: a class-level
  positive in place of the item's own match.

  Args:
    key: a PRNG key.
    labels: [n] int labels or [n, C] multi-hot labels of the batch.

  Returns:
    positive [n] int32, indexing the batch (k itself where nothing else is relevant).
  """
  n = labels.shape[0]
  return _draw_one(key, (label_agreement(labels, labels) > 0) | jnp.eye(n, dtype=bool))[0]


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


def contrastive_loss(
    a: jax.Array,
    b: jax.Array,
    same: jax.Array,
    margin: float,
    weight: jax.Array | None = None,
    normalizer: jax.Array | float | None = None,
) -> jax.Array:
  """The contrastive loss of Hadsell, Chopra and LeCun (CVPR 2006) over all row pairs.

  With d_pq = ||a_p - b_q|| (Euclidean), pair (p, q) costs d_pq^2 when `same[p, q]` is 1
  (pull together) and max(0, margin - d_pq)^2 when it is 0 (push apart to at least
  `margin`). For unit vectors d^2 = 2 - 2 cos, so d lies in [0, 2] and a margin m asks
  cos <= 1 - m^2 / 2 of different pairs. HCMSL uses it across modalities (class-level,
  image x text) and within each (the Siamese terms, image x image and text x text).

  Args:
    a: [P, D] encodings (P may be this device's rows of the batch).
    b: [Q, D] encodings (e.g. the whole global batch).
    same: [P, Q] 1 where the pair should be close (same label), 0 where apart.
    margin: m > 0.
    weight: [P, Q] non-negative weight of each pair (0 leaves it out: unlabelled rows,
      an item paired with itself); None: every pair weighs 1.
    normalizer: what the weighted sum is divided by (under data parallelism, the global
      total weight, so that devices' shares add up); None: this call's total weight
      (1 where that is 0, so an empty loss is 0).

  Returns:
    The scalar sum_pq weight_pq * cost_pq / normalizer.
  """
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  sq = (
      jnp.sum(jnp.square(a), axis=-1)[:, None]
      + jnp.sum(jnp.square(b), axis=-1)[None, :]
      - 2.0 * a @ b.T
  )
  sq = jnp.maximum(sq, 0.0)
  # sqrt has an infinite slope at 0: only the hinge reads d, and only where d < margin
  # matters; the floor keeps the gradient finite for coincident points.
  d = jnp.sqrt(jnp.maximum(sq, 1e-12))
  same = same.astype(jnp.float32)
  cost = same * sq + (1.0 - same) * jnp.square(jnp.maximum(0.0, margin - d))
  weight = jnp.ones_like(cost) if weight is None else weight.astype(jnp.float32)
  total = jnp.sum(weight * cost)
  if normalizer is None:
    w = jnp.sum(weight)
    normalizer = jnp.where(w > 0, w, 1.0)
  return total / normalizer


def instance_nce(
    queries: jax.Array,
    keys: jax.Array,
    partner: jax.Array,
    temperature: float,
    candidate: jax.Array | None = None,
) -> jax.Array:
  """Per-query InfoNCE: cross-entropy of each query's true partner among the keys.

  logits_pk = (queries_p . keys_k) / temperature (the cosine over a temperature when the
  rows are unit vectors); query p's loss is -log softmax_k(logits_p)[partner_p], the
  softmax running over the keys where `candidate[p]` is True (the partner always is).
  HCMSL's instance-level loss for pairs whose pairing is known but whose label may not
  be: the true partner must score above the batch's other items.

  Args:
    queries: [P, D] (e.g. this device's images).
    keys: [K, D] (e.g. the global batch's texts).
    partner: int [P], the index in `keys` of each query's true partner.
    temperature: tau > 0.
    candidate: bool [P, K], which keys compete in each query's softmax (False drops a
      key: an item known to share the query's label); None: all.

  Returns:
    [P] per-query losses (the caller weights and averages them).
  """
  logits = (queries.astype(jnp.float32) @ keys.astype(jnp.float32).T) / temperature
  is_partner = jnp.arange(keys.shape[0])[None, :] == partner[:, None]
  if candidate is not None:
    logits = jnp.where(candidate | is_partner, logits, -jnp.inf)
  positive = jnp.sum(jnp.where(is_partner, logits, 0.0), axis=-1)
  return jax.nn.logsumexp(logits, axis=-1) - positive
