"""A Dense layer fed the non-zeros of a sparse input: an embedding-bag gather-sum.

A row of a sparse [n, V] matrix is given as its non-zeros, padded to a common length L:
`ids` int32 [n, L] (column indices) and `values` [n, L] (their entries; padding has value
0, and any id, say 0). Then x @ W = sum_l values[:, l] * W[ids[:, l]], which reads L rows
of W per item instead of multiplying all V of them; its gradient w.r.t. W is the transpose,
a scatter-add into those rows. `SparseDense` holds the same parameters as `nn.Dense` over
the dense input (same names, shapes and initialisers), so the two are interchangeable on
one set of variables (`data.sparse_rows` builds the padded form).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# Positions summed per step of the scan over L: the gathered [n, CHUNK, K] block is all
# that is held at once (the whole [n, L, K] would be 2 GiB for 1,024 items x 531 words
# x 1,024 units), and on a CPU the smaller block is faster too.
CHUNK = 64


def gather_sum(table: jax.Array, ids: jax.Array, values: jax.Array, chunk: int = CHUNK):
  """sum_l values[:, l] * table[ids[:, l]]: the sparse rows (ids, values) [n, L] times
  `table` [V, K], as [n, K]; differentiable w.r.t. `table` and `values`.

  Summed `chunk` positions at a time (a `lax.scan` over L when L > chunk).
  """
  n, length = ids.shape
  dtype = jnp.result_type(table, values)

  def block(ids, values):
    rows = jnp.take(table, ids, axis=0, mode="clip")  # [n, l, K]
    return jnp.sum(values[..., None].astype(dtype) * rows.astype(dtype), axis=1)

  if length <= chunk:
    return block(ids, values)
  pad = -length % chunk
  steps = (length + pad) // chunk

  def chunks(x):  # [n, L] -> [steps, n, chunk], padded with id 0 / value 0
    return jnp.pad(x, ((0, 0), (0, pad))).reshape(n, steps, chunk).swapaxes(0, 1)

  def add(total, part):
    return total + block(*part), None

  ids, values = chunks(ids), chunks(values)
  # The carry starts as the first block, not zeros, so that it has the blocks' type under
  # shard_map too (varying over a data axis when the table or rows are).
  total, _ = jax.lax.scan(add, block(ids[0], values[0]), (ids[1:], values[1:]))
  return total


class SparseDense(nn.Module):
  """nn.Dense(features) over a sparse [n, input_dim] input given as its padded non-zeros.

  The parameters are nn.Dense's: "kernel" [input_dim, features] and, with `use_bias`,
  "bias" [features], created in that order with the given initialisers, so a module of
  the same name and path draws the same values as nn.Dense from the same key.

  Attributes:
    features: output width.
    input_dim: V, the width of the dense input (the kernel's rows).
    use_bias: add a bias.
    kernel_init, bias_init: as nn.Dense's.
    chunk: positions summed per step (`gather_sum`).
  """

  features: int
  input_dim: int
  use_bias: bool = True
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros
  chunk: int = CHUNK

  @nn.compact
  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    """(ids int [n, L], values [n, L]) -> [n, features]."""
    kernel = self.param("kernel", self.kernel_init, (self.input_dim, self.features), jnp.float32)
    y = gather_sum(kernel, ids, values, self.chunk)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return y
