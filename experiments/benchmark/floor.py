"""The elementwise floor of DRSL's all-pairs scoring, from the machine's measured peak.

A pair scored through the separable relation layer is sum_k relu(a_pk + b_qk) w_k: for
each of its K elements an add, a max and an FMA (4 FLOPs, as `flops.pair_flops` counts
them). `peak` measures how many such elements per second the machine computes at best:
those three vector operations alone on registers (no loads, no stores) on all the
kernel's threads at once, with the native kernel's own register tile
(`kernels.peak_probe`); where the native kernels are unavailable, numpy's add, maximum,
multiply and add over arrays that stay in L1 (one thread: a far lower "peak", and the
row says so). A scoring row's floor is its elements at that peak (`floor_fields`): the
time no implementation of these operations can beat on this machine, and each row says
how many times the floor it took.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from crossmodal_jax import kernels

# One probe run lasts about this long; the best of PROBE_RUNS runs is the peak.
PROBE_SECONDS = 0.5
PROBE_RUNS = 7
# Operations and FLOPs per element: an add, a max and an FMA (add + ReLU + multiply-add).
OPS_PER_ELEMENT = 3
FLOPS_PER_ELEMENT = 4


def _kernel_rates(runs: int, seconds: float, threads: int) -> list[float]:
  iterations = 1 << 20
  s, _ = kernels.peak_probe(iterations, threads)
  iterations = max(1, int(iterations * seconds / max(s, 1e-6)))
  rates = []
  for _ in range(runs):
    s, elements = kernels.peak_probe(iterations, threads)
    rates.append(elements / s)
  return rates


def _numpy_rates(runs: int, seconds: float) -> list[float]:
  n = 4096  # 5 arrays of 16 KB: in L1
  rng = np.random.default_rng(0)
  a, b, w = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
  t, acc = np.empty(n, np.float32), np.zeros(n, np.float32)
  rates = []
  for _ in range(runs):
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      for _ in range(100):
        np.add(a, b, out=t)
        np.maximum(t, 0.0, out=t)
        np.multiply(t, w, out=t)
        np.add(acc, t, out=acc)
      count += 100
    rates.append(count * n / (time.perf_counter() - start))
  return rates


def measure_peak(runs: int = PROBE_RUNS, seconds: float = PROBE_SECONDS) -> dict:
  """A fresh measurement of the machine's peak (see the module doc), as a result row."""
  if kernels.available():
    layout = kernels.layout()
    rates = _kernel_rates(runs, seconds, 0)
    single = _kernel_rates(3, seconds, 1)
    how = (
        f"the native kernel's register tile ({layout['tile_rows']} x {layout['tile_cols']} "
        f"pairs x {layout['lanes']} float32 lanes: an add, a max and an FMA per element, "
        f"operands in registers, no memory) on {layout['threads']} threads at once; "
        f"the best of {runs} runs of about {seconds} s"
    )
    extra = {**layout, "single_thread_elements_per_s": max(single)}
  else:
    rates = _numpy_rates(runs, seconds)
    how = (
        "numpy (the native kernels are unavailable: "
        f"{kernels.why_not()}): add, maximum, multiply, add over 4,096-float arrays in L1, "
        f"one thread; the best of {runs} runs of about {seconds} s"
    )
    extra = {"threads": 1}
  best = max(rates)
  return {
      "name": "machine/vector_peak",
      "method": how,
      "elements_per_s": best,
      "gflops_per_s": best * FLOPS_PER_ELEMENT / 1e9,
      "ops_per_element": OPS_PER_ELEMENT,
      "runs_elements_per_s": rates,
      **extra,
  }


@functools.cache
def peak() -> dict:
  """The peak measured once per process (the row the report carries)."""
  return measure_peak()


def floor_fields(pairs: int, k: int, seconds: float) -> dict:
  """A scoring row's elementwise floor: its pairs x K elements at the measured peak, and
  how many times that floor `seconds` is."""
  elements = pairs * k
  floor = elements / peak()["elements_per_s"]
  return {
      "elements": elements,
      "element_ops": OPS_PER_ELEMENT * elements,
      "floor_seconds": floor,
      "times_floor": seconds / floor,
  }
