"""TF-IDF weighting of bag-of-words counts, fitted on the training split.

Follows scikit-learn's defaults (``TfidfTransformer``): smooth idf
``log((1 + n) / (1 + df)) + 1`` fitted on training counts (:func:`fit_idf`), raw (or
optionally ``1 + log(tf)``) term frequencies, rows L2-normalised (:func:`tfidf`); all-zero
rows stay zero. Plain numpy, deterministic.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_idf", "tfidf"]


def fit_idf(counts: np.ndarray) -> np.ndarray:
  """Smooth inverse document frequency, as scikit-learn's ``TfidfTransformer`` default.

  Args:
    counts: ``[n, V]`` training term counts (e.g.
      :func:`crossmodal_jax.data.text.vocab.bag_of_words`).

  Returns:
    ``[V]`` float32 ``idf = log((1 + n) / (1 + df)) + 1`` where ``df`` is the number of
    rows in which the term occurs.
  """
  counts = np.asarray(counts)
  if counts.ndim != 2:
    raise ValueError(f"counts must be 2-D [n, V], got shape {counts.shape}")
  n = counts.shape[0]
  df = np.count_nonzero(counts, axis=0)
  return (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)


def tfidf(
    counts: np.ndarray,
    idf: np.ndarray,
    sublinear_tf: bool = False,
    norm: str | None = "l2",
) -> np.ndarray:
  """TF-IDF features.

  Args:
    counts: ``[n, V]`` term counts.
    idf: ``[V]`` from :func:`fit_idf` (fitted on the training split).
    sublinear_tf: use ``1 + log(tf)`` for ``tf > 0`` instead of ``tf``.
    norm: ``"l2"`` (default), ``"l1"`` or ``None``: row normalisation; rows that are all
      zero stay zero.

  Returns:
    ``[n, V]`` float32 array.
  """
  x = np.asarray(counts, dtype=np.float64)
  idf = np.asarray(idf, dtype=np.float64)
  if x.ndim != 2 or idf.shape != (x.shape[1],):
    raise ValueError(f"shapes do not match: counts {x.shape}, idf {idf.shape}")
  if sublinear_tf:
    x = np.where(x > 0, 1.0 + np.log(np.where(x > 0, x, 1.0)), 0.0)
  x = x * idf
  if norm == "l2":
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
  elif norm == "l1":
    norms = np.abs(x).sum(axis=1)
  elif norm is None:
    norms = None
  else:
    raise ValueError(f"norm must be 'l2', 'l1' or None, got {norm!r}")
  if norms is not None:
    x = x / np.where(norms > 0, norms, 1.0)[:, None]
  return x.astype(np.float32)
