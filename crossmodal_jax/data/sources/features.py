"""A folder of pre-extracted feature files as a `common.Dataset` (the "features" dataset).

The folder's layout is detected and its files validated and built once into array_record
by the TFDS builder of `feature_builder` (over the readers of `feature_layouts`); `load`
reads the built splits back, a split larger than `data.lazy_mb` lazily
(`crossmodal_jax.data.lazy`). docs/data.md describes the layouts.

A folder may also hold each split's raw texts (`*_text.jsonl`, `feature_texts`): its text
features are then made from them exactly as Wikipedia's, by `text.features.make`, fitted
on the training texts (`data.text_feature`, word sequences, SCANet's word graph), and its
fixed text vectors (`*_txt`, optional then) are `data.text_feature=file`. Without raw texts
the fixed vectors are the text, whatever `data.text_feature` says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from crossmodal_jax import errors
from crossmodal_jax.data import common
from crossmodal_jax.data import lazy
from crossmodal_jax.data import registry
from crossmodal_jax.data.text import features as text_features

FILE_FEATURE = "file"  # data.text_feature of the folder's fixed text vectors (*_txt)
_TEXT_KEYS = ("raw_text", "text_id", "group")


def _read(builder, split: str, lazy_mb: float, texts: bool) -> dict[str, Any]:
  """The split's arrays: loaded whole, or -- when its image and text features take more
  than ``lazy_mb`` MB (``lazy_mb`` >= 0) -- the features as :class:`lazy.LazyColumn`s read
  from the built files on demand, the labels, ``index`` and (``texts``) raw texts loaded."""
  from crossmodal_jax.data import tfds_io  # pylint: disable=g-import-not-at-top

  source = builder.as_data_source(split=split)
  if lazy_mb < 0 or len(source) == 0:
    return tfds_io.read_split(builder, split, source=source)
  first = source[0]
  row_bytes = 4 * (np.size(first["image"]) + np.size(first["text"]))
  if len(source) * row_bytes <= lazy_mb * 2**20:
    return tfds_io.read_split(builder, split, source=source)
  eager = ("labels", "label", *(_TEXT_KEYS if texts else ()))
  reader = lazy.RowReader(source, ("image", "text"), eager=eager)
  out = dict(reader.eager)
  for k in ("image", "text"):
    out[k] = lazy.LazyColumn(reader, k, np.shape(first[k]), np.float32)
  logging.info(
      "%s split %s: %d rows, %.0f MB of features, read lazily (data.lazy_mb=%g).",
      builder.name,
      split,
      len(source),
      len(source) * row_bytes / 2**20,
      lazy_mb,
  )
  return out


def _check_text_choices(data_config, root: Path) -> tuple[bool, bool]:
  """(raw texts, fixed text vectors) of the folder, once the config's text choices are
  known to fit them (before anything is built).

  Raises:
    UserError: an unknown text feature; word sequences or the word graph without raw
      texts; ``text_feature=file`` without fixed text vectors.
  """
  from crossmodal_jax.data.sources import feature_layouts  # pylint: disable=g-import-not-at-top
  from crossmodal_jax.data.sources import feature_texts  # pylint: disable=g-import-not-at-top

  feature = data_config.text_feature
  text_features.check_feature(feature, (FILE_FEATURE,))
  texts = feature_texts.has_texts(root)
  layout = feature_layouts.detect(root)
  train_txt = layout.source("train", "txt")
  fixed = layout.has(train_txt)
  if not texts:
    needs = [f"data.{f}=True" for f in ("word_sequences", "word_graph") if getattr(data_config, f)]
    if needs:
      raise errors.UserError(
          f"{feature_texts.path(root, 'train')}: {' and '.join(needs)} "
          f"need{'s' if len(needs) == 1 else ''} the folder's raw texts, and it has none: add train_text.jsonl, test_text.jsonl (and "
          "valid_text.jsonl with valid_* files), one JSON object per row, "
          '{"text": "..."} (docs/data.md, "Raw texts")'
      )
  elif feature == FILE_FEATURE and not fixed:
    raise errors.UserError(
        f"{train_txt.where}: data.text_feature={FILE_FEATURE} reads the folder's fixed text "
        f"vectors, and it has none; choose one made from its raw texts, "
        f"{text_features.TEXT_FEATURES}"
    )
  return texts, fixed


def _group_ids(groups) -> np.ndarray:
  """int32 [n] group of each row of a split: rows that name one "group" share an id; a
  row that names none is a group of its own."""
  keys = [("g", str(g)) if str(g) else ("row", i) for i, g in enumerate(groups)]
  ids: dict[tuple, int] = {}
  return np.array([ids.setdefault(key, len(ids)) for key in keys], np.int32).reshape(len(keys))


@registry.register("features")
def load(data_config) -> common.Dataset:
  """Builds (once) and reads the feature folder ``data_config.manual_dir``.

  Args:
    data_config: the ``data`` section of a config; reads ``manual_dir``, ``data_dir``,
      ``num_validation``, ``validation_from``, ``single_label_rows`` (keep only the rows
      of each split with exactly one label, after the validation rows are carved),
      ``lazy_mb`` (a split whose image and text features take more MB is read lazily:
      its ``image`` and ``text`` are :class:`~crossmodal_jax.data.lazy.LazyColumn`s;
      negative: never) and, in a folder with raw texts, ``stopwords`` and the text fields
      of :func:`crossmodal_jax.data.text.features.make` (``text_feature`` may also be
      "file", the fixed vectors).

  Returns:
    The dataset: float32 ``image`` and ``text``; ``label`` int32 ``[n]`` class ids, or
    float32 ``[n, C]`` multi-hot rows when any row has several labels or none (then
    ``meta["multi_label"]`` is True); with raw texts, the arrays and meta of
    :func:`~crossmodal_jax.data.text.features.make` (``word_ids`` / ``word_mask``,
    ``bow``, ``vocab``, ``word_vectors``, ``graph_vocab``, ``word_graph``), and where
    they name groups, int32 ``group`` (rows of one group share it; a row without is its
    own), which ``eval.relevance="pair"`` reads.
    ``meta["text_feature"]`` is the text's feature ("file": the fixed vectors). Without
    validation data the validation split is empty, with the right shapes.

  Raises:
    UserError: if ``manual_dir`` is not set, the text choices do not fit the folder, or
      ``single_label_rows`` leaves a split that had rows without any; DatasetFileError for
      bad files.
  """
  # TFDS is imported only when a feature folder is loaded.
  from crossmodal_jax.data import tfds_io  # pylint: disable=g-import-not-at-top
  from crossmodal_jax.data.sources import feature_builder  # pylint: disable=g-import-not-at-top

  manual_dir = tfds_io.require_manual_dir(data_config)
  texts, fixed = _check_text_choices(data_config, tfds_io.resolve_dir(manual_dir))
  builder = tfds_io.prepare(
      feature_builder.CrossModalFeatures,
      manual_dir,
      data_config.data_dir,
      num_validation=data_config.num_validation,
      validation_from=data_config.validation_from,
  )
  available = set(builder.info.splits.keys())
  lazy_mb = float(data_config.lazy_mb)
  raw = {
      s: _read(builder, s, lazy_mb, texts)
      for s in ("train", "validation", "test")
      if s in available
  }
  if data_config.single_label_rows:
    for s, r in raw.items():
      keep = r["label"] >= 0
      if len(keep) and not keep.any():
        raise errors.UserError(
            f"{manual_dir}: data.single_label_rows leaves the {s} split without rows (none "
            "of its rows has exactly one label)"
        )
      raw[s] = {k: v.subset(keep) if lazy.is_lazy(v) else v[keep] for k, v in r.items()}
  multi = any((r["label"] < 0).any() for r in raw.values())
  for s in ("train", "validation", "test"):  # no validation data: an empty split
    raw.setdefault(s, {k: v[:0] for k, v in raw["train"].items()})

  meta = {"manual_dir": manual_dir, "multi_label": multi, "text_feature": FILE_FEATURE}
  # Each row's identities, for retrieval's reports: its row in the split's feature files,
  # and the "id" of its raw text where the folder gives one (else its row).
  meta["ids"] = {}
  for s, r in raw.items():
    rows = [int(i) for i in r["index"]]
    given = [str(t) for t in r["text_id"]] if "text_id" in r else [""] * len(rows)
    named = [t or str(i) for t, i in zip(given, rows)]
    meta["ids"][s] = {"row": rows, "text": named, "image": named}
  arrays = {s: {"text": r["text"]} for s, r in raw.items()}
  if texts:
    arrays, text_meta = text_features.make(
        {s: list(r["raw_text"]) for s, r in raw.items()},
        data_config,
        stop=text_features.stopwords(data_config, manual_dir),
        name="features",
        given={FILE_FEATURE: {s: r["text"] for s, r in raw.items()}} if fixed else None,
    )
    meta.update(text_meta)
    logging.info(
        "Feature folder text feature %s: %d dims.",
        meta["text_feature"],
        arrays["train"]["text"].shape[1],
    )

  # Rows that name a group (several captions of one image) are one pair's rows.
  if any(any(str(g) for g in r.get("group", ())) for r in raw.values()):
    for s, r in raw.items():
      arrays[s]["group"] = _group_ids(r["group"])

  def split(s: str) -> common.Split:
    r = raw[s]
    label = r["labels"].astype(np.float32) if multi else r["label"].astype(np.int32)
    return common.Split(
        {
            "image": r["image"].astype(np.float32),
            "text": arrays[s]["text"].astype(np.float32),
            "label": label,
            **{k: v for k, v in arrays[s].items() if k != "text"},
        }
    )

  num_classes = raw["train"]["labels"].shape[1]
  return common.Dataset(
      name="features",
      train=split("train"),
      validation=split("validation"),
      test=split("test"),
      num_classes=num_classes,
      meta=meta,
  )
