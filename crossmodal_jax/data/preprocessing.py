"""What loading a dataset fitted on its training data, to make a run's inputs from raw ones.

A dataset's arrays are not its raw inputs: image features are power-normalised and
standardised with the training statistics (`data.load_dataset`), and text features are
made from raw texts by pieces fitted on the training texts (`text.features.make`: the
vocabulary, idf, SVD, LDA, word-id sequences, the word graph's signal). `Preprocessing`
holds those fitted pieces, and its `images(raw)` and `texts(raw)` make the arrays of new
raw inputs with them, by the very functions that made the dataset's arrays (so the
training split's raw inputs give the training arrays exactly). The loaders put it in
`dataset.meta["preprocessing"]` (`META_KEY`).

A training run saves it with the run (`save`: `WORKDIR/preprocessing/`, arrays in
`arrays.npz` and the word graph in its own .npz, the rest in `preprocessing.json`), with
what a method is built from: the dataset's array shapes and dtypes and its metadata (the
word-vector table, the word graph, the class count, ...); `load` reads it back, so a
trained model takes raw inputs without its data folder (`crossmodal_jax.api`).

Raw inputs:

- images: an array `[n, d]` of raw image features (e.g. Wikipedia's SIFT histograms of
  `raw_features.mat`), or, for a dataset of region sequences (the synthetic benchmark), the
  regions `[n, R, d]`, whose mean is the global feature; or a dict of raw image arrays
  by their dataset key ("image", "image_regions");
- texts: raw texts (a list of strings), for a dataset whose text arrays are made from
  texts (Wikipedia; a feature folder with raw texts); else the raw text array (a dict of
  arrays by dataset key for several, e.g. {"text", "word_ids", "word_mask"}); a dict may
  give both ("raw_text": the strings, and a fixed text vector "text" the texts do not make).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from crossmodal_jax import atomic
from crossmodal_jax import errors
from crossmodal_jax.data.text import pipeline
from crossmodal_jax.data.text import vocab as vocab_lib
from crossmodal_jax.data.text import word_graph as word_graph_lib

META_KEY = "preprocessing"  # the key of a dataset's meta that holds its Preprocessing
DIRECTORY = "preprocessing"  # the folder of a workdir that holds it
RAW_TEXT = "raw_text"  # the key of raw texts (strings) in a dict of raw text inputs
_JSON = "preprocessing.json"
_ARRAYS = "arrays.npz"
_FORMAT = "crossmodal_jax.preprocessing"
_VERSION = 1
_NOT_SAVED_META = (META_KEY, "ids")  # per-row identities: of the dataset's rows only


def power(x: np.ndarray, p: float) -> np.ndarray:
  """sign(x) |x|^p, float32 (`data.image_power`)."""
  return (np.sign(x) * np.power(np.abs(x), p)).astype(np.float32)


def standardized(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """(x - mean) / std, float32 (`data.standardize_image`)."""
  return ((x - mean) / std).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """The pieces fitted on a dataset's training data (module doc).

  Attributes:
    text: the text pipeline fitted on the training texts (None: the text arrays are the
      raw ones).
    power: the image power (1: none).
    mean, std: the standardisation's training statistics (None: not standardised).
    image_from_regions: images are region sequences whose mean is the global feature.
    dims: key -> (per-row shape, dtype name) of the training split's arrays (saved runs).
    meta: the dataset's metadata a method is built from (saved runs).
  """

  text: pipeline.TextFit | None = None
  power: float = 1.0
  mean: np.ndarray | None = None
  std: np.ndarray | None = None
  image_from_regions: bool = False
  dims: dict[str, tuple[tuple[int, ...], str]] | None = None
  meta: dict[str, Any] | None = None

  @property
  def shapes(self) -> dict[str, tuple[int, ...]]:
    """key -> per-row shape (`Dataset.dims()` of the training split)."""
    return {k: shape for k, (shape, _) in (self.dims or {}).items()}

  # --- Raw inputs -> arrays -------------------------------------------------------------

  def image(self, x: Any) -> np.ndarray:
    """The "image" array of raw global image features: power, then standardisation."""
    x = np.asarray(x, np.float32)
    if self.power != 1.0:
      x = power(x, self.power)
    if self.mean is not None:
      x = standardized(x, self.mean, self.std)
    return x

  def images(self, raw: Any) -> dict[str, np.ndarray]:
    """The image arrays of raw images (module doc), by dataset key."""
    if isinstance(raw, Mapping):
      columns = dict(raw)
    else:
      x = np.asarray(raw)
      columns = {"image_regions" if x.ndim == 3 and self.image_from_regions else "image": x}
    if "image" not in columns and "image_regions" in columns and self.image_from_regions:
      regions = self._checked("image_regions", columns["image_regions"])
      columns["image"] = regions.mean(axis=1)
    out = {k: self._checked(k, v) for k, v in columns.items()}
    if "image" in out:
      out["image"] = self.image(out["image"])
    return out

  def texts(self, raw: Any, key: str = "text") -> dict[str, np.ndarray]:
    """The text arrays of raw texts (module doc), by dataset key; one array is `key`'s."""
    columns = _columns(raw, key)
    out: dict[str, np.ndarray] = {}
    strings = columns.pop(RAW_TEXT, None)
    if strings is not None:
      if self.text is None or not self.text.reads_texts:
        raise errors.UserError(
            "This run's dataset has no raw texts: give its text arrays "
            f"({', '.join(self.text_keys())}) instead of strings."
        )
      out.update(self.text.transform(_strings(strings)))
    for k, x in columns.items():
      x = self._checked(k, x)
      if k == "text" and self.text is not None and "text" in self.text.keys():
        raise errors.UserError(
            f"This run's 'text' is made from raw texts (data.text_feature="
            f"{self.text.feature!r}): give the texts (strings), not the array."
        )
      if k == "bow" and self.text is not None:
        x = self.text.signal(x)  # raw counts over the graph's words -> the graph signal
      out[k] = x
    return out

  def text_keys(self) -> tuple[str, ...]:
    """The dataset's arrays that are not image arrays or labels."""
    skip = ("image", "image_regions", "label")
    return tuple(k for k in self.dims or {} if k not in skip)

  def _checked(self, key: str, x: Any) -> np.ndarray:
    """`x` as the training split's `key` (its dtype), its per-row shape checked."""
    if key not in (self.dims or {}):
      x = np.asarray(x)
      return x.astype(np.float32) if x.dtype == np.float64 else x
    shape, dtype = self.dims[key]
    x = np.asarray(x, dtype=dtype)
    if x.shape[1:] != shape:
      raise errors.UserError(
          f"The raw {key!r} rows have shape {x.shape[1:]}; this run's have {shape} "
          f"(give an array [n, {', '.join(map(str, shape))}])."
      )
    return x

  # --- Saving with a run ----------------------------------------------------------------

  def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    fields = {"power": self.power, "image_from_regions": self.image_from_regions}
    arrays = {}
    if self.mean is not None:
      arrays.update({"image.mean": self.mean, "image.std": self.std})
    fields["text"] = None
    if self.text is not None:
      fields["text"], text_arrays = self.text.state()
      arrays.update({f"text.{k}": v for k, v in text_arrays.items()})
    return fields, arrays


