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
