"""The first stages of a two-stage ranking (`rerank`): each query's shortlist.

`eval.shortlist` names the first stage, which ranks the whole gallery cheaply and keeps
each query's top `eval.rerank_k` items (`first_stage`, `shortlist`):

- "sm": semantic matching (`baselines`), fitted on the run's own training features with
  its regularisations chosen on the validation split, as `baselines.run` chooses them
  (`SemanticMatching`);
- "own": the evaluated method's own separable approximation of its score
  (`Method.separable_code`, e.g. the first of a stack of joint layers), the dot
  products of per-item codes streamed through the gallery (`OwnCodes`);
- a path to another trained run's workdir on the same dataset and split: that run's own
  ranking (its best-by-validation checkpoint, `ranking.retrieve`), e.g. a method whose
  score is the cosine of common-space codes (`TrainedRun`).

Every first stage ranks ties to the lower gallery index, as every ranking of the library
does. This module names no method.
"""

from __future__ import annotations

import abc
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from crossmodal_jax import baselines
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import methods
from crossmodal_jax import ranking
from crossmodal_jax import runs
from crossmodal_jax import scoring
from crossmodal_jax.data import common
from crossmodal_jax.data import lazy
from crossmodal_jax.methods import base

DIRECTIONS = base.DIRECTIONS
SM = "sm"  # eval.shortlist: semantic matching
OWN = "own"  # eval.shortlist: the method's own separable approximation
# The data fields that choose a dataset's rows (not its features): a trained run's
# shortlist must come from the same values.
ROW_FIELDS = (
    "name",
    "wikipedia_split",
    "synthetic_preset",
    "synthetic_seed",
    "synthetic_num_train",
    "synthetic_multi_label",
    "num_validation",
    "validation_from",
    "single_label_rows",
)


def settings(eval_config) -> tuple[str, int]:
  """(eval.shortlist, eval.rerank_k), checked ("" when the eval section has no field).

  Raises:
    UserError: a shortlist that is none of "", "sm", "own" or a training workdir (a folder
      with a config.json), or a K that is not an integer >= 1; one line naming the field.
  """
  shortlist = eval_config.get("shortlist", "")
  k = eval_config.get("rerank_k", 100)
  if not isinstance(shortlist, str):
    raise errors.UserError(
        f"eval.shortlist must be a string ('', 'sm', 'own' or a workdir), got {shortlist!r}."
    )
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    raise errors.UserError(f"eval.rerank_k must be an integer >= 1, got {k!r}.")
  if shortlist in ("", SM, OWN):
    return shortlist, k
  if not os.path.isdir(shortlist):
    raise errors.UserError(
        f"Unknown eval.shortlist {shortlist!r}: give '' (off), 'sm' (semantic matching), "
        "'own' (the method's separable approximation) or a trained run's workdir (no such "
        "folder)."
    )
  if not os.path.exists(os.path.join(shortlist, runs.CONFIG)):
    raise errors.UserError(
        f"eval.shortlist={shortlist!r} has no {runs.CONFIG}: it is not a training workdir."
    )
  return shortlist, k


def _split_name(dataset: common.Dataset, split: common.Split) -> str:
  """The name of `split` in `dataset` (the very object)."""
  for name, s in dataset.splits.items():
    if s is split:
      return name
  raise ValueError("A first stage ranks its own dataset's splits: this split is not one of them.")


def _top_rows(scores: np.ndarray, k: int) -> np.ndarray:
  """int32 [n, k]: each row's k largest scores' columns, ties to the lower column (-0.0
  counts as 0.0), as a stable descending sort orders them."""
  s = np.asarray(scores, np.float32)
  s = np.where(s == 0, np.float32(0), s)
  return np.asarray(jax.device_get(jax.lax.top_k(jnp.asarray(s), k)[1]), np.int32)


