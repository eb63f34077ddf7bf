"""DRSL's relation loss ||R - S||_F^2 and its normalisers (pure jax.numpy)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORMALIZERS = ("sum", "batch", "mean")


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
