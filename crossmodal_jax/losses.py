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
