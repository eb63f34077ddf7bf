"""Compiling `cpu_kernels.cc` on first use into a cache folder, and loading it.

The shared library is built with the machine's C++ compiler (`$CXX`, else `c++`, `g++` or
`clang++` on the PATH) for this CPU (`-O3 -march=native -ffp-contract=off`) against the
FFI headers of the installed jaxlib (`jax.ffi.include_dir()`), and kept in the cache
folder (`$CROSSMODAL_JAX_KERNEL_CACHE`, else `$XDG_CACHE_HOME/crossmodal_jax/kernels`,
else `~/.cache/crossmodal_jax/kernels`) under a name that hashes everything the binary
depends on: the source, the compiler and its version, the flags, jaxlib's version and the
CPU. Later processes load the cached file; processes that start together build it once
(a lock file). Nothing here raises: without a compiler, or when the build fails, `load`
returns None with the reason (`reason()`), and the callers keep their XLA forms.
`CROSSMODAL_JAX_NATIVE=0` turns the library off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import threading

import jax
import jaxlib

SOURCE = pathlib.Path(__file__).with_name("cpu_kernels.cc")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-std=c++17", "-shared", "-fPIC", "-pthread")
# Without -march=native where a compiler does not know it (the kernel then uses the
# baseline vector width of the target).
FALLBACK_FLAGS = tuple(f for f in FLAGS if f != "-march=native")
COMPILE_TIMEOUT_S = 600

_lock = threading.Lock()
_state: dict = {}


def enabled() -> bool:
  """False when `CROSSMODAL_JAX_NATIVE=0` turns the native kernels off."""
  return os.environ.get("CROSSMODAL_JAX_NATIVE", "1").strip().lower() not in ("0", "false", "no")


def cache_dir() -> pathlib.Path:
  """The folder that keeps the built libraries."""
  if os.environ.get("CROSSMODAL_JAX_KERNEL_CACHE"):
    return pathlib.Path(os.environ["CROSSMODAL_JAX_KERNEL_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "crossmodal_jax" / "kernels"


def compiler() -> str | None:
  """The C++ compiler to build with, or None."""
  for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
    if name and (path := shutil.which(name)):
      return path
  return None


def _cpu_identity() -> str:
  """What -march=native depends on: the CPU's model and feature flags."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      lines = [l for l in f if l.startswith(("model name", "flags", "Features", "CPU part"))]
    return "".join(sorted(set(lines)))
  except OSError:
    return f"{platform.machine()} {platform.processor()}"


def _version(cxx: str) -> str:
  try:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout
  except (OSError, subprocess.SubprocessError):
    return ""


def _key(cxx: str, flags: tuple[str, ...]) -> str:
  h = hashlib.sha256()
  for part in (
      SOURCE.read_bytes(),
      cxx.encode(),
      _version(cxx).encode(),
      " ".join(flags).encode(),
      jaxlib.__version__.encode(),
      _cpu_identity().encode(),
  ):
    h.update(hashlib.sha256(part).digest())
  return h.hexdigest()[:20]


def _compile(cxx: str, flags: tuple[str, ...], out: pathlib.Path) -> str | None:
  """Builds the library at `out` (atomically); returns the compiler's error, or None."""
  fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".tmp.so", dir=out.parent)
  os.close(fd)
  cmd = [cxx, *flags, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    if proc.returncode != 0:
      return (proc.stderr or proc.stdout).strip()[-2000:] or f"exit status {proc.returncode}"
    os.replace(tmp, out)
    return None
  except (OSError, subprocess.SubprocessError) as e:
    return str(e)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _build() -> tuple[pathlib.Path | None, str]:
  cxx = compiler()
  if cxx is None:
    return None, "no C++ compiler found ($CXX, c++, g++, clang++)"
  folder = cache_dir()
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    return None, f"cannot create the kernel cache folder: {e}"
  errors = []
  for flags in (FLAGS, FALLBACK_FLAGS):
    out = folder / f"cpu_kernels-{_key(cxx, flags)}.so"
    with _file_lock(folder / (out.name + ".lock")):
      if out.exists():
        return out, f"loaded from the cache ({out.name})"
      error = _compile(cxx, flags, out)
    if error is None:
      return out, f"compiled by {os.path.basename(cxx)} ({out.name})"
    errors.append(error)
  return None, f"the build failed: {errors[-1]}"


class _file_lock:  # pylint: disable=invalid-name
  """An exclusive lock on `path` (a no-op where fcntl is missing)."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.fd = None

  def __enter__(self):
    try:
      import fcntl  # pylint: disable=g-import-not-at-top

      self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
      fcntl.flock(self.fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
      self.fd = None
    return self

  def __exit__(self, *exc):
    if self.fd is not None:
      os.close(self.fd)  # releases the lock


def load() -> ctypes.CDLL | None:
  """The loaded kernel library (built on the first call of the process), or None."""
  with _lock:
    if "lib" not in _state:
      lib, why = None, "turned off by CROSSMODAL_JAX_NATIVE=0"
      if enabled():
        try:
          path, why = _build()
        except OSError as e:  # e.g. the source is missing from the installed package
          path, why = None, f"cannot build: {e}"
        if path is not None:
          try:
            lib = ctypes.CDLL(str(path))
          except OSError as e:
            lib, why = None, f"cannot load {path.name}: {e}"
      _state["lib"], _state["reason"] = lib, why
    return _state["lib"]


def reason() -> str:
  """How the library was (or was not) obtained, after `load`."""
  load()
  return _state["reason"]