def save(dataset, directory: str | os.PathLike) -> bool:
  """Writes `dataset.meta["preprocessing"]`, the shapes and dtypes of the dataset's
  arrays and its metadata to `directory` (each file whole or not at all; the JSON file,
  written last, marks a complete save). False, writing nothing, for a dataset without
  preprocessing (built by hand, not by `data.load_dataset`)."""
  prep = dataset.meta.get(META_KEY)
  if prep is None:
    return False
  fields, arrays = prep._state()  # pylint: disable=protected-access
  fields["dims"] = {
      k: {"shape": list(v.shape[1:]), "dtype": np.dtype(v.dtype).name}
      for k, v in dataset.train.arrays.items()
  }
  meta, vocabularies, graphs = {}, {}, []
  for k, v in dataset.meta.items():
    if k in _NOT_SAVED_META:
      continue
    if isinstance(v, np.ndarray):
      arrays[f"meta.{k}"] = v
    elif isinstance(v, vocab_lib.Vocabulary):
      vocabularies[k] = list(v.words)
    elif isinstance(v, word_graph_lib.WordGraph):
      v.save(os.path.join(directory, f"{k}.npz"))
      graphs.append(k)
    else:
      try:
        meta[k] = json.loads(json.dumps(v, default=_json_scalar))
      except (TypeError, ValueError):
        logging.warning("Not saving meta[%r] (a %s) with the run.", k, type(v).__name__)
  fields.update(meta=meta, vocabularies=vocabularies, word_graphs=graphs)
  fields.update(format=_FORMAT, version=_VERSION)
  atomic.atomic_write(os.path.join(directory, _ARRAYS), lambda f: np.savez(f, **arrays))
  atomic.atomic_write(
      os.path.join(directory, _JSON), lambda f: json.dump(fields, f, indent=1), binary=False
  )
  return True


