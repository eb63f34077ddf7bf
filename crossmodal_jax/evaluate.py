"""Evaluation: encode each item once, score blockwise, compute the literature's metrics.

`evaluate(workdir)` restores a trained checkpoint (the best by validation mAP by
default), evaluates the test split in both directions (image -> text, text -> image;
queries = test items of one modality, gallery = test items of the other) and writes
`results.json` plus PNG plots of the precision-recall and precision-scope curves.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from crossmodal_jax import checkpoint as ckpt
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import methods
from crossmodal_jax import metrics
from crossmodal_jax import scoring
from crossmodal_jax.data import common
from crossmodal_jax.methods import base

DIRECTIONS = base.DIRECTIONS


@functools.lru_cache(maxsize=16)
def _jitted_encoders(method: base.Method):
  # Cached per method so per-epoch validation does not retrace the encoders.
  return jax.jit(method.encode_image), jax.jit(method.encode_text)


def split_channels(method: base.Method, variables: Any, split: common.Split, eval_config) -> Any:
  """The score channels of every (image, text) pair of a split: `method.score`'s pytree,
  each channel [n_images, n_texts], every item encoded once (the encoders jitted once per
  method)."""
  return scoring.split_channels(
      method, variables, split.arrays, eval_config, _jitted_encoders(method)
  )


def ranking_scores(method: base.Method, variables: Any, channels: Any) -> dict[str, np.ndarray]:
  """Each direction's ranking scores from a split's score channels.

  Returns:
    {"i2t": [n_images, n_texts], "t2i": [n_texts, n_images]} float32 arrays.
  """
  oriented = {"i2t": channels, "t2i": jax.tree.map(np.transpose, channels)}
  return {
      d: np.asarray(method.retrieval_scores(variables, oriented[d], d), np.float32)
      for d in DIRECTIONS
  }


def score_split(
    method: base.Method, variables: Any, split: common.Split, eval_config
) -> dict[str, np.ndarray]:
  """The ranking scores of each direction for every (image, text) pair of a split.

  Returns:
    {"i2t": [n_images, n_texts], "t2i": [n_texts, n_images]} float32 arrays.
  """
  return ranking_scores(method, variables, split_channels(method, variables, split, eval_config))


def evaluate_split(
    method: base.Method,
    variables: Any,
    split: common.Split,
    eval_config,
    full: bool = True,
    channels: Any = None,
) -> dict[str, Any]:
  """mAP@ALL (i2t, t2i, avg) and, if `full`, mAP@R, P@K and the curves.

  With `full`, a method whose `score` gives several named channels (MCSM's two spaces)
  also gets each channel's mAP@ALL, ranked by that channel alone ("map_all_by_channel").
  Each direction's scores are sorted once per query for all of its metrics. `channels`,
  if given, are the split's score channels already computed with `variables`
  (`split_channels`), so a split scored for calibration is not scored again.
  """
  if channels is None:
    channels = split_channels(method, variables, split, eval_config)
  scores = ranking_scores(method, variables, channels)
  labels = split["label"]
  result = metrics.split_metrics(
      scores, labels, eval_config.map_r, eval_config.precision_ks, full=full
  )
  if full and isinstance(channels, dict) and len(channels) > 1:
    # Several named score channels (MCSM's two spaces): each one's mAP@ALL on its own,
    # next to the ranking that combines them.
    result["map_all_by_channel"] = {}
    for name, channel in channels.items():
      channel = np.asarray(channel, np.float32)
      one = {"i2t": channel, "t2i": channel.T}
      result["map_all_by_channel"][name] = metrics.split_metrics(one, labels, full=False)["map_all"]
  return result


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training workdir was run with (its config.json)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise errors.MissingError(f"{path} not found: is {workdir!r} a training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(_tuplify(json.load(f)))


def _tuplify(x):
  if isinstance(x, dict):
    return {k: _tuplify(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuplify(v) for v in x)
  return x


def abstract_variables(method: base.Method, split: common.Split, seed: int = 0) -> Any:
  """The structure of `method`'s variables (shapes and dtypes only; nothing computed)."""
  return jax.eval_shape(method.init, jax.random.key(seed), method.init_batch(split))


def restore_variables(
    workdir: str, method: base.Method, split: common.Split, checkpoint: str = "best"
) -> tuple[Any, int]:
  """(variables, step) of `checkpoint` ("best", "latest" or a step number) in workdir.

  Only the model variables are read: no optimizer is built or restored.

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
  if checkpoint == ckpt.BEST and not directory.endswith(ckpt.BEST):
    logging.warning(
        "No best-by-validation checkpoint in %s (no validation split?); using the latest.",
        os.path.dirname(directory),
    )
  with errors.config_values():  # the method's initialisation checks the model fields
    target = abstract_variables(method, split)
  return ckpt.restore_variables(directory, step, target), step


def evaluate(
    workdir: str,
    config: ml_collections.ConfigDict | None = None,
    dataset: common.Dataset | None = None,
    checkpoint: str | None = None,
    split: str = "test",
    plots: bool = True,
) -> dict[str, Any]:
  """Evaluates a trained workdir on `split`; writes results.json and plots there."""
  config = config if config is not None else load_config(workdir)
  if dataset is None:
    with errors.config_values():
      dataset = data_lib.load_dataset(config.data)
  if split not in dataset.splits:
    raise errors.UserError(f"Unknown split {split!r}; choose one of {tuple(dataset.splits)}.")
  with errors.config_values():
    method = methods.get_method(config, dataset.dims(), dataset.meta)
  if checkpoint is None:
    checkpoint = ckpt.BEST if config.eval.select_by == "validation_map" else ckpt.LATEST
  variables, step = restore_variables(workdir, method, dataset.train, checkpoint)
  result = evaluate_split(method, variables, dataset.splits[split], config.eval)
  result.update(
      {
          "split": split,
          "checkpoint_step": int(step),
          "checkpoint": checkpoint,
          "method": config.method,
          "dataset": dataset.name,
          "num_queries": len(dataset.splits[split]),
      }
  )
  if jax.process_index() == 0:
    path = os.path.join(workdir, "results.json" if split == "test" else f"results_{split}.json")
    _atomic_write_json(path, result)
    if plots:
      plot_curves(result, workdir, prefix="" if split == "test" else f"{split}_")
  logging.info(
      "%s mAP@ALL i2t %.4f t2i %.4f avg %.4f (checkpoint step %d)",
      split,
      result["map_all"]["i2t"],
      result["map_all"]["t2i"],
      result["map_all"]["avg"],
      step,
  )
  return result


def _atomic_write_json(path: str, obj: Any):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def plot_curves(result: dict[str, Any], workdir: str, prefix: str = "") -> list[str]:
  """PR and precision-scope curves (both directions) as PNGs; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  title = f"{result.get('method', '')} on {result.get('dataset', '')} ({result.get('split', '')})"
  names = {"i2t": "Image → Text", "t2i": "Text → Image"}
  paths = []
  fig, ax = plt.subplots(figsize=(5, 4))
  for d in DIRECTIONS:
    c = result["pr_curve"][d]
    ax.plot(
        c["recall"],
        c["precision"],
        marker="o",
        ms=3,
        label=f"{names[d]} (mAP {result['map_all'][d]:.3f})",
    )
  ax.set(
      xlabel="Recall",
      ylabel="Precision",
      xlim=(0, 1),
      ylim=(0, 1),
      title=f"Precision-recall: {title}",
  )
  ax.grid(alpha=0.3)
  ax.legend()
  paths.append(os.path.join(workdir, f"{prefix}pr_curve.png"))
  fig.tight_layout()
  fig.savefig(paths[-1], dpi=120)
  plt.close(fig)
  fig, ax = plt.subplots(figsize=(5, 4))
  scopes = result["precision_scope"]["scopes"]
  for d in DIRECTIONS:
    ax.plot(scopes, result["precision_scope"][d], marker="o", ms=3, label=names[d])
  ax.set(
      xlabel="Scope K (top-K retrieved)",
      ylabel="Precision@K",
      ylim=(0, 1),
      title=f"Precision-scope: {title}",
  )
  ax.grid(alpha=0.3)
  ax.legend()
  paths.append(os.path.join(workdir, f"{prefix}precision_scope.png"))
  fig.tight_layout()
  fig.savefig(paths[-1], dpi=120)
  plt.close(fig)
  return paths
