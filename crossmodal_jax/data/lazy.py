"""Split arrays read lazily from a built TFDS dataset (array_record), a chunk at a time.

A large split (XMediaNet: 32k training pairs of 4,096-d images; NUS-WIDE: 43k) need not
sit in host memory: a :class:`LazyColumn` stands where the split's numpy array would and
reads the rows asked for from the built dataset's ``as_data_source()`` when it is indexed
(``column[rows]``, ``column[a:b]``, ``column[i]``). What the harness does with a split --
batches of fancy-indexed rows in training, slices of ``eval.batch_size`` rows in
evaluation, ``column[:2]`` to initialise -- then never holds more than those rows.
``np.asarray(column)`` still works (it reads every row, a chunk at a time), for the code
that needs the whole array (the classical baselines, DRSL's sparse text feed).

The columns of one split share a :class:`RowReader`, which keeps each thread's last read,
so a batch's image and text come from one read of its examples; it may be called from
several threads (training reads the next batches ahead,
:func:`crossmodal_jax.sampling.permutation_batches`). Rows are in the order of
the ``index`` feature, as :func:`crossmodal_jax.data.tfds_io.read_split` returns them.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import numpy as np

from crossmodal_jax.data import common

__all__ = ["LazyColumn", "RowReader", "column_stats", "is_lazy", "loaded"]

CHUNK = 1024  # rows per read when a whole column is read or scanned


class RowReader:
  """The examples of one split of a built TFDS dataset, read by row on demand.

  Args:
    source: ``builder.as_data_source(split)`` (random access, ``__getitems__``); its
      examples have an ``index`` feature, the row order.
    keys: the features read on demand.
    eager: small features read whole in the one pass over the split that finds the row
      order (labels, ``index``, raw texts): ``reader.eager[key]``, stacked in row order
      (texts as an object array of str).
  """

  def __init__(self, source: Any, keys: tuple[str, ...], eager: tuple[str, ...] = ()):
    self._source = source
    self._keys = tuple(keys)
    n = len(source)
    columns: dict[str, list[Any]] = {k: [] for k in {"index", *eager}}
    for start in range(0, n, CHUNK):  # one pass, a chunk at a time
      for ex in source.__getitems__(list(range(start, min(n, start + CHUNK)))):
        for k, v in columns.items():
          v.append(ex[k])
    stacked = {k: _stack(v) for k, v in columns.items()}
    order = np.argsort(stacked["index"], kind="stable")
    self._records = None if np.array_equal(order, np.arange(n)) else order
    self.eager = {k: stacked[k][order] for k in (*eager, "index") if k in stacked}
    self._n = n
    # Each thread's last read: a batch's image and text, read one after the other by the
    # same thread, are one read of its examples (also with threads reading ahead).
    self._last = threading.local()

  def __len__(self) -> int:
    return self._n

  def read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The kept features of ``rows`` (int64, in range), stacked in that order."""
    key = rows.tobytes()
    last = getattr(self._last, "read", None)
    if last is not None and last[0] == key:
      return last[1]
    records = rows if self._records is None else self._records[rows]
    examples = self._source.__getitems__(records.tolist()) if len(records) else []
    out = {}
    for k in self._keys:
      values = [np.asarray(ex[k]) for ex in examples]
      out[k] = np.stack(values) if values else np.zeros((0,), np.float32)
      out[k].setflags(write=False)  # shared by the columns: handed out as copies
    self._last.read = (key, out)
    return out


def _stack(values: list[Any]) -> np.ndarray:
  """Eager values stacked: numbers as an array, texts (bytes or str) as an object array of
  str (never a fixed-width one, which would drop trailing NUL characters)."""
  if not values:
    return np.zeros((0,), np.int64)
  if isinstance(values[0], (bytes, str, np.bytes_, np.str_)):
    out = np.empty(len(values), dtype=object)
    out[:] = [v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v) for v in values]
    return out
  return np.stack([np.asarray(v) for v in values])


