"""SCANet's objective: the global loss of Kumar et al. (pure jax.numpy)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
