"""Truncated SVD (latent semantic analysis): fit on training rows, project any split.

:func:`fit_svd` computes the truncated SVD of the *uncentred* data matrix (like
scikit-learn's ``TruncatedSVD``): centring would destroy the sparsity structure of
count/TF-IDF data, and :func:`project` needs nothing but the ``[V, dim]`` components.
Small problems use the exact LAPACK SVD; large ones use a seeded randomized SVD (Halko et
al. 2011) with power iterations. Each component's sign is fixed so that its
largest-magnitude loading is positive, so the result is deterministic. Plain numpy.
:func:`cached_fit_svd` keeps each fit in a folder, keyed by the training matrix itself.
"""

from __future__ import annotations

import hashlib
import os
import zipfile

from absl import logging
import numpy as np

from crossmodal_jax import atomic

__all__ = ["cached_fit_svd", "fit_svd", "project"]

# Part of every cache key: bump it when fit_svd's arithmetic changes, so older fits are
# not read back for the new code.
_CACHE_VERSION = 1
_CACHE_SUBDIR = "svd_fits"
_N_OVERSAMPLES = 10  # fit_svd's randomized method: extra random directions ...
_N_ITER = 5  # ... and power iterations


def _randomized_svd_vt(
    x: np.ndarray, dim: int, seed: int, n_oversamples: int, n_iter: int
) -> np.ndarray:
  """Top-``dim`` right singular vectors ``[dim, V]`` by randomized SVD (Halko et al.)."""
  n, v = x.shape
  rank = min(dim + n_oversamples, n, v)
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(x @ rng.standard_normal((v, rank)))
  for _ in range(n_iter):
    z, _ = np.linalg.qr(x.T @ q)
    q, _ = np.linalg.qr(x @ z)
  _, _, vt = np.linalg.svd(q.T @ x, full_matrices=False)
  return vt[:dim]


def fit_svd(
    x: np.ndarray,
    dim: int,
    seed: int = 0,
    method: str = "auto",
    n_oversamples: int = _N_OVERSAMPLES,
    n_iter: int = _N_ITER,
) -> np.ndarray:
  """Fits a truncated-SVD projection (LSA; the data are not centred).

  Args:
    x: ``[n, V]`` training rows (e.g. TF-IDF of the training split).
    dim: number of components, ``1 <= dim <= min(n, V)``.
    seed: seed of the randomized method (the exact method ignores it).
    method: ``"exact"`` (LAPACK SVD of ``x``), ``"randomized"``, or ``"auto"``: exact
      when ``min(n, V) <= 1000`` or ``dim > min(n, V) / 4``, randomized otherwise (the
      exact SVD of a 2k x 10k matrix takes tens of seconds on a small CPU).
    n_oversamples: extra random directions of the randomized method.
    n_iter: power iterations of the randomized method.

  Returns:
    ``[V, dim]`` float32 components, ordered by decreasing singular value; column ``k``
    is the ``k``-th right singular vector, its sign chosen so that its largest-magnitude
    entry is positive. Beyond the numerical rank of ``x`` the components carry zero
    singular value (they are still orthonormal and deterministic).

  Raises:
    ValueError: if ``dim`` is out of range (no silent clipping) or ``method`` unknown.
  """
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"x must be 2-D [n, V], got shape {x.shape}")
  n, v = x.shape
  limit = min(n, v)
  if not 1 <= dim <= limit:
    raise ValueError(
        f"dim={dim} out of range: must be between 1 and min(n_rows, n_features) = "
        f"min({n}, {v}) = {limit}"
    )
  if method == "auto":
    method = "exact" if (limit <= 1000 or dim > limit / 4) else "randomized"
  if method == "exact":
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:dim]
  elif method == "randomized":
    vt = _randomized_svd_vt(x, dim, seed, n_oversamples, n_iter)
  else:
    raise ValueError(f"method must be 'auto', 'exact' or 'randomized', got {method!r}")
  components = vt.T  # [V, dim]
  biggest = components[np.argmax(np.abs(components), axis=0), np.arange(dim)]
  components = components * np.where(biggest < 0, -1.0, 1.0)
  return components.astype(np.float32)


def cached_fit_svd(
    x: np.ndarray, dim: int, cache_dir: str | os.PathLike | None, seed: int = 0
) -> np.ndarray:
  """:func:`fit_svd` (its default settings), kept under ``<cache_dir>/svd_fits/<sha1>.npy``.

  The sha1 covers the matrix (dtype, shape, bytes), ``dim``, ``seed``, the fit's settings
  and its code version (`_CACHE_VERSION`, bumped with any change of its arithmetic), so
  any change of the training rows fits again and a hit returns exactly what the fit
  returned. The randomized fit of Wikipedia's 2,173 x 10,000 TF-IDF rows takes 10-50 s on
  2 cores; hashing them a fraction of a second. Runs that start together on an empty
  cache each fit, and the last rename wins (the fits are identical). A file that cannot
  be read back as the components is refitted; one that cannot be written is only
  logged. ``cache_dir=None`` (or empty) always fits.
  """
  if not cache_dir:
    return fit_svd(x, dim, seed=seed)
  x = np.ascontiguousarray(x)
  settings = f"auto|{_N_OVERSAMPLES}|{_N_ITER}"  # the fit_svd call below
  digest = hashlib.sha1(
      f"v{_CACHE_VERSION}|{x.dtype.str}|{x.shape}|{dim}|{seed}|{settings}|".encode()
  )
  digest.update(memoryview(x).cast("B"))
  folder = os.path.join(os.path.expanduser(os.fspath(cache_dir)), _CACHE_SUBDIR)
  path = os.path.join(folder, f"{digest.hexdigest()}.npy")
  if os.path.exists(path):
    try:
      components = np.load(path, allow_pickle=False)
      if (
          isinstance(components, np.ndarray)
          and components.shape == (x.shape[1], dim)
          and components.dtype == np.float32
      ):
        return components
      logging.warning(
          "Refitting the SVD: %s does not hold [%d, %d] float32.", path, *x.shape[1:], dim
      )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      logging.warning("Refitting the SVD: %s is unreadable (%s).", path, e)
  components = fit_svd(x, dim, seed, "auto", _N_OVERSAMPLES, _N_ITER)
  try:
    atomic.atomic_write(path, lambda f: np.save(f, components, allow_pickle=False))
  except OSError as e:
    logging.warning("The SVD fit was not cached (%s).", e)
  return components


def project(x: np.ndarray, components: np.ndarray) -> np.ndarray:
  """Projects rows onto :func:`fit_svd` components.

  Args:
    x: ``[n, V]`` rows (transformed like the training rows, e.g. with the training idf).
    components: ``[V, dim]`` from :func:`fit_svd`.

  Returns:
    ``[n, dim]`` float32 ``x @ components``.
  """
  x = np.asarray(x)
  components = np.asarray(components)
  if x.ndim != 2 or components.ndim != 2 or x.shape[1] != components.shape[0]:
    raise ValueError(f"shapes do not match: x {x.shape}, components {components.shape}")
  return (x.astype(np.float64) @ components.astype(np.float64)).astype(np.float32)
