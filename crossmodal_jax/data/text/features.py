"""The text features of a dataset's raw texts, everything fitted on its training texts.

`make(texts, data_config, ...)` is the one text pipeline of the datasets that have raw
texts (the Wikipedia articles, a feature folder's `*_text.jsonl`): each split's texts in,
each split's arrays and the shared metadata out. Both loaders call it, so a feature folder
holding Wikipedia's texts gets Wikipedia's features by construction.

- `data_config.text_feature` (the "text" array): "bow" (counts over the vocabulary of the
  training texts: the `vocab_size` most frequent words seen `min_count` times or more,
  stop words out), "tfidf" (their TF-IDF, idf fitted on train, `sublinear_tf`, L2 rows),
  "tfidf_svd" (that TF-IDF on its top `svd_dim` right singular vectors fitted on train,
  columns scaled to unit variance on train; the fit cached under `data_dir`), "lda" (an
  LDA of `lda_topics` topics fitted on the training counts, `lda`, cached), or a feature
  the caller gives as fixed vectors (`given`: Wikipedia's own "lda" topics, a folder's
  "file" vectors), taken as they are;
- `data_config.word_sequences`: "word_ids" / "word_mask", the first `max_words`
  in-vocabulary words of each text, and meta["word_vectors"], their GloVe table;
- `data_config.word_graph`: "bow", each text's graph signal (`graph_signal`) over SCANet's
  word graph, and meta["graph_vocab"] / meta["word_graph"] (`word_graph`, cached).

Stop words (`stopwords`): the dataset folder's `stopwords.txt` when
`data_config.stopwords == "dataset"` and the file exists, else the built-in list
(`tokens.DEFAULT_STOPWORDS`).

What is fitted on the training texts is one `pipeline.TextFit`, whose `transform` makes
every split's arrays (the training split's too); `make` returns it in
meta["preprocessing"] (`data.preprocessing`), which makes new texts' arrays the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from crossmodal_jax import errors
from crossmodal_jax.data import preprocessing
from crossmodal_jax.data.text import glove
from crossmodal_jax.data.text import lda as lda_lib
from crossmodal_jax.data.text import pipeline
from crossmodal_jax.data.text import svd
from crossmodal_jax.data.text import tfidf
from crossmodal_jax.data.text import tokens as tokens_lib
from crossmodal_jax.data.text import vocab as vocab_lib
from crossmodal_jax.data.text import word_graph as word_graph_lib

__all__ = ["TEXT_FEATURES", "STOPWORDS_FILE", "check_feature", "make", "stopwords"]

TEXT_FEATURES = ("tfidf_svd", "tfidf", "bow", "lda")  # made from the raw texts
STOPWORDS_FILE = "stopwords.txt"


def stopwords(data_config, folder: str | os.PathLike) -> frozenset[str]:
  """The folder's stop-word file when the config asks for it and it exists, else built-in."""
  path = os.path.join(os.fspath(folder), STOPWORDS_FILE)
  if data_config.stopwords == "dataset" and os.path.exists(path):
    return tokens_lib.load_stopwords(path)
  return tokens_lib.DEFAULT_STOPWORDS


def check_feature(feature: str, given: Sequence[str] = ()) -> None:
  """Raises a UserError listing the choices unless `feature` is made here or `given`."""
  choices = tuple(dict.fromkeys((*TEXT_FEATURES, *given)))
  if feature not in choices:
    raise errors.UserError(f"Unknown text_feature {feature!r}; choose one of {choices}.")


