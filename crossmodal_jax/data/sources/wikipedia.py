"""The Wikipedia dataset as a `common.Dataset`: builder splits plus text features.

:func:`load` builds (once) and reads the TFDS dataset of
:class:`crossmodal_jax.data.sources.wikipedia_builder.WikipediaCrossModal` and turns the
article texts into the configured text features with
:func:`crossmodal_jax.data.text.features.make`, everything fitted on the TRAINING split
only: ``data_config.text_feature`` (one of :data:`TEXT_FEATURES`: "tfidf_svd", "tfidf",
"bow", or "lda", the dataset's own 10-d LDA topic proportions, no text processing), word
sequences (``data_config.word_sequences``) and SCANet's word graph and graph signal
(``data_config.word_graph``). Stop words: the folder's ``stopwords.txt`` when
``data_config.stopwords == "dataset"`` and the file exists, else the built-in list. A
feature folder with raw texts goes through the same function
(:mod:`crossmodal_jax.data.sources.features`).
"""

from __future__ import annotations

import numpy as np
from absl import logging

from crossmodal_jax.data import common
from crossmodal_jax.data import registry
from crossmodal_jax.data.text import features as text_features

__all__ = ["TEXT_FEATURES", "load"]

TEXT_FEATURES = text_features.TEXT_FEATURES  # "lda": the dataset's own topics
_SPLITS = ("train", "validation", "test")


@registry.register("wikipedia")
def load(data_config) -> common.Dataset:
  """Builds (once) and reads the Wikipedia folder ``data_config.manual_dir``.

  Args:
    data_config: the ``data`` section of a config; reads ``manual_dir``, ``data_dir``,
      ``wikipedia_split``, ``stopwords`` and the text fields of
      :func:`crossmodal_jax.data.text.features.make`.

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
  text_features.check_feature(feature, ("lda",))  # before anything is built
  builder = tfds_io.prepare(
      wikipedia_builder.WikipediaCrossModal,
      manual_dir,
      data_config.data_dir,
      split=data_config.wikipedia_split,
  )
  raw = {s: tfds_io.read_split(builder, s) for s in _SPLITS}
  class_names = list(builder.info.features["label"].names)
  lda = {s: raw[s]["lda"].astype(np.float32) for s in raw}
  arrays, text_meta = text_features.make(
      {s: list(raw[s]["text"]) for s in raw},
      data_config,
      stop=text_features.stopwords(data_config, manual_dir),
      name="wikipedia",
      given={"lda": lda},  # the dataset's own topics
  )
  meta = {"class_names": class_names, **text_meta}
  # Each row's identities, for retrieval's reports: its article's title, its text's and
  # image's ids, and its line in the split's list file.
  meta["ids"] = {
      s: {
          "text": [str(t) for t in raw[s]["text_id"]],
          "image": [str(i) for i in raw[s]["image_id"]],
          "title": [str(t) for t in raw[s]["title"]],
          "row": [int(i) for i in raw[s]["index"]],
      }
      for s in raw
  }

  def split(s: str) -> common.Split:
    return common.Split(
        {
            "image": raw[s]["image"].astype(np.float32),
            "text": arrays[s]["text"],
            "label": raw[s]["label"].astype(np.int32),
            "lda": lda[s],
            **arrays[s],
        }
    )

  logging.info("Wikipedia text feature %s: %d dims.", feature, arrays["train"]["text"].shape[1])
  return common.Dataset(
      name="wikipedia",
      train=split("train"),
      validation=split("validation"),
      test=split("test"),
      num_classes=len(class_names),
      meta=meta,
  )
