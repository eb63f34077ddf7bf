"""The MLP tower shared by the methods, and synchronised batch moments."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossmodal_jax.layers import initializers
from crossmodal_jax.layers import sparse_dense

# PyTorch's BatchNorm momentum 0.1 (what the authors' code uses) is flax's 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class MLP(nn.Module):
  """[Dense -> (BatchNorm) -> ReLU -> (Dropout)] for each width in `features`.

  Attributes:
    features: the width of each layer; every layer is followed by a ReLU (DRSL: "each
      layer is followed by a ReLU activation function layer").
    batch_norm: batch norm between each Dense and its ReLU.
    dropout: dropout rate after each ReLU (0 disables).
    axis_name: the data-parallel axis over which batch statistics are averaged in
      training (synchronised batch norm), or None outside `shard_map`.
    param_init: "flax" or "pytorch" Dense initialisation (see `initializers`).
    sparse_input_dim: 0: the input is a dense [n, d] array. V > 0: the input is a sparse
      [n, V] matrix given as its padded non-zeros (ids [n, L], values [n, L]; see
      `data.sparse_rows`), and the first layer is a `sparse_dense.SparseDense` gather-sum
      with the same parameters as the dense first layer (name, shape, initialiser).
  """

  features: Sequence[int]
  batch_norm: bool = False
  dropout: float = 0.0
  axis_name: str | None = None
  param_init: str = "flax"
  sparse_input_dim: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool) -> jax.Array:
    """x: [n, d], or (ids, values) [n, L] each with `sparse_input_dim`."""
    for i, width in enumerate(self.features):
      if i == 0 and self.sparse_input_dim:
        ids, values = x
        x = sparse_dense.SparseDense(
            width,
            self.sparse_input_dim,
            use_bias=not self.batch_norm,
            name="dense_0",
            **initializers.dense(self.param_init, self.sparse_input_dim),
        )(ids, values)
      else:
        x = nn.Dense(
            width,
            use_bias=not self.batch_norm,
            name=f"dense_{i}",
            **initializers.dense(self.param_init, x.shape[-1]),
        )(x)
      if self.batch_norm:
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            axis_name=self.axis_name if train else None,
            name=f"bn_{i}",
        )(x)
      x = nn.relu(x)
      if self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return x


def global_moments(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
  """Mean and (biased) variance over axis 0, averaged across `axis_name` if given.

  Every device must hold the same number of rows (true for our evenly sharded batches).
  """
  mean = jnp.mean(x, axis=0)
  mean_sq = jnp.mean(jnp.square(x), axis=0)
  if axis_name is not None:
    mean, mean_sq = jax.lax.pmean((mean, mean_sq), axis_name)
  return mean, jnp.maximum(mean_sq - jnp.square(mean), 0.0)


def dense_flops(widths: Sequence[int]) -> int:
  """Forward FLOPs of one item through Dense layers of widths widths[0] -> ... ->
  widths[-1] (a multiply-add counts 2; biases and activations not counted)."""
  return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
