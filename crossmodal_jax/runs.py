"""A run's workdir: its config (read, completed, compared) and its checkpointed variables.

A training run lives in a workdir: `config.json`, `checkpoints/{latest,best}`, the
metrics and the results. This module is the one place that knows

- how a workdir's config is read (`load`) and completed with the fields added to the code
  since it was written (`complete`): each absent field at the value that run behaved as,
  so that the library reads every field of a config directly;
- which fields change a run's result (`NEUTRAL`, `EVALUATION`, `LONGER`): a resume may
  change the run-control and evaluation fields and train longer (`check_resumable`), a
  reuse of a finished run only the run-control ones (`differences`);
- how a workdir's model variables are restored without building an optimizer
  (`restore_variables`).

A field is added to the code at the value that keeps the earlier behaviour, so a config
saved before it existed is completed with that value: the common default of
`configs/default.py` for a data, train or eval field, the method file's `model_config()`
for a model field, or, where the default changed together with the field's introduction,
its entry in `BEFORE_FIELD`.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from crossmodal_jax import checkpoint as ckpt
from crossmodal_jax import errors
from crossmodal_jax.data import common
from crossmodal_jax.methods import base

CONFIG = "config.json"

# Fields that steer a run without changing what it trains or what it reports: where the
# data are read from and cached, logging, checkpoint cadence, the scoring chunks.
NEUTRAL = (
    "data.data_dir",
    "data.manual_dir",
    "data.lazy_mb",  # the same rows, loaded or read lazily (statistics agree to ~1e-6)
    "train.checkpoint_every_epochs",
    "train.keep_checkpoints",
    "train.log_every_steps",
    "train.multi_host",
    "train.progress_bar",
    "eval.batch_size",
    "eval.query_block",
    "eval.gallery_block",
    "eval.memory_budget_mb",
)
# Fields that change what evaluation reports, not the trained model.
EVALUATION = ("eval.",)
# A resumed run may train longer than it was started for.
LONGER = ("train.num_epochs",)

# The value a field had, in effect, in configs saved before it existed, where it is not
# the field's default today (the default changed when the field came).
BEFORE_FIELD = {"data.wikipedia_split": "list_order"}


def may_resume_with(field: str) -> bool:
  """Whether a resumed run may have another value of `field` than it started with."""
  return field.startswith(NEUTRAL + EVALUATION + LONGER)


def same_result_with(field: str) -> bool:
  """Whether a finished run with another value of `field` still gives the same result."""
  return field.startswith(NEUTRAL)


def load_saved(workdir: str) -> ml_collections.ConfigDict:
  """The config.json of a workdir as written (lists as tuples), not completed."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    raise errors.MissingError(f"{path} not found: is {workdir!r} a training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(_tuplify(json.load(f)))