class FirstStage(abc.ABC):
  """A first stage: ranks a dataset's gallery cheaply and gives each query's top items.

  Attributes:
    name: what results.json says ranked the shortlist ("sm", or the run's method).
    workdir: the trained run's workdir as given (None for "sm").
  """

  name: str = ""
  workdir: str | None = None

  def __init__(self, dataset: common.Dataset, eval_config):
    self.dataset = dataset
    self.eval_config = eval_config

  def info(self) -> dict[str, Any]:
    """{"first_stage": name} and, for a trained run, "first_stage_workdir"."""
    out = {"first_stage": self.name}
    if self.workdir is not None:
      out["first_stage_workdir"] = self.workdir
    return out

  @abc.abstractmethod
  def top(
      self,
      query: common.Split,
      gallery: common.Split,
      direction: str,
      k: int,
      queries: Any = None,
  ) -> np.ndarray:
    """int32 [n_query, k]: each query's k best gallery items by this stage, best first,
    ties to the lower gallery index.

    Args:
      query, gallery: splits of the stage's dataset (the very objects): the queries'
        (its images for "i2t", its texts for "t2i") and the gallery's (the other
        modality's items).
      direction: "i2t" or "t2i".
      k: items per query, 1 <= k <= the gallery size.
      queries: row indices of `query` (None: every row).
    """


