"""Files written whole or not at all: a temporary file beside the target, then a rename."""

from __future__ import annotations

from collections.abc import Callable
import os
import tempfile
from typing import IO


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True):
  """Calls `write(f)` on a temporary file in `path`'s folder (created if missing), syncs
  it to disk and renames it onto `path`, so readers (and a crash) never see `path`
  half-written. The file gets mode 0644 (the temporary file's is 0600). On any error the
  temporary file is removed and the error raised."""
  path = os.path.expanduser(os.fspath(path))
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_" + os.path.basename(path) + ".")
  try:
    with os.fdopen(fd, "wb" if binary else "w") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
