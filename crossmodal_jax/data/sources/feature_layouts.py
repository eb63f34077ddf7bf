"""Readers of the pre-extracted feature-file layouts of :mod:`crossmodal_jax.data.sources.feature_builder`.

A *layout* maps each array the builder needs -- the image features, text features and
labels of the ``train``, ``valid`` and ``test`` splits -- to a :class:`Source` (the file
that holds it and its name there) and loads it as a numeric numpy array. Four layouts:

* ``mat``: one MATLAB file per array, ``train_img.mat`` holding the variable
  ``train_img`` and so on (the DRSL / DSCMR files; what DSCMR's ``load_data.py`` reads).
* ``npy``: the same nine names as ``.npy`` files (``train_img.npy``, ``train_img_lab.npy``,
  ...), one array each, read with ``numpy.load(allow_pickle=False)``.
* ``h5``: ONE HDF5 file (``*.h5``, ``*.hdf5`` or ``*.h5py``) with the keys that the same
  authors' later code reads from their ``*_deep_doc2vec_data*.h5py`` files (SDML's
  ``data_loader.py``, MRL's ``src/noisydataset.py``): ``<p>_imgs_deep``, ``<p>_text`` or
  ``<p>_texts``, ``<p>_imgs_labels`` and ``<p>_texts_labels`` for ``p`` in ``train``,
  ``test`` and optionally ``valid``. Each dataset is an ``n x d`` row-per-pair array as
  h5py writes it from numpy (MATLAB v7.3 files, which h5py sees transposed, are not
  read). The text labels, when present, must equal the image labels (the rows are pairs).
* ``voc2007``: Pascal VOC 2007 with the tag data of Hwang & Grauman (BMVC 2010), the
  layout that the cross-modal literature's Pascal VOC experiments read (e.g.
  ``util/load_pascal.m`` of TongJiayan/Multimodal-Retrieve): ``train.mat`` and
  ``test.mat`` (and optionally ``valid.mat``), each holding MATLAB struct arrays
  (``D1``, ``D2``, ... concatenated in the order of their names' numbers) with one
  element per image and the fields ``gist`` (the 512-d Gist), ``taglist`` (the image's
  tags in the order they were given, as 1-based word ids) and ``objectcount`` (how many
  objects of each of the 20 classes the image holds). The image feature is the Gist, the
  text feature the tag counts over word ids 1..V (V the largest id in any split), the
  labels the classes with at least one object (multi-hot: 5,011 / 4,952 rows; the
  single-object protocol's 2,808 / 2,841 keeps the rows with exactly one class, see
  ``data.single_label_rows``). Other fields (``filename``, ``color``, ``bow``, ...) are
  not read.

:func:`detect` picks the layout from the files in the folder; files of two layouts at once
are an error naming one file of each.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import scipy.io

from crossmodal_jax.data.tfds_io import DatasetFileError, DatasetFileNotFoundError

__all__ = ["Layout", "Source", "VocLayout", "detect", "load_mat_variable"]

ROLES = ("img", "txt", "lab")
PREFIXES = ("train", "valid", "test")
_FILE_STEMS = {"img": "img", "txt": "txt", "lab": "img_lab"}
H5_SUFFIXES = (".h5", ".hdf5", ".h5py")


@dataclasses.dataclass(frozen=True)
class Source:
  """One array of a layout: the file holding it and its variable / key name there."""

  path: Path
  key: str
  in_file: bool = False  # True when the file holds several arrays (h5)

  @property
  def name(self) -> str:
    """How other messages refer to it: the file name, or the key inside one file."""
    return self.key if self.in_file else self.path.name

  @property
  def where(self) -> str:
    """The start of an error message: the file, plus the key for a shared file."""
    return f"{self.path} [{self.key}]" if self.in_file else str(self.path)


def _numeric(x: np.ndarray, src: Source) -> np.ndarray:
  if hasattr(x, "toarray"):  # scipy.sparse
    x = x.toarray()
  x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    raise DatasetFileError(f"{src.where}: {src.key} must be numeric, got dtype {x.dtype}")
  return x


def load_mat_variable(path: Path, var: str) -> np.ndarray:
  """Loads variable ``var`` of a MATLAB (v4/v5/v7) file as a dense numpy array."""
  if not path.is_file():
    raise DatasetFileNotFoundError(f"{path}: required dataset file is missing")
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
  return _numeric(mat[var], Source(path, var))


class Layout:
  """The arrays of one source folder in one layout (see the module docstring)."""

  name = ""
  suffix = ""

  def __init__(self, root: Path):
    self.root = root

  def source(self, prefix: str, role: str) -> Source:
    """Where the ``role`` array (img, txt or lab) of split ``prefix`` lives."""
    stem = f"{prefix}_{_FILE_STEMS[role]}"
    return Source(self.root / f"{stem}{self.suffix}", stem)

  def has(self, src: Source) -> bool:
    return src.path.is_file()

  def load(self, src: Source) -> np.ndarray:
    """The array of ``src``, numeric; DatasetFileError naming the file if it is not."""
    raise NotImplementedError

  def source_files(self) -> list[str]:
    """Names (in the folder) of every file this layout may read, for the fingerprint."""
    return [self.source(p, r).path.name for p in PREFIXES for r in ROLES]

  def check_pairs(self, prefix: str, y: np.ndarray) -> None:
    """Extra checks of split ``prefix``'s labels ``y`` as loaded (h5: the text labels)."""


