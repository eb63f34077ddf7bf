"""HCMSL's semi-supervised data: which training rows keep their labels, and batches in
which only those rows carry them.

`labeled_rows` fixes the labelled subset from the seed alone (never the epoch);
`semi_supervised_batches` hides the other rows' labels (`hide_labels`) and marks the
labelled rows, over all rows or the labelled ones alone. Every epoch's batches are a
function of (seed, epoch) (`sampling.epoch_rng`), read ahead as the default sampler's
(`sampling.gather_batches`).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from crossmodal_jax import sampling
from crossmodal_jax.data import common


def labeled_rows(num_rows: int, fraction: float, seed: int) -> np.ndarray:
  """bool [num_rows]: which rows of a split keep their labels, a function of
  (num_rows, fraction, seed) alone (never of the epoch).

  round(fraction * num_rows) rows (at least one) are labelled: the first ones of a
  permutation seeded by `seed`, so with one seed a smaller fraction labels a subset of
  the rows a larger one labels. The draw is uniform over rows, not stratified by class.

  Raises:
    ValueError: unless 0 < fraction <= 1.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"The labelled fraction must be in (0, 1], got {fraction}.")
  count = max(1, int(round(fraction * num_rows)))
  order = np.random.default_rng(np.random.SeedSequence([seed, 0x1AB31])).permutation(num_rows)
  labeled = np.zeros(num_rows, bool)
  labeled[order[:count]] = True
  return labeled


def hide_labels(labels: np.ndarray, labeled: np.ndarray) -> np.ndarray:
  """`labels` with the rows where `labeled` is False replaced by "no label": -1 for int
  labels [n], an all-zero row for multi-hot labels [n, C]."""
  labels = np.array(labels, copy=True)
  labels[~np.asarray(labeled, bool)] = -1 if labels.ndim == 1 else 0
  return labels


def semi_supervised_batches(
    split: common.Split,
    keys: tuple[str, ...],
    batch_size: int,
    seed: int,
    epoch: int,
    labeled: np.ndarray,
    labeled_only: bool = False,
    drop_remainder: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
  """Batches of `split`'s `keys` in which only the `labeled` rows carry their labels.

  Each batch has the arrays of `keys` plus "labeled" (float32 [batch], 1 for a row that
  keeps its label); "label" (if among `keys`) is hidden on the other rows (`hide_labels`),
  so nothing downstream can read a hidden label.

  With `labeled_only` False the batches are a seeded permutation of all rows (as
  `sampling.permutation_batches`). With `labeled_only` True they hold labelled rows
  alone: the epoch draws as many rows as the split has, from successive seeded
  permutations of the labelled rows, so it has the same number and shapes of batches as
  the whole split (a run on the labelled rows alone takes as many steps as one on all
  rows). Either way the batches are a function of (split, labeled, seed, epoch) only. The
  last partial batch is dropped unless `drop_remainder` is False.
  """
  labeled = np.asarray(labeled, bool)
  if labeled.shape != (len(split),):
    raise ValueError(f"labeled has shape {labeled.shape}; the split has {len(split)} rows.")
  rng = sampling.epoch_rng(seed, epoch)
  n = len(split)
  if labeled_only:
    rows = np.flatnonzero(labeled)
    if rows.size == 0:
      raise ValueError("No labelled row to train on (labeled_only with no labelled row).")
    reps = -(-n // rows.size)
    order = np.concatenate([rows[rng.permutation(rows.size)] for _ in range(reps)])[:n]
  else:
    order = rng.permutation(n)
  arrays = {k: split[k] for k in keys}
  if "label" in arrays:
    arrays["label"] = hide_labels(arrays["label"], labeled)
  arrays["labeled"] = labeled.astype(np.float32)
  stop = n - n % batch_size if drop_remainder else n
  batches = [order[start : start + batch_size] for start in range(0, stop, batch_size)]
  yield from sampling.gather_batches(batches, arrays)
