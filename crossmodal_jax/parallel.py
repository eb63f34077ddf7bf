"""Data parallelism in one place: the mesh, batch placement and the collectives of a loss.

Training runs per-device SPMD code under `jax.shard_map` over a 1-D mesh whose one axis,
`AXIS` ("data"), spans every device of every host. Each device holds an equal shard of the
global batch (every leaf of a batch is split along its leading axis). A method's `loss`
runs on one shard; the helpers below are all it needs to compute the global-batch loss:

- `gather(tree, axis_name)`: the global batch's rows of every leaf (encodings, labels),
  in device order, on every device;
- `loss_from_share(share, axis_name)`: a device's share of a global sum, turned into the
  value the training step averages: the mean over devices of the returned values is the
  global loss, and so is the gradient of their mean (what `lax.pmean` of the gradients
  gives) the global gradient;
- `num_shards(axis_name)`, `global_batch_size(local, axis_name)`, and
  `shard_start(local, axis_name)`: where this device's rows begin in the global batch.

Every helper accepts `axis_name=None` (one device, outside `shard_map`) and is then the
identity, so one loss serves both.

Several processes (hosts): each runs the same program after `initialize_distributed`; the
mesh spans the devices of all of them. Every process draws the same global batch from the
seeded sampler (host memory only) and places just the rows its own devices hold
(`process_rows`, `shard_batch`); only process 0 writes files (`is_primary`).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
  """Joins this process to a multi-process job (`jax.distributed.initialize`), once.

  Must come before anything starts JAX's backend (`jax.devices()`, any computation). The
  arguments left None are found by JAX: from SLURM, Open MPI or Cloud TPU, and the
  coordinator from `JAX_COORDINATOR_ADDRESS`. A second call is a no-op.
  """
  if jax.distributed.is_initialized():
    return
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def create_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh, axis `AXIS`, over `devices` (default: every device of every host)."""
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh(
      (len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Explicit,), devices=devices
  )


def is_primary() -> bool:
  """Whether this process writes the run's files (logs, config, results): process 0."""
  return jax.process_index() == 0


def process_rows(mesh: jax.sharding.Mesh, rows: int) -> list[tuple[int, int]]:
  """The [start, stop) row blocks of a `rows`-row global batch that this process's devices
  hold when it is split over `AXIS`, ascending (all of it in a one-process run).

  Raises:
    ValueError: if `rows` is not divisible by the devices of the mesh.
  """
  if rows % mesh.size:
    raise ValueError(f"{rows} rows are not divisible by the {mesh.size} devices of {AXIS!r}.")
  indices = NamedSharding(mesh, P(AXIS)).addressable_devices_indices_map((rows,)).values()
  blocks = sorted((i[0].start or 0, rows if i[0].stop is None else i[0].stop) for i in indices)
  merged = [blocks[0]]  # adjacent devices' blocks joined
  for start, stop in blocks[1:]:
    if start == merged[-1][1]:
      merged[-1] = (merged[-1][0], stop)
    else:
      merged.append((start, stop))
  return merged


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Places a global batch on `mesh`, every leaf split along axis 0 over `AXIS`.

  Every process passes the same whole global batch (host arrays) and transfers only its
  own rows (`process_rows`: with 2 processes of 4 devices each, process 0 the first half,
  process 1 the second) to its own devices; the result is the global array.

  Raises:
    ValueError: if a leaf's leading size is not divisible by the devices of the mesh.
  """
  sharding = NamedSharding(mesh, P(AXIS))

  def put(path, x):
    if x.shape[0] % mesh.size:
      raise ValueError(
          f"Batch array {jax.tree_util.keystr(path)} has {x.shape[0]} rows, not divisible by "
          f"the {mesh.size} devices of the {AXIS!r} axis."
      )
    blocks = process_rows(mesh, x.shape[0])
    local = x if blocks == [(0, x.shape[0])] else np.concatenate([x[a:b] for a, b in blocks])
    return jax.make_array_from_process_local_data(sharding, local, x.shape)

  return jax.tree_util.tree_map_with_path(put, batch)


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """`tree` (host or local arrays, the same values in every process) on every device of
  `mesh`: `jax.device_put` in one process; in several, each process places its own copy
  on its own devices (`device_put` would first check host data equal across processes,
  one compiled collective per leaf)."""
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)), tree
  )


def num_shards(axis_name: str | None) -> int:
  """The number of devices over `axis_name` (1 outside `shard_map`)."""
  return 1 if axis_name is None else jax.lax.axis_size(axis_name)


def gather(tree: Any, axis_name: str | None) -> Any:
  """Every leaf's rows of the whole global batch (device order), on every device."""
  if axis_name is None:
    return tree
  return jax.tree.map(lambda x: jax.lax.all_gather(x, axis_name, tiled=True), tree)


def global_batch_size(local_size: int, axis_name: str | None) -> int:
  """The global batch's size from a shard's (shards are equal)."""
  return local_size * num_shards(axis_name)


def shard_start(local_size: int, axis_name: str | None) -> int | jax.Array:
  """The index in the global batch (and in what `gather` returns) of this device's first
  row: its shard holds rows [start, start + local_size). 0 outside `shard_map`."""
  return 0 if axis_name is None else jax.lax.axis_index(axis_name) * local_size


def loss_from_share(share: jax.Array, axis_name: str | None) -> jax.Array:
  """A device's share of a global-batch loss -> what its `Method.loss` returns.

  If the global loss is the sum over devices of `share`, the mean over devices of
  `num_shards * share` is the global loss. The training step differentiates each device's
  value with respect to that device's copy of the parameters (the collectives inside the
  loss route the other devices' contributions back) and averages the gradients with
  `lax.pmean`, which then equals the gradient of the global loss.
  """
  return num_shards(axis_name) * share