class LazyColumn:
  """One array of a split, read from a :class:`RowReader` when indexed (module doc).

  Behaves as a read-only numpy array for what the harness does with split arrays:
  ``shape``, ``dtype``, ``ndim``, ``len()``, indexing by an int, a slice, an int array or
  a boolean mask of rows, and ``np.asarray``. ``transform`` (a function of a [rows, ...]
  block, such as the standardisation of image features) is applied to what is read.
  """

  def __init__(
      self,
      reader: RowReader,
      key: str,
      row_shape: tuple[int, ...],
      dtype: Any,
      transform: Callable[[np.ndarray], np.ndarray] | None = None,
      rows: np.ndarray | None = None,
  ):
    self._reader = reader
    self._key = key
    self._subset = rows  # the reader's rows this column shows (None: all, in order)
    self.shape = (len(reader) if rows is None else len(rows),) + tuple(row_shape)
    self.dtype = np.dtype(dtype)
    self._transform = transform

  def _like(self, **changes) -> LazyColumn:
    args = dict(
        reader=self._reader,
        key=self._key,
        row_shape=self.shape[1:],
        dtype=self.dtype,
        transform=self._transform,
        rows=self._subset,
    )
    args.update(changes)
    return LazyColumn(**args)

  def subset(self, index: Any) -> LazyColumn:
    """A column of the rows ``index`` selects (ints, a slice or a mask), still lazy."""
    rows = self._rows(index)
    return self._like(rows=rows if self._subset is None else self._subset[rows])

  @property
  def ndim(self) -> int:
    return len(self.shape)

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape)) * self.dtype.itemsize

  def __len__(self) -> int:
    return self.shape[0]

  def __repr__(self) -> str:
    return f"LazyColumn({self._key!r}, shape={self.shape}, dtype={self.dtype})"

  def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> LazyColumn:
    """The column with ``fn`` applied to every block read (after any earlier one)."""
    inner = self._transform
    return self._like(transform=fn if inner is None else (lambda x: fn(inner(x))))

  def _rows(self, index: Any) -> np.ndarray:
    n = len(self)
    if isinstance(index, slice):
      return np.arange(*index.indices(n), dtype=np.int64)
    rows = np.asarray(index)
    if rows.size == 0:
      return np.zeros(0, np.int64)
    if rows.dtype == bool:
      if rows.shape != (n,):
        raise IndexError(f"a boolean row mask needs shape ({n},), got {rows.shape}")
      return np.flatnonzero(rows)
    if rows.dtype.kind not in "iu":
      raise IndexError(f"{self!r} is indexed by rows (ints, a slice or a mask), got {index!r}")
    rows = rows.astype(np.int64).reshape(-1)
    bad = rows[(rows < -n) | (rows >= n)]
    if bad.size:
      raise IndexError(f"row {bad[0]} is out of range for the {n} rows of {self._key!r}")
    return np.where(rows < 0, rows + n, rows)

  def __getitem__(self, index: Any) -> np.ndarray:
    if isinstance(index, tuple):
      raise IndexError(f"{self!r} is indexed by rows only (no tuple index)")
    rows = self._rows(index)
    if self._subset is not None:
      rows = self._subset[rows]
    x = np.array(self._reader.read(rows)[self._key], dtype=self.dtype)  # a copy: writable
    x = x.reshape((len(rows),) + self.shape[1:])
    if self._transform is not None:
      x = np.asarray(self._transform(x), self.dtype)
    if np.ndim(index) == 0 and not isinstance(index, slice):
      return x[0]
    return x.reshape(np.shape(index) + self.shape[1:]) if np.ndim(index) > 1 else x

  def chunks(self, size: int | None = None) -> Iterator[np.ndarray]:
    """The column's rows, ``size`` (default ``CHUNK``) at a time."""
    size = size or CHUNK
    for start in range(0, len(self), size):
      yield self[start : start + size]

  def __array__(self, dtype=None, copy=None):
    del copy  # a new array either way
    parts = list(self.chunks())
    out = np.concatenate(parts) if parts else np.zeros(self.shape, self.dtype)
    return out.astype(dtype) if dtype is not None else out

  def astype(self, dtype, copy: bool = True) -> Any:
    """The column read as ``dtype`` (itself when that is its dtype and no copy is asked)."""
    if np.dtype(dtype) == self.dtype and not copy:
      return self
    return self._like(dtype=dtype)


def is_lazy(x: Any) -> bool:
  return isinstance(x, LazyColumn)


def loaded(split: common.Split) -> common.Split:
  """``split`` with every lazy column read whole (for code that fits on whole arrays);
  the columns are read together, a chunk of rows at a time (one read of each example)."""
  keys = [k for k, v in split.arrays.items() if is_lazy(v)]
  if not keys:
    return split
  parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
  for start in range(0, len(split), CHUNK):
    for k in keys:
      parts[k].append(split[k][start : start + CHUNK])
  arrays = dict(split.arrays)
  for k in keys:
    arrays[k] = np.concatenate(parts[k]) if parts[k] else split[k][:0]
  return common.Split(arrays)


def column_stats(x: Any) -> tuple[np.ndarray, np.ndarray]:
  """Per-column mean and standard deviation of [n, d] ``x``. A LazyColumn is scanned
  once, a chunk at a time, never read whole: float64 sums of each chunk's deviations from
  its own mean, merged (Chan et al.'s parallel variance), as accurate as two passes."""
  if not is_lazy(x):
    return x.mean(axis=0), x.std(axis=0)
  count, mean, m2 = 0, np.zeros(x.shape[1:]), np.zeros(x.shape[1:])
  for block in x.chunks():
    b = block.astype(np.float64)
    k, b_mean = len(b), b.mean(axis=0)
    delta = b_mean - mean
    m2 += np.square(b - b_mean).sum(axis=0) + np.square(delta) * count * k / (count + k)
    mean += delta * k / (count + k)
    count += k
  return mean.astype(x.dtype), np.sqrt(m2 / max(count, 1)).astype(x.dtype)
