"""What the benchmark's cases share: timing a function, a method's training setup and
its steps, and the process's peak memory."""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from crossmodal_jax import methods
from crossmodal_jax import parallel
from crossmodal_jax import training as train_lib
from crossmodal_jax.data import common


def timeit(fn, repeats: int) -> float:
  """Median seconds of `fn()` (blocked until ready) over `repeats` calls after a first,
  untimed call that compiles and warms up."""
  jax.block_until_ready(fn())  # compile + warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def training_setup(config, dataset: common.Dataset):
  """(method, steps per epoch, mesh, replicated initial state, jitted step) of a config."""
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  steps = method.num_batches(dataset.train, config.train.batch_size)
  optimizer = method.optimizer(config.train, steps)
  mesh = parallel.create_mesh()
  state = jax.device_put(
      train_lib.initial_state(method, optimizer, dataset, 0),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
  )
  return method, steps, mesh, state, train_lib.make_train_step(method, optimizer, mesh)


def seconds_per_step(step_fn, state, mesh, raw_batches) -> tuple[float, Any]:
  """Mean seconds of a training step over raw_batches[1:] (the first compiles); returns
  it with the final state."""
  batches = [parallel.shard_batch(b, mesh) for b in raw_batches]
  key = jax.random.key(0)
  with jax.set_mesh(mesh):
    state, _ = jax.block_until_ready(step_fn(state, batches[0], key))  # compile
    t0 = time.perf_counter()
    for b in batches[1:]:
      state, metrics = step_fn(state, b, key)
    jax.block_until_ready(metrics)
  return (time.perf_counter() - t0) / (len(batches) - 1), state


def peak_memory_mb() -> dict:
  """The process's peak host memory so far (MB) and, where the backend reports it, the
  device's peak bytes in use (MB)."""
  import resource  # pylint: disable=g-import-not-at-top

  out = {"peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
  return out
