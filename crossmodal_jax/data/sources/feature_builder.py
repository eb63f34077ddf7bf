"""TFDS builder for pre-extracted cross-modal feature files (DRSL / DSCMR and related layouts).

The source folder (``manual_dir``) holds the files of ONE of four layouts, detected from
its files (:mod:`crossmodal_jax.data.sources.feature_layouts` reads them; a folder with files of
two layouts is an error naming both):

* ``.mat`` (DRSL, DSCMR): MATLAB files, each with ONE variable named like the file::

    train_img.mat      train_img      n_train x d_img   image features
    train_txt.mat      train_txt      n_train x d_txt   text features
    train_img_lab.mat  train_img_lab  labels of the n_train rows
    test_img.mat / test_txt.mat / test_img_lab.mat      the same for the test split
    valid_img.mat / valid_txt.mat / valid_img_lab.mat   optional: all three or none

  This is exactly what DSCMR's ``load_data.py`` reads (github.com/penghu-cs/DSCMR, which
  ships its Pascal Sentences features -- 4,096-d VGG-19 fc7 images, 300-d sentence-CNN
  texts, 20 classes as an ``n x 1`` 0-based int64 column -- in ``data/pascal/``; its
  NUS-WIDE-10K and XMediaNet features are not in that repository).
* ``.npy``: the same nine names as ``train_img.npy`` etc., one array per file (loaded with
  ``allow_pickle=False``; object arrays are refused).
* ``.h5`` / ``.hdf5`` / ``.h5py``: ONE HDF5 file in the layout of the same authors'
  ``*_deep_doc2vec_data*.h5py`` files for Wikipedia, NUS-WIDE (42,941 pairs), XMediaNet
  and MS-COCO, as read by SDML's ``data_loader.py`` (github.com/penghu-cs/SDML) and MRL's
  ``src/noisydataset.py`` (github.com/penghu-cs/MRL): datasets ``train_imgs_deep``
  (n x d_img), ``train_text`` or ``train_texts`` (n x d_txt), ``train_imgs_labels`` and
  optionally ``train_texts_labels`` (which must equal the image labels), the same with
  ``test_`` and, optionally, ``valid_``. Neither repository links the files themselves
  (MRL's ``paper/dataset.md`` points to the original datasets' pages), so they come from
  the authors or are written with h5py from one's own features. Those scripts take their
  validation set from the FIRST test rows (231 / 5,000 / 4,000 for Wikipedia / NUS-WIDE /
  XMediaNet); ``validation_from="test"`` does the same (below).
* ``voc2007`` (Pascal VOC 2007, Hwang & Grauman's tag data): ``train.mat`` and
  ``test.mat`` (optionally ``valid.mat``) of MATLAB struct arrays with the fields
  ``gist``, ``taglist`` and ``objectcount``; the Gist is the image feature, the tag
  counts the text feature, the classes with an object the multi-hot labels (see
  :class:`~crossmodal_jax.data.sources.feature_layouts.VocLayout`).

Raw texts (optional): ``train_text.jsonl``, ``test_text.jsonl`` and, with ``valid_*``
features, ``valid_text.jsonl``, one JSON object per row in the split's row order, its raw
text under ``"text"`` and optionally an ``"id"``
(:mod:`crossmodal_jax.data.sources.feature_texts` reads them). With them the fixed text
vectors (``*_txt``) may be left out; a folder without them keeps its ``*_txt`` files.

Labels are either an integer class column (``n x 1``, ``1 x n`` or ``n``) or an
``n x C`` one-hot / multi-hot 0/1 matrix; all splits must use the same form. Integer
classes are 1-based when the smallest label over all splits is 1, else 0-based (a
negative label is an error), and over the union of the splits they must be exactly
0..C-1 or 1..C: a label that leaves a class below it without any row (a test label of
999 among classes 1..5) is an error naming its file, the value and the classes seen. For
0/1 matrices C is the number of columns.

Splits: ``train``, ``test`` and ``validation`` -- from the ``valid_*`` files when they
exist, otherwise the LAST ``num_validation`` training rows (constructor argument,
default 0 meaning no validation split; giving both is an error) or, with
``validation_from="test"``, the FIRST ``num_validation`` test rows (the SDML / MRL
convention; the test split is then the rest).

Example features: ``image`` and ``text`` float32 vectors (their length is read from the
files: the features are declared ``Tensor(shape=(None,))``), ``labels`` float32[C]
multi-hot, ``label`` int64 (the class of a single-label row, -1 for a row with several
labels or none), ``index`` int64 (the row in the split's source file; carved
validation rows keep their training-file rows n_train-k..n_train-1, or their test-file
rows 0..k-1, the test rows then starting at k), and ``raw_text`` / ``text_id`` /
``group`` (the row's raw text, id and group, ``""`` without them). ``text`` is 0-wide in a folder without
``*_txt`` files. Carved validation rows take their raw texts with them.

Where the build lives: the builder config is named ``val<k>_<fingerprint>`` where the
fingerprint hashes the resolved source path and the size and mtime of the layout's files
and raw-text files
(:func:`crossmodal_jax.data.tfds_io.source_fingerprint`), so datasets from different
folders -- which all share the name ``cross_modal_features`` -- never collide in one
``data_dir``, and a folder whose files changed is rebuilt rather than served stale.

Every file is validated before anything is written; any problem raises one
:class:`~crossmodal_jax.data.tfds_io.DatasetFileError` naming the file::

    builder = prepare(CrossModalFeatures, "/path/to/pascal_features", data_dir,
                      num_validation=100)
    train = read_split(builder, "train")   # {"image": [n, d_img], "labels": [n, C], ...}

:func:`crossmodal_jax.data.sources.features.load` does that for a dataset config and
returns the ``common.Dataset`` the methods consume.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from crossmodal_jax import errors
from crossmodal_jax.data.sources import feature_texts
from crossmodal_jax.data.sources.feature_layouts import (
    PREFIXES,
    Layout,
    Source,
    detect,
    load_mat_variable,
)
from crossmodal_jax.data.tfds_io import (
    DatasetFileError,
    DatasetFileNotFoundError,
    SourceBuilderMixin,
    resolve_dir,
    source_fingerprint,
)

__all__ = ["CrossModalFeatures", "FeaturesConfig", "load_mat_variable"]

VALIDATION_FROM = ("train", "test")  # where num_validation rows are carved from
_NUMBERS = {2: "two", 3: "three", 4: "four"}


@dataclasses.dataclass(eq=False)
class FeaturesConfig(tfds.core.BuilderConfig):
  """Config of :class:`CrossModalFeatures`; built by its constructor."""

  manual_dir: str | None = None
  num_validation: int = 0
  validation_from: str = "train"


def _features(layout: Layout, src: Source) -> np.ndarray:
  x = layout.load(src)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise DatasetFileError(
        f"{src.where}: {src.key} must be a non-empty n x d matrix, got shape {x.shape}"
    )
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise DatasetFileError(f"{src.where}: {src.key} contains NaN or infinite values")
  return x


def _raw_labels(layout: Layout, src: Source, n: int) -> tuple[str, np.ndarray]:
  """Returns ("int", [n] int64) or ("multi", [n, C] float32)."""
  y = layout.load(src)
  path, var = src.where, src.key
  if y.dtype == bool:
    y = y.astype(np.uint8)
  if not np.all(np.isfinite(y)):
    raise DatasetFileError(f"{path}: {var} contains NaN or infinite values")
  is_column = y.ndim == 1 or (y.ndim == 2 and (y.shape[1] == 1 or y.shape[0] == 1) and y.size == n)
  if is_column:
    y = y.reshape(-1)
    if y.size != n:
      raise DatasetFileError(f"{path}: {var} has {y.size} labels, expected {n}")
    if not np.all(y == np.round(y)):
      raise DatasetFileError(f"{path}: {var} labels are not integers")
    if y.size and y.min() < 0:
      raise DatasetFileError(f"{path}: {var} has a negative label {int(y.min())}")
    return "int", y.astype(np.int64)
  if y.ndim != 2:
    raise DatasetFileError(
        f"{path}: {var} must be a label column or an n x C matrix, " f"got shape {y.shape}"
    )
  if y.shape[0] != n:
    raise DatasetFileError(
        f"{path}: {var} has {y.shape[0]} rows (shape {y.shape}), expected {n} "
        "to match the features"
    )
  if not np.all((y == 0) | (y == 1)):
    raise DatasetFileError(
        f"{path}: {var} is an n x C label matrix but its values are not all 0 or 1"
    )
  return "multi", y.astype(np.float32)


def _ranges(values: np.ndarray) -> str:
  """Sorted distinct integers as runs: [1, 2, 3, 5, 999] -> "1-3, 5, 999"."""
  runs, start = [], None
  for i, v in enumerate(values):
    if start is None:
      start = v
    if i + 1 == len(values) or values[i + 1] != v + 1:
      runs.append(f"{start}" if start == v else f"{start}-{v}")
      start = None
  return ", ".join(runs)


def _contiguous_classes(parts: dict[str, dict[str, Any]]) -> tuple[int, int]:
  """(base, C) of integer labels that are 0..C-1 or 1..C over the union of the splits.

  Raises:
    DatasetFileError: naming the label file of the first value that leaves a class
      empty below it (a single test label of 999 among classes 1..5), and the classes seen.
  """
  seen = np.unique(np.concatenate([p["y"] for p in parts.values()]))
  base = 1 if seen[0] == 1 else 0
  expected = np.arange(base, base + len(seen))
  if not np.array_equal(seen, expected):
    bad = int(seen[np.argmax(seen != expected)])
    path = next(p["lab_src"].where for p in parts.values() if np.any(p["y"] == bad))
    missing = np.setdiff1d(np.arange(base, bad), seen)
    raise DatasetFileError(
        f"{path}: label {bad} leaves class{'es' if len(missing) > 1 else ''} "
        f"{_ranges(missing)} without any row; labels over all splits must be 0..C-1 or "
        f"1..C with every class used (classes seen: {_ranges(seen)})"
    )
  return base, len(seen)


class CrossModalFeatures(SourceBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Pre-extracted image/text features with class labels, from .mat, .npy or HDF5 files.

  Args (keyword-only, besides those of ``GeneratorBasedBuilder`` such as
  ``data_dir`` and ``file_format="array_record"``):
    manual_dir: the source folder (required; determines the config name and so the
      build's directory, see the module docstring).
    num_validation: number of LAST training rows carved out as the validation split
      when there are no ``valid_*`` arrays; 0 (default) means no validation split.
    validation_from: ``"train"`` (the last training rows, default) or ``"test"`` (the
      FIRST ``num_validation`` test rows, as SDML's and MRL's scripts take theirs).
  """

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Raw texts (raw_text, text_id).",
      "1.2.0": "The raw texts' groups (group).",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at a folder of pre-extracted features in the DRSL / DSCMR "
      "layout: train_img.mat, train_txt.mat, train_img_lab.mat, test_img.mat, "
      "test_txt.mat, test_img_lab.mat (and optionally valid_img.mat, valid_txt.mat, "
      "valid_img_lab.mat), each holding one variable named like the file; or the same "
      "names as .npy files; or one .h5/.hdf5/.h5py file with train_imgs_deep, "
      "train_text(s), train_imgs_labels and the test_ (and valid_) equivalents; or "
      "Pascal VOC 2007's train.mat and test.mat (struct arrays with gist, taglist and "
      "objectcount)."
  )

  def __init__(
      self,
      *,
      manual_dir: str | os.PathLike | None = None,
      num_validation: int = 0,
      validation_from: str = "train",
      config: FeaturesConfig | None = None,
      **kwargs: Any,
  ):
    if config is None:
      if manual_dir is None:
        raise DatasetFileNotFoundError(
            "CrossModalFeatures needs manual_dir= (the folder of feature files)"
        )
      num_validation = int(num_validation)
      if num_validation < 0:
        raise errors.UserError(f"num_validation must be >= 0, got {num_validation}")
      if validation_from not in VALIDATION_FROM:
        raise errors.UserError(
            f"validation_from must be one of {VALIDATION_FROM}, got {validation_from!r}"
        )
      root = resolve_dir(manual_dir)
      extra = (num_validation,) if validation_from == "train" else (num_validation, "test")
      files = [*detect(root).source_files(), *feature_texts.FILES.values()]
      fp = source_fingerprint(root, files, *extra)
      tag = "" if validation_from == "train" else "t"
      config = FeaturesConfig(
          name=f"val{num_validation}{tag}_{fp}",
          description=(
              f"features from {root}; num_validation={num_validation} from {validation_from}"
          ),
          manual_dir=os.fspath(root),
          num_validation=num_validation,
          validation_from=validation_from,
      )
    elif not isinstance(config, FeaturesConfig):
      raise TypeError(f"config must be a FeaturesConfig, got {type(config)}")
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Pre-extracted image and text feature vectors with class labels "
            "(DRSL / DSCMR .mat, .npy, HDF5 or Pascal VOC 2007 layout)."
        ),
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "text": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "labels": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "label": tfds.features.Scalar(dtype=np.int64),
                "index": tfds.features.Scalar(dtype=np.int64),
                "raw_text": tfds.features.Text(),
                "text_id": tfds.features.Text(),
                "group": tfds.features.Text(),
            }
        ),
        supervised_keys=None,
        disable_shuffling=True,
    )

  def _source_dir(self) -> Path:
    return Path(self.builder_config.manual_dir)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    src = self.load_source()
    return {
        name: self.announced(name, self._generate_examples(part))
        for name, part in src["splits"].items()
    }

  def _generate_examples(self, part: dict[str, np.ndarray]):
    for r in range(len(part["index"])):
      i = int(part["index"][r])
      yield i, {
          "image": part["image"][r],
          "text": part["text"][r],
          "labels": part["labels"][r],
          "label": int(part["label"][r]),
          "index": i,
          "raw_text": part["raw_text"][r],
          "text_id": part["text_id"][r],
          "group": part["group"][r],
      }

  # ------------------------------------------------------------------ loading

  def _load_source(self, root: Path) -> dict[str, Any]:
    """Reads and validates every source file; returns the per-split arrays."""
    layout = detect(root)
    texts = feature_texts.has_texts(root)
    # With raw texts the fixed text vectors are optional (all splits' or none).
    fixed = not texts or any(layout.has(layout.source(p, "txt")) for p in PREFIXES)
    roles = ("img", "txt", "lab") if fixed else ("img", "lab")
    for prefix in ("train", "test"):
      for r in roles:
        src = layout.source(prefix, r)
        if not layout.has(src):
          layout.load(src)  # raises the layout's "missing" error naming the file / key
      if texts:
        feature_texts.require(root, prefix)
    # A validation set's members: (name, where, present).
    valid = [(s.name, s.where, layout.has(s)) for s in (layout.source("valid", r) for r in roles)]
    if texts:
      file = feature_texts.path(root, "valid")
      valid.append((file.name, str(file), file.is_file()))
    present = [m for m in valid if m[2]]
    if 0 < len(present) < len(valid):
      missing = [m for m in valid if not m[2]]
      raise DatasetFileNotFoundError(
          f"{missing[0][1]}: partial validation set -- found "
          f"{[m[0] for m in present]} but not {[m[0] for m in missing]} "
          f"(give all {_NUMBERS[len(valid)]} or none)"
      )
    has_valid = bool(present)
    k = self.builder_config.num_validation
    if has_valid and k:
      raise errors.UserError(
          f"{present[0][1]}: num_validation={k} but valid_* {layout.name} data is "
          "present; use num_validation=0 with explicit validation files"
      )

    prefixes = ("train", "valid", "test") if has_valid else ("train", "test")
    parts: dict[str, dict[str, Any]] = {}
    for prefix in prefixes:
      img_src, txt_src, lab_src = (layout.source(prefix, r) for r in ("img", "txt", "lab"))
      img = _features(layout, img_src)
      n = img.shape[0]
      txt = _features(layout, txt_src) if fixed else np.zeros((n, 0), np.float32)
      if txt.shape[0] != n:
        raise DatasetFileError(f"{txt_src.where}: {txt.shape[0]} rows but {img_src.name} has {n}")
      if texts:
        raw_text, text_id, group = feature_texts.read(
            feature_texts.path(root, prefix), n, img_src.name
        )
      else:
        raw_text = text_id = group = [""] * n
      kind, y = _raw_labels(layout, lab_src, img.shape[0])
      layout.check_pairs(prefix, y)
      if prefix != "train":
        ref = parts["train"]
        for name, x, src in (("image", img, img_src), ("text", txt, txt_src)):
          if x.shape[1] != ref[name].shape[1]:
            raise DatasetFileError(
                f"{src.where}: {x.shape[1]} columns but the training {name} "
                f"features have {ref[name].shape[1]}"
            )
        form = {"int": "a class column", "multi": "a 0/1 matrix"}
        if kind != ref["kind"]:
          raise DatasetFileError(
              f"{lab_src.where}: labels are {form[kind]} but {ref['lab_src'].name} has "
              f"{form[ref['kind']]}"
          )
        if kind == "multi" and y.shape[1] != ref["y"].shape[1]:
          raise DatasetFileError(
              f"{lab_src.where}: {y.shape[1]} label columns but "
              f"{ref['lab_src'].name} has {ref['y'].shape[1]}"
          )
      parts[prefix] = {
          "image": img,
          "text": txt,
          "raw_text": np.array(raw_text, dtype=object).reshape(n),
          "text_id": np.array(text_id, dtype=object).reshape(n),
          "group": np.array(group, dtype=object).reshape(n),
          "kind": kind,
          "y": y,
          "lab_src": lab_src,
      }

    kind = parts["train"]["kind"]
    base = None
    if kind == "int":
      base, num_classes = _contiguous_classes(parts)
      for p in parts.values():
        cls = p["y"] - base
        p["label"] = cls
        p["labels"] = np.eye(num_classes, dtype=np.float32)[cls]
    else:
      num_classes = parts["train"]["y"].shape[1]
      for p in parts.values():
        y = p["y"]
        single = y.sum(axis=1) == 1
        p["label"] = np.where(single, y.argmax(axis=1), -1).astype(np.int64)
        p["labels"] = y
    for p in parts.values():
      p["index"] = np.arange(p["image"].shape[0], dtype=np.int64)

    splits: dict[str, dict[str, np.ndarray]] = {}
    keys = ("image", "text", "labels", "label", "index", "raw_text", "text_id", "group")
    train = {key: parts["train"][key] for key in keys}
    if has_valid:
      splits["train"] = train
      splits["validation"] = {key: parts["valid"][key] for key in keys}
    elif k and self.builder_config.validation_from == "test":
      test = {key: parts["test"][key] for key in keys}
      n = test["index"].shape[0]
      if k >= n:
        raise errors.UserError(
            f"{layout.source('test', 'img').where}: num_validation={k} from the test rows "
            f"leaves no test rows (the file has {n})"
        )
      splits["train"] = train
      splits["validation"] = {key: v[:k] for key, v in test.items()}
      splits["test"] = {key: v[k:] for key, v in test.items()}
    elif k:
      n = train["index"].shape[0]
      if k >= n:
        raise errors.UserError(
            f"{layout.source('train', 'img').where}: num_validation={k} leaves no training "
            f"rows (the file has {n})"
        )
      splits["train"] = {key: v[: n - k] for key, v in train.items()}
      splits["validation"] = {key: v[n - k :] for key, v in train.items()}
    else:
      splits["train"] = train
    splits.setdefault("test", {key: parts["test"][key] for key in keys})
    return {"splits": splits, "num_classes": num_classes, "base": base}
