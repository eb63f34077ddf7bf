"""Training steps on a chosen set of devices, for the data-parallel equivalence tests.

Used inside subprocesses that force 8 CPU devices (XLA_FLAGS must be set before jax
starts), to compare a run on 8 devices with the same run on 1.
"""

import jax

from crossmodal_jax import parallel
from crossmodal_jax import train


def run_steps(method, optimizer, dataset, devices, batches, seed=0):
  """Trains from `initial_state(seed)` on `batches` over a mesh of `devices`.

  Returns:
    (the final TrainState on the host, the loss of each step).
  """
  mesh = parallel.create_mesh(devices)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = jax.device_put(train.initial_state(method, optimizer, dataset, seed), replicated)
  step = train.make_train_step(method, optimizer, mesh)
  losses = []
  with jax.set_mesh(mesh):
    for batch in batches:
      state, metrics = step(state, parallel.shard_batch(batch, mesh), jax.random.key(seed))
      losses.append(float(metrics["loss"]))
  return jax.device_get(state), losses
