"""Datasets: TFDS builders for real files, the synthetic benchmark, text processing.

`load_dataset(data_config)` returns a `common.Dataset` for any configured dataset:

- "synthetic": generated in memory from a seed (no files);
- "wikipedia": the Rasiwasia et al. folder (`data_config.manual_dir`), built once into
  array_record by `wikipedia.WikipediaCrossModal` under `data_config.data_dir` and read
  back with `as_data_source()`; text features are derived here (fit on train only);
- "features": a folder of DRSL-layout .mat files (`features.CrossModalFeatures`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from crossmodal_jax.data import common
from crossmodal_jax.data import synthetic
from crossmodal_jax.data import text as text_lib

DATASETS = ("synthetic", "wikipedia", "features")
TEXT_FEATURES = ("tfidf_svd", "tfidf", "bow", "lda")


def load_dataset(data_config) -> common.Dataset:
  """Loads (building first if needed) the dataset named by `data_config.name`."""
  name = data_config.name
  if name == "synthetic":
    dataset = _load_synthetic(data_config)
  elif name == "wikipedia":
    dataset = _load_wikipedia(data_config)
  elif name == "features":
    dataset = _load_features(data_config)
  else:
    raise ValueError(f"Unknown dataset {name!r}; choose one of {DATASETS}.")
  if data_config.get("standardize_image", False):
    dataset = standardize(dataset, "image")
  return dataset


def standardize(dataset: common.Dataset, key: str) -> common.Dataset:
  """Zero-mean, unit-variance columns of `key`, with statistics of the training split."""
  train = dataset.train[key]
  mean = train.mean(axis=0)
  std = train.std(axis=0)
  std = np.where(std > 1e-8, std, 1.0)

  def apply(split: common.Split) -> common.Split:
    arrays = dict(split.arrays)
    arrays[key] = ((arrays[key] - mean) / std).astype(np.float32)
    return common.Split(arrays)

  return dataclasses.replace(
      dataset, train=apply(dataset.train), validation=apply(dataset.validation),
      test=apply(dataset.test))


def _load_synthetic(data_config) -> common.Dataset:
  try:
    preset = synthetic.PRESETS[data_config.synthetic_preset]
  except KeyError:
    raise ValueError(f"Unknown synthetic preset {data_config.synthetic_preset!r}; choose "
                     f"one of {tuple(synthetic.PRESETS)}.") from None
  cfg = dataclasses.replace(preset, seed=data_config.synthetic_seed)
  if data_config.get("synthetic_num_train", -1) > 0:
    cfg = dataclasses.replace(cfg, num_train=data_config.synthetic_num_train)
  return synthetic.make_dataset(cfg)


def _require_manual_dir(data_config) -> str:
  if not data_config.manual_dir:
    raise ValueError(
        f"Dataset {data_config.name!r} reads files: set --config.data.manual_dir=DIR.")
  return os.path.expanduser(data_config.manual_dir)


def _load_wikipedia(data_config) -> common.Dataset:
  from crossmodal_jax.data import tfds_io  # pylint: disable=g-import-not-at-top
  from crossmodal_jax.data import wikipedia  # pylint: disable=g-import-not-at-top

  manual_dir = _require_manual_dir(data_config)
  builder = tfds_io.prepare(wikipedia.WikipediaCrossModal, manual_dir, data_config.data_dir)
  raw = {s: tfds_io.read_split(builder, s) for s in ("train", "validation", "test")}
  class_names = list(builder.info.features["label"].names)

  feature = data_config.text_feature
  if feature not in TEXT_FEATURES:
    raise ValueError(f"Unknown text_feature {feature!r}; choose one of {TEXT_FEATURES}.")
  meta = {"class_names": class_names, "text_feature": feature}
  texts = {}
  if feature == "lda":
    texts = {s: raw[s]["lda"].astype(np.float32) for s in raw}
  else:
    tokens = {s: [text_lib.tokenize(t) for t in raw[s]["text"]] for s in raw}
    stopwords = text_lib.DEFAULT_STOPWORDS
    path = os.path.join(manual_dir, "stopwords.txt")
    if data_config.stopwords == "dataset" and os.path.exists(path):
      stopwords = text_lib.load_stopwords(path)
    vocab = text_lib.build_vocabulary(
        tokens["train"], max_size=data_config.vocab_size, min_count=data_config.min_count,
        stopwords=stopwords)
    counts = {s: text_lib.bag_of_words(tokens[s], vocab) for s in raw}
    meta["vocab"] = vocab
    if feature == "bow":
      texts = counts
    else:
      idf = text_lib.fit_idf(counts["train"])
      texts = {s: text_lib.tfidf(counts[s], idf, sublinear_tf=data_config.sublinear_tf)
               for s in raw}
      if feature == "tfidf_svd":
        components = text_lib.fit_svd(texts["train"], data_config.svd_dim, seed=0)
        texts = {s: text_lib.project(texts[s], components) for s in raw}
        # Unit-variance columns keep the text tower's input on the image's scale.
        scale = texts["train"].std(axis=0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        texts = {s: (texts[s] / scale).astype(np.float32) for s in raw}

  sequences = {}
  if data_config.get("word_sequences", False):
    if "vocab" not in meta:
      raise ValueError("word_sequences needs a vocabulary: use a text_feature other than 'lda'.")
    for s in raw:
      ids, mask = text_lib.word_id_sequences(tokens[s], meta["vocab"], data_config.max_words,
                                             drop_oov=True)
      sequences[s] = {"word_ids": ids, "word_mask": mask}
    meta["word_vectors"], found = text_lib.glove_table(meta["vocab"])
    logging.info("GloVe vectors for %d of %d vocabulary words.", found.sum(), len(found))

  def split(s: str) -> common.Split:
    return common.Split({
        "image": raw[s]["image"].astype(np.float32),
        "text": np.asarray(texts[s], dtype=np.float32),
        "label": raw[s]["label"].astype(np.int32),
        "lda": raw[s]["lda"].astype(np.float32),
        **sequences.get(s, {}),
    })

  logging.info("Wikipedia text feature %s: %d dims.", feature, texts["train"].shape[1])
  return common.Dataset(name="wikipedia", train=split("train"),
                        validation=split("validation"), test=split("test"),
                        num_classes=len(class_names), meta=meta)


def _load_features(data_config) -> common.Dataset:
  from crossmodal_jax.data import features  # pylint: disable=g-import-not-at-top
  from crossmodal_jax.data import tfds_io  # pylint: disable=g-import-not-at-top

  manual_dir = _require_manual_dir(data_config)
  builder = tfds_io.prepare(features.CrossModalFeatures, manual_dir, data_config.data_dir,
                            num_validation=data_config.num_validation)
  available = set(builder.info.splits.keys())
  raw = {s: tfds_io.read_split(builder, s) for s in ("train", "validation", "test")
         if s in available}
  multi = any((r["label"] < 0).any() for r in raw.values())

  def split(s: str) -> common.Split:
    if s not in raw:  # no validation data: an empty split of the right shapes
      r = {k: v[:0] for k, v in raw["train"].items()}
    else:
      r = raw[s]
    label = r["labels"].astype(np.float32) if multi else r["label"].astype(np.int32)
    return common.Split({"image": r["image"].astype(np.float32),
                         "text": r["text"].astype(np.float32), "label": label})

  num_classes = raw["train"]["labels"].shape[1]
  return common.Dataset(name="features", train=split("train"),
                        validation=split("validation"), test=split("test"),
                        num_classes=num_classes,
                        meta={"manual_dir": manual_dir, "multi_label": multi})
