"""Training: `train_and_evaluate(config, workdir)`, written once for every method.

The step is per-device SPMD code: each device holds one shard of the global batch,
computes its share of the loss (a method's `loss` may all-gather encodings and average
batch statistics over the `data` axis), takes gradients, and averages them with
`lax.pmean` over `data`. `jax.shard_map` runs it across every device of the mesh under
`jax.jit`. Multi-host runs call `jax.distributed.initialize()` first
(`config.train.multi_host`); each process then feeds its slice of every global batch.

Determinism: the permutation of epoch e is a function of (seed, e) and the dropout key of
step s is fold_in(key(seed), s), so a run resumed from an epoch-end checkpoint replays
exactly what an unbroken run does.

Outputs in `workdir`: config.json, metrics.jsonl (per step and per epoch), TensorBoard
event files under tb/, orbax checkpoints under checkpoints/latest (the last
`keep_checkpoints`) and checkpoints/best (the best validation mAP), results.json.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any

import flax
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from crossmodal_jax import data as data_lib
from crossmodal_jax import evaluate as evaluate_lib
from crossmodal_jax import models
from crossmodal_jax.data import common

AXIS = "data"


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  collections: Any  # non-param variables, e.g. {"batch_stats": ...}
  opt_state: Any

  @property
  def variables(self) -> dict[str, Any]:
    return {"params": self.params, **self.collections}


def create_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh, axis `data`, over `devices` (default: every device of every host)."""
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh((len(devices),), (AXIS,),
                       axis_types=(jax.sharding.AxisType.Explicit,), devices=devices)


def make_optimizer(train_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam (+ coupled L2 as torch.optim.Adam's weight_decay), lr decayed per epoch."""
  schedule = optax.exponential_decay(
      train_config.learning_rate, transition_steps=max(steps_per_epoch, 1),
      decay_rate=train_config.lr_decay_per_epoch, staircase=True)
  parts = []
  if train_config.weight_decay:
    parts.append(optax.add_decayed_weights(train_config.weight_decay))
  parts += [optax.scale_by_adam(b1=train_config.b1, b2=train_config.b2),
            optax.scale_by_learning_rate(schedule)]
  return optax.chain(*parts)


def _per_device_step(method: models.base.Method, optimizer: optax.GradientTransformation,
                     state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
  """One optimisation step on this device's shard of the global batch."""
  rng = jax.random.fold_in(jax.random.fold_in(key, state.step), jax.lax.axis_index(AXIS))
  # Differentiate w.r.t. this device's copy of the parameters; the collectives inside
  # the loss route each device's share back, and pmean gives the global gradient.
  local_params = jax.lax.pcast(state.params, AXIS, to="varying")

  def loss_fn(params):
    return method.loss({"params": params, **state.collections}, batch, rng, AXIS)

  (loss, (new_collections, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      local_params)
  grads = jax.lax.pmean(grads, AXIS)
  loss, metrics, new_collections = jax.lax.pmean((loss, metrics, new_collections), AXIS)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params,
                            collections=dict(new_collections), opt_state=opt_state)
  metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
  return new_state, metrics


def make_train_step(method, optimizer, mesh):
  """jit(shard_map(per-device step)) over `mesh`; state replicated, batch sharded."""
  step = functools.partial(_per_device_step, method, optimizer)
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P()),
                          out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,))


class _SplitSource:
  """grain random-access source over a Split's arrays (only the keys a method reads)."""

  def __init__(self, split: common.Split, keys: tuple[str, ...]):
    self._arrays = {k: split[k] for k in keys}
    self._n = len(split)

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in self._arrays.items()}


def epoch_batches(split: common.Split, keys: tuple[str, ...], batch_size: int, seed: int,
                  epoch: int) -> grain.MapDataset:
  """The global batches of one epoch: a seeded permutation, last partial batch dropped.

  Training drops the remainder so every step has the same shape (the permutation changes
  every epoch, so each item is still seen); evaluation never drops anything.
  """
  ds = grain.MapDataset.source(_SplitSource(split, keys))
  ds = ds.shuffle(seed=int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
  return ds.batch(batch_size, drop_remainder=True)


def shard_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Places a global batch on the mesh, split over `data`; each process feeds its slice."""
  sharding = NamedSharding(mesh, P(AXIS))
  n_proc, proc = jax.process_count(), jax.process_index()

  def put(x):
    per = x.shape[0] // n_proc
    local = x[proc * per:(proc + 1) * per]
    return jax.make_array_from_process_local_data(sharding, local, x.shape)

  return {k: put(v) for k, v in batch.items()}


def initial_state(method, optimizer, dataset: common.Dataset, seed: int) -> TrainState:
  sample = {k: jnp.asarray(dataset.train[k][:2]) for k in method.batch_keys}
  variables = method.init(jax.random.key(seed), sample)
  params = variables["params"]
  collections = {k: v for k, v in variables.items() if k != "params"}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, collections=collections,
                    opt_state=optimizer.init(params))


def _managers(workdir: str, keep: int):
  root = os.path.join(os.path.abspath(workdir), "checkpoints")
  latest = ocp.CheckpointManager(
      os.path.join(root, "latest"),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
  best = ocp.CheckpointManager(
      os.path.join(root, "best"),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, best_fn=lambda m: m["validation_map"],
          best_mode="max", keep_checkpoints_without_metrics=False))
  return latest, best


def abstract_state(state: TrainState) -> TrainState:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def restore_state(manager: ocp.CheckpointManager, step: int, target: TrainState) -> TrainState:
  """Restores `step` into the structure, dtypes and shardings of `target`."""
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state(target)))


class _Logger:
  """Metrics as JSON lines and TensorBoard scalars (tensorboardX: no TensorFlow)."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0
    self.tb = None
    if not self.enabled:
      return
    # A resumed run rewrites history past its checkpoint: drop records it will redo.
    kept = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        kept = [line for line in f if json.loads(line).get("step", 0) <= resume_step]
    with open(self.path, "w") as f:
      f.writelines(kept)
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self.tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, kind: str, step: int, values: dict[str, float]):
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
    for k, v in values.items():
      if isinstance(v, (int, float)):
        self.tb.add_scalar(f"{kind}/{k}", v, step)
    self.tb.flush()

  def close(self):
    if self.tb is not None:
      self.tb.close()


