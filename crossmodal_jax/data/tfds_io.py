"""Building and reading the TFDS datasets of this package, without TensorFlow.

The builders of :mod:`crossmodal_jax.data.sources.wikipedia_builder` and
:mod:`crossmodal_jax.data.sources.feature_builder` are ordinary ``tfds.core.GeneratorBasedBuilder``
subclasses whose source files live in a *manual* folder. They are written in the
``array_record`` file format and read back with ``builder.as_data_source(split)``, the
two code paths of ``tensorflow-datasets`` that do not need TensorFlow.

Public API:

* :func:`prepare` -- construct a builder for a source folder and build it once.
* :func:`read_split` -- read a whole split into stacked numpy arrays, in row order.
* :func:`require_manual_dir` -- the source folder named by a dataset config.
* :class:`DatasetFileError` -- the one error raised for bad source files (a
  :class:`crossmodal_jax.errors.UserError`, so a ``ValueError``);
  :class:`DatasetFileNotFoundError` is the flavour raised for a missing folder or file
  (also a ``FileNotFoundError``).

Where a build lives. Each builder of this package takes the source folder as a
constructor argument (``manual_dir=``) and derives its builder-config name from a
fingerprint of that folder: the resolved path, and the size and modification time of
every source file it reads (plus builder options such as ``num_validation``). The data
therefore lands in ``<data_dir>/<dataset name>/<config name>/<version>/`` and two
different folders (or one folder whose files changed) never collide in one ``data_dir``:
they get different directories, and an unchanged folder reuses its earlier build. A
finished build can always be opened read-only without its source folder with
``tfds.builder_from_directory(builder.data_dir)`` (this also works with
:func:`read_split`).

Failed builds. The builders load and validate every source file before TFDS creates
any directory (:func:`prepare` calls ``builder.load_source()`` first), and TFDS itself
writes into a temporary ``incomplete.*`` directory that is renamed only on success.
:func:`prepare` additionally removes leftovers of interrupted earlier builds and the
empty directories a failed build created, so the next call rebuilds cleanly.

Concurrent builds. Several processes (or threads) may call :func:`prepare` for the same
folder at once, e.g. the seeds of one experiment started together on a fresh machine or
the workers of a parallel test run: the build runs under an exclusive ``flock`` on a
lock file in ``data_dir`` (removed again when released), so one caller builds and the
others wait, then open its result.

Quiet builds. A build logs one INFO line per split it writes (the builders of this package
announce their splits through :meth:`SourceBuilderMixin.announced`); TFDS's own output
(the "Downloading and preparing dataset Unknown size" and "downloaded and prepared"
lines, its nested progress bars) is switched off while :func:`prepare` builds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from tensorflow_datasets.core.utils import tqdm_utils

from crossmodal_jax import errors

__all__ = [
    "DatasetFileError",
    "DatasetFileNotFoundError",
    "prepare",
    "read_split",
    "require_manual_dir",
    "source_fingerprint",
]

FILE_FORMAT = "array_record"
_INCOMPLETE_PREFIX = "incomplete."


class DatasetFileError(errors.UserError):
  """A source file of a dataset is missing, unreadable or inconsistent.

  The message always names the offending file (and the line for text list files).
  """


class DatasetFileNotFoundError(DatasetFileError, errors.MissingError):
  """A required source folder or file does not exist."""


# --------------------------------------------------------------------------- helpers


def resolve_dir(manual_dir: str | os.PathLike) -> Path:
  """Returns the resolved source folder, or raises DatasetFileNotFoundError."""
  if manual_dir is None:
    raise DatasetFileNotFoundError("manual_dir is required (got None)")
  path = Path(manual_dir).expanduser().resolve()
  if not path.is_dir():
    what = "is not a folder" if path.exists() else "does not exist"
    raise DatasetFileNotFoundError(f"{path}: dataset source folder {what}")
  return path


def require_manual_dir(data_config) -> str:
  """The source folder of a file-backed dataset config (``data_config.manual_dir``).

  Returns:
    ``data_config.manual_dir`` with ``~`` expanded (existence is checked by
    :func:`prepare`).

  Raises:
    UserError: if ``data_config.manual_dir`` is empty.
  """
  if not data_config.manual_dir:
    raise errors.UserError(
        f"Dataset {data_config.name!r} reads files: set --config.data.manual_dir=DIR."
    )
  return os.path.expanduser(data_config.manual_dir)


def require_file(path: Path) -> Path:
  """Returns ``path`` if it is a file, else raises DatasetFileNotFoundError."""
  if not path.is_file():
    raise DatasetFileNotFoundError(f"{path}: required dataset file is missing")
  return path


def source_fingerprint(manual_dir: str | os.PathLike, names: Iterable[str], *extra: Any) -> str:
  """A 12-hex-digit fingerprint of a source folder.

  Hashes the resolved folder path, then name, size and mtime (ns) of each of
  ``names`` inside it (a missing entry hashes as missing), then ``extra``.
  """
  root = Path(manual_dir).expanduser().resolve()
  h = hashlib.sha1(str(root).encode("utf-8"))
  for name in sorted(names):
    p = root / name
    try:
      st = p.stat()
      h.update(f"\0{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    except OSError:
      h.update(f"\0{name}\0missing".encode())
  for e in extra:
    h.update(f"\0{e!r}".encode())
  return h.hexdigest()[:12]


class SourceBuilderMixin:
  """Shared by this package's builders: a validated, cached view of the source.

  Subclasses implement ``_load_source(manual_dir: Path) -> Any`` that reads and
  validates every source file (raising DatasetFileError) and ``_source_dir()`` that
  returns the folder to read.
  """

  _source_cache: tuple[Path, Any] | None = None

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    """The file defining the builder.

    Overrides TFDS's version, which imports the ``importlib_resources`` backport
    (not a declared dependency of tensorflow-datasets 4.9.10) for every builder
    that lives in a package.
    """
    try:
      return epath.Path(inspect.getfile(cls))
    except (TypeError, OSError):
      return None

  def load_source(self, manual_dir: str | os.PathLike | None = None) -> Any:
    """Reads and validates the source folder (cached per folder)."""
    root = resolve_dir(manual_dir if manual_dir is not None else self._source_dir())
    if self._source_cache is None or self._source_cache[0] != root:
      self._source_cache = (root, self._load_source(root))
    return self._source_cache[1]

  def clear_source(self) -> None:
    """Drops the cached source arrays (prepare() calls this after a build)."""
    self._source_cache = None

  def announced(self, split: str, examples: Iterable[Any]) -> Iterator[Any]:
    """Yields ``examples`` (a split's generator), then logs one line for the split.

    The builders wrap each split's generator in it, so a build logs one line per split.
    """
    n = 0
    for n, example in enumerate(examples, 1):
      yield example
    logging.info("%s: built split %s (%d examples).", self.name, split, n)

  # TFDS prints these two through termcolor, to stdout: "Downloading and preparing dataset
  # Unknown size (download: Unknown size, ...)" and "Dataset ... downloaded and prepared
  # to ...". A build announces its splits instead (announced()).
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  def _source_dir(self) -> Path:  # pragma: no cover - overridden
    raise NotImplementedError

  def _load_source(self, manual_dir: Path) -> Any:  # pragma: no cover
    raise NotImplementedError


def _remove_leftovers(data_path: Path) -> None:
  """Removes ``incomplete.*`` siblings of a dataset version directory."""
  parent = data_path.parent
  if not parent.is_dir():
    return
  for p in parent.iterdir():
    if p.name.startswith(_INCOMPLETE_PREFIX) and p.name.endswith("_" + data_path.name):
      shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
  """Holds an exclusive ``flock`` on the file ``path`` (created if absent).

  The file is unlinked before the lock is released, so it does not outlive the build. A
  waiter that then acquires the lock of the unlinked file sees that ``path`` no longer
  names it and tries again on the current file, so two callers never both hold it.
  """
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # any user's run may wait on it
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      try:
        current = os.stat(path).st_ino
      except FileNotFoundError:
        current = None
    except BaseException:
      os.close(fd)
      raise
    if current == os.fstat(fd).st_ino:
      break
    os.close(fd)  # the holder before us removed this file: lock the current one
  try:
    yield
  finally:
    try:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    finally:
      os.close(fd)  # releases the lock, whatever the unlink did


def _prune_empty(dirs: Iterable[Path]) -> None:
  for d in dirs:
    try:
      d.rmdir()  # only succeeds when empty
    except OSError:
      pass


def _build(
    builder: tfds.core.DatasetBuilder,
    root: Path,
    data_root: Path,
    data_path: Path,
) -> None:
  """Builds ``builder`` from ``root`` (prepare()'s build, run under its lock)."""
  # Directories between data_dir and the version dir that do not exist yet; removed
  # again (when empty) if the build fails.
  created = [
      d
      for d in [
          data_path.parent,
          data_path.parent.parent,
          data_root / "downloads" / "extracted",
          data_root / "downloads",
      ]
      if not d.exists() and data_root in d.parents
  ]
  _remove_leftovers(data_path)
  # TFDS's nested progress bars (splits, examples, shuffling) are off while it builds.
  bars = getattr(tqdm_utils, "_active", True)
  try:
    if isinstance(builder, SourceBuilderMixin):
      builder.load_source(root)  # validate everything before TFDS writes
    tfds.display_progress_bar(False)
    logging.info("Building %s from %s into %s (once).", builder.name, root, data_path)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(root)),
        file_format=FILE_FORMAT,
    )
  except BaseException:
    _remove_leftovers(data_path)
    if data_path.exists() and not builder.is_prepared():
      shutil.rmtree(data_path, ignore_errors=True)
    _prune_empty(sorted(created, key=lambda p: len(p.parts), reverse=True))
    raise
  finally:
    tfds.display_progress_bar(bars)
    if isinstance(builder, SourceBuilderMixin):
      builder.clear_source()


