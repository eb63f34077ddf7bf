"""Training state and its orbax checkpoints.

A checkpoint step holds two items, so that evaluation restores a model without building
an optimizer:

- "variables": the model variables ({"params": ..., "batch_stats": ..., ...});
- "train": {"step", "opt_state"}, what resuming training needs beyond them (and, when
  the run keeps an exponential moving average of the parameters, the raw "params": the
  "variables" item then holds the average, which validation and evaluation use).

A workdir keeps two managers under `checkpoints/`: `latest` (the last `keep` saves) and
`best` (the one with the best validation mAP).
"""

from __future__ import annotations

import os
from typing import Any

import flax
import jax
import orbax.checkpoint as ocp

LATEST, BEST = "latest", "best"
METRIC = "validation_map"


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  collections: Any  # non-param variables, e.g. {"batch_stats": ...}
  opt_state: Any
  # The parameters' exponential moving average (`train.ema_decay` > 0), else None.
  ema: Any = None

  @property
  def variables(self) -> dict[str, Any]:
    """The model's variables as validation, checkpoints and evaluation see them: with an
    EMA, its averaged parameters; the training step reads `params`."""
    return {"params": self.params if self.ema is None else self.ema, **self.collections}


def split_variables(variables) -> tuple[Any, dict[str, Any]]:
  """(params, the other collections) of a variables dict."""
  return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def _multiprocessing(name: str) -> ocp.options.MultiprocessingOptions:
  """Every process calls every manager; process 0 (orbax's primary host) creates and
  finalizes the folders. `latest` and `best` save the same step at once (asynchronously),
  so their barriers between processes get distinct prefixes: orbax keys some by the step
  alone (`_async_commit_complete.<step>`), and the second manager's would collide with the
  first's ("Barrier ... is already ongoing", then a timeout)."""
  return ocp.options.MultiprocessingOptions(primary_host=0, barrier_sync_key_prefix=name)


def managers(workdir: str, keep: int) -> tuple[ocp.CheckpointManager, ocp.CheckpointManager]:
  """The (latest, best) checkpoint managers of a training workdir (every process's)."""
  root = os.path.join(os.path.abspath(workdir), "checkpoints")
  latest = ocp.CheckpointManager(
      os.path.join(root, LATEST),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=True, multiprocessing_options=_multiprocessing(LATEST)
      ),
  )
  best = ocp.CheckpointManager(
      os.path.join(root, BEST),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=1,
          create=True,
          best_fn=lambda m: m[METRIC],
          best_mode="max",
          keep_checkpoints_without_metrics=False,
          multiprocessing_options=_multiprocessing(BEST),
      ),
  )
  return latest, best


def _train_item(state: TrainState) -> dict[str, Any]:
  """What resuming needs beyond the "variables" item (see the module docstring)."""
  item = {"step": state.step, "opt_state": state.opt_state}
  if state.ema is not None:
    item["params"] = state.params
  return item


def save_args(state: TrainState) -> ocp.args.Composite:
  return ocp.args.Composite(
      variables=ocp.args.StandardSave(state.variables),
      train=ocp.args.StandardSave(_train_item(state)),
  )


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore_state(manager: ocp.CheckpointManager, step: int, target: TrainState) -> TrainState:
  """Restores `step` into the structure, dtypes and shardings of `target`."""
  restored = manager.restore(
      step,
      args=ocp.args.Composite(
          variables=ocp.args.StandardRestore(_abstract(target.variables)),
          train=ocp.args.StandardRestore(_abstract(_train_item(target))),
      ),
  )
  params, collections = split_variables(restored["variables"])
  train = restored["train"]
  ema = None
  if target.ema is not None:
    params, ema = train["params"], params
  return TrainState(
      step=train["step"],
      params=params,
      collections=collections,
      opt_state=train["opt_state"],
      ema=ema,
  )


def _steps(directory: str) -> list[int]:
  """The saved steps in a checkpoint manager's folder, ascending."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def has_steps(directory: str) -> bool:
  return bool(_steps(directory))


def locate(workdir: str, checkpoint: str) -> tuple[str, int]:
  """(directory, step) of `checkpoint` in a workdir: "best", "latest" or a step number.

  "best" falls back to the latest save when there is no best-by-validation one (a run
  without a validation split). A step number is looked up in both folders.

  Raises:
    FileNotFoundError: naming the folders searched, when there is no such checkpoint.
  """
  root = os.path.join(os.path.abspath(workdir), "checkpoints")
  latest_dir, best_dir = os.path.join(root, LATEST), os.path.join(root, BEST)
  if checkpoint in (BEST, LATEST):
    for directory in ([best_dir] if checkpoint == BEST else []) + [latest_dir]:
      steps = _steps(directory)
      if steps:
        if directory == best_dir:
          with ocp.CheckpointManager(
              directory,
              options=ocp.CheckpointManagerOptions(create=False, best_fn=lambda m: m[METRIC]),
          ) as manager:
            step = manager.best_step()
          return directory, steps[-1] if step is None else step
        return directory, steps[-1]
    raise FileNotFoundError(f"No checkpoint under {root}.")
  try:
    step = int(checkpoint)
  except ValueError:
    raise ValueError(
        f"Unknown checkpoint {checkpoint!r}: use 'best', 'latest' or a step number."
    ) from None
  for directory in (latest_dir, best_dir):
    if step in _steps(directory):
      return directory, step
  found = sorted(set(_steps(latest_dir) + _steps(best_dir)))
  raise FileNotFoundError(
      f"No checkpoint at step {step} under {root} (latest/ or best/); steps there: {found}."
  )


def restore_variables(directory: str, step: int, abstract_variables: Any) -> Any:
  """The model variables of `step` in `directory`, without any optimizer state.

  Args:
    directory: a checkpoint manager's folder (from `locate`).
    step: the step to restore.
    abstract_variables: their structure (e.g. `jax.eval_shape` of the method's `init`),
      as jax.ShapeDtypeStruct leaves; they are placed on the first local device.
  """
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract_variables
  )
  with ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(create=False)
  ) as manager:
    restored = manager.restore(
        step, args=ocp.args.Composite(variables=ocp.args.StandardRestore(target))
    )
  return restored["variables"]
