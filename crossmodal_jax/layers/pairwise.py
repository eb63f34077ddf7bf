"""Fused pairwise kernels shared by the methods.

The relation network of DRSL (concat fusion) reduces, after its separable first layer, to

    R[p, q] = sum_k relu(a[p, k] + b[q, k]) * w[k]

for every (image p, text q) pair. Written naively this builds a [P, Q, K] tensor (for a
batch of 200 and K = 1024: 41 M floats, 164 MB) in the forward pass and keeps it (or its
ReLU mask) alive for the backward pass. `pairwise_relu_dot` instead expresses each pass as
a loop over rows whose [Q, K] tile stays in cache (forward: a mat-vec per row), and its
custom VJP recomputes the ReLU mask inside the backward reductions rather than storing it,
so no [P, Q, K] buffer is ever allocated: the grid is only ever streamed through.

That row loop suits a CPU, whose cache holds a row's tile. On a GPU it is a sequence of P
small kernels, slower than even the naive grid. Elsewhere than on the CPU each pass
therefore runs over blocks of rows, each block's [rows, Q, K] grid written as one
broadcast-reduce that XLA fuses into a single reduction kernel, with the blocks sized so
that a block's grid stays within `BLOCK_ELEMENTS` floats if it is materialised (the
timings of each form on the CPU and on a GPU: docs/speed.md). The bound holds for rows
of at most that many floats each (Q x K); a vmap over the kernel multiplies it by the
batch. The choice is made when the computation is lowered
(`jax.lax.platform_dependent`), so one traced function serves every backend; the row
blocks were measured on a GPU only. Called outside jit, the kernel follows the default
backend, wherever its arrays live.

Scoring (no training) on the CPU has a faster form still: `pairwise_relu_scores` computes
the same forward pass with the native C++ kernel of `crossmodal_jax.kernels` (through
`jax.ffi`; vectorised over k, threaded over all cores, near the machine's measured vector
peak: docs/speed.md) where that kernel could be built and the inputs are float32, and
otherwise exactly as `pairwise_relu_dot`. Its gradient is `pairwise_relu_dot`'s. Training
keeps `pairwise_relu_dot`, so a training step does not change.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from crossmodal_jax import kernels

# A row block's [rows, Q, K] grid on accelerators: at most this many floats (64 MiB).
BLOCK_ELEMENTS = 1 << 24


def _rows_forward(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  # One row of the grid at a time: relu(a_p + b) is a [Q, K] tile that stays in cache,
  # and its weighted sum over K is a mat-vec. On a CPU this is far faster than a single
  # fused broadcast-reduce over the whole [P, Q, K] grid (docs/speed.md).
  def row(a_p):
    return jax.nn.relu(a_p[None, :] + b) @ w

  return jax.lax.map(row, a)


def _rows_backward(a, b, w, g):
  # Recompute each row's ReLU mask instead of storing the grid. With m = [a_p + b > 0]:
  #   da_p = w * sum_q g_pq m_pq.     db_q = w * sum_p g_pq m_pq.
  #   dw = sum_pq g_pq relu(a_p + b_q) = sum_p a_p * G_p + sum_q b_q * D_q,
  # where G_p = sum_q g_pq m_pq and D_q = sum_p g_pq m_pq, so dw needs no extra pass.
  def step(d_acc, inputs):
    a_p, g_p = inputs
    gm = jnp.where(a_p[None, :] + b > 0, g_p[:, None], 0.0).astype(b.dtype)
    return d_acc + gm, jnp.sum(gm, axis=0)

  d_sum, g_rows = jax.lax.scan(step, jnp.zeros_like(b), (a, g.astype(b.dtype)))
  return _grads(a, b, w, g_rows, d_sum)


def _grads(a, b, w, g_rows, d_sum):
  return g_rows * w, d_sum * w, jnp.sum(a * g_rows, axis=0) + jnp.sum(b * d_sum, axis=0)


def block_rows(p: int, q: int, k: int, block_elements: int = BLOCK_ELEMENTS) -> int:
  """Rows per block of the accelerator form: as few blocks as keep each [rows, q, k]
  grid within `block_elements` floats (a block has at least 1 row, so a single row's grid
  above the bound is one block), the rows shared evenly among them so that the last
  block's padding stays under one row per block (200 rows at most 81 a block: 3 x 67)."""
  most = max(1, min(p, block_elements // max(q * k, 1)))
  blocks = -(-p // most) if p else 1
  return max(1, -(-p // blocks))


def _row_blocks(x: jax.Array, rows: int) -> jax.Array:
  """[P, ...] -> [ceil(P / rows), rows, ...], the last block padded with zero rows."""
  x = jnp.pad(x, [(0, -x.shape[0] % rows)] + [(0, 0)] * (x.ndim - 1))
  return x.reshape(x.shape[0] // rows, rows, *x.shape[1:])


def _blocks_forward(a, b, w, block_elements: int = BLOCK_ELEMENTS):
  rows = block_rows(a.shape[0], *b.shape, block_elements)

  def block(a_blk):  # [rows, K] -> [rows, Q]: one fused broadcast-reduce
    return jnp.sum(jax.nn.relu(a_blk[:, None, :] + b[None]) * w, axis=-1)

  r = jax.lax.map(block, _row_blocks(a, rows))
  return r.reshape(r.shape[0] * rows, b.shape[0])[: a.shape[0]]


def _blocks_backward(a, b, w, g, block_elements: int = BLOCK_ELEMENTS):
  # The row loop's reductions, a block of rows at a time. Padded rows have g = 0, so
  # they add nothing to D and their G rows are dropped.
  rows = block_rows(a.shape[0], *b.shape, block_elements)

  def step(d_acc, inputs):
    a_blk, g_blk = inputs
    gm = jnp.where(a_blk[:, None, :] + b[None] > 0, g_blk[:, :, None], 0.0)
    return d_acc + jnp.sum(gm, axis=0), jnp.sum(gm, axis=1)

  g = g.astype(b.dtype)
  d_sum, g_rows = jax.lax.scan(
      step, jnp.zeros_like(b), (_row_blocks(a, rows), _row_blocks(g, rows))
  )
  g_rows = g_rows.reshape(g_rows.shape[0] * rows, b.shape[1])[: a.shape[0]]
  return _grads(a, b, w, g_rows, d_sum)


def _one_form(forward, backward):
  """`forward(a, b, w)` with the custom VJP `backward(a, b, w, g)`: the kernel's inputs are
  its only residuals (each pass recomputes the ReLU mask)."""
  f = jax.custom_vjp(forward)
  f.defvjp(lambda a, b, w: (forward(a, b, w), (a, b, w)), lambda res, g: backward(*res, g))
  return f


# The form each platform takes (module doc): the row loop on the CPU, row blocks elsewhere.
_PLATFORM_FORMS = {"cpu": "rows"}
_OTHER_PLATFORMS_FORM = "blocks"
_FORWARDS = {"rows": _rows_forward, "blocks": _blocks_forward}
_BACKWARDS = {"rows": _rows_backward, "blocks": _blocks_backward}


def picked_form(platform: str) -> str:
  """The form, "rows" or "blocks", that `pairwise_relu_dot` takes on `platform`: a
  lowering platform ("cpu", "cuda", "rocm", "tpu") or a backend as `jax.default_backend()`
  names it ("gpu" stands for both "cuda" and "rocm")."""
  names = ("cuda", "rocm") if platform == "gpu" else (platform,)
  forms = {_PLATFORM_FORMS.get(name, _OTHER_PLATFORMS_FORM) for name in names}
  if len(forms) != 1:
    raise ValueError(f"cuda and rocm take different forms ({sorted(forms)}); name one.")
  return forms.pop()


def _by_platform(forms: dict) -> dict:
  """`jax.lax.platform_dependent`'s keyword branches: each platform's form in `forms`."""
  branches = {platform: forms[form] for platform, form in _PLATFORM_FORMS.items()}
  return {**branches, "default": forms[_OTHER_PLATFORMS_FORM]}


def _picked_backward(a, b, w, g):
  return jax.lax.platform_dependent(a, b, w, g, **_by_platform(_BACKWARDS))


@functools.partial(_one_form, backward=_picked_backward)
def pairwise_relu_dot(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """Returns R[p, q] = sum_k relu(a[p, k] + b[q, k]) * w[k] without a [P, Q, K] buffer.

  On the CPU each pass loops over rows; elsewhere over blocks of rows (module doc).

  Args:
    a: [P, K] per-row projections (e.g. images after the relation's first layer).
    b: [Q, K] per-column projections (e.g. texts).
    w: [K] output weights.

  Returns:
    [P, Q] scores.
  """
  return jax.lax.platform_dependent(a, b, w, **_by_platform(_FORWARDS))


def _native(a, b, w) -> bool:
  """Whether the native CPU kernel can score these inputs in this process."""
  return all(jnp.dtype(x.dtype) == jnp.float32 for x in (a, b, w)) and kernels.available()


def _scores_forward(a, b, w):
  if not _native(a, b, w):
    return jax.lax.platform_dependent(a, b, w, **_by_platform(_FORWARDS))
  return jax.lax.platform_dependent(
      a, b, w, cpu=kernels.pairwise_relu_dot, default=_FORWARDS[_OTHER_PLATFORMS_FORM]
  )


@functools.partial(_one_form, backward=_picked_backward)
def pairwise_relu_scores(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """`pairwise_relu_dot` for scoring: the same [P, Q] scores, on the CPU by the native
  kernel where it is available (float32 inputs), elsewhere as `pairwise_relu_dot`
  (module doc); its gradient is `pairwise_relu_dot`'s."""
  return _scores_forward(a, b, w)


def scoring_form(platform: str, dtype=jnp.float32) -> str:
  """The form `pairwise_relu_scores` takes on `platform` (as for `picked_form`) for
  inputs of `dtype`: "native" on the CPU where the kernel is available, else
  `picked_form(platform)`."""
  if platform == "cpu" and jnp.dtype(dtype) == jnp.float32 and kernels.available():
    return "native"
  return picked_form(platform)


def row_block_form(block_elements: int = BLOCK_ELEMENTS):
  """The accelerator form, on any backend, with blocks of at most `block_elements`
  grid floats (for tests and benchmarks; `pairwise_relu_dot` picks it off the CPU)."""
  return _one_form(
      lambda a, b, w: _blocks_forward(a, b, w, block_elements),
      lambda a, b, w, g: _blocks_backward(a, b, w, g, block_elements),
  )


# Each form on any backend, for tests and benchmarks.
pairwise_relu_dot_rows = _one_form(_rows_forward, _rows_backward)
pairwise_relu_dot_blocks = row_block_form()


def pairwise_relu_dot_reference(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """The naive [P, Q, K] formulation, for tests and benchmarks."""
  grid = jax.nn.relu(a[:, None, :] + b[None, :, :])
  return jnp.einsum("pqk,k->pq", grid, w)
