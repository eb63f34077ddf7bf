"""TFDS builder for pre-extracted cross-modal feature files (the DRSL / DSCMR layout).

The source folder (``manual_dir``) holds MATLAB files, each with ONE variable named like
the file::

    train_img.mat      train_img      n_train x d_img   image features
    train_txt.mat      train_txt      n_train x d_txt   text features
    train_img_lab.mat  train_img_lab  labels of the n_train rows
    test_img.mat / test_txt.mat / test_img_lab.mat      the same for the test split
    valid_img.mat / valid_txt.mat / valid_img_lab.mat   optional: all three or none

Labels are either an integer class column (``n x 1``, ``1 x n`` or ``n``) or an
``n x C`` one-hot / multi-hot 0/1 matrix; all splits must use the same form. Integer
classes are 1-based when the smallest label over all splits is 1, else 0-based (a
negative label is an error), and over the union of the splits they must be exactly
0..C-1 or 1..C: a label that leaves a class below it without any row (a test label of
999 among classes 1..5) is an error naming its file, the value and the classes seen. For
0/1 matrices C is the number of columns.

Splits: ``train``, ``test`` and ``validation`` -- from the ``valid_*`` files when they
exist, otherwise the LAST ``num_validation`` training rows (constructor argument,
default 0 meaning no validation split; giving both is an error).

Example features: ``image`` and ``text`` float32 vectors (their length is read from the
files: the features are declared ``Tensor(shape=(None,))``), ``labels`` float32[C]
multi-hot, ``label`` int64 (the class of a single-label row, -1 for a row with several
labels or none) and ``index`` int64 (the row in the split's source file; carved
validation rows keep their training-file rows n_train-k..n_train-1).

Where the build lives: the builder config is named ``val<k>_<fingerprint>`` where the
fingerprint hashes the resolved source path and the size and mtime of its .mat files
(:func:`crossmodal_jax.data.tfds_io.source_fingerprint`), so datasets from different
folders -- which all share the name ``cross_modal_features`` -- never collide in one
``data_dir``, and a folder whose files changed is rebuilt rather than served stale.

Every file is validated before anything is written; any problem raises one
:class:`~crossmodal_jax.data.tfds_io.DatasetFileError` naming the file::

    builder = prepare(CrossModalFeatures, "/path/to/pascal_features", data_dir,
                      num_validation=100)
    train = read_split(builder, "train")   # {"image": [n, d_img], "labels": [n, C], ...}

:func:`load` does that for a dataset config and returns the ``common.Dataset`` the methods
consume (``crossmodal_jax.data.load_dataset`` calls it for ``name="features"``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from crossmodal_jax import errors
from crossmodal_jax.data import common
from crossmodal_jax.data.tfds_io import (
    DatasetFileError,
    DatasetFileNotFoundError,
    SourceBuilderMixin,
    prepare,
    read_split,
    require_file,
    require_manual_dir,
    resolve_dir,
    source_fingerprint,
)

__all__ = ["CrossModalFeatures", "FeaturesConfig", "load", "load_mat_variable"]

_MODALITIES = ("img", "txt", "img_lab")
_PREFIXES = ("train", "valid", "test")
SOURCE_FILES = tuple(f"{p}_{m}.mat" for p in _PREFIXES for m in _MODALITIES)


@dataclasses.dataclass(eq=False)
class FeaturesConfig(tfds.core.BuilderConfig):
  """Config of :class:`CrossModalFeatures`; built by its constructor."""

  manual_dir: str | None = None
  num_validation: int = 0


def load_mat_variable(path: Path, var: str) -> np.ndarray:
  """Loads variable ``var`` of a MATLAB (v4/v5/v7) file as a dense numpy array."""
  require_file(path)
  try:
    mat = scipy.io.loadmat(os.fspath(path), variable_names=[var])
  except Exception as e:  # corrupt file, MATLAB v7.3 (HDF5), ...
    raise DatasetFileError(
        f"{path}: cannot read MATLAB file ({type(e).__name__}: {e}); MATLAB v7.3 "
        "files must be re-saved with save(..., '-v7')"
    ) from None
  if var not in mat:
    try:
      found = sorted(n for n, _, _ in scipy.io.whosmat(os.fspath(path)))
    except Exception:
      found = []
    raise DatasetFileError(f"{path}: variable {var!r} is missing (found {found})")
  x = mat[var]
  if hasattr(x, "toarray"):  # scipy.sparse
    x = x.toarray()
  x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    raise DatasetFileError(f"{path}: {var} must be numeric, got dtype {x.dtype}")
  return x


def _features(path: Path, var: str) -> np.ndarray:
  x = load_mat_variable(path, var)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise DatasetFileError(f"{path}: {var} must be a non-empty n x d matrix, got shape {x.shape}")
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise DatasetFileError(f"{path}: {var} contains NaN or infinite values")
  return x


def _raw_labels(path: Path, var: str, n: int) -> tuple[str, np.ndarray]:
  """Returns ("int", [n] int64) or ("multi", [n, C] float32)."""
  y = load_mat_variable(path, var)
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
    path = next(p["lab_path"] for p in parts.values() if np.any(p["y"] == bad))
    missing = np.setdiff1d(np.arange(base, bad), seen)
    raise DatasetFileError(
        f"{path}: label {bad} leaves class{'es' if len(missing) > 1 else ''} "
        f"{_ranges(missing)} without any row; labels over all splits must be 0..C-1 or "
        f"1..C with every class used (classes seen: {_ranges(seen)})"
    )
  return base, len(seen)


class CrossModalFeatures(SourceBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Pre-extracted image/text features with class labels, from .mat files.

  Args (keyword-only, besides those of ``GeneratorBasedBuilder`` such as
  ``data_dir`` and ``file_format="array_record"``):
    manual_dir: the source folder (required; determines the config name and so the
      build's directory, see the module docstring).
    num_validation: number of LAST training rows carved out as the validation split
      when there are no ``valid_*.mat`` files; 0 (default) means no validation split.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at a folder of pre-extracted features in the DRSL / DSCMR "
      "layout: train_img.mat, train_txt.mat, train_img_lab.mat, test_img.mat, "
      "test_txt.mat, test_img_lab.mat (and optionally valid_img.mat, valid_txt.mat, "
      "valid_img_lab.mat), each holding one variable named like the file."
  )

  def __init__(
      self,
      *,
      manual_dir: str | os.PathLike | None = None,
      num_validation: int = 0,
      config: FeaturesConfig | None = None,
      **kwargs: Any,
  ):
    if config is None:
      if manual_dir is None:
        raise DatasetFileNotFoundError(
            "CrossModalFeatures needs manual_dir= (the folder of .mat files)"
        )
      num_validation = int(num_validation)
      if num_validation < 0:
        raise errors.UserError(f"num_validation must be >= 0, got {num_validation}")
      root = resolve_dir(manual_dir)
      fp = source_fingerprint(root, SOURCE_FILES, num_validation)
      config = FeaturesConfig(
          name=f"val{num_validation}_{fp}",
          description=f"features from {root}; num_validation={num_validation}",
          manual_dir=os.fspath(root),
          num_validation=num_validation,
      )
    elif not isinstance(config, FeaturesConfig):
      raise TypeError(f"config must be a FeaturesConfig, got {type(config)}")
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Pre-extracted image and text feature vectors with class labels "
            "(DRSL / DSCMR .mat layout)."
        ),
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "text": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "labels": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "label": tfds.features.Scalar(dtype=np.int64),
                "index": tfds.features.Scalar(dtype=np.int64),
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
      }

  # ------------------------------------------------------------------ loading

  def _load_source(self, root: Path) -> dict[str, Any]:
    """Reads and validates every .mat file; returns the per-split arrays."""
    for prefix in ("train", "test"):
      for m in _MODALITIES:
        require_file(root / f"{prefix}_{m}.mat")
    valid = [root / f"valid_{m}.mat" for m in _MODALITIES]
    present = [p for p in valid if p.is_file()]
    if 0 < len(present) < len(valid):
      missing = [p.name for p in valid if not p.is_file()]
      raise DatasetFileNotFoundError(
          f"{root / missing[0]}: partial validation set -- found "
          f"{[p.name for p in present]} but not {missing} (give all three or none)"
      )
    has_valid = bool(present)
    k = self.builder_config.num_validation
    if has_valid and k:
      raise errors.UserError(
          f"{root}: num_validation={k} but valid_*.mat files are present; "
          "use num_validation=0 with explicit validation files"
      )

    prefixes = ("train", "valid", "test") if has_valid else ("train", "test")
    parts: dict[str, dict[str, Any]] = {}
    for prefix in prefixes:
      img_path = root / f"{prefix}_img.mat"
      txt_path = root / f"{prefix}_txt.mat"
      lab_path = root / f"{prefix}_img_lab.mat"
      img = _features(img_path, f"{prefix}_img")
      txt = _features(txt_path, f"{prefix}_txt")
      if txt.shape[0] != img.shape[0]:
        raise DatasetFileError(
            f"{txt_path}: {txt.shape[0]} rows but {img_path.name} has " f"{img.shape[0]}"
        )
      kind, y = _raw_labels(lab_path, f"{prefix}_img_lab", img.shape[0])
      if prefix != "train":
        ref = parts["train"]
        for name, x, path in (("image", img, img_path), ("text", txt, txt_path)):
          if x.shape[1] != ref[name].shape[1]:
            raise DatasetFileError(
                f"{path}: {x.shape[1]} columns but the training {name} "
                f"features have {ref[name].shape[1]}"
            )
        if kind != ref["kind"]:
          raise DatasetFileError(
              f"{lab_path}: labels are {'a class column' if kind == 'int' else 'a 0/1 matrix'}"
              f" but train_img_lab.mat has "
              f"{'a class column' if ref['kind'] == 'int' else 'a 0/1 matrix'}"
          )
        if kind == "multi" and y.shape[1] != ref["y"].shape[1]:
          raise DatasetFileError(
              f"{lab_path}: {y.shape[1]} label columns but "
              f"train_img_lab.mat has {ref['y'].shape[1]}"
          )
      parts[prefix] = {"image": img, "text": txt, "kind": kind, "y": y, "lab_path": lab_path}

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
    keys = ("image", "text", "labels", "label", "index")
    train = {key: parts["train"][key] for key in keys}
    if has_valid:
      splits["train"] = train
      splits["validation"] = {key: parts["valid"][key] for key in keys}
    elif k:
      n = train["index"].shape[0]
      if k >= n:
        raise errors.UserError(
            f"{root / 'train_img.mat'}: num_validation={k} leaves no training "
            f"rows (the file has {n})"
        )
      splits["train"] = {key: v[: n - k] for key, v in train.items()}
      splits["validation"] = {key: v[n - k :] for key, v in train.items()}
    else:
      splits["train"] = train
    splits["test"] = {key: parts["test"][key] for key in keys}
    return {"splits": splits, "num_classes": num_classes, "base": base}


# --------------------------------------------------------------------------- as a Dataset


def load(data_config) -> common.Dataset:
  """Builds (once) and reads the feature folder ``data_config.manual_dir``.

  Args:
    data_config: the ``data`` section of a config; reads ``manual_dir``, ``data_dir`` and
      ``num_validation``.

  Returns:
    The dataset: float32 ``image`` and ``text``; ``label`` int32 ``[n]`` class ids, or
    float32 ``[n, C]`` multi-hot rows when any row has several labels or none (then
    ``meta["multi_label"]`` is True). Without validation data the validation split is
    empty, with the right shapes.

  Raises:
    UserError: if ``manual_dir`` is not set; DatasetFileError for bad files.
  """
  manual_dir = require_manual_dir(data_config)
  builder = prepare(
      CrossModalFeatures,
      manual_dir,
      data_config.data_dir,
      num_validation=data_config.num_validation,
  )
  available = set(builder.info.splits.keys())
  raw = {s: read_split(builder, s) for s in ("train", "validation", "test") if s in available}
  multi = any((r["label"] < 0).any() for r in raw.values())

  def split(s: str) -> common.Split:
    if s not in raw:  # no validation data: an empty split of the right shapes
      r = {k: v[:0] for k, v in raw["train"].items()}
    else:
      r = raw[s]
    label = r["labels"].astype(np.float32) if multi else r["label"].astype(np.int32)
    return common.Split(
        {
            "image": r["image"].astype(np.float32),
            "text": r["text"].astype(np.float32),
            "label": label,
        }
    )

  num_classes = raw["train"]["labels"].shape[1]
  return common.Dataset(
      name="features",
      train=split("train"),
      validation=split("validation"),
      test=split("test"),
      num_classes=num_classes,
      meta={"manual_dir": manual_dir, "multi_label": multi},
  )
