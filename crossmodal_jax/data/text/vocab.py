"""Vocabulary, bag of words and word-id sequences: token lists -> count or id arrays.

* Vocabulary (:class:`Vocabulary`, :func:`build_vocabulary`). Built from the TRAINING
  split only (the caller passes only training token lists), after removing stop words;
  words are ordered by corpus frequency (total count), ties broken alphabetically, so the
  result does not depend on dict or file order. Column ``j`` of a bag-of-words matrix
  (:func:`bag_of_words`) is ``vocab.words[j]``.
* Sequence ids (:func:`word_id_sequences`). ``PAD_ID = 0``, ``OOV_ID = 1``, and
  ``vocab.words[i]`` has id ``i + 2``; a word-vector table indexed by these ids (e.g.
  :func:`crossmodal_jax.data.text.glove.glove_table`) therefore has
  :func:`sequence_vocab_size` ``= len(vocab) + 2`` rows. Stop words are not in the
  vocabulary, so in sequences they become ``OOV_ID`` unless ``drop_oov=True``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
from collections.abc import Iterable, Sequence

import numpy as np

from crossmodal_jax.data.text import tokens as tokens_lib

__all__ = [
    "PAD_ID",
    "OOV_ID",
    "Vocabulary",
    "build_vocabulary",
    "sequence_vocab_size",
    "bag_of_words",
    "word_id_sequences",
]

PAD_ID = 0
"""Sequence id of padding (its word-vector row is all zeros)."""

OOV_ID = 1
"""Sequence id of a token that is not in the vocabulary (stop words included)."""

# A format tag, not an import path: unchanged, so saved vocabularies still load.
_VOCAB_FORMAT = "crossmodal_jax.text.Vocabulary"
_VOCAB_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """An ordered word list: column ``j`` of bag-of-words is ``words[j]``.

  Sequence ids are offset by two (:data:`PAD_ID`, :data:`OOV_ID`): ``words[i]`` has
  sequence id ``i + 2``.

  Attributes:
    words: the words, most frequent first, without duplicates.
  """

  words: tuple[str, ...]

  def __post_init__(self):
    words = tuple(self.words)
    for word in words:
      if not isinstance(word, str) or not word:
        raise ValueError(f"vocabulary words must be non-empty strings, got {word!r}")
    if len(set(words)) != len(words):
      dupes = sorted(w for w, c in collections.Counter(words).items() if c > 1)
      raise ValueError(f"duplicate vocabulary words: {dupes[:10]}")
    object.__setattr__(self, "words", words)

  def __len__(self) -> int:
    return len(self.words)

  def __contains__(self, word: object) -> bool:
    return word in self.index

  @functools.cached_property
  def index(self) -> dict[str, int]:
    """Word -> bag-of-words column id (computed once; do not mutate)."""
    return {word: i for i, word in enumerate(self.words)}

  def to_json(self) -> str:
    """Serialises the vocabulary (e.g. to save it next to a checkpoint)."""
    return json.dumps(
        {"format": _VOCAB_FORMAT, "version": _VOCAB_VERSION, "words": list(self.words)},
        ensure_ascii=False,
    )

  @classmethod
  def from_json(cls, data: str | bytes) -> Vocabulary:
    """Inverse of :meth:`to_json`.

    Raises:
      ValueError: if ``data`` is not a serialised vocabulary.
    """
    obj = json.loads(data)
    if not isinstance(obj, dict) or obj.get("format") != _VOCAB_FORMAT:
      raise ValueError("not a serialised crossmodal_jax Vocabulary")
    if obj.get("version") != _VOCAB_VERSION:
      raise ValueError(f"unsupported Vocabulary version {obj.get('version')!r}")
    return cls(tuple(obj["words"]))


def sequence_vocab_size(vocab: Vocabulary) -> int:
  """Number of sequence ids (rows of a word-vector table): ``len(vocab) + 2``."""
  return len(vocab) + 2


def _as_token_lists(token_lists: Iterable[Sequence[str]]) -> list[Sequence[str]]:
  """Materialises token lists, rejecting raw strings (a common mistake)."""
  if isinstance(token_lists, str):
    raise TypeError("expected a list of token lists, got a str")
  out = list(token_lists)
  for tokens in out:
    if isinstance(tokens, str):
      raise TypeError(
          "expected a list of token lists (e.g. [tokenize(t) for t in texts]), "
          "got a list of strings"
      )
  return out


def build_vocabulary(
    token_lists: Iterable[Sequence[str]],
    max_size: int | None = None,
    min_count: int = 1,
    stopwords: Iterable[str] | None = tokens_lib.DEFAULT_STOPWORDS,
) -> Vocabulary:
  """Builds a vocabulary from the TRAINING split's token lists.

  Args:
    token_lists: one token list per training text (outputs of
      :func:`crossmodal_jax.data.text.tokens.tokenize`). Pass only training texts: words seen
      only in validation/test must not leak in.
    max_size: keep at most this many words (the most frequent); ``None`` keeps all.
    min_count: drop words whose total count in the corpus is below this.
    stopwords: words to exclude (normalised like
      :func:`crossmodal_jax.data.text.tokens.load_stopwords`); ``None`` or empty keeps every
      word.

  Returns:
    The vocabulary, ordered by decreasing total count, ties broken alphabetically.

  Raises:
    ValueError: if ``max_size < 1`` or ``min_count < 1``.
  """
  if max_size is not None and max_size < 1:
    raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
  if min_count < 1:
    raise ValueError(f"min_count must be >= 1, got {min_count}")
  stop = (
      frozenset(tokens_lib.normalize_stopword(w) for w in stopwords) if stopwords else frozenset()
  )
  counts: collections.Counter[str] = collections.Counter()
  for tokens in _as_token_lists(token_lists):
    counts.update(tokens)
  items = [(w, c) for w, c in counts.items() if c >= min_count and w not in stop and w]
  items.sort(key=lambda wc: (-wc[1], wc[0]))
  if max_size is not None:
    items = items[:max_size]
  return Vocabulary(tuple(w for w, _ in items))


def bag_of_words(
    token_lists: Iterable[Sequence[str]], vocab: Vocabulary, dtype=np.float32
) -> np.ndarray:
  """Dense bag-of-words counts.

  Args:
    token_lists: one token list per text.
    vocab: column order; tokens not in it are ignored.
    dtype: output dtype.

  Returns:
    ``[n, len(vocab)]`` array; entry ``(i, j)`` counts ``vocab.words[j]`` in text ``i``.
  """
  token_lists = _as_token_lists(token_lists)
  index = vocab.index
  rows, cols = [], []
  for i, tokens in enumerate(token_lists):
    ids = [index[t] for t in tokens if t in index]
    rows.extend([i] * len(ids))
    cols.extend(ids)
  out = np.zeros((len(token_lists), len(vocab)), dtype=dtype)
  if cols:
    np.add.at(out, (np.asarray(rows, np.intp), np.asarray(cols, np.intp)), 1)
  return out


def word_id_sequences(
    token_lists: Iterable[Sequence[str]],
    vocab: Vocabulary,
    max_len: int,
    drop_oov: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Converts token lists to padded word-id sequences.

  Ids: ``vocab.words[i] -> i + 2``; tokens not in ``vocab`` -> :data:`OOV_ID` (stop
  words are not in a vocabulary built with stop words, so they map to ``OOV_ID`` too);
  padding -> :data:`PAD_ID`.

  Args:
    token_lists: one token list per text.
    vocab: the vocabulary.
    max_len: sequence length; longer texts keep their first ``max_len`` ids.
    drop_oov: skip tokens not in ``vocab`` instead of emitting ``OOV_ID`` (truncation
      applies after skipping).

  Returns:
    ``(ids, mask)``: int32 ``[n, max_len]`` right-padded with ``PAD_ID``, and bool
    ``[n, max_len]``, True at real tokens.
  """
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}")
  token_lists = _as_token_lists(token_lists)
  index = vocab.index
  ids = np.full((len(token_lists), max_len), PAD_ID, dtype=np.int32)
  mask = np.zeros((len(token_lists), max_len), dtype=bool)
  for i, tokens in enumerate(token_lists):
    if drop_oov:
      seq = [index[t] + 2 for t in tokens if t in index]
    else:
      seq = [index[t] + 2 if t in index else OOV_ID for t in tokens]
    seq = seq[:max_len]
    ids[i, : len(seq)] = seq
    mask[i, : len(seq)] = True
  return ids, mask