class MatLayout(Layout):
  name, suffix = "mat", ".mat"

  def load(self, src: Source) -> np.ndarray:
    return load_mat_variable(src.path, src.key)


class NpyLayout(Layout):
  name, suffix = "npy", ".npy"

  def load(self, src: Source) -> np.ndarray:
    if not src.path.is_file():
      raise DatasetFileNotFoundError(f"{src.path}: required dataset file is missing")
    try:
      x = np.load(src.path, allow_pickle=False)
    except Exception as e:  # not a .npy file, an object (pickled) array, a .npz, ...
      raise DatasetFileError(
          f"{src.path}: cannot read a numeric .npy array ({type(e).__name__}: {e})"
      ) from None
    if not isinstance(x, np.ndarray):
      raise DatasetFileError(f"{src.path}: expected one .npy array, got {type(x).__name__}")
    return _numeric(x, src)


class H5Layout(Layout):
  name = "h5"
  _KEYS = {"img": ("imgs_deep",), "txt": ("text", "texts"), "lab": ("imgs_labels",)}

  def __init__(self, root: Path, path: Path):
    super().__init__(root)
    self.path = path
    self._keys: set[str] | None = None

  def _h5py(self):
    try:
      import h5py  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise DatasetFileError(
          f"{self.path}: reading HDF5 feature files needs h5py (pip install h5py)"
      ) from None
    return h5py

  def _open(self):
    try:
      return self._h5py().File(self.path, "r")
    except DatasetFileError:
      raise
    except Exception as e:
      raise DatasetFileError(
          f"{self.path}: cannot read HDF5 file ({type(e).__name__}: {e})"
      ) from None

  def keys(self) -> set[str]:
    if self._keys is None:
      with self._open() as f:
        self._keys = set(f.keys())
    return self._keys

  def source(self, prefix: str, role: str) -> Source:
    names = [f"{prefix}_{k}" for k in self._KEYS[role]]
    key = next((k for k in names if k in self.keys()), names[0])
    return Source(self.path, key, in_file=True)

  def has(self, src: Source) -> bool:
    return src.key in self.keys()

  def load(self, src: Source) -> np.ndarray:
    if src.key not in self.keys():
      raise DatasetFileError(
          f"{self.path}: key {src.key!r} is missing (found {sorted(self.keys())})"
      )
    with self._open() as f:
      ds = f[src.key]
      if not hasattr(ds, "dtype"):
        raise DatasetFileError(f"{src.where}: {src.key} is an HDF5 group, not an array")
      try:
        x = ds[()]
      except Exception as e:
        raise DatasetFileError(
            f"{src.where}: cannot read {src.key} ({type(e).__name__}: {e})"
        ) from None
    return _numeric(x, src)

  def source_files(self) -> list[str]:
    return [self.path.name]

  def check_pairs(self, prefix: str, y: np.ndarray) -> None:
    src = Source(self.path, f"{prefix}_texts_labels", in_file=True)
    if not self.has(src):
      return
    t = self.load(src)
    if t.size != y.size or not np.array_equal(t.reshape(y.shape), y):
      raise DatasetFileError(
          f"{src.where}: the text labels differ from {prefix}_imgs_labels; each row must "
          "be an image-text pair with one set of labels"
      )


def _natural(name: str) -> tuple[str, int]:
  """Sort key of MATLAB variable names: D2 before D10."""
  stem = name.rstrip("0123456789")
  return stem, int(name[len(stem) :] or -1)


