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
- `num_shards(axis_name)`, `global_batch_size(local, axis_name)`.

Every helper accepts `axis_name=None` (one device, outside `shard_map`) and is then the
identity, so one loss serves both.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def create_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh, axis `AXIS`, over `devices` (default: every device of every host)."""
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh(
      (len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Explicit,), devices=devices
  )


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Places a global batch on `mesh`, every leaf split along axis 0 over `AXIS`.

  Each process passes the whole global batch and contributes its own slice of it.

  Raises:
    ValueError: if a leaf's leading size is not divisible by the devices of the mesh.
  """
  sharding = NamedSharding(mesh, P(AXIS))
  n_proc, proc = jax.process_count(), jax.process_index()

  def put(path, x):
    if x.shape[0] % mesh.size:
      raise ValueError(
          f"Batch array {jax.tree_util.keystr(path)} has {x.shape[0]} rows, not divisible by "
          f"the {mesh.size} devices of the {AXIS!r} axis."
      )
    per = x.shape[0] // n_proc
    local = x[proc * per : (proc + 1) * per]
    return jax.make_array_from_process_local_data(sharding, local, x.shape)

  return jax.tree_util.tree_map_with_path(put, batch)


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


def loss_from_share(share: jax.Array, axis_name: str | None) -> jax.Array:
  """A device's share of a global-batch loss -> what its `Method.loss` returns.

  If the global loss is the sum over devices of `share`, the mean over devices of
  `num_shards * share` is the global loss. The training step differentiates each device's
  value with respect to that device's copy of the parameters (the collectives inside the
  loss route the other devices' contributions back) and averages the gradients with
  `lax.pmean`, which then equals the gradient of the global loss.
  """
  return num_shards(axis_name) * share
