"""Sparse rows in a static shape: each row's non-zeros as (ids, values), padded.

A sparse float matrix x [n, V] (TF-IDF over a vocabulary, say: a Wikipedia article has
~150 of 10,000 words) becomes ids int32 [n, L] (the columns of each row's non-zeros, in
increasing order) and values float32 [n, L] (their entries), L = the most non-zeros of
any row (or a given larger length), padded with id 0 and value 0. A padded entry adds
0 * W[0] to x @ W, so `layers.sparse_dense` computes x @ W exactly from this form.
`with_padded_rows` adds the form of a split's "text" under IDS_KEY / VALUES_KEY.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

IDS_KEY = "text_ids"
VALUES_KEY = "text_values"


def max_nonzeros(x: np.ndarray) -> int:
  """The most non-zeros in a row of x [n, V] (at least 1, so L is never 0)."""
  return max(int(np.max(np.count_nonzero(x, axis=1), initial=0)), 1)


def to_padded(x: np.ndarray, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """x [n, V] -> (ids int32 [n, L], values float32 [n, L]) of each row's non-zeros.

  Args:
    x: a 2-D array.
    length: L; None: `max_nonzeros(x)`.

  Raises:
    ValueError: when x is not 2-D or a row has more than `length` non-zeros.
  """
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"Sparse rows need a 2-D array, got shape {x.shape}.")
  longest = max_nonzeros(x)
  length = longest if length is None else length
  if longest > length:
    raise ValueError(f"A row has {longest} non-zeros, more than the length {length}.")
  rows, cols = np.nonzero(x)  # row-major: each row's columns in increasing order
  counts = np.bincount(rows, minlength=x.shape[0])
  starts = np.cumsum(counts) - counts
  slot = np.arange(len(rows)) - starts[rows]
  ids = np.zeros((x.shape[0], length), np.int32)
  values = np.zeros((x.shape[0], length), np.float32)
  ids[rows, slot] = cols
  values[rows, slot] = x[rows, cols]
  return ids, values


def to_dense(ids: np.ndarray, values: np.ndarray, dim: int) -> np.ndarray:
  """The [n, dim] float32 matrix of padded rows (ids, values) (inverse of `to_padded`)."""
  x = np.zeros((ids.shape[0], dim), np.float32)
  np.add.at(x, (np.arange(ids.shape[0])[:, None], ids), values)
  return x


def with_padded_rows(
    arrays: Mapping[str, np.ndarray], length: int | None = None
) -> dict[str, np.ndarray]:
  """`arrays` plus IDS_KEY / VALUES_KEY: the padded rows of arrays["text"] (`to_padded`)."""
  ids, values = to_padded(arrays["text"], length)
  return {**arrays, IDS_KEY: ids, VALUES_KEY: values}
