"""HCMSL's loss terms (pure jax.numpy): the contrastive loss of its class-level and
Siamese terms, and the per-query InfoNCE of its instance-level term."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
