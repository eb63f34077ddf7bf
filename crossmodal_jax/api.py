"""The Python API: a config, a training run, its evaluation, and the trained model on raw inputs.

    import crossmodal_jax

    config = crossmodal_jax.get_config("drsl,wikipedia", seed=1,
                                       data=dict(manual_dir=...), train=dict(num_epochs=5))
    results = crossmodal_jax.train(config, workdir)      # as crossmodal-train
    results = crossmodal_jax.evaluate(workdir)           # as crossmodal-evaluate
    model = crossmodal_jax.load(workdir)                 # the best checkpoint
    scores = model.score(images, texts)                  # [n_images, n_texts]
    indices, scores = model.rank(images, texts, k=10)    # each image's 10 best texts

`load` needs no data folder: a training run saves what its data loading fitted beside
its config (`WORKDIR/preprocessing/`, `data.preprocessing`), and the model applies it to
raw inputs (raw image features, raw texts; `data.preprocessing` says what raw means for
each dataset). A workdir trained before runs saved it gets it from its data folder with
`save_preprocessing(workdir)`.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import jax
import ml_collections
import numpy as np

from crossmodal_jax import config_fields
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation as evaluate_lib
from crossmodal_jax import methods
from crossmodal_jax import protocols
from crossmodal_jax import ranking
from crossmodal_jax import runs
from crossmodal_jax import scoring
from crossmodal_jax import training as train_lib
from crossmodal_jax.data import common
from crossmodal_jax.data import preprocessing
from crossmodal_jax.methods import base

DIRECTIONS = base.DIRECTIONS


def get_config(spec: str = "drsl,synthetic", **overrides: Any) -> ml_collections.ConfigDict:
  """The config of "METHOD,DATASET[,PRESET]" (`crossmodal_jax.configs.default`), with
  overrides: top-level fields (`seed=1`), a dict per section (`train=dict(num_epochs=5)`)
  or dotted names (`**{"train.num_epochs": 5}`).

  Raises:
    UserError: an unknown method, dataset or preset (the choices listed), an unknown
      field (the closest one suggested) or a value of the wrong type.
  """
  from crossmodal_jax.configs import default  # pylint: disable=g-import-not-at-top

  try:
    config = default.get_config(spec)
  except ValueError as e:
    raise errors.UserError(str(e)) from None
  config_fields.override(config, overrides)
  return config


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
  """Trains and evaluates, as `crossmodal-train` does: resumes a workdir that holds
  checkpoints, saves the run's config, preprocessing and checkpoints, and returns the
  test split's results (results.json)."""
  return train_lib.train_and_evaluate(config, os.fspath(workdir))


def evaluate(
    workdir: str | os.PathLike,
    checkpoint: str | None = None,
    split: str = "test",
    protocol: str | None = None,
) -> dict[str, Any]:
  """Evaluates a trained workdir as `crossmodal-evaluate` does (its config.json, the
  checkpoint of eval.select_by unless `checkpoint` names one; a protocol's query split
  with `protocol`); writes and returns results.json's figures."""
  workdir = os.fspath(workdir)
  if protocol is not None:
    split = protocols.protocol_spec(protocol).query_split
  return evaluate_lib.evaluate(
      workdir, config=runs.load(workdir), checkpoint=checkpoint, split=split, protocol=protocol
  )


class PreprocessingNotSavedError(errors.MissingError):
  """A workdir without its saved preprocessing (trained before runs saved it)."""


def _preprocessing_dir(workdir: str) -> str:
  return os.path.join(workdir, preprocessing.DIRECTORY)


def save_preprocessing(
    workdir: str | os.PathLike, manual_dir: str | None = None, data_dir: str | None = None
) -> None:
  """Saves a workdir's preprocessing from its data: rebuilds the dataset of its
  config.json (reading its data folder, or `manual_dir` and `data_dir` instead) and saves
  what the loading fitted, which is what its training fitted (the fits are
  deterministic). For a workdir trained before runs saved their preprocessing."""
  workdir = os.fspath(workdir)
  config = runs.load(workdir)
  for field, value in (("manual_dir", manual_dir), ("data_dir", data_dir)):
    if value is not None:
      config.data[field] = os.fspath(value)
  with errors.config_values():
    dataset = data_lib.load_dataset(config.data)
  preprocessing.save(dataset, _preprocessing_dir(workdir))


def load(workdir: str | os.PathLike, checkpoint: str = "best") -> Model:
  """The trained model of a workdir at `checkpoint` ("best", "latest" or a step), taking
  raw inputs; "best" is the latest checkpoint when the run has no best-by-validation one.

  Raises:
    PreprocessingNotSavedError: the workdir has no saved preprocessing (saying how to
      save it);
    MissingError: no config.json or no such checkpoint.
  """
  workdir = os.fspath(workdir)
  config = runs.load(workdir)
  directory = _preprocessing_dir(workdir)
  if not preprocessing.saved(directory):
    raise PreprocessingNotSavedError(
        f"{workdir} has no saved preprocessing ({directory}): it was trained before runs "
        "saved what their data loading fitted. Save it from the run's data with "
        f"crossmodal_jax.save_preprocessing({workdir!r}) (rebuilds the dataset of its "
        "config.json from data.manual_dir; the fits are the same), or train it again."
    )
  prep = preprocessing.load(directory)
  with errors.config_values():
    method = methods.get_method(config, prep.shapes, prep.meta)
  variables, step, used = runs.restore_variables(
      workdir, method, _rows_like(prep), checkpoint, with_checkpoint=True
  )
  return Model(workdir, config, method, variables, step, used, prep)


