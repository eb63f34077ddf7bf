"""Training: `train_and_evaluate(config, workdir)`, written once for every method.

Everything method-specific comes through the method's face (`methods.base.Method`): its
optimizer, its sampler of training batches, its loss, and (for validation) its encoders
and pair scores. The step is per-device SPMD code: each device holds one shard of the
global batch, computes its share of the loss (with the collectives of
`crossmodal_jax.parallel`), takes gradients, and averages them with `lax.pmean` over
`data`. `jax.shard_map` runs it across every device of the mesh under `jax.jit`.

Several processes (hosts; `config.train.multi_host`) join with
`parallel.initialize_distributed` before anything else and run the same program: the
mesh spans every process's devices, each process draws the same global batch and feeds
its own slice of it (`parallel.shard_batch`), and the replicated state is the same
everywhere. Validation runs in every process on its host copy of the variables (the same
numbers everywhere); only process 0 writes config.json, metrics, TensorBoard files and
results.json, while every process takes part in orbax's checkpoint saves and restores
(orbax's primary host, process 0, creates and finalizes the checkpoint folders).

With `train.ema_decay` > 0 the state also carries an exponential moving average of the
parameters, updated after every step; validation, the best-checkpoint choice and
evaluation see the average (`TrainState.variables`), and resuming restores both.

Determinism: the batches of epoch e are a function of (seed, e) (`sampling`) and the
dropout key of step s is fold_in(key(seed), s), so a run resumed from an epoch-end
checkpoint replays exactly what an unbroken run does. Resuming a workdir with a config
that differs in anything but run control, evaluation and the epoch count is an error
naming the fields (`runs.check_resumable`).

Nothing is written to `workdir` before the config is known to be good: the dataset is
loaded, the method built and initialised, the batch checked against the devices and the
workdir's earlier config compared first. A bad value is a `errors.UserError` naming it.

Outputs in `workdir`: config.json, preprocessing/ (what the data loading fitted on the
training data, `data.preprocessing`), metrics.jsonl (per step and per epoch), TensorBoard
event files under tb/, orbax checkpoints under checkpoints/latest (the last
`keep_checkpoints`) and checkpoints/best (the best validation mAP), results.json.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from crossmodal_jax import checkpoint as ckpt
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation as evaluate_lib
from crossmodal_jax import methods
from crossmodal_jax import parallel
from crossmodal_jax import protocols
from crossmodal_jax import ranking
from crossmodal_jax import runs
from crossmodal_jax.checkpoint import TrainState
from crossmodal_jax.data import common
from crossmodal_jax.data import preprocessing
from crossmodal_jax.methods import base

AXIS = parallel.AXIS


def ema_decay_at(ema_decay: float, step, warmup: float):
  """The EMA's decay at `step` (0-based): min(ema_decay, (1 + step) / (warmup + step)), so
  the average forgets its initial parameters within the first steps instead of lagging
  behind them for 1 / (1 - ema_decay) steps. While the warm-up term is the smaller, the
  average weighs step k of t about as k^(warmup - 2) (2: the plain mean of every step)
  and lags about t / warmup steps behind the parameters."""
  return jax.numpy.minimum(ema_decay, (1.0 + step) / (warmup + step))


def _per_device_step(
    method: base.Method,
    optimizer: optax.GradientTransformation,
    ema_decay: float,
    ema_warmup: float,
    state: TrainState,
    batch: dict[str, jax.Array],
    key: jax.Array,
):
  """One optimisation step on this device's shard of the global batch."""
  rng = jax.random.fold_in(jax.random.fold_in(key, state.step), jax.lax.axis_index(AXIS))
  # Differentiate w.r.t. this device's copy of the parameters; the collectives inside
  # the loss route each device's share back, and pmean gives the global gradient.
  local_params = jax.lax.pcast(state.params, AXIS, to="varying")

  def loss_fn(params):
    return method.loss({"params": params, **state.collections}, batch, rng, AXIS)

  (loss, (new_collections, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      local_params
  )
  grads = jax.lax.pmean(grads, AXIS)
  loss, metrics, new_collections = jax.lax.pmean((loss, metrics, new_collections), AXIS)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema
  if ema is not None:
    decay = ema_decay_at(ema_decay, state.step.astype(jax.numpy.float32), ema_warmup)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
  new_state = state.replace(
      step=state.step + 1,
      params=params,
      collections=dict(new_collections),
      opt_state=opt_state,
      ema=ema,
  )
  metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
  return new_state, metrics


def make_train_step(
    method: base.Method,
    optimizer: optax.GradientTransformation,
    mesh,
    ema_decay: float = 0.0,
    ema_warmup: float = 1.0,
):
  """jit(shard_map(per-device step)) over `mesh`; state replicated, batch sharded.

  `ema_decay` and `ema_warmup` (`train.ema_decay`, `train.ema_warmup`) set the EMA's
  decay (`ema_decay_at`); they act only on a state that holds an EMA
  (`initial_state(..., ema=True)`)."""
  step = functools.partial(_per_device_step, method, optimizer, ema_decay, ema_warmup)
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,))