def make(
    texts: Mapping[str, Sequence[str]],
    data_config,
    *,
    stop: frozenset[str],
    name: str,
    given: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
  """Each split's text arrays and the metadata, fitted on `texts["train"]` (module doc).

  Everything is fitted first (a `pipeline.TextFit`), then every split's arrays are made
  by its `transform_tokens`, the training split's too: the fit, kept in
  meta["preprocessing"], makes any new texts' arrays as it made the splits'.

  Args:
    texts: split -> its raw texts in row order; has "train" (a split may be empty).
    data_config: the `data` section of a config; reads `text_feature`, `vocab_size`,
      `min_count`, `sublinear_tf`, `svd_dim`, `lda_topics`, `data_dir`, `word_sequences`,
      `max_words`, `random_word_vectors`, `word_graph`, `graph_vocab_size`,
      `graph_neighbors`, `graph_lambda_max` and `graph_signal`.
    stop: the stop words (`stopwords`).
    name: the dataset's name, for the log lines and the word graph's cache key.
    given: feature name -> split -> fixed text vectors, used as they are when
      `text_feature` names them (and then fitting no text feature).

  Returns:
    (arrays, meta): split -> {"text", and "word_ids" / "word_mask" with word sequences,
    "bow" with the word graph}; meta holds "text_feature", "vocab" whenever the
    vocabulary is built (a feature not given, or word sequences), "word_vectors" with
    word sequences, "graph_vocab" and "word_graph" with the word graph, and
    "preprocessing", a `data.preprocessing.Preprocessing` with the fit.

  Raises:
    UserError: an unknown text feature (the choices listed), or a bad `lda_topics`.
  """
  given = dict(given or {})
  feature = data_config.text_feature
  check_feature(feature, tuple(given))
  word_sequences = data_config.word_sequences
  use_graph = data_config.word_graph
  # The training texts' vocabulary serves the text feature (unless given) and the words.
  need_vocab = feature not in given or word_sequences
  splits = tuple(texts)
  meta: dict[str, Any] = {"text_feature": feature}
  fitted: dict[str, Any] = {}
  tokens = {s: [] for s in splits}
  if need_vocab or use_graph:
    # Tokenising the texts and fitting on train take a while: say so.
    logging.info(
        "%s text feature %s: fitting on the %d training texts.",
        name,
        feature,
        len(texts["train"]),
    )
    tokens = {s: [tokens_lib.tokenize(t) for t in texts[s]] for s in splits}
  if need_vocab:
    vocab = vocab_lib.build_vocabulary(
        tokens["train"],
        max_size=data_config.vocab_size,
        min_count=data_config.min_count,
        stopwords=stop,
    )
    meta["vocab"] = fitted["vocab"] = vocab
    if word_sequences:
      fitted["max_words"] = data_config.max_words
      meta["word_vectors"], found = glove.glove_table(
          vocab, allow_random=data_config.random_word_vectors
      )
      logging.info("GloVe vectors for %d of %d vocabulary words.", found.sum(), len(found))
  if feature not in given:  # need_vocab holds, so the vocabulary is built
    counts = {s: vocab_lib.bag_of_words(tokens[s], meta["vocab"]) for s in splits}
    fitted.update(_fitted_feature(counts, feature, data_config))
  if use_graph:
    graph_vocab, vectors = word_graph_lib.graph_vocabulary(
        tokens["train"],
        size=data_config.graph_vocab_size,
        min_count=data_config.min_count,
        stopwords=stop,
        allow_random=data_config.random_word_vectors,
    )
    train_counts = vocab_lib.bag_of_words(tokens["train"], graph_vocab)
    fitted.update(
        graph_vocab=graph_vocab,
        graph_signal=data_config.graph_signal,
        graph_idf=word_graph_lib.signal_idf(train_counts, data_config.graph_signal),
    )
    meta["graph_vocab"] = graph_vocab
    meta["word_graph"] = word_graph_lib.cached_word_graph(
        vectors,
        num_neighbors=data_config.graph_neighbors,
        lambda_max=data_config.graph_lambda_max or None,  # 0: computed
        cache_dir=data_config.data_dir,
        key_parts=(name, graph_vocab.words),
    )
  fit = pipeline.TextFit(
      feature=feature, given=feature in given, sublinear_tf=data_config.sublinear_tf, **fitted
  )
  arrays: dict[str, dict[str, Any]] = {}
  for s in splits:
    made = fit.transform_tokens(tokens[s])
    arrays[s] = {k: made[k] for k in ("word_ids", "word_mask") if k in made}
    arrays[s]["text"] = given[feature][s] if feature in given else made["text"]
    arrays[s].update({k: made[k] for k in ("bow",) if k in made})
  meta["preprocessing"] = preprocessing.Preprocessing(text=fit)
  return arrays, meta


def _fitted_feature(counts: dict[str, np.ndarray], feature: str, data_config) -> dict[str, Any]:
  """The `pipeline.TextFit` fields of the "bow", "tfidf", "tfidf_svd" or "lda" feature,
  fitted on the "train" counts (the LDA's cache key covers every split's)."""
  if feature == "bow":
    return {}
  if feature == "lda":
    _, model = lda_lib.cached_fit(counts, data_config.lda_topics, data_config.data_dir)
    return {"lda": model}
  idf = tfidf.fit_idf(counts["train"])
  if feature == "tfidf":
    return {"idf": idf}
  train = tfidf.tfidf(counts["train"], idf, sublinear_tf=data_config.sublinear_tf)
  components = svd.cached_fit_svd(train, data_config.svd_dim, data_config.data_dir)
  # Unit-variance columns keep the text tower's input on the image's scale.
  scale = svd.project(train, components).std(axis=0)
  scale = np.where(scale > 1e-8, scale, 1.0)
  return {"idf": idf, "components": components, "scale": scale}