class SemanticMatching(FirstStage):
  """Semantic matching as the first stage: one logistic regression per modality on the
  dataset's fixed features (its splits' "image" and "text"), each item mapped to its
  class posteriors, a pair scored by their cosine (`baselines`). The regularisations are
  chosen on the validation split by `baselines.run` itself; the two regressions are then
  fitted once with them and applied to every split. Fitted on the first `top`."""

  name = SM

  def __init__(self, dataset: common.Dataset, eval_config):
    super().__init__(dataset, eval_config)
    self.chosen: dict[str, float] | None = None
    self.fit_seconds: float | None = None
    self._posteriors: dict[str, tuple[np.ndarray, np.ndarray]] = {}

  def fit(self) -> "SemanticMatching":
    """Chooses the regularisations on validation and fits the regressions (once)."""
    if self.chosen is not None:
      return self
    start = time.perf_counter()
    try:
      chosen = baselines.run(SM, self.dataset)["chosen"]
    except errors.UserError as e:
      raise errors.UserError(f"eval.shortlist='sm': {e}") from e
    train = lazy.loaded(self.dataset.train)
    names = [n for n, s in self.dataset.splits.items() if len(s)]
    splits = [lazy.loaded(self.dataset.splits[n]) for n in names]
    image, text = (
        baselines.class_posteriors(
            train[key], train["label"], [s[key] for s in splits], chosen[f"c_{key}"]
        )
        for key in ("image", "text")
    )
    self._posteriors = {n: (i, t) for n, i, t in zip(names, image, text)}
    self.chosen = dict(chosen)
    self.fit_seconds = time.perf_counter() - start
    logging.info("Semantic matching first stage: %s chosen on validation.", self.chosen)
    return self

  def scores(self, query, gallery, direction: str, queries: Any = None) -> np.ndarray:
    """float32 [n_query, n_gallery]: the cosines the baseline ranks by (whole rows; for
    tests and small galleries)."""
    return np.concatenate(list(self._score_rows(query, gallery, direction, queries)), axis=0)

  def _score_rows(self, query, gallery, direction: str, queries: Any = None):
    """Blocks of whole rows of float32 cosines, computed image x text as the baseline
    computes them (a t2i block is the transpose of the gallery images x the query texts)."""
    self.fit()
    q_image, q_text = self._posteriors[_split_name(self.dataset, query)]
    g_image, g_text = self._posteriors[_split_name(self.dataset, gallery)]
    q = q_image if direction == "i2t" else q_text
    if queries is not None:
      q = q[np.asarray(queries, np.int64).reshape(-1)]
    n_gallery = len(g_image)
    rows = max(1, ranking.memory_budget(self.eval_config) // (n_gallery * 24))
    for start in range(0, len(q), rows):
      block = q[start : start + rows]
      if direction == "i2t":
        yield baselines.cosine(block, g_text).astype(np.float32)
      else:
        yield baselines.cosine(g_image, block).T.astype(np.float32)

  def top(self, query, gallery, direction, k, queries=None):
    blocks = [_top_rows(s, k) for s in self._score_rows(query, gallery, direction, queries)]
    return np.concatenate(blocks, axis=0)


def _dot(variables, image_codes, text_codes):
  """[P, Q] dot products of image codes [P, d] and text codes [Q, d]."""
  del variables
  return image_codes @ text_codes.T


class OwnCodes(FirstStage):
  """The evaluated method's own separable approximation as the first stage: each item's
  code (`Method.separable_code` of its encodings), a pair scored by the dot product of
  its image and text codes, every query's top K streamed (`scoring.top_k`, ties to the
  lower gallery index).

  Raises (at construction):
    UserError: a method without one (its `separable_code` is the face's default), naming
      the method.
  """

  name = OWN

  def __init__(self, dataset: common.Dataset, eval_config, method: base.Method, variables):
    super().__init__(dataset, eval_config)
    if type(method).separable_code is base.Method.separable_code:
      name = method.config.get("method", type(method).__name__)
      raise errors.UserError(
          f"eval.shortlist='own': method {name!r} has no separable approximation of its "
          "score; shortlist with 'sm' or the workdir of a trained run whose score is."
      )
    self.method, self.variables = method, variables
    self._code = jax.jit(method.separable_code, static_argnums=2)

  def code(self, encodings: Any, modality: str) -> jax.Array:
    """[n, d] float32 codes of the method's encodings of n images or texts."""
    codes = ranking.encode(
        lambda x: self._code(self.variables, x, modality), encodings, self.eval_config.batch_size
    )
    return codes.astype(jnp.float32)

  def codes(self, split: common.Split, modality: str, rows: Any = None) -> jax.Array:
    """[n, d] float32 codes of a split's images or texts (`rows` of it, None: all)."""
    if rows is not None:
      split = common.Split({key: v[rows] for key, v in split.arrays.items()})
    images = modality == "image"
    image_enc, text_enc = ranking.encode_split(
        self.method, self.variables, split, self.eval_config, images, not images
    )
    return self.code(image_enc if images else text_enc, modality)

  def top_of_codes(self, query_codes, gallery_codes, direction: str, k: int) -> np.ndarray:
    """int32 [n_query, k]: each query code's k best gallery codes by dot product, ties
    to the lower gallery index (streamed, `scoring.top_k`)."""
    _, indices = scoring.top_k(
        _dot,
        None,
        query_codes,
        gallery_codes,
        k,
        query_block=self.eval_config.query_block,
        gallery_block=self.eval_config.gallery_block,
        queries_are_images=direction == "i2t",
        pair_bytes=4,
        memory_budget=ranking.memory_budget(self.eval_config),
    )
    return np.asarray(indices, np.int32)

  def top(self, query, gallery, direction, k, queries=None):
    images = direction == "i2t"
    rows = None if queries is None else np.asarray(queries, np.int64).reshape(-1)
    q = self.codes(query, "image" if images else "text", rows)
    g = self.codes(gallery, "text" if images else "image")
    return self.top_of_codes(q, g, direction, k)


def _rows_described(data) -> str:
  fields = [f"{f}={data[f]!r}" for f in ROW_FIELDS[1:] if f in data]
  return f"{data['name']!r}" + (f" ({', '.join(fields)})" if fields else "")


def same_rows(dataset: common.Dataset, other: common.Dataset) -> str | None:
  """None when two datasets hold the same rows (split sizes, labels, and item ids where
  both have them), else the first difference."""
  ids, other_ids = dataset.meta.get("ids") or {}, other.meta.get("ids") or {}
  for name, split in dataset.splits.items():
    there = other.splits[name]
    if len(split) != len(there):
      return f"the {name} split has {len(split)} items vs {len(there)}"
    if not np.array_equal(np.asarray(split["label"]), np.asarray(there["label"])):
      return f"the {name} split's labels differ"
    if name in ids and name in other_ids and ids[name] != other_ids[name]:
      return f"the {name} split's item ids differ"
  return None


def _row_fields(data, other_data) -> str | None:
  """The first data field that chooses the rows (`ROW_FIELDS`) and differs, if any."""
  for field in ROW_FIELDS:
    if data.get(field) != other_data.get(field):
      return f"data.{field} {data.get(field)!r} vs {other_data.get(field)!r}"
  return None


class TrainedRun(FirstStage):
  """Another trained run's own ranking as the first stage: its best-by-validation
  checkpoint, its data config's features of the same rows, `ranking.top_k` (streamed).

  Raises (at construction):
    UserError: the run's dataset is not the evaluated one (another dataset or split: a
      data field of `ROW_FIELDS`, or `same_rows`), naming both workdirs; MissingError: no
      config.json or checkpoint.
  """

  def __init__(
      self,
      path: str,
      config: ml_collections.ConfigDict,
      dataset: common.Dataset,
      workdir: str | None = None,
      other_dataset: common.Dataset | None = None,
  ):
    super().__init__(dataset, config.eval)
    self.workdir = path
    other = runs.load(path)
    self.config = other
    self.name = other.method
    here = workdir if workdir is not None else "the evaluated run"
    differs = _row_fields(config.data, other.data)
    if differs is None:
      if other_dataset is None:
        with errors.config_values():
          other_dataset = data_lib.load_dataset(other.data)
      differs = same_rows(dataset, other_dataset)
    if differs is not None:
      raise errors.UserError(
          f"eval.shortlist={path!r} is a run on another dataset or split than {here}: "
          f"{here} is on {_rows_described(config.data)}, {path} on "
          f"{_rows_described(other.data)} ({differs}); a shortlist must rank the same items."
      )
    self.other_dataset = other_dataset
    with errors.config_values():
      self.method = methods.get_method(other, other_dataset.dims(), other_dataset.meta)
    self.variables, self.step = runs.restore_variables(path, self.method, other_dataset.train)

  def top(self, query, gallery, direction, k, queries=None):
    q = self.other_dataset.splits[_split_name(self.dataset, query)]
    g = self.other_dataset.splits[_split_name(self.dataset, gallery)]
    _, indices = ranking.retrieve(
        self.method, self.variables, q, g, direction, k, self.eval_config, queries=queries
    )
    return np.asarray(indices, np.int32)


def first_stage(
    config: ml_collections.ConfigDict,
    dataset: common.Dataset,
    workdir: str | None = None,
    method: base.Method | None = None,
    variables: Any = None,
) -> FirstStage | None:
  """The first stage `config.eval.shortlist` names, for the evaluated run's `dataset`
  (None when it is off). `workdir`: the evaluated run's, named in errors; `method`,
  `variables`: the evaluated run's, which "own" ranks with.

  Raises:
    UserError: a bad eval.shortlist or eval.rerank_k (`settings`), a trained run on
      another dataset or split, or "own" for a method without a separable approximation.
  """
  shortlist, _ = settings(config.eval)
  if not shortlist:
    return None
  if shortlist == SM:
    return SemanticMatching(dataset, config.eval)
  if shortlist == OWN:
    if method is None:
      raise ValueError("eval.shortlist='own' ranks with the evaluated method: pass it.")
    return OwnCodes(dataset, config.eval, method, variables)
  return TrainedRun(shortlist, config, dataset, workdir)


def described(info: dict[str, Any]) -> str:
  """A first stage's ranking in words, from `FirstStage.info()` (results.json's "rerank")."""
  name = info["first_stage"]
  if name == SM:
    return "semantic matching's ranking"
  if name == OWN:
    return "the method's own separable ranking"
  where = f" ({info['first_stage_workdir']})" if "first_stage_workdir" in info else ""
  return f"{name}{where}'s ranking"


def shortlist(
    stage: FirstStage, query: common.Split, gallery: common.Split, k: int, queries: Any = None
) -> dict[str, np.ndarray]:
  """The first stage of both directions: {"i2t", "t2i"}: int32 [n_query, k] gallery
  indices per query, best first, ties to the lower gallery index (`FirstStage.top`)."""
  return {d: stage.top(query, gallery, d, k, queries) for d in DIRECTIONS}