def _json_scalar(x):
  if isinstance(x, np.generic):
    return x.item()
  raise TypeError(type(x).__name__)


def saved(directory: str | os.PathLike) -> bool:
  """Whether `directory` holds a complete `save`."""
  return os.path.isfile(os.path.join(directory, _JSON))


def load(directory: str | os.PathLike) -> Preprocessing:
  """The Preprocessing `save` wrote to `directory`, with its `dims` and `meta`.

  Raises:
    MissingError: when `directory` holds no complete save;
    UserError: when it holds one of another format.
  """
  path = os.path.join(directory, _JSON)
  if not saved(directory):
    raise errors.MissingError(f"{path} not found")
  with open(path, encoding="utf-8") as f:
    fields = json.load(f)
  if fields.get("format") != _FORMAT or fields.get("version") != _VERSION:
    raise errors.UserError(
        f"{path} is not a saved preprocessing of version {_VERSION} (format "
        f"{fields.get('format')!r}, version {fields.get('version')!r})."
    )
  with np.load(os.path.join(directory, _ARRAYS), allow_pickle=False) as f:
    arrays = {k: f[k] for k in f.files}
  meta = dict(fields["meta"])
  meta.update({k[len("meta.") :]: v for k, v in arrays.items() if k.startswith("meta.")})
  meta.update({k: vocab_lib.Vocabulary(tuple(w)) for k, w in fields["vocabularies"].items()})
  for k in fields["word_graphs"]:
    meta[k] = word_graph_lib.WordGraph.load(os.path.join(directory, f"{k}.npz"))
  text = None
  if fields["text"] is not None:
    text = pipeline.TextFit.from_state(
        fields["text"], {k[len("text.") :]: v for k, v in arrays.items() if k.startswith("text.")}
    )
  return Preprocessing(
      text=text,
      power=float(fields["power"]),
      mean=arrays.get("image.mean"),
      std=arrays.get("image.std"),
      image_from_regions=bool(fields["image_from_regions"]),
      dims={k: (tuple(d["shape"]), d["dtype"]) for k, d in fields["dims"].items()},
      meta=meta,
  )


def _columns(raw: Any, key: str) -> dict[str, Any]:
  """Raw text inputs as a dict: raw texts under RAW_TEXT, one array under `key`."""
  if isinstance(raw, Mapping):
    return dict(raw)
  if isinstance(raw, str):
    raise errors.UserError("Give a list of texts, not one string.")
  if isinstance(raw, (list, tuple)) and raw and all(isinstance(t, str) for t in raw):
    return {RAW_TEXT: list(raw)}
  x = np.asarray(raw)
  if x.dtype.kind in "USO":
    return {RAW_TEXT: x.tolist()}
  return {key: x}


def _strings(texts: Any) -> list[str]:
  texts = texts.tolist() if isinstance(texts, np.ndarray) else list(texts)
  bad = next((t for t in texts if not isinstance(t, str)), None)
  if bad is not None:
    raise errors.UserError(f"Raw texts must be strings; got a {type(bad).__name__}.")
  return texts
