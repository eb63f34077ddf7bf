"""Datasets: `load_dataset(data_config)` returns the `common.Dataset` of any configured one.

`data_config.name` picks the loader from the dataset registry (`registry`), where the
modules of `sources` register theirs:

- "synthetic": `sources.synthetic`, generated in memory from a seed (no files);
- "wikipedia": `sources.wikipedia`, the Rasiwasia et al. folder (`data_config.manual_dir`)
  built once into array_record by the TFDS builder of `sources.wikipedia_builder` under
  `data_config.data_dir`, with text features fitted on train only;
- "features": `sources.features`, a folder of feature files (the DRSL / DSCMR .mat
  layout, .npy, HDF5, Pascal VOC 2007), built by `sources.feature_builder` over the
  readers of `sources.feature_layouts`, with optional raw texts (`sources.feature_texts`)
  whose text features are made as Wikipedia's (`text.features`).

With `data_config.image_power` p != 1 each image feature x becomes sign(x) |x|^p
(`power_normalize`; p = 0.5 on histograms is the Hellinger map of RootSIFT and of
Perronnin et al.'s power normalisation). With `data_config.standardize_image` the image
features are then standardised with training-split statistics (`standardize`). A
feature-file split larger than `data_config.lazy_mb` keeps its features in the built
files (`lazy.LazyColumn`); both maps of such a split are applied as each batch is read.

What the loading fitted on the training data (the text pipeline, the image power and
statistics) is the dataset's `meta["preprocessing"]`, a `preprocessing.Preprocessing`
that makes the arrays of new raw inputs as the dataset's were made, and that a training
run saves with it.

The other modules: `common` (the `Split` / `Dataset` form), `preprocessing` (above),
`tfds_io` (build and read the
TFDS datasets without TensorFlow), `lazy` (columns read from the built files), and `text`,
the text processing: `features` (raw texts -> text arrays, fitted on train), `tokens`,
`vocab`, `tfidf`, `svd`, `lda`, `glove`, `word_graph` (SCANet's), `sparse_rows`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from crossmodal_jax import errors
from crossmodal_jax.data import common
from crossmodal_jax.data import lazy
from crossmodal_jax.data import preprocessing
from crossmodal_jax.data import registry
from crossmodal_jax.data import sources  # pylint: disable=unused-import  (registers the datasets)
from crossmodal_jax.data.sources import wikipedia

DATASETS = registry.names()
TEXT_FEATURES = wikipedia.TEXT_FEATURES


def load_dataset(data_config) -> common.Dataset:
  """Loads (building first if needed) the dataset named by `data_config.name`; its
  meta["preprocessing"] holds what the loading fitted (the loader's, with the image
  power and statistics)."""
  load = registry.loader(data_config.name)
  power = data_config.image_power
  _check_power(power)  # before a dataset is built
  dataset = load(data_config)
  fitted = dataset.meta.get(preprocessing.META_KEY) or preprocessing.Preprocessing()
  if power != 1.0:
    dataset = power_normalize(dataset, "image", power)
    fitted = dataclasses.replace(fitted, power=power)
  if data_config.standardize_image:
    mean, std = _statistics(dataset.train["image"])
    dataset = _map_column(dataset, "image", lambda x: preprocessing.standardized(x, mean, std))
    fitted = dataclasses.replace(fitted, mean=mean, std=std)
  meta = {**dataset.meta, preprocessing.META_KEY: fitted}
  return dataclasses.replace(dataset, meta=meta)


def _map_column(dataset: common.Dataset, key: str, fn) -> common.Dataset:
  """`fn` applied to `key` of every split; a lazy column stays lazy (applied per read)."""

  def apply(split: common.Split) -> common.Split:
    arrays = dict(split.arrays)
    x = arrays[key]
    arrays[key] = x.map(fn) if lazy.is_lazy(x) else fn(x)
    return common.Split(arrays)

  return dataclasses.replace(
      dataset,
      train=apply(dataset.train),
      validation=apply(dataset.validation),
      test=apply(dataset.test),
  )


def _check_power(power: float):
  if not 0.0 < power <= 1.0:  # also False for NaN
    raise errors.UserError(f"data.image_power must be in (0, 1], got {power}.")


def power_normalize(dataset: common.Dataset, key: str, power: float) -> common.Dataset:
  """sign(x) |x|^power of every entry of `key` (float32), a signed power that also maps
  negative features; power in (0, 1] damps a histogram's large bins.

  Raises:
    UserError: when power is not in (0, 1].
  """
  _check_power(power)
  return _map_column(dataset, key, lambda x: preprocessing.power(x, power))


def _statistics(x) -> tuple[np.ndarray, np.ndarray]:
  """The training column statistics of `standardize` (a constant column's std is 1)."""
  mean, std = lazy.column_stats(x)
  return mean, np.where(std > 1e-8, std, 1.0)


def standardize(dataset: common.Dataset, key: str) -> common.Dataset:
  """Zero-mean, unit-variance columns of `key`, with statistics of the training split."""
  mean, std = _statistics(dataset.train[key])
  return _map_column(dataset, key, lambda x: preprocessing.standardized(x, mean, std))