def _check_batch(batch_size: int, n_train: int, devices: int):
  if batch_size % devices:
    raise ValueError(
        f"train.batch_size={batch_size} is not divisible by the {devices} devices of the "
        f"data axis; choose a multiple of {devices}.")
  if batch_size % jax.process_count():
    raise ValueError(f"train.batch_size={batch_size} must divide among "
                     f"{jax.process_count()} processes.")
  if n_train < batch_size:
    raise ValueError(f"train.batch_size={batch_size} exceeds the {n_train} training pairs.")


def train(config: ml_collections.ConfigDict, workdir: str,
          dataset: common.Dataset | None = None) -> tuple[TrainState, Any]:
  """Trains (resuming from workdir's latest checkpoint); returns (final state, method)."""
  if config.train.multi_host:
    jax.distributed.initialize()
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  dataset = dataset if dataset is not None else data_lib.load_dataset(config.data)
  logging.info("%s", dataset.summary())
  method = models.get_method(config, dataset.dims(), dataset.meta)
  tc = config.train
  if tc.num_epochs < 1:
    raise ValueError(f"train.num_epochs must be >= 1, got {tc.num_epochs}.")
  mesh = create_mesh()
  _check_batch(tc.batch_size, len(dataset.train), mesh.size)
  steps_per_epoch = len(dataset.train) // tc.batch_size
  optimizer = make_optimizer(tc, steps_per_epoch)
  replicated = NamedSharding(mesh, P())

  state = jax.device_put(initial_state(method, optimizer, dataset, config.seed), replicated)
  latest, best = _managers(workdir, tc.keep_checkpoints)
  start_step = 0
  if latest.latest_step() is not None:
    start_step = latest.latest_step()
    state = restore_state(latest, start_step, state)
    logging.info("Resumed from %s at step %d.", latest.directory, start_step)
  start_epoch = start_step // steps_per_epoch
  best_map = -1.0
  if best.best_step() is not None:
    best_map = float(best.metrics(best.best_step())["validation_map"])
  logger = _Logger(workdir, start_step)
  train_step = make_train_step(method, optimizer, mesh)
  key = jax.random.key(config.seed)
  has_validation = len(dataset.validation) > 0
  total = tc.num_epochs * steps_per_epoch
  progress = None
  if tc.progress_bar and jax.process_index() == 0:
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
    progress = tqdm.tqdm(total=total, initial=start_step, desc="train", unit="step",
                         dynamic_ncols=True)
  step = start_step
  with jax.set_mesh(mesh):
    for epoch in range(start_epoch, tc.num_epochs):
      t0 = time.perf_counter()
      epoch_losses = []
      for batch in epoch_batches(dataset.train, method.batch_keys, tc.batch_size,
                                 config.seed, epoch):
        state, metrics = train_step(state, shard_batch(batch, mesh), key)
        step += 1
        epoch_losses.append(metrics["loss"])
        if step % tc.log_every_steps == 0 or step == total:
          logger.write("train", step, {k: float(v) for k, v in metrics.items()})
        if progress is not None:
          progress.update(1)
      epoch_loss = float(np.mean(jax.device_get(epoch_losses)))
      record = {"epoch": epoch + 1, "loss": epoch_loss,
                "epoch_seconds": time.perf_counter() - t0}
      if has_validation:
        val = evaluate_lib.evaluate_split(method, state.variables, dataset.validation,
                                          config.eval, full=False)
        record.update({"validation_map": val["map_all"]["avg"],
                       "validation_map_i2t": val["map_all"]["i2t"],
                       "validation_map_t2i": val["map_all"]["t2i"]})
      logger.write("epoch", step, record)
      if progress is not None:
        progress.set_postfix(epoch=epoch + 1, loss=f"{epoch_loss:.4f}",
                             val_map=f"{record.get('validation_map', float('nan')):.4f}")
      last = epoch + 1 == tc.num_epochs
      if (epoch + 1) % tc.checkpoint_every_epochs == 0 or last:
        latest.save(step, args=ocp.args.StandardSave(state))
      # The best-by-validation copy is written only when validation improves (orbax
      # would otherwise write every epoch and delete the loser).
      if has_validation and record["validation_map"] > best_map:
        best_map = record["validation_map"]
        best.save(step, args=ocp.args.StandardSave(state),
                  metrics={"validation_map": best_map}, force=True)
  if progress is not None:
    progress.close()
  latest.wait_until_finished()
  best.wait_until_finished()
  latest.close()
  best.close()
  logger.close()
  return state, method


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, then evaluates the selected checkpoint on the test split (results.json)."""
  dataset = data_lib.load_dataset(config.data)
  train(config, workdir, dataset=dataset)
  return evaluate_lib.evaluate(workdir, config=config, dataset=dataset)


def num_params(params) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))