def _rows_like(prep: preprocessing.Preprocessing) -> common.Split:
  """Two rows of zeros shaped as the training split's: what a method's variables are
  shaped from (their values are never read)."""
  return common.Split({k: np.zeros((2, *s), dtype) for k, (s, dtype) in prep.dims.items()})


class Model:
  """A trained model on raw inputs (`load`).

  Raw images are raw image features (`[n, d]`; region sequences `[n, R, d]` on the
  synthetic benchmark, or a dict of raw image arrays); raw texts are the texts (a list of
  strings) where the run's text features are made from texts (Wikipedia, a feature folder
  with raw texts), else the raw text array (a dict of them where the method reads
  several). `data.preprocessing` describes them.

  Attributes:
    workdir, config: the run's folder and config.
    method, variables: the method and its variables at `checkpoint`.
    step, checkpoint: the checkpoint's step and name ("best" or "latest", or the step).
    preprocessing: what the run's data loading fitted, applied to the raw inputs.
  """

  def __init__(self, workdir, config, method, variables, step, checkpoint, prep):
    self.workdir, self.config = workdir, config
    self.method, self.variables = method, variables
    self.step, self.checkpoint = int(step), checkpoint
    self.preprocessing = prep
    self._encoders = {"image": jax.jit(method.encode_image), "text": jax.jit(method.encode_text)}

  # --- Inputs ---------------------------------------------------------------------------

  def _inputs(self, modality: str, raw: Any) -> Any:
    """The method's encoder input of raw items of `modality`."""
    if modality == "image":
      arrays = self.preprocessing.images(raw)
    else:
      keys = [k for k in self.method.text_keys if k in self.preprocessing.dims]
      arrays = self.preprocessing.texts(raw, key=keys[0] if len(keys) == 1 else "text")
    try:
      return getattr(self.method, f"{modality}_input")(arrays)
    except KeyError as e:
      key = e.args[0]
      shape, _ = self.preprocessing.dims.get(key, ((), ""))
      name = self.config.get("method", type(self.method).__name__)
      made = "" if modality == "image" else self._made_from_texts()
      raise errors.UserError(
          f"Method {name!r} reads the {modality} array {key!r} (rows of shape {shape}), "
          f"which the raw {modality}s given do not make{made}: give it, e.g. as a dict of "
          f"arrays by name ({', '.join(sorted(arrays))} were made)."
      ) from None

  def _made_from_texts(self) -> str:
    text = self.preprocessing.text
    if text is None or not text.reads_texts:
      return " (this run has no raw texts)"
    return f" (raw texts make {', '.join(text.keys())} here)"

  def _embed(self, modality: str, raw: Any) -> Any:
    encode = self._encoders[modality]
    inputs = self._inputs(modality, raw)
    if scoring.num_items(inputs) == 0:
      raise errors.UserError(f"No {modality}s given.")
    return ranking.encode(lambda x: encode(self.variables, x), inputs, self.config.eval.batch_size)

  def embed_images(self, images: Any) -> Any:
    """The method's encodings of raw images (numpy arrays, or a pytree of them, with a
    leading item axis)."""
    return jax.tree.map(np.asarray, self._embed("image", images))

  def embed_texts(self, texts: Any) -> Any:
    """The method's encodings of raw texts (numpy arrays, or a pytree of them, with a
    leading item axis)."""
    return jax.tree.map(np.asarray, self._embed("text", texts))

  # --- Scores and ranking ---------------------------------------------------------------

  def score(self, images: Any, texts: Any, direction: str = "i2t") -> np.ndarray:
    """The float32 scores evaluation ranks by, of every (image, text) pair of raw inputs.

    "i2t" (the default) gives the [n_images, n_texts] matrix each image ranks the texts
    by: the method's ranking scores (`retrieval_scores`, after its fusion if it has one)
    of its score channels. "t2i" gives the [n_texts, n_images] matrix each text ranks
    the images by: the transpose of "i2t" for a method that ranks by its one score
    channel (the face's default `retrieval_scores`), but not for a fusion that normalises each query's
    row over the gallery, whose two directions normalise other rows.
    """
    _check_direction(direction)
    image_enc, text_enc = self._embed("image", images), self._embed("text", texts)
    channels = ranking.method_channels(
        self.method, self.variables, image_enc, text_enc, self.config.eval
    )
    scores = self.method.retrieval_scores(
        self.variables, ranking.oriented(channels)[direction], direction
    )
    return np.asarray(scores, np.float32)

  def rank(
      self, queries: Any, gallery: Any, k: int = 10, direction: str = "i2t"
  ) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k best gallery items: raw images ranking raw texts ("i2t"), or raw
    texts ranking raw images ("t2i"), streamed within eval.memory_budget_mb (any gallery
    size).

    Returns:
      (indices int32 [n_queries, k], scores float32 [n_queries, k]): the gallery items
      best first and their `score`s; equal scores keep the lower gallery index first.
    """
    _check_direction(direction)
    modalities = ("image", "text") if direction == "i2t" else ("text", "image")
    query_enc = self._embed(modalities[0], queries)
    gallery_enc = self._embed(modalities[1], gallery)
    n = scoring.num_items(gallery_enc)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
      raise errors.UserError(f"k={k!r} must be an integer in [1, {n}] (the gallery size).")
    scores, indices = ranking.top_k(
        self.method, self.variables, query_enc, gallery_enc, direction, int(k), self.config.eval
    )
    return np.asarray(indices, np.int32), np.asarray(scores, np.float32)


def _check_direction(direction: str):
  if direction not in DIRECTIONS:
    raise errors.UserError(f"Unknown direction {direction!r}; choose one of {DIRECTIONS}.")
