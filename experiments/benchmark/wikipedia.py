"""The Wikipedia data the benchmark's cases read: the built dataset when --wikipedia_dir
names its folder, else random arrays of its shapes (2,173 / 231 / 462 pairs, 128-d
images), loaded once per text feature into the run's cache."""

from __future__ import annotations

import dataclasses

import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import data as data_lib
from crossmodal_jax.data import common

# The cache key of the dataset with its word graph (the others are text features).
WORD_GRAPH = "word_graph"


@dataclasses.dataclass(frozen=True)
class Source:
  """Where Wikipedia is read from: its folder ("": random stand-ins) and the TFDS cache
  its build goes to."""

  wikipedia_dir: str
  data_dir: str

  def apply(self, data_config) -> None:
    """Points a data config at the folder and the cache."""
    data_config.manual_dir = self.wikipedia_dir
    data_config.data_dir = self.data_dir


def wikipedia_like(text_dim: int, sparse: bool = False, seed=0) -> common.Dataset:
  """Random arrays of Wikipedia's shapes; `sparse` text has 40-259 positive entries per
  row (raw TF-IDF has ~150 of 10,000)."""
  rng = np.random.default_rng(seed)

  def text(n):
    if not sparse:
      return rng.standard_normal((n, text_dim), dtype=np.float32)
    x = np.zeros((n, text_dim), np.float32)
    for row in x:
      count = rng.integers(40, 260)
      row[rng.choice(text_dim, count, replace=False)] = rng.random(count, dtype=np.float32)
    return x

  def split(n):
    return common.Split(
        {
            "image": rng.random((n, 128), dtype=np.float32),
            "text": text(n),
            "label": rng.integers(0, 10, n).astype(np.int32),
        }
    )

  return common.Dataset("wikipedia-shaped random", split(2173), split(231), split(462), 10)


def load(method_name: str, text_feature: str, cache: dict, source: Source):
  """(`method_name`'s Wikipedia config with `text_feature`, the dataset), the dataset
  loaded once per text feature: built from the folder, or a random stand-in of its width
  (sparse rows where the text is TF-IDF or bag-of-words)."""
  config = default_configs.get_config(f"{method_name},wikipedia")
  config.data.text_feature = text_feature
  if text_feature not in cache:
    if source.wikipedia_dir:
      source.apply(config.data)
      cache[text_feature] = data_lib.load_dataset(config.data)
    else:
      dim = {"tfidf_svd": config.data.svd_dim, "lda": 10}.get(text_feature, config.data.vocab_size)
      cache[text_feature] = wikipedia_like(dim, sparse=text_feature in ("tfidf", "bow"))
  return config, cache[text_feature]


def with_word_graph(config, cache: dict, source: Source) -> common.Dataset:
  """Wikipedia with its word graph and each text's counts on it ("bow"), as `config`'s
  data asks (built from the folder), or a stand-in of the same shape: a random
  `data.graph_vocab_size`-word kNN graph and ~200-word random bags of words."""
  if WORD_GRAPH not in cache:
    if source.wikipedia_dir:
      source.apply(config.data)
      cache[WORD_GRAPH] = data_lib.load_dataset(config.data)
    else:
      from crossmodal_jax.data.text import word_graph  # pylint: disable=g-import-not-at-top

      rng = np.random.default_rng(0)
      vocab = config.data.graph_vocab_size
      base = wikipedia_like(10)

      def with_bow(split):
        bow = np.zeros((len(split), vocab), np.float32)
        for row in bow:
          np.add.at(row, rng.zipf(1.3, 200) % vocab, 1.0)
        return common.Split({**split.arrays, "bow": bow})

      cache[WORD_GRAPH] = common.Dataset(
          base.name,
          with_bow(base.train),
          with_bow(base.validation),
          with_bow(base.test),
          10,
          meta={"word_graph": word_graph.build_word_graph(rng.standard_normal((vocab, 50)))},
      )
  return cache[WORD_GRAPH]