# --------------------------------------------------------------------------- API


def prepare(
    builder_cls: type[tfds.core.DatasetBuilder],
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    **builder_kwargs: Any,
) -> tfds.core.DatasetBuilder:
  """Constructs ``builder_cls`` for ``manual_dir`` and builds it once into ``data_dir``.

  The builder is constructed with ``file_format="array_record"``, ``data_dir`` and,
  when its constructor accepts it, ``manual_dir=``; ``builder_kwargs`` are passed on
  (e.g. ``num_validation=``). If the dataset is not yet prepared, the source folder
  is validated (``builder.load_source()``) and ``download_and_prepare`` runs with a
  ``tfds.download.DownloadConfig(manual_dir=manual_dir)``. Leftovers of an earlier
  failed or interrupted build are removed first; on failure the directories this
  call created are removed again and the error is re-raised. Concurrent callers for one
  folder build it once: the build holds a lock file in ``data_dir`` and the others wait
  for it, then open the finished build.

  Raises:
    DatasetFileNotFoundError: ``manual_dir`` is missing or a required file is.
    DatasetFileError: a source file is malformed or inconsistent.
  """
  root = resolve_dir(manual_dir)
  data_root = Path(data_dir).expanduser().resolve()
  kwargs = dict(builder_kwargs)
  kwargs.setdefault("file_format", FILE_FORMAT)
  if "manual_dir" in inspect.signature(builder_cls.__init__).parameters:
    kwargs["manual_dir"] = root
  builder = builder_cls(data_dir=os.fspath(data_root), **kwargs)
  if builder.is_prepared():
    # Constructed anew: another process may have finished the build after this builder
    # read the (then absent) dataset info, which would leave it without splits.
    return builder_cls(data_dir=os.fspath(data_root), **kwargs)

  data_path = Path(os.fspath(builder.data_path))
  data_root.mkdir(parents=True, exist_ok=True)
  lock = data_root / ("." + "_".join(data_path.relative_to(data_root).parts) + ".lock")
  with _exclusive(lock):
    if builder.is_prepared():  # another caller built it while this one waited
      return builder_cls(data_dir=os.fspath(data_root), **kwargs)
    _build(builder, root, data_root, data_path)
  return builder


