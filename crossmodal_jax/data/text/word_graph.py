"""The word graph of SCANet's text model: one graph over the vocabulary, shared by all texts.

SCANet encodes a text as a signal on a fixed word graph (its bag-of-words counts, one value
per vertex) filtered by a Chebyshev graph convolution. The graph is built once per dataset:

- vertices: the ``V`` most frequent training words that have a word vector
  (:func:`graph_vocabulary`; GloVe 6B-50d);
- edges: each word's ``k`` nearest neighbours by cosine similarity of the word vectors
  (itself excluded, ties broken by the lower index), symmetrised (an edge when either word
  is among the other's ``k`` neighbours), binary weights, no self-loops. A zero vector has
  no similarity to anything: it chooses no neighbour and is never chosen (an isolated
  vertex);
- the normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` (``D^-1/2 := 0`` at an isolated
  vertex, so ``L_ii = 1`` for every vertex), its largest eigenvalue ``lambda_max``
  (computed, or assumed, e.g. 2.0 as the original code did), and the rescaled Laplacian
  the Chebyshev recursion uses, ``L~ = 2 L / lambda_max - I``.

:class:`WordGraph` holds ``L~`` as weighted edges (the jraph ``GraphsTuple`` layout):
``(L~ @ x)[i] = sum over edges e with receivers[e] == i of weights[e] * x[senders[e]]``.
:func:`build_word_graph` builds it from word vectors, :func:`cached_word_graph` caches it
under a data folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from absl import logging

from crossmodal_jax import atomic
from crossmodal_jax.data.text import glove
from crossmodal_jax.data.text import tfidf
from crossmodal_jax.data.text import tokens as tokens_lib
from crossmodal_jax.data.text import vocab as vocab_lib

__all__ = [
    "WordGraph",
    "build_word_graph",
    "cached_word_graph",
    "graph_vocabulary",
    "knn_adjacency",
]

_FORMAT_VERSION = 1
_CACHE_SUBDIR = "word_graphs"
# Rows of the similarity matrix computed at a time: 512 x V float64 (41 MB at V = 10k).
_CHUNK_ROWS = 512
# Below this many vertices lambda_max comes from a dense eigensolver (ARPACK needs n > k).
_DENSE_EIGEN_MAX_NODES = 8


@dataclasses.dataclass(frozen=True)
class WordGraph:
  """The rescaled Laplacian ``L~ = 2 L / lambda_max - I`` of a word graph, as edges.

  ``(L~ @ x)[i] = sum_{e: receivers[e] == i} weights[e] * x[senders[e]]``. Every vertex
  has a self edge (sender == receiver) carrying the diagonal ``2 / lambda_max - 1`` (kept
  even when it is 0, with ``lambda_max = 2``, so the edge set does not depend on it); the
  other edges are the graph's (both directions), weight ``-2 / lambda_max / sqrt(d_i d_j)``.
  Edges are sorted by (receiver, sender).

  Attributes:
    senders: int32 ``[E]``, the column of each entry of ``L~``.
    receivers: int32 ``[E]``, the row of each entry.
    weights: float32 ``[E]``, the entries.
    num_nodes: ``V``, the number of vertices (words).
    lambda_max: the largest eigenvalue of ``L`` used in the rescaling.
    num_neighbors: ``k``, the nearest neighbours each word chose.
  """

  senders: np.ndarray
  receivers: np.ndarray
  weights: np.ndarray
  num_nodes: int
  lambda_max: float
  num_neighbors: int

  @property
  def num_edges(self) -> int:
    """``E``: the entries of ``L~`` (graph edges in both directions plus ``V`` self edges)."""
    return int(len(self.weights))

  def dense(self) -> np.ndarray:
    """``L~`` as a dense float64 ``[V, V]`` matrix (for tests and small graphs)."""
    out = np.zeros((self.num_nodes, self.num_nodes), dtype=np.float64)
    np.add.at(out, (self.receivers, self.senders), self.weights.astype(np.float64))
    return out

  def adjacency(self) -> scipy.sparse.csr_matrix:
    """The binary symmetric adjacency ``A`` (the off-diagonal edges), as sparse float32."""
    off = self.senders != self.receivers
    ones = np.ones(int(off.sum()), dtype=np.float32)
    return scipy.sparse.csr_matrix(
        (ones, (self.receivers[off], self.senders[off])), shape=(self.num_nodes,) * 2
    )

  def to_graphs_tuple(self):
    """The graph as a ``jraph.GraphsTuple``: edge features = weights, no node features."""
    import jraph  # pylint: disable=import-outside-toplevel

    return jraph.GraphsTuple(
        nodes=None,
        edges=self.weights,
        senders=self.senders,
        receivers=self.receivers,
        n_node=np.array([self.num_nodes], dtype=np.int32),
        n_edge=np.array([self.num_edges], dtype=np.int32),
        globals=None,
    )

  def save(self, path: str | os.PathLike) -> None:
    """Writes the graph to ``path`` (.npz), never half-written (`atomic.atomic_write`)."""
    atomic.atomic_write(
        path,
        lambda f: np.savez(
            f,
            format_version=np.int64(_FORMAT_VERSION),
            senders=self.senders,
            receivers=self.receivers,
            weights=self.weights,
            num_nodes=np.int64(self.num_nodes),
            lambda_max=np.float64(self.lambda_max),
            num_neighbors=np.int64(self.num_neighbors),
        ),
    )

  @classmethod
  def load(cls, path: str | os.PathLike) -> WordGraph:
    """Reads a graph written by :meth:`save`.

    Raises:
      ValueError: if the file is not a saved word graph of this format.
    """
    with np.load(os.fspath(path), allow_pickle=False) as f:
      if "format_version" not in f or int(f["format_version"]) != _FORMAT_VERSION:
        raise ValueError(f"{os.fspath(path)} is not a word graph of format {_FORMAT_VERSION}")
      return cls(
          senders=f["senders"].astype(np.int32),
          receivers=f["receivers"].astype(np.int32),
          weights=f["weights"].astype(np.float32),
          num_nodes=int(f["num_nodes"]),
          lambda_max=float(f["lambda_max"]),
          num_neighbors=int(f["num_neighbors"]),
      )


def knn_adjacency(vectors: np.ndarray, num_neighbors: int) -> scipy.sparse.csr_matrix:
  """The symmetrised binary ``k``-nearest-neighbour adjacency by cosine similarity.

  Row ``i`` of the (unsymmetrised) kNN relation holds the ``k`` largest cosine similarities
  to word ``i`` among the other words, ties broken by the lower index; zero vectors are at
  similarity -inf from everything (never chosen, choose none). The similarity matrix is
  computed ``_CHUNK_ROWS`` rows at a time.

  Args:
    vectors: float ``[V, d]`` word vectors.
    num_neighbors: ``k``.

  Returns:
    float32 CSR ``[V, V]``: 1 where either word is among the other's ``k`` neighbours.
  """
  x = np.asarray(vectors, dtype=np.float64)
  n = x.shape[0]
  norms = np.linalg.norm(x, axis=1)
  valid = norms > 0
  unit = np.zeros_like(x)
  unit[valid] = x[valid] / norms[valid, None]
  rows, cols = [], []
  k = num_neighbors
  for start in range(0, n, _CHUNK_ROWS):
    stop = min(start + _CHUNK_ROWS, n)
    sim = unit[start:stop] @ unit.T
    sim[:, ~valid] = -np.inf
    sim[~valid[start:stop], :] = -np.inf
    sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not itself
    # The k-th largest value of each row; everything above it is in, and the lowest-index
    # entries equal to it fill the remaining places (ties broken by the lower index).
    kth = np.partition(sim, n - k, axis=1)[:, n - k, None]
    chosen = sim >= kth
    excess = np.flatnonzero(chosen.sum(axis=1) > k)  # rows with ties at the k-th value
    if excess.size:
      tied = sim[excess] == kth[excess]
      need = k - (sim[excess] > kth[excess]).sum(axis=1, keepdims=True)
      chosen[excess] &= ~tied | (np.cumsum(tied, axis=1) <= need)
    chosen &= sim > -np.inf
    r, c = np.nonzero(chosen)
    rows.append(r + start)
    cols.append(c)
  r = np.concatenate(rows)
  c = np.concatenate(cols)
  knn = scipy.sparse.csr_matrix(
      (np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, n), dtype=np.float32
  )
  adjacency = (knn + knn.T).tocsr()
  adjacency.data[:] = 1.0
  adjacency.sort_indices()
  return adjacency


def _largest_eigenvalue(laplacian: scipy.sparse.csr_matrix) -> float:
  """The largest eigenvalue of a symmetric PSD sparse matrix, deterministically (fixed v0)."""
  n = laplacian.shape[0]
  if n <= _DENSE_EIGEN_MAX_NODES:
    return float(np.linalg.eigvalsh(laplacian.toarray())[-1])
  v0 = np.random.default_rng(0).uniform(0.5, 1.5, size=n)
  value = scipy.sparse.linalg.eigsh(
      laplacian, k=1, which="LA", v0=v0, tol=1e-10, return_eigenvectors=False
  )
  return float(value[0])


def build_word_graph(
    vectors: np.ndarray, num_neighbors: int = 8, lambda_max: float | None = None
) -> WordGraph:
  """Builds the word graph (``L~`` as edges) of word vectors; deterministic.

  Args:
    vectors: float ``[V, d]``, one word vector per vertex (zero rows: isolated vertices).
    num_neighbors: ``k``, nearest neighbours per word (``1 <= k < V``).
    lambda_max: the largest eigenvalue of ``L`` to rescale by; ``None`` computes it
      (ARPACK from a fixed start vector), 2.0 is the original code's assumption.

  Returns:
    The :class:`WordGraph`.

  Raises:
    ValueError: for vectors that are not a finite non-empty 2-D array, ``num_neighbors``
      outside ``[1, V)``, or a ``lambda_max`` that is not a positive finite number.
  """
  vectors = np.asarray(vectors)
  if vectors.ndim != 2 or vectors.shape[0] < 2 or vectors.shape[1] < 1:
    raise ValueError(f"vectors must be [V >= 2, d >= 1], got shape {vectors.shape}")
  if not np.all(np.isfinite(vectors)):
    raise ValueError("vectors must be finite (found NaN or inf)")
  n = vectors.shape[0]
  if isinstance(num_neighbors, bool) or int(num_neighbors) != num_neighbors:
    raise ValueError(f"num_neighbors must be an integer, got {num_neighbors!r}")
  num_neighbors = int(num_neighbors)
  if not 1 <= num_neighbors < n:
    raise ValueError(f"num_neighbors must be in [1, {n}) for {n} words, got {num_neighbors}")
  if lambda_max is not None and not (np.isfinite(lambda_max) and lambda_max > 0):
    raise ValueError(f"lambda_max must be a positive finite number or None, got {lambda_max}")

  adjacency = knn_adjacency(vectors, num_neighbors)
  degree = np.asarray(adjacency.sum(axis=1)).ravel().astype(np.float64)
  inv_sqrt = np.zeros(n)
  inv_sqrt[degree > 0] = 1.0 / np.sqrt(degree[degree > 0])
  scaling = scipy.sparse.diags(inv_sqrt)
  normalized = (scaling @ adjacency.astype(np.float64) @ scaling).tocsr()
  identity = scipy.sparse.identity(n, dtype=np.float64, format="csr")
  if lambda_max is None:
    lambda_max = _largest_eigenvalue((identity - normalized).tocsr())
  lambda_max = float(lambda_max)
  # L~ = 2 (I - N) / lambda_max - I = (2 / lambda_max - 1) I - (2 / lambda_max) N; N has
  # no diagonal, so the self edges and the graph's edges do not overlap.
  off = normalized.tocoo()
  receivers = np.concatenate([off.row, np.arange(n)])
  senders = np.concatenate([off.col, np.arange(n)])
  weights = np.concatenate([-(2.0 / lambda_max) * off.data, np.full(n, 2.0 / lambda_max - 1.0)])
  order = np.lexsort((senders, receivers))
  return WordGraph(
      senders=senders[order].astype(np.int32),
      receivers=receivers[order].astype(np.int32),
      weights=weights[order].astype(np.float32),
      num_nodes=n,
      lambda_max=lambda_max,
      num_neighbors=num_neighbors,
  )


def _cache_key(
    vectors: np.ndarray, num_neighbors: int, lambda_max: float | None, key_parts: tuple
) -> str:
  """sha1 of the key parts, the vectors (dtype, shape, bytes) and the graph options."""
  vectors = np.ascontiguousarray(vectors)
  digest = hashlib.sha1()
  digest.update(json.dumps(list(key_parts), default=str).encode())
  digest.update(f"|{vectors.dtype.str}|{vectors.shape}|".encode())
  digest.update(vectors.tobytes())
  digest.update(f"|k={int(num_neighbors)}|lambda_max={lambda_max!r}".encode())
  return digest.hexdigest()


def cached_word_graph(
    vectors: np.ndarray,
    num_neighbors: int = 8,
    lambda_max: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    key_parts: tuple = (),
) -> WordGraph:
  """:func:`build_word_graph`, cached under ``<cache_dir>/word_graphs/<sha1>.npz``.

  The sha1 covers ``key_parts`` (e.g. the dataset name and the vocabulary words), the
  vectors and the two options, so any change builds (and saves) a new graph. An unreadable
  cache file is rebuilt. ``cache_dir=None`` always builds.
  """
  if not cache_dir:
    return build_word_graph(vectors, num_neighbors, lambda_max)
  key = _cache_key(vectors, num_neighbors, lambda_max, tuple(key_parts))
  path = os.path.join(os.path.expanduser(os.fspath(cache_dir)), _CACHE_SUBDIR, f"{key}.npz")
  if os.path.exists(path):
    try:
      return WordGraph.load(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      logging.warning("Rebuilding the unreadable word graph %s (%s).", path, e)
  logging.info(
      "Building the word graph of %d words (k=%d, lambda_max=%s) into %s.",
      len(vectors),
      num_neighbors,
      "computed" if lambda_max is None else lambda_max,
      path,
  )
  graph = build_word_graph(vectors, num_neighbors, lambda_max)
  graph.save(path)
  return graph


def graph_vocabulary(
    train_token_lists: Iterable[Sequence[str]],
    size: int,
    min_count: int = 1,
    stopwords: Iterable[str] | None = tokens_lib.DEFAULT_STOPWORDS,
    allow_random: bool = False,
) -> tuple[vocab_lib.Vocabulary, np.ndarray]:
  """The graph's vertices: the ``size`` most frequent training words with a GloVe vector.

  A word without a vector would get arbitrary neighbours, so words missing from GloVe
  are dropped before truncating (frequency order is kept, as
  :func:`~crossmodal_jax.data.text.vocab.build_vocabulary` makes it). When the GloVe vectors
  are not installed and ``allow_random`` lets :func:`~crossmodal_jax.data.text.glove.glove_table`
  return random rows, every word is kept, with those random rows as vectors.

  Args:
    train_token_lists: the TRAINING split's token lists.
    size: the most vertices to keep (``>= 1``).
    min_count: drop words seen fewer times in training.
    stopwords: words to exclude.
    allow_random: without the installed GloVe vectors, random ones (else an error).

  Returns:
    ``(vocab, vectors)``: the vocabulary (column ``j`` of its bag of words is vertex
    ``j``) and float32 ``[len(vocab), 50]`` word vectors, row ``j`` for ``vocab.words[j]``.
  """
  if size < 1:
    raise ValueError(f"graph vocabulary size must be >= 1, got {size}")
  full = vocab_lib.build_vocabulary(
      train_token_lists, max_size=None, min_count=min_count, stopwords=stopwords
  )
  table, found = glove.glove_table(full, allow_random=allow_random)
  keep = found if glove.word_vectors_available() else np.ones(len(full), dtype=bool)
  ids = np.flatnonzero(keep)[:size]
  vocab = vocab_lib.Vocabulary(tuple(full.words[i] for i in ids))
  vectors = np.ascontiguousarray(table[2:][ids], dtype=np.float32)
  logging.info(
      "Word graph vocabulary: %d words (of %d training words, %d with a GloVe vector).",
      len(vocab),
      len(full),
      int(found.sum()),
  )
  return vocab, vectors


def graph_signal(counts: dict[str, np.ndarray], data_config) -> dict[str, np.ndarray]:
  """Each split's graph signal ("bow") from its counts over the graph vocabulary:
  ``data_config.graph_signal`` "counts" (as they are) or "tfidf" (sublinear tf x idf
  fitted on "train", rows L2-normalised)."""
  signal = data_config.graph_signal
  idf = signal_idf(counts["train"], signal)
  if signal == "counts":
    return counts
  return {s: apply_signal(c, signal, idf) for s, c in counts.items()}


def signal_idf(train_counts: np.ndarray, signal: str) -> np.ndarray | None:
  """What the graph signal ``signal`` fits on the training counts: the idf of "tfidf",
  None for "counts"."""
  if signal == "counts":
    return None
  if signal != "tfidf":
    raise ValueError(f"Unknown data.graph_signal {signal!r}; choose 'counts' or 'tfidf'.")
  return tfidf.fit_idf(train_counts)


def apply_signal(counts: np.ndarray, signal: str, idf: np.ndarray | None) -> np.ndarray:
  """The graph signal of counts over the graph vocabulary, with `signal_idf`'s fit."""
  if signal == "counts":
    return counts
  return tfidf.tfidf(counts, idf, sublinear_tf=True)
