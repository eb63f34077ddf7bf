"""Native CPU kernels, written in C++ (`cpu_kernels.cc`) and called through `jax.ffi`.

The all-pairs scoring of a separable relation network and the streamed top-k that ranks
its gallery run on the CPU near the machine's vector peak with these; XLA's forms stay
for every other backend and wherever the library cannot be built (`build`: compiled on
first use with the machine's C++ compiler into a cache folder, `CROSSMODAL_JAX_NATIVE=0`
turns it off). Forward only: nothing here has a gradient.

- `pairwise_relu_dot(a, b, w)`: R[p, q] = sum_k relu(a[p, k] + b[q, k]) * w[k] for float32
  [P, K], [Q, K], [K], on all the CPU's cores (`layers.pairwise.pairwise_relu_scores`
  picks it on the CPU);
- `top_k_start`, `top_k_merge`, `top_k_finish`: each query row's k best gallery items kept
  while blocks of scores stream through, compared a vector at a time with the worst kept,
  then ranked once by a selection and a sort of the k (`scoring.top_k` on the CPU);
- `peak_probe(iterations)`: the measured peak of the kernel's vector operations, the
  floor the benchmark compares the kernel with (`layout()`: its vector width and tile).

`available()` says whether they can be used in this process (it builds or loads the
library on its first call); a caller that lowers them must only do so for the CPU
(`jax.lax.platform_dependent`).
"""

from __future__ import annotations

import ctypes
import threading

import jax
import jax.numpy as jnp
import numpy as np

from crossmodal_jax.kernels import build

PAIRWISE_TARGET = "crossmodal_pairwise_relu_dot"
TOP_K_MERGE_TARGET = "crossmodal_top_k_merge"
TOP_K_FINISH_TARGET = "crossmodal_top_k_finish"
# The heap's empty slots: below every real candidate (a -inf score at a higher index).
EMPTY_INDEX = 2**31 - 1

_lock = threading.Lock()
_registered: list[bool] = []


def available() -> bool:
  """Whether the native kernels are built, loaded and registered with XLA's CPU backend."""
  with _lock:
    if not _registered:
      lib = build.load()
      if lib is not None:
        for name, symbol in (
            (PAIRWISE_TARGET, lib.CrossmodalPairwiseReluDot),
            (TOP_K_MERGE_TARGET, lib.CrossmodalTopKMerge),
            (TOP_K_FINISH_TARGET, lib.CrossmodalTopKFinish),
        ):
          jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(symbol), platform="cpu")
      _registered.append(lib is not None)
    return _registered[0]


def why_not() -> str | None:
  """Why the native kernels are not available (None when they are)."""
  return None if available() else build.reason()


def pairwise_relu_dot(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """[P, Q] = sum_k relu(a[p, k] + b[q, k]) * w[k], float32, on the CPU; forward only.

  Each pair is computed by the same operations wherever it lies (equal inputs, equal
  scores); a vmap over it runs its instances one after another.
  """
  out = jax.ShapeDtypeStruct((a.shape[0], b.shape[0]), jnp.float32)
  return jax.ffi.ffi_call(PAIRWISE_TARGET, out, vmap_method="sequential")(a, b, w)


def merge_buffer(k: int) -> int:
  """Candidates a row of the native merge buffers before selecting its k best again."""
  return max(2 * k, 64)


def top_k_start(rows: int, k: int) -> tuple[jax.Array, ...]:
  """The native merge's empty state for `rows` queries: (scores, indices) [rows, k +
  merge_buffer(k)] (the k best so far, the worst first, then the buffer), the buffer's
  fill [rows] and whether a row has seen a NaN score [rows]."""
  width = k + merge_buffer(k)
  return (
      jnp.full((rows, width), -jnp.inf, jnp.float32),
      jnp.full((rows, width), EMPTY_INDEX, jnp.int32),
      jnp.zeros((rows,), jnp.int32),
      jnp.zeros((rows,), jnp.bool_),
  )


def top_k_merge(
    state: tuple[jax.Array, ...],
    scores: jax.Array,
    offset: jax.Array,
    num_valid: jax.Array,
    k: int,
) -> tuple[jax.Array, ...]:
  """Merges a block of scores into each row's running k best, on the CPU.

  Args:
    state: from `top_k_start(rows, k)` or this.
    scores: [rows, C] float32 scores of gallery items offset .. offset + C - 1.
    offset: int32 scalar, the gallery index of column 0.
    num_valid: int32 scalar; columns whose index is >= it are padding and skipped.
    k: the k of the state.

  Returns:
    The updated state. A candidate is kept when it ranks above the worst kept (a higher
    score, or an equal one at a lower index); -0.0 counts as 0.0; NaN is flagged.
  """
  outs = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in state)
  call = jax.ffi.ffi_call(
      TOP_K_MERGE_TARGET,
      outs,
      input_output_aliases={0: 0, 1: 1, 2: 2, 3: 3},
      vmap_method="sequential",
  )
  return tuple(
      call(
          *state,
          scores.astype(jnp.float32),
          jnp.asarray(offset, jnp.int32),
          jnp.asarray(num_valid, jnp.int32),
          k=np.int64(k),
      )
  )


def top_k_finish(state: tuple[jax.Array, ...], k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(scores [rows, k], indices [rows, k], NaN seen [rows]) of a merged state, in rank
  order: scores descending, equal scores by ascending index; each row's buffer merged by
  one selection and its k sorted, on the CPU (no sort of the whole state)."""
  scores, indices, count, nan = state
  rows = scores.shape[0]
  outs = (
      jax.ShapeDtypeStruct((rows, k), jnp.float32),
      jax.ShapeDtypeStruct((rows, k), jnp.int32),
  )
  call = jax.ffi.ffi_call(TOP_K_FINISH_TARGET, outs, vmap_method="sequential")
  top_scores, top_indices = call(scores, indices, count, k=np.int64(k))
  return top_scores, top_indices, nan


def layout() -> dict:
  """The kernel's vector lanes, register tile (rows of a x rows of b) and threads."""
  lib = _library()
  out = (ctypes.c_int32 * 4)()
  lib.crossmodal_kernel_layout(out)
  return {"lanes": out[0], "tile_rows": out[1], "tile_cols": out[2], "threads": out[3]}


def peak_probe(iterations: int, threads: int = 0) -> tuple[float, float]:
  """Runs the kernel's register tile (an add, a max and an FMA per element, no memory)
  `iterations` times on each of `threads` threads at once (0: all the kernel's threads);
  returns (wall seconds, elements computed)."""
  lib = _library()
  lib.crossmodal_peak_probe.restype = ctypes.c_double
  lib.crossmodal_peak_probe.argtypes = [
      ctypes.c_int64,
      ctypes.c_int32,
      ctypes.POINTER(ctypes.c_double),
  ]
  elements = ctypes.c_double()
  seconds = lib.crossmodal_peak_probe(int(iterations), int(threads), ctypes.byref(elements))
  return float(seconds), float(elements.value)


def _library() -> ctypes.CDLL:
  if not available():
    raise RuntimeError(f"The native kernels are not available: {build.reason()}")
  return build.load()