def _to_numpy(values: list[Any]) -> np.ndarray:
  first = values[0]
  if isinstance(first, (bytes, str, np.bytes_, np.str_)):
    out = np.empty(len(values), dtype=object)
    out[:] = [v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v) for v in values]
    return out
  arr = np.asarray(first)
  if arr.dtype.kind in "SO":  # e.g. 0-d bytes arrays
    return _to_numpy([np.asarray(v).item() for v in values])
  return np.stack([np.asarray(v) for v in values])


def _empty_array(feature: Any) -> np.ndarray:
  dtype = getattr(feature, "np_dtype", None)
  if dtype is None or np.dtype(dtype).kind in "SOU":
    return np.empty(0, dtype=object)
  shape = tuple(0 if d is None else d for d in getattr(feature, "shape", ()) or ())
  return np.zeros((0, *shape), dtype=dtype)


def read_split(
    builder: tfds.core.DatasetBuilder, split: str, batch_size: int = 1024, source: Any = None
) -> dict[str, np.ndarray]:
  """Reads every example of ``split`` into a dict of stacked numpy arrays.

  Uses ``builder.as_data_source(split)`` (no TensorFlow; ``source``, when given, is that
  data source already opened by the caller) and batched ``__getitems__`` calls. Numeric
  features become ``[n, ...]`` arrays of their dtype, text features numpy object arrays
  of ``str``. Rows are returned sorted by the ``index`` feature when there is one (row
  order of the source files).
  """
  if source is None:
    source = builder.as_data_source(split=split)
  n = len(source)
  if n == 0:
    feats = builder.info.features
    return {k: _empty_array(feats[k]) for k in feats.keys()}
  columns: dict[str, list[Any]] = {}
  for start in range(0, n, batch_size):
    batch = source.__getitems__(list(range(start, min(n, start + batch_size))))
    for ex in batch:
      if not isinstance(ex, Mapping):
        raise TypeError(f"read_split expects dict examples, got {type(ex)}")
      for k, v in ex.items():
        columns.setdefault(k, []).append(v)
  out = {k: _to_numpy(v) for k, v in columns.items()}
  if "index" in out:
    order = np.argsort(out["index"], kind="stable")
    if not np.array_equal(order, np.arange(n)):
      out = {k: v[order] for k, v in out.items()}
  return out