def initial_state(
    method: base.Method,
    optimizer: optax.GradientTransformation,
    dataset: common.Dataset,
    seed: int,
    ema: bool = False,
) -> TrainState:
  """The state before the first step; with `ema`, the average starts at the parameters."""
  variables = method.init(jax.random.key(seed), method.init_batch(dataset.train))
  params, collections = ckpt.split_variables(variables)
  return TrainState(
      step=jax.numpy.zeros((), jax.numpy.int32),
      params=params,
      collections=collections,
      opt_state=optimizer.init(params),
      # A copy: the step donates the state, and one buffer cannot be donated twice.
      ema=jax.tree.map(jax.numpy.copy, params) if ema else None,
  )


class _Logger:
  """Metrics as JSON lines and TensorBoard scalars (tensorboardX: no TensorFlow)."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = parallel.is_primary()
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


def _check_batch(batch_size: int, devices: int, what: str = "train.batch_size"):
  if batch_size % devices:
    raise errors.UserError(
        f"{what}={batch_size} is not divisible by the {devices} devices of the data axis; "
        f"choose a multiple of {devices}"
        + (" (or train.drop_remainder=True)." if what == "last batch" else ".")
    )
  if batch_size % jax.process_count():
    raise errors.UserError(
        f"{what}={batch_size} must divide among {jax.process_count()} processes."
    )


class SafeInterrupts:
  """Ctrl-C during training, taken at safe points.

  The first SIGINT is only noted; `check()` (between steps and after an epoch's saves)
  then raises KeyboardInterrupt. So a Ctrl-C never lands inside an orbax save or its wait,
  which orbax would log as a failed save with a traceback, and the checkpoint being
  written is finished. A second SIGINT interrupts at once. `install()` takes SIGINT in
  the main thread (the only one that receives signals; elsewhere it does nothing), and
  `restore()` gives it back to the previous handler.
  """

  def __init__(self):
    self.pending = False
    self._installed = False
    self._previous = None

  @classmethod
  def install(cls) -> "SafeInterrupts":
    interrupts = cls()
    if threading.current_thread() is threading.main_thread():
      interrupts._previous = signal.getsignal(signal.SIGINT)
      signal.signal(signal.SIGINT, interrupts._handle)
      interrupts._installed = True
    return interrupts

  def _handle(self, signum, frame):
    del signum, frame
    if self.pending:
      raise KeyboardInterrupt
    self.pending = True

  def check(self):
    if self.pending:
      raise KeyboardInterrupt

  def restore(self):
    if self._installed:
      # None: a handler not set from Python; the default one is the nearest.
      signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
      self._installed = False


def _validate(method, state, split, eval_config, mesh) -> tuple[TrainState, dict[str, Any]]:
  """(state with the method's calibration, mAP@ALL on `split`) after an epoch.

  Choices made on validation (a fusion weight) go into the state's non-param collections,
  so the mAP and the checkpoints saved after carry them. The split is encoded and scored
  once, for both. With several processes, each evaluates its host copy of the variables
  on its own first device (a one-device mesh: no computation spans processes), so every
  process finds the same numbers.
  """
  one_process = jax.process_count() == 1
  variables = state.variables if one_process else jax.device_get(state.variables)
  own_device = None if one_process else parallel.create_mesh(jax.local_devices()[:1])

  def on_own_device():
    return contextlib.nullcontext() if own_device is None else jax.set_mesh(own_device)

  with on_own_device():
    channels = ranking.split_channels(method, variables, split, eval_config)
    calibrated = method.calibrate(variables, channels, split["label"])
  _, collections = ckpt.split_variables(calibrated)
  state = state.replace(collections=parallel.replicate(collections, mesh))
  with on_own_device():
    val = protocols.evaluate_split(
        method,
        state.variables if one_process else calibrated,
        split,
        eval_config,
        full=False,
        channels=channels,
    )
  return state, val


def train(
    config: ml_collections.ConfigDict, workdir: str, dataset: common.Dataset | None = None
) -> tuple[TrainState, base.Method]:
  """Trains (resuming from workdir's latest checkpoint); returns (final state, method).

  Raises:
    UserError: for a bad config value (also one that the method, its optimizer or its
      initialisation rejects with a ValueError), a batch size that the devices or the
      training split do not allow, or a workdir whose checkpoints are of another run;
      then nothing has been written to `workdir`.
  """
  if config.train.multi_host:
    parallel.initialize_distributed()
  tc = config.train
  if tc.num_epochs < 1:
    raise errors.UserError(f"train.num_epochs must be >= 1, got {tc.num_epochs}.")
  if not tc.learning_rate > 0:
    raise errors.UserError(f"train.learning_rate must be > 0, got {tc.learning_rate}.")
  ema_decay = float(tc.ema_decay)
  if not 0.0 <= ema_decay < 1.0:
    raise errors.UserError(f"train.ema_decay must be in [0, 1) (0: off), got {ema_decay}.")
  ema_warmup = float(tc.ema_warmup)
  if not ema_warmup >= 1.0:
    raise errors.UserError(f"train.ema_warmup must be >= 1, got {ema_warmup}.")
  if dataset is None:
    with errors.config_values():  # e.g. data.graph_neighbors beyond the vocabulary
      dataset = data_lib.load_dataset(config.data)
  logging.info("%s", dataset.summary())
  with errors.config_values():
    method = methods.get_method(config, dataset.dims(), dataset.meta)
  mesh = parallel.create_mesh()
  _check_batch(tc.batch_size, mesh.size)
  steps_per_epoch = method.num_batches(dataset.train, tc.batch_size)
  if steps_per_epoch < 1:
    raise errors.UserError(
        f"train.batch_size={tc.batch_size} gives no training batch: the train split has "
        f"{len(dataset.train)} pairs."
    )
  if not tc.drop_remainder:
    _check_batch(len(dataset.train) % tc.batch_size or tc.batch_size, mesh.size, "last batch")
  runs.check_resumable(config, workdir)
  ranking.streaming_settings(config.eval)  # a bad eval.ranking / top_k: before training
  # The method, its optimizer and its initialisation read the model and train fields;
  # what they reject is a bad config value ("Unknown fusion 'foo'").
  with errors.config_values():
    optimizer = method.optimizer(tc, steps_per_epoch)
    state = initial_state(method, optimizer, dataset, config.seed, ema=ema_decay > 0)
  state = parallel.replicate(state, mesh)
  # The config is good: only now is anything written.
  os.makedirs(workdir, exist_ok=True)
  if parallel.is_primary():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    # What the data loading fitted, so the trained model takes raw inputs (api.load).
    preprocessing.save(dataset, os.path.join(workdir, preprocessing.DIRECTORY))
  latest, best = ckpt.managers(workdir, tc.keep_checkpoints)
  start_step = 0
  if latest.latest_step() is not None:
    start_step = latest.latest_step()
    state = ckpt.restore_state(latest, start_step, state)
    logging.info("Resumed from %s at step %d.", latest.directory, start_step)
  start_epoch = start_step // steps_per_epoch
  best_map = -1.0
  if best.best_step() is not None:
    best_map = float(best.metrics(best.best_step())[ckpt.METRIC])
  logger = _Logger(workdir, start_step)
  train_step = make_train_step(method, optimizer, mesh, ema_decay, ema_warmup)
  key = jax.random.key(config.seed)
  has_validation = len(dataset.validation) > 0
  total = tc.num_epochs * steps_per_epoch
  progress = None
  if tc.progress_bar and parallel.is_primary():
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

    progress = tqdm.tqdm(
        total=total, initial=start_step, desc="train", unit="step", dynamic_ncols=True
    )
  step = start_step
  interrupts = SafeInterrupts.install()
  try:
    with jax.set_mesh(mesh):
      for epoch in range(start_epoch, tc.num_epochs):
        t0 = time.perf_counter()
        epoch_losses = []
        for batch in method.batches(dataset.train, tc.batch_size, config.seed, epoch):
          state, metrics = train_step(state, parallel.shard_batch(batch, mesh), key)
          step += 1
          epoch_losses.append(metrics["loss"])
          if step % tc.log_every_steps == 0 or step == total:
            logger.write("train", step, {k: float(v) for k, v in metrics.items()})
          if progress is not None:
            progress.update(1)
          interrupts.check()
        if len(epoch_losses) != steps_per_epoch:
          raise ValueError(
              f"{type(method).__name__}.batches gave {len(epoch_losses)} batches in epoch "
              f"{epoch}, but num_batches says {steps_per_epoch}."
          )
        epoch_loss = float(np.mean(jax.device_get(epoch_losses)))
        record = {
            "epoch": epoch + 1,
            "loss": epoch_loss,
            "epoch_seconds": time.perf_counter() - t0,
        }
        if has_validation:
          state, val = _validate(method, state, dataset.validation, config.eval, mesh)
          record.update(
              {
                  "validation_map": val["map_all"]["avg"],
                  "validation_map_i2t": val["map_all"]["i2t"],
                  "validation_map_t2i": val["map_all"]["t2i"],
                  # A method with several score channels: each one's
                  # mAP@ALL ranked alone, e.g. "validation_map_image_space".
                  **{
                      f"validation_map_{name}": m["avg"]
                      for name, m in val.get("map_all_by_channel", {}).items()
                  },
              }
          )
        logger.write("epoch", step, record)
        if progress is not None:
          progress.set_postfix(
              epoch=epoch + 1,
              loss=f"{epoch_loss:.4f}",
              val_map=f"{record.get('validation_map', float('nan')):.4f}",
          )
        last = epoch + 1 == tc.num_epochs
        if (epoch + 1) % tc.checkpoint_every_epochs == 0 or last:
          latest.save(step, args=ckpt.save_args(state))
        # The best-by-validation copy is written only when validation improves (orbax
        # would otherwise write every epoch and delete the loser).
        improved = has_validation and record["validation_map"] > best_map
        if jax.process_count() > 1:
          # Every process must make the same save calls (orbax waits for all of them):
          # process 0's verdict stands, should a process's float ever differ.
          improved = bool(multihost_utils.broadcast_one_to_all(np.asarray(improved)))
        if improved:
          best_map = record["validation_map"]
          best.save(step, args=ckpt.save_args(state), metrics={ckpt.METRIC: best_map}, force=True)
        interrupts.check()
  finally:
    # Also on Ctrl-C: the bar ends its line, and a checkpoint still being written in the
    # background is finished (exiting would cut it off), so the last one is kept whole; a
    # Ctrl-C while waiting for it is deferred too (a second one still interrupts).
    try:
      if progress is not None:
        progress.close()
      latest.wait_until_finished()
      best.wait_until_finished()
      latest.close()
      best.close()
      logger.close()
    finally:
      interrupts.restore()
  interrupts.check()  # a Ctrl-C while the last checkpoint was being finished
  return state, method


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, then evaluates the selected checkpoint on the test split (results.json).

  With several processes, each evaluates the same checkpoint on its own and process 0
  writes results.json and the plots."""
  if config.train.multi_host:
    parallel.initialize_distributed()  # before the data loaders could start JAX
  with errors.config_values():
    dataset = data_lib.load_dataset(config.data)
  train(config, workdir, dataset=dataset)
  return evaluate_lib.evaluate(workdir, config=config, dataset=dataset)


def num_params(params) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))