class VocLayout(Layout):
  """Pascal VOC 2007 tag data: ``train.mat`` / ``test.mat`` of struct arrays (module doc)."""

  name = "voc2007"
  FIELDS = {"img": "gist", "txt": "taglist", "lab": "objectcount"}

  def __init__(self, root: Path):
    super().__init__(root)
    self._rows: dict[Path, dict[str, list[np.ndarray]]] = {}
    self._vocab: int | None = None

  def source(self, prefix: str, role: str) -> Source:
    return Source(self.root / f"{prefix}.mat", self.FIELDS[role], in_file=True)

  def source_files(self) -> list[str]:
    return [f"{p}.mat" for p in PREFIXES]

  def _records(self, path: Path) -> dict[str, list[np.ndarray]]:
    """Each field's per-image values, over the file's struct arrays in name order."""
    if path in self._rows:
      return self._rows[path]
    if not path.is_file():
      raise DatasetFileNotFoundError(f"{path}: required dataset file is missing")
    try:
      mat = scipy.io.loadmat(os.fspath(path))
    except Exception as e:
      raise DatasetFileError(
          f"{path}: cannot read MATLAB file ({type(e).__name__}: {e}); MATLAB v7.3 "
          "files must be re-saved with save(..., '-v7')"
      ) from None
    names = sorted((n for n in mat if not n.startswith("__")), key=_natural)
    fields = tuple(self.FIELDS.values())
    structs = [n for n in names if mat[n].dtype.names]
    for n in structs:
      missing = [f for f in fields if f not in mat[n].dtype.names]
      if missing:  # a struct array of images that lacks a field: never dropped silently
        raise DatasetFileError(
            f"{path} [{n}]: the struct array lacks the field(s) {', '.join(missing)} (has "
            f"{', '.join(mat[n].dtype.names)})"
        )
    if not structs:
      raise DatasetFileError(
          f"{path}: no struct array with the fields {', '.join(fields)} (the Pascal VOC 2007 "
          f"tag layout); found variables {names}"
      )
    rows: dict[str, list[np.ndarray]] = {f: [] for f in fields}
    for n in structs:
      for i, element in enumerate(mat[n].reshape(-1, order="F")):
        for f in fields:
          try:
            rows[f].append(np.asarray(element[f], dtype=np.float64).reshape(-1))
          except (TypeError, ValueError):
            raise DatasetFileError(f"{path} [{n}]: element {i}'s {f} is not numeric") from None
    if not rows[fields[0]]:
      raise DatasetFileError(f"{path}: its struct arrays {structs} hold no image")
    self._rows[path] = rows
    return rows

  def _vocab_size(self) -> int:
    """V: the largest tag id in any split's file (the text feature's width)."""
    if self._vocab is None:
      largest = 0
      for prefix in PREFIXES:
        path = self.root / f"{prefix}.mat"
        if path.is_file():
          tags = self._records(path)["taglist"]
          for i, t in enumerate(tags):
            if t.size and (np.any(t < 1) or np.any(t != np.round(t))):
              bad = t[(t < 1) | (t != np.round(t))][0]
              raise DatasetFileError(
                  f"{path} [taglist]: image {i} has the tag id {bad:g}; tag ids are 1-based "
                  "integers"
              )
            largest = max(largest, int(t.max()) if t.size else 0)
      self._vocab = largest
    return self._vocab

  def load(self, src: Source) -> np.ndarray:
    rows = self._records(src.path)[src.key]
    if src.key == "taglist":
      counts = np.zeros((len(rows), self._vocab_size()), np.float32)
      for i, t in enumerate(rows):
        np.add.at(counts[i], t.astype(np.int64) - 1, 1.0)
      return counts
    sizes = {r.size for r in rows}
    if len(sizes) != 1:
      i = next(i for i, r in enumerate(rows) if r.size != rows[0].size)
      raise DatasetFileError(
          f"{src.where}: image {i} has {rows[i].size} values, image 0 has {rows[0].size}"
      )
    x = np.stack(rows)
    if src.key == "objectcount":
      if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise DatasetFileError(f"{src.where}: object counts must be finite and >= 0")
      return (x > 0).astype(np.uint8)  # the classes present: multi-hot labels
    return x


def detect(root: Path) -> Layout:
  """The layout of the feature folder ``root`` (``mat`` when it holds none of them).

  Raises:
    DatasetFileError: files of two layouts (naming one of each), or two HDF5 files.
  """
  found: dict[str, list[Path]] = {}
  for layout in (MatLayout(root), NpyLayout(root), VocLayout(root)):
    files = [root / n for n in layout.source_files() if (root / n).is_file()]
    if files:
      found[layout.name] = files
  h5 = sorted(p for p in root.iterdir() if p.suffix.lower() in H5_SUFFIXES and p.is_file())
  if h5:
    found["h5"] = h5
  if len(found) > 1:
    a, b = list(found)[:2]
    raise DatasetFileError(
        f"{found[a][0]}: the folder mixes feature-file layouts ({a}: {found[a][0].name}; "
        f"{b}: {found[b][0].name}); keep the files of one layout"
    )
  if "h5" in found:
    if len(h5) > 1:
      raise DatasetFileError(
          f"{h5[0]}: the folder holds several HDF5 files ({', '.join(p.name for p in h5)});"
          " keep exactly one"
      )
    return H5Layout(root, h5[0])
  if "npy" in found:
    return NpyLayout(root)
  if "voc2007" in found:
    return VocLayout(root)
  return MatLayout(root)
