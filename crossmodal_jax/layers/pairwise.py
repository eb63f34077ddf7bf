"""Fused pairwise kernels shared by the methods.

The relation network of DRSL (concat fusion) reduces, after its separable first layer, to

    R[p, q] = sum_k relu(a[p, k] + b[q, k]) * w[k]

for every (image p, text q) pair. Written naively this builds a [P, Q, K] tensor (for a
batch of 200 and K = 1024: 41 M floats, 164 MB) in the forward pass and keeps it (or its
ReLU mask) alive for the backward pass. `pairwise_relu_dot` instead expresses each pass as
a loop over rows whose [Q, K] tile stays in cache (forward: a mat-vec per row), and its
custom VJP recomputes the ReLU mask inside the backward reductions rather than storing it,
so no [P, Q, K] buffer is ever allocated: the grid is only ever streamed through.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _grid_forward(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  # One row of the grid at a time: relu(a_p + b) is a [Q, K] tile that stays in cache,
  # and its weighted sum over K is a mat-vec. Measured on 2 CPU cores this is ~10x
  # faster than a single fused broadcast-reduce over the whole [P, Q, K] grid.
  def row(a_p):
    return jax.nn.relu(a_p[None, :] + b) @ w

  return jax.lax.map(row, a)


@jax.custom_vjp
def pairwise_relu_dot(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """Returns R[p, q] = sum_k relu(a[p, k] + b[q, k]) * w[k] without a [P, Q, K] buffer.

  Args:
    a: [P, K] per-row projections (e.g. images after the relation's first layer).
    b: [Q, K] per-column projections (e.g. texts).
    w: [K] output weights.

  Returns:
    [P, Q] scores.
  """
  return _grid_forward(a, b, w)


def _fwd(a, b, w):
  return _grid_forward(a, b, w), (a, b, w)


def _bwd(residuals, g):
  a, b, w = residuals

  # Recompute each row's ReLU mask instead of storing the grid. With m = [a_p + b > 0]:
  #   da_p = w * sum_q g_pq m_pq.     db_q = w * sum_p g_pq m_pq.
  #   dw = sum_pq g_pq relu(a_p + b_q) = sum_p a_p * G_p + sum_q b_q * D_q,
  # where G_p = sum_q g_pq m_pq and D_q = sum_p g_pq m_pq, so dw needs no extra pass.
  def step(d_acc, inputs):
    a_p, g_p = inputs
    gm = jnp.where(a_p[None, :] + b > 0, g_p[:, None], 0.0).astype(b.dtype)
    return d_acc + gm, jnp.sum(gm, axis=0)

  d_sum, g_rows = jax.lax.scan(step, jnp.zeros_like(b), (a, g.astype(b.dtype)))
  da = g_rows * w
  db = d_sum * w
  dw = jnp.sum(a * g_rows, axis=0) + jnp.sum(b * d_sum, axis=0)
  return da, db, dw


pairwise_relu_dot.defvjp(_fwd, _bwd)


def pairwise_relu_dot_reference(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """The naive [P, Q, K] formulation, for tests and benchmarks."""
  grid = jax.nn.relu(a[:, None, :] + b[None, :, :])
  return jnp.einsum("pqk,k->pq", grid, w)
