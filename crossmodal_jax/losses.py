"""What the losses of several methods share (pure jax.numpy): which items of two batches
are relevant to each other, from their labels. A loss only one method uses lives in that
method's folder."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def label_agreement(labels_a: jax.Array, labels_b: jax.Array) -> jax.Array:
  """S[p, q] = 1 where items p and q are relevant to each other, else 0 (float32).

  Int labels [n]: equal labels. Multi-hot labels [n, C]: at least one shared label.
  """
  if labels_a.ndim == 1:
    return (labels_a[:, None] == labels_b[None, :]).astype(jnp.float32)
  return (labels_a.astype(jnp.float32) @ labels_b.astype(jnp.float32).T > 0).astype(jnp.float32)
