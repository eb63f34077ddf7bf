"""Truncated SVD (latent semantic analysis): fit on training rows, project any split.

:func:`fit_svd` computes the truncated SVD of the *uncentred* data matrix (like
scikit-learn's ``TruncatedSVD``): centring would destroy the sparsity structure of
count/TF-IDF data, and :func:`project` needs nothing but the ``[V, dim]`` components.
Small problems use the exact LAPACK SVD; large ones use a seeded randomized SVD (Halko et
al. 2011) with power iterations. Each component's sign is fixed so that its
largest-magnitude loading is positive, so the result is deterministic. Plain numpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_svd", "project"]


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
    n_oversamples: int = 10,
    n_iter: int = 5,
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