def load(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir's run was trained with, completed (`complete`)."""
  return complete(load_saved(workdir))


def _tuplify(x):
  if isinstance(x, dict):
    return {k: _tuplify(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuplify(v) for v in x)
  return x


def flatten(config) -> dict[str, Any]:
  """{"section.field": value} of a config or a nested dict (sequences as tuples)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  flat = {}
  for k, v in config.items():
    if isinstance(v, dict):
      flat.update({f"{k}.{f}": x for f, x in flatten(v).items()})
    else:
      flat[k] = tuple(v) if isinstance(v, list) else v
  return flat


def _configs():
  """The experiment configs (`configs/default.py`), imported when first needed."""
  return importlib.import_module("crossmodal_jax.configs.default")


def _unflatten(flat: dict[str, Any]) -> dict:
  out: dict = {}
  for path, value in flat.items():
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def data_defaults(dataset: str) -> dict[str, Any]:
  """The flat data fields ("text_feature": ...) a data config of `dataset` saved before
  a field existed ran with: the common default, or BEFORE_FIELD's."""
  data = flatten(_configs().data_config(dataset))
  for path, value in BEFORE_FIELD.items():
    section, _, field = path.partition(".")
    if section == "data" and field in data:
      data[field] = value
  return data


def defaults_then(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The flat values a config built by `configs/default.py` had for the fields it did not
  have yet: the common data, train and eval defaults of its method, dataset and preset,
  then BEFORE_FIELD's, then the method file's `model_config()`. Empty for a config without
  `method` and `data.name` (not built by that file)."""
  if "method" not in config or "data" not in config or "name" not in config["data"]:
    return {}
  default = _configs()
  preset = config.get("preset", "full")
  common = default.common_config(config["method"], config["data"]["name"], preset)
  out = flatten(common)
  out.update({k: v for k, v in BEFORE_FIELD.items() if k in out})
  try:
    model_config = getattr(default.config_module(config["method"]), "model_config", None)
  except ValueError:  # a method without a config file (defined in code): no model defaults
    model_config = None
  if model_config is not None:
    out.update({f"model.{k}": v for k, v in flatten(model_config()).items()})
  return out


def complete(saved: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A saved config with the fields added to the code since it was written, each at the
  value that run behaved as (`defaults_then`); saved values always win."""
  flat = flatten(saved)
  absent = {k: v for k, v in defaults_then(saved).items() if k not in flat}
  if not absent:
    return saved
  return ml_collections.ConfigDict(_unflatten({**absent, **flat}))


def differences(before, now, may_differ=same_result_with) -> list[str]:
  """The fields (flat paths) whose values differ between an earlier run's config (`before`,
  completed first) and `now`, except those `may_differ` allows. A field that `before`
  lacks even after completion (a field no config file defines) counts as unchanged."""
  if isinstance(before, dict):
    before = ml_collections.ConfigDict(before)
  b, n = flatten(complete(before)), flatten(now)
  return sorted(k for k in set(b) | set(n) if k in b and b.get(k) != n.get(k) and not may_differ(k))


def check_resumable(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises if workdir's checkpoints were trained with another model, data or recipe:
  only the fields `may_resume_with` allows may differ from its (completed) config.json.

  Raises:
    UserError: naming each differing field with its value before and now.
  """
  if not ckpt.has_steps(os.path.join(workdir, "checkpoints", ckpt.LATEST)):
    return
  if not os.path.exists(os.path.join(workdir, CONFIG)):
    return
  before = load(workdir)
  changed = differences(before, config, may_resume_with)
  if changed:
    b, n = flatten(before), flatten(config)
    diffs = "; ".join(f"{k}: {b.get(k)!r} -> {n.get(k)!r}" for k in changed)
    raise errors.UserError(
        f"{workdir} holds checkpoints of a different run ({diffs}). Resume with its "
        f"config.json, or train in a new workdir."
    )


def abstract_variables(method: base.Method, split: common.Split, seed: int = 0) -> Any:
  """The structure of `method`'s variables (shapes and dtypes only; nothing computed)."""
  return jax.eval_shape(method.init, jax.random.key(seed), method.init_batch(split))


def restore_variables(
    workdir: str,
    method: base.Method,
    split: common.Split,
    checkpoint: str = "best",
    *,
    with_checkpoint: bool = False,
) -> tuple[Any, int] | tuple[Any, int, str]:
  """(variables, step) of `checkpoint` ("best", "latest" or a step number) in workdir.

  Only the model variables are read: no optimizer is built or restored. "best" falls back
  to the latest save, with a warning, when the run has no best-by-validation checkpoint
  (no validation split); with `with_checkpoint`, the result is (variables, step, the
  checkpoint read): `checkpoint` itself, or "latest" where "best" fell back to it.

  Raises:
    MissingError: (a FileNotFoundError) when there is no such checkpoint;
    UserError: when `checkpoint` is none of "best", "latest" or a number.
  """
  try:
    directory, step = ckpt.locate(workdir, checkpoint)
  except FileNotFoundError as e:
    raise errors.MissingError(str(e)) from e
  except ValueError as e:
    raise errors.UserError(str(e)) from e
  used = checkpoint
  if checkpoint == ckpt.BEST and not directory.endswith(ckpt.BEST):
    used = ckpt.LATEST
    logging.warning(
        "No best-by-validation checkpoint in %s (no validation split?); using the latest.",
        os.path.dirname(directory),
    )
  with errors.config_values():  # the method's initialisation checks the model fields
    target = abstract_variables(method, split)
  _check_shapes(directory, step, target)
  variables = ckpt.restore_variables(directory, step, target)
  return (variables, step, used) if with_checkpoint else (variables, step)


class CheckpointMismatchError(errors.UserError):
  """A checkpoint's variables have other shapes than the model built from the config and
  the data (other feature sizes, other layer widths)."""


def _check_shapes(directory: str, step: int, target: Any):
  """Raises CheckpointMismatchError naming the first variable whose shape in the
  checkpoint differs from `target`'s, before orbax is asked to restore it.

  Reads the shapes from the metadata of the checkpoint's "variables" item (the layout
  `checkpoint.save_args` writes); if that cannot be read, the restore itself reports.
  """
  try:
    saved = ocp.StandardCheckpointHandler().metadata(
        epath.Path(directory) / str(step) / "variables"
    )
    saved = {
        jax.tree_util.keystr(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(dict(saved))[0]
    }
  except Exception:  # pylint: disable=broad-except
    return
  for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
    name = jax.tree_util.keystr(path)
    if name in saved and saved[name] != tuple(leaf.shape):
      raise CheckpointMismatchError(
          f"The checkpoint {directory}/{step} does not fit this model and data: "
          f"{name} is {saved[name]} there but {tuple(leaf.shape)} here (a config or "
          "features other than the run's?)."
      )
