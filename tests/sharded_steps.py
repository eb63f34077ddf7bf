"""Training steps on a chosen set of devices, for the data-parallel equivalence tests.

Used inside subprocesses that force 8 CPU devices (XLA_FLAGS must be set before jax
starts), to compare a run on 8 devices with the same run on 1.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax

from configs import default
from crossmodal_jax import parallel
from crossmodal_jax import training

WARMUP = default.train_config().ema_warmup  # the common config's EMA warm-up


def run_steps(
    method, optimizer, dataset, devices, batches, seed=0, ema_decay=0.0,
    ema_warmup=WARMUP, trajectory=None,
):  # fmt: skip
  """Trains from `initial_state(seed)` on `batches` over a mesh of `devices`, keeping an
  EMA of the parameters (`ema_decay`, `ema_warmup`) when `ema_decay` > 0. A `trajectory`
  list gets the host state before the first step and after each one.

  Returns:
    (the final TrainState on the host, the loss of each step).
  """
  mesh = parallel.create_mesh(devices)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = training.initial_state(method, optimizer, dataset, seed, ema=ema_decay > 0)
  state = jax.device_put(state, replicated)
  step = training.make_train_step(method, optimizer, mesh, ema_decay, ema_warmup)
  losses = []
  if trajectory is not None:
    trajectory.append(jax.device_get(state))
  with jax.set_mesh(mesh):
    for batch in batches:
      state, metrics = step(state, parallel.shard_batch(batch, mesh), jax.random.key(seed))
      losses.append(float(metrics["loss"]))
      if trajectory is not None:
        trajectory.append(jax.device_get(state))
  return jax.device_get(state), losses


def run_on_8_devices(script: str) -> dict:
  """Runs `script` in a fresh Python with 8 forced CPU devices (from tests/, with the
  repository importable) and returns the JSON object its last output line prints."""
  tests = pathlib.Path(__file__).resolve().parent
  env = dict(
      os.environ,
      PYTHONPATH=f"{tests.parent}{os.pathsep}{tests}",
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="--xla_force_host_platform_device_count=8",
  )
  proc = subprocess.run(
      [sys.executable, "-c", script], cwd=tests, env=env, capture_output=True, text=True,
      timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])
