"""LDA topic proportions of bag-of-words counts: fitted on the training split, seeded.

:func:`fit_transform` fits scikit-learn's ``LatentDirichletAllocation`` (batch
variational Bayes, ``random_state=seed``, its other settings at their defaults) on the
training split's counts and gives every split's topic proportions (rows summing to 1).
Batch learning reads the whole training matrix at every iteration, so the fit does not
depend on any row order but the matrix's. :func:`cached_fit_transform` keeps the result in
a folder, keyed by the counts themselves (a fit on 2,173 x 10,000 Wikipedia counts takes
about 5 s on 2 cores).

The fitted model is a :class:`Model`: the arrays its transform reads, which any counts
over the same vocabulary go through (every split's proportions are its `transform`), and
which a run saves to make the same topics of new texts (`data.preprocessing`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from collections.abc import Mapping

import numpy as np
import scipy.sparse
from absl import logging

from crossmodal_jax import atomic
from crossmodal_jax import errors

__all__ = ["Model", "cached_fit", "cached_fit_transform", "fit_transform"]

# Part of every cache key: bump it when fit_transform's arithmetic or the file changes
# (2: the file also holds the model).
_CACHE_VERSION = 2
_CACHE_SUBDIR = "lda_fits"
_MODEL_PREFIX = "model__"  # the model's arrays in a cache file, beside the splits'


@dataclasses.dataclass(frozen=True)
class Model:
  """A fitted LDA: what scikit-learn's transform reads.

  Attributes:
    components: float64 ``[topics, V]``, the topic-word parameters (``components_``).
    exp_dirichlet_component: float64 ``[topics, V]``, exp(E[log beta]) of them.
    doc_topic_prior: the document-topic prior alpha.
    seed: the fit's ``random_state``.
  """

  components: np.ndarray
  exp_dirichlet_component: np.ndarray
  doc_topic_prior: float
  seed: int = 0

  @property
  def topics(self) -> int:
    return int(self.components.shape[0])

  @classmethod
  def of(cls, fitted, seed: int) -> Model:
    """The model of a fitted ``LatentDirichletAllocation``."""
    return cls(
        components=np.asarray(fitted.components_),
        exp_dirichlet_component=np.asarray(fitted.exp_dirichlet_component_),
        doc_topic_prior=float(fitted.doc_topic_prior_),
        seed=seed,
    )

  def _estimator(self):
    from sklearn import decomposition  # pylint: disable=g-import-not-at-top

    model = decomposition.LatentDirichletAllocation(
        n_components=self.topics, learning_method="batch", random_state=self.seed
    )
    model.components_ = self.components
    model.exp_dirichlet_component_ = self.exp_dirichlet_component
    model.doc_topic_prior_ = self.doc_topic_prior
    model.n_features_in_ = self.components.shape[1]
    return model

  def transform(self, counts: np.ndarray) -> np.ndarray:
    """float32 ``[n, topics]`` topic proportions of ``[n, V]`` counts (rows sum to 1)."""
    x = np.asarray(counts, dtype=np.float64)
    if x.shape[0] == 0:
      return np.zeros((0, self.topics), np.float32)
    return self._estimator().transform(scipy.sparse.csr_matrix(x)).astype(np.float32)

  def arrays(self) -> dict[str, np.ndarray]:
    """The model as named arrays (`from_arrays` reads them back)."""
    return {
        "components": self.components,
        "exp_dirichlet_component": self.exp_dirichlet_component,
        "doc_topic_prior": np.float64(self.doc_topic_prior),
        "seed": np.int64(self.seed),
    }

  @classmethod
  def from_arrays(cls, arrays) -> Model:
    return cls(
        components=np.asarray(arrays["components"]),
        exp_dirichlet_component=np.asarray(arrays["exp_dirichlet_component"]),
        doc_topic_prior=float(arrays["doc_topic_prior"]),
        seed=int(arrays["seed"]),
    )


def _check(counts: Mapping[str, np.ndarray], topics: int) -> None:
  if isinstance(topics, bool) or int(topics) != topics or topics < 1:
    raise errors.UserError(f"data.lda_topics must be an integer >= 1, got {topics!r}.")
  if "train" not in counts:
    raise ValueError(f"the counts need a 'train' split, got {sorted(counts)}")
  train = np.asarray(counts["train"])
  if train.ndim != 2 or train.shape[0] == 0 or train.shape[1] == 0:
    raise errors.UserError(
        f"An LDA needs training texts with vocabulary words; the training counts are {train.shape}."
    )


def fit_transform(
    counts: Mapping[str, np.ndarray], topics: int, seed: int = 0, with_model: bool = False
):
  """Fits an LDA of ``topics`` topics on ``counts["train"]``; every split's proportions.

  Args:
    counts: split -> ``[n, V]`` term counts over one vocabulary (a split may have 0 rows).
    topics: the number of topics, ``>= 1``.
    seed: the fit's ``random_state``.
    with_model: also return the fitted :class:`Model`.

  Returns:
    split -> float32 ``[n, topics]`` topic proportions (each row sums to 1), each the
    model's `Model.transform` of the split's counts; with ``with_model``, (that, model).

  Raises:
    UserError: ``topics`` is not a positive integer, or the training counts are empty.
  """
  _check(counts, topics)
  from sklearn import decomposition  # pylint: disable=g-import-not-at-top

  fitted = decomposition.LatentDirichletAllocation(
      n_components=int(topics), learning_method="batch", random_state=seed
  )
  fitted.fit(scipy.sparse.csr_matrix(np.asarray(counts["train"], dtype=np.float64)))
  model = Model.of(fitted, seed)
  out = {split: model.transform(x) for split, x in counts.items()}
  return (out, model) if with_model else out


def cached_fit_transform(
    counts: Mapping[str, np.ndarray],
    topics: int,
    cache_dir: str | os.PathLike | None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
  """:func:`fit_transform`, kept under ``<cache_dir>/lda_fits/<sha1>.npz`` (`cached_fit`)."""
  return cached_fit(counts, topics, cache_dir, seed)[0]


def cached_fit(
    counts: Mapping[str, np.ndarray],
    topics: int,
    cache_dir: str | os.PathLike | None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], Model]:
  """(:func:`fit_transform`, the model), kept under ``<cache_dir>/lda_fits/<sha1>.npz``.

  The sha1 covers every split's counts (name, dtype, shape, bytes), ``topics``, ``seed``
  and the code version, so a hit returns exactly what the fit returned. A file that cannot
  be read back is refitted; one that cannot be written is only logged. ``cache_dir=None``
  (or empty) always fits.
  """
  _check(counts, topics)
  if not cache_dir:
    return fit_transform(counts, topics, seed, True)
  digest = hashlib.sha1(f"v{_CACHE_VERSION}|{int(topics)}|{seed}|".encode())
  for split in sorted(counts):
    x = np.ascontiguousarray(counts[split])
    digest.update(f"|{split}|{x.dtype.str}|{x.shape}|".encode())
    if x.size:  # (a view of an empty array cannot be cast)
      digest.update(memoryview(x).cast("B"))
  folder = os.path.join(os.path.expanduser(os.fspath(cache_dir)), _CACHE_SUBDIR)
  path = os.path.join(folder, f"{digest.hexdigest()}.npz")
  if os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as f:
        out = {split: f[split] for split in counts}
        n = len(_MODEL_PREFIX)
        model = Model.from_arrays({k[n:]: f[k] for k in f.files if k.startswith(_MODEL_PREFIX)})
      if all(out[s].shape == (len(counts[s]), int(topics)) for s in counts):
        return out, model
      logging.warning("Refitting the LDA: %s does not hold the expected shapes.", path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      logging.warning("Refitting the LDA: %s is unreadable (%s).", path, e)
  logging.info("Fitting an LDA of %d topics on %d training texts.", topics, len(counts["train"]))
  out, model = fit_transform(counts, topics, seed, True)
  saved = {**out, **{_MODEL_PREFIX + k: v for k, v in model.arrays().items()}}
  try:
    atomic.atomic_write(path, lambda f: np.savez(f, **saved))
  except OSError as e:
    logging.warning("The LDA fit was not cached (%s).", e)
  return out, model
