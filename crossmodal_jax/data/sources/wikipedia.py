"""The Wikipedia dataset as a `common.Dataset`: builder splits plus text features.

:func:`load` builds (once) and reads the TFDS dataset of
:class:`crossmodal_jax.data.sources.wikipedia_builder.WikipediaCrossModal` and turns the article texts
into the configured text feature (``data_config.text_feature``, one of
:data:`TEXT_FEATURES`), everything fitted on the TRAINING split only:

- "lda": the dataset's own 10-d LDA topic proportions (no text processing);
- "bow": bag-of-words counts over a vocabulary of the training texts (stop words: the
  folder's ``stopwords.txt`` when ``data_config.stopwords == "dataset"`` and the file
  exists, else the built-in list);
- "tfidf": TF-IDF of those counts, idf fitted on train;
- "tfidf_svd": TF-IDF projected on its top ``svd_dim`` right singular vectors (fitted on
  train), then columns scaled to unit variance on train.

With ``data_config.word_sequences`` each split also gets ``word_ids`` / ``word_mask`` (the
first ``max_words`` in-vocabulary words of each article, over the vocabulary of the
training texts, built for them when the text feature is "lda") and
``meta["word_vectors"]`` a GloVe table for them.

With ``data_config.word_graph`` (SCANet's text model) each split also gets ``bow``, float32
bag-of-words counts over the word graph's own vocabulary (the ``graph_vocab_size`` most
frequent training words that have a GloVe vector, independent of the text feature's), and
``meta`` gets ``graph_vocab`` and ``word_graph``, the
:class:`~crossmodal_jax.data.text.word_graph.WordGraph` of those words (``graph_neighbors``
nearest neighbours; ``graph_lambda_max`` 0 = computed), cached under ``data_dir``.

The text steps live in :mod:`~crossmodal_jax.data.text.tokens`,
:mod:`~crossmodal_jax.data.text.vocab`, :mod:`~crossmodal_jax.data.text.tfidf`,
:mod:`~crossmodal_jax.data.text.svd`, :mod:`~crossmodal_jax.data.text.glove` and
:mod:`~crossmodal_jax.data.text.word_graph`.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from crossmodal_jax import errors
from crossmodal_jax.data import common
from crossmodal_jax.data import registry
from crossmodal_jax.data.text import glove
from crossmodal_jax.data.text import svd
from crossmodal_jax.data.text import tfidf
from crossmodal_jax.data.text import tokens as tokens_lib
from crossmodal_jax.data.text import vocab as vocab_lib
from crossmodal_jax.data.text import word_graph as word_graph_lib

__all__ = ["TEXT_FEATURES", "load"]

TEXT_FEATURES = ("tfidf_svd", "tfidf", "bow", "lda")
_STOPWORDS_FILE = "stopwords.txt"
_SPLITS = ("train", "validation", "test")


@registry.register("wikipedia")
def load(data_config) -> common.Dataset:
  """Builds (once) and reads the Wikipedia folder ``data_config.manual_dir``.

  Args:
    data_config: the ``data`` section of a config; reads ``manual_dir``, ``data_dir``,
      ``wikipedia_split``, ``text_feature``, ``vocab_size``, ``min_count``, ``stopwords``, ``sublinear_tf``,
      ``svd_dim``, ``word_sequences``, ``max_words``, ``word_graph``, ``graph_vocab_size``,
      ``graph_neighbors`` and ``graph_lambda_max``.

  Returns:
    The dataset: float32 ``image`` (128-d SIFT BoVW), ``text`` (the text feature),
    ``lda`` and int32 ``label`` per split (plus ``word_ids`` / ``word_mask`` with
    ``word_sequences``, ``bow`` with ``word_graph``); ``meta`` holds ``class_names``,
    ``text_feature`` and, unless the feature is "lda" without word sequences, the
    training ``vocab`` (and ``word_vectors``), and with ``word_graph`` also
    ``graph_vocab`` and ``word_graph``.

  Raises:
    UserError: if ``manual_dir`` is not set or the text feature is unknown;
      DatasetFileError for bad files.
  """
  # TFDS is imported only when a file-backed dataset is loaded.
  from crossmodal_jax.data import tfds_io  # pylint: disable=g-import-not-at-top
  from crossmodal_jax.data.sources import wikipedia_builder  # pylint: disable=g-import-not-at-top

  manual_dir = tfds_io.require_manual_dir(data_config)
  feature = data_config.text_feature
  if feature not in TEXT_FEATURES:
    raise errors.UserError(f"Unknown text_feature {feature!r}; choose one of {TEXT_FEATURES}.")
  word_sequences = data_config.word_sequences
  # The training texts' vocabulary serves the text feature (unless "lda") and the words.
  need_vocab = feature != "lda" or word_sequences
  builder = tfds_io.prepare(
      wikipedia_builder.WikipediaCrossModal,
      manual_dir,
      data_config.data_dir,
      split=data_config.wikipedia_split,
  )
  raw = {s: tfds_io.read_split(builder, s) for s in _SPLITS}
  class_names = list(builder.info.features["label"].names)

  meta = {"class_names": class_names, "text_feature": feature}
  sequences = {}
  graph_arrays = {}
  use_graph = data_config.word_graph
  if need_vocab or use_graph:
    # Tokenising the articles and fitting on train take a while: say so.
    logging.info(
        "Wikipedia text feature %s: fitting on the %d training articles.",
        feature,
        len(raw["train"]["text"]),
    )
    tokens = {s: [tokens_lib.tokenize(t) for t in raw[s]["text"]] for s in raw}
  if need_vocab:
    vocab = vocab_lib.build_vocabulary(
        tokens["train"],
        max_size=data_config.vocab_size,
        min_count=data_config.min_count,
        stopwords=_stopwords(data_config, manual_dir),
    )
    meta["vocab"] = vocab
    if word_sequences:
      for s in raw:
        ids, mask = vocab_lib.word_id_sequences(
            tokens[s], vocab, data_config.max_words, drop_oov=True
        )
        sequences[s] = {"word_ids": ids, "word_mask": mask}
      meta["word_vectors"], found = glove.glove_table(
          vocab, allow_random=data_config.random_word_vectors
      )
      logging.info("GloVe vectors for %d of %d vocabulary words.", found.sum(), len(found))
  if feature == "lda":
    texts = {s: raw[s]["lda"].astype(np.float32) for s in raw}
  else:  # need_vocab holds, so the vocabulary is built
    counts = {s: vocab_lib.bag_of_words(tokens[s], meta["vocab"]) for s in raw}
    texts = _text_features(counts, feature, data_config)
  if use_graph:
    graph_vocab, vectors = word_graph_lib.graph_vocabulary(
        tokens["train"],
        size=data_config.graph_vocab_size,
        min_count=data_config.min_count,
        stopwords=_stopwords(data_config, manual_dir),
        allow_random=data_config.random_word_vectors,
    )
    graph_counts = {s: vocab_lib.bag_of_words(tokens[s], graph_vocab) for s in raw}
    graph_arrays = {
        s: {"bow": b} for s, b in word_graph_lib.graph_signal(graph_counts, data_config).items()
    }
    meta["graph_vocab"] = graph_vocab
    meta["word_graph"] = word_graph_lib.cached_word_graph(
        vectors,
        num_neighbors=data_config.graph_neighbors,
        lambda_max=data_config.graph_lambda_max or None,  # 0: computed
        cache_dir=data_config.data_dir,
        key_parts=("wikipedia", graph_vocab.words),
    )

  def split(s: str) -> common.Split:
    return common.Split(
        {
            "image": raw[s]["image"].astype(np.float32),
            "text": np.asarray(texts[s], dtype=np.float32),
            "label": raw[s]["label"].astype(np.int32),
            "lda": raw[s]["lda"].astype(np.float32),
            **sequences.get(s, {}),
            **graph_arrays.get(s, {}),
        }
    )

  logging.info("Wikipedia text feature %s: %d dims.", feature, texts["train"].shape[1])
  return common.Dataset(
      name="wikipedia",
      train=split("train"),
      validation=split("validation"),
      test=split("test"),
      num_classes=len(class_names),
      meta=meta,
  )


def _stopwords(data_config, manual_dir: str) -> frozenset[str]:
  """The folder's stop-word file when the config asks for it and it exists, else built-in."""
  path = os.path.join(manual_dir, _STOPWORDS_FILE)
  if data_config.stopwords == "dataset" and os.path.exists(path):
    return tokens_lib.load_stopwords(path)
  return tokens_lib.DEFAULT_STOPWORDS


def _text_features(
    counts: dict[str, np.ndarray], feature: str, data_config
) -> dict[str, np.ndarray]:
  """The "bow", "tfidf" or "tfidf_svd" feature of every split, fitted on "train"."""
  if feature == "bow":
    return counts
  idf = tfidf.fit_idf(counts["train"])
  texts = {s: tfidf.tfidf(counts[s], idf, sublinear_tf=data_config.sublinear_tf) for s in counts}
  if feature == "tfidf":
    return texts
  components = svd.cached_fit_svd(texts["train"], data_config.svd_dim, data_config.data_dir)
  texts = {s: svd.project(texts[s], components) for s in counts}
  # Unit-variance columns keep the text tower's input on the image's scale.
  scale = texts["train"].std(axis=0)
  scale = np.where(scale > 1e-8, scale, 1.0)
  return {s: (texts[s] / scale).astype(np.float32) for s in counts}
