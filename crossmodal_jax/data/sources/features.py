"""A folder of pre-extracted feature files as a `common.Dataset` (the "features" dataset).

The folder's layout is detected and its files validated and built once into array_record
by the TFDS builder of `feature_builder` (over the readers of `feature_layouts`); `load`
reads the built splits back, a split larger than `data.lazy_mb` lazily
(`crossmodal_jax.data.lazy`). docs/data.md describes the layouts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from absl import logging

from crossmodal_jax import errors
from crossmodal_jax.data import common
from crossmodal_jax.data import lazy
from crossmodal_jax.data import registry


def _read(builder, split: str, lazy_mb: float) -> dict[str, Any]:
  """The split's arrays: loaded whole, or -- when its image and text features take more
  than ``lazy_mb`` MB (``lazy_mb`` >= 0) -- the features as :class:`lazy.LazyColumn`s read
  from the built files on demand, the labels and ``index`` loaded."""
  from crossmodal_jax.data import tfds_io  # pylint: disable=g-import-not-at-top

  source = builder.as_data_source(split=split)
  if lazy_mb < 0 or len(source) == 0:
    return tfds_io.read_split(builder, split, source=source)
  first = source[0]
  row_bytes = 4 * (np.size(first["image"]) + np.size(first["text"]))
  if len(source) * row_bytes <= lazy_mb * 2**20:
    return tfds_io.read_split(builder, split, source=source)
  reader = lazy.RowReader(source, ("image", "text"), eager=("labels", "label"))
  out = dict(reader.eager)
  for k in ("image", "text"):
    out[k] = lazy.LazyColumn(reader, k, np.shape(first[k]), np.float32)
  logging.info(
      "%s split %s: %d rows, %.0f MB of features, read lazily (data.lazy_mb=%g).",
      builder.name,
      split,
      len(source),
      len(source) * row_bytes / 2**20,
      lazy_mb,
  )
  return out


@registry.register("features")
def load(data_config) -> common.Dataset:
  """Builds (once) and reads the feature folder ``data_config.manual_dir``.

  Args:
    data_config: the ``data`` section of a config; reads ``manual_dir``, ``data_dir``,
      ``num_validation``, ``single_label_rows`` (keep only the rows of each split with
      exactly one label, after the validation rows are carved) and ``lazy_mb`` (a split
      whose image and text features take more MB is read lazily: its ``image`` and
      ``text`` are :class:`~crossmodal_jax.data.lazy.LazyColumn`s; negative: never).

  Returns:
    The dataset: float32 ``image`` and ``text``; ``label`` int32 ``[n]`` class ids, or
    float32 ``[n, C]`` multi-hot rows when any row has several labels or none (then
    ``meta["multi_label"]`` is True). Without validation data the validation split is
    empty, with the right shapes.

  Raises:
    UserError: if ``manual_dir`` is not set, or ``single_label_rows`` leaves a split
      that had rows without any; DatasetFileError for bad files.
  """
  # TFDS is imported only when a feature folder is loaded.
  from crossmodal_jax.data import tfds_io  # pylint: disable=g-import-not-at-top
  from crossmodal_jax.data.sources import feature_builder  # pylint: disable=g-import-not-at-top

  manual_dir = tfds_io.require_manual_dir(data_config)
  builder = tfds_io.prepare(
      feature_builder.CrossModalFeatures,
      manual_dir,
      data_config.data_dir,
      num_validation=data_config.num_validation,
      validation_from=data_config.validation_from,
  )
  available = set(builder.info.splits.keys())
  lazy_mb = float(data_config.lazy_mb)
  raw = {s: _read(builder, s, lazy_mb) for s in ("train", "validation", "test") if s in available}
  if data_config.single_label_rows:
    for s, r in raw.items():
      keep = r["label"] >= 0
      if len(keep) and not keep.any():
        raise errors.UserError(
            f"{manual_dir}: data.single_label_rows leaves the {s} split without rows (none "
            "of its rows has exactly one label)"
        )
      raw[s] = {k: v.subset(keep) if lazy.is_lazy(v) else v[keep] for k, v in r.items()}
  multi = any((r["label"] < 0).any() for r in raw.values())

  def split(s: str) -> common.Split:
    if s not in raw:  # no validation data: an empty split of the right shapes
      r = {k: v[:0] for k, v in raw["train"].items()}
    else:
      r = raw[s]
    label = r["labels"].astype(np.float32) if multi else r["label"].astype(np.int32)
    return common.Split(
        {
            "image": r["image"].astype(np.float32),
            "text": r["text"].astype(np.float32),
            "label": label,
        }
    )

  num_classes = raw["train"]["labels"].shape[1]
  return common.Dataset(
      name="features",
      train=split("train"),
      validation=split("validation"),
      test=split("test"),
      num_classes=num_classes,
      meta={"manual_dir": manual_dir, "multi_label": multi},
  )
