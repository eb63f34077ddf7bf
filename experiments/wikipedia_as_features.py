r"""Writes the Wikipedia dataset as a DRSL / DSCMR-layout folder of .mat files.

  python -m experiments.wikipedia_as_features \
      --wikipedia_dir=/path/to/wikipedia_dataset --output_dir=/tmp/wiki_features \
      [--texts] [--split=literature]

The folder holds the files `crossmodal_jax.data.sources.feature_builder` reads (and the DRSL
and DSCMR reference codes load), each with one variable named like the file:

  train_img.mat / test_img.mat          n x 128 raw SIFT bag-of-visual-words rows of
                                        raw_features.mat (not standardised)
  train_txt.mat / test_txt.mat          n x svd_dim text features
  train_img_lab.mat / test_img_lab.mat  n x 1 int64 class column, 0-based

Text features are made by the project's own modules, everything fitted on the 2,173
training articles only: stop words removed (the folder's stopwords.txt), vocabulary of
words seen at least `min_count` times (at most `vocab_size` words), TF-IDF with sublinear
tf and l2-normalised rows, then a truncated SVD to `svd_dim` dimensions. By default the
raw SVD projections are written (as in the DRSL pipeline); --unit_variance_svd writes the
library's "tfidf_svd" feature instead, whose columns are scaled to unit variance on train.

Splits (--split): train = the 2,173 official training pairs, and
- `test_list` (the default): test = ALL 693 official test pairs in list-file order (the
  list-order Wikipedia split's validation rows, its first 231, then its test rows); no
  valid_* files: read the folder with `--config.data.num_validation=0` for the reference
  protocol;
- `literature`: the literature's split (`data.wikipedia_split=literature`), its 231
  validation pairs as valid_* files and its 462 test pairs as test_*, each in list order.

--texts also writes each split's raw texts, `train_text.jsonl` / `valid_text.jsonl` /
`test_text.jsonl` (the article bodies as the Wikipedia dataset reads them, ids the text
ids), and the Wikipedia folder's stopwords.txt: read as the `features` dataset, the
folder's text features (`data.text_feature`, word sequences, the word graph) are then
Wikipedia's own, except "lda" (the folder's is an LDA fitted on its training texts, the
dataset's the 10 topics of raw_features.mat); `data.text_feature=file` reads the .mat
text vectors.

The written folder is read back through the `features` dataset and checked.
"""

import json
import os
import shutil

from absl import app
from absl import flags
import numpy as np
import scipy.io

from crossmodal_jax.configs import default as default_config
from crossmodal_jax import data as data_lib
from crossmodal_jax import logs
from crossmodal_jax.data import tfds_io
from crossmodal_jax.data.sources import feature_builder
from crossmodal_jax.data.sources import feature_texts
from crossmodal_jax.data.sources import wikipedia_builder
from crossmodal_jax.data.text import features as text_features
from crossmodal_jax.data.text import svd

from . import cli

SPLITS = ("test_list", "literature")

_WIKIPEDIA_DIR = flags.DEFINE_string(
    "wikipedia_dir", None, "The Rasiwasia et al. Wikipedia folder.", required=True
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where to write the .mat files (created if missing).", required=True
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS cache directory (default: the data config's data_dir)."
)
_SVD_DIM = flags.DEFINE_integer("svd_dim", 300, "Dimensions of the text SVD.")
_MIN_COUNT = flags.DEFINE_integer("min_count", 2, "Minimum training count of a word.")
_VOCAB_SIZE = flags.DEFINE_integer(
    "vocab_size", None, "Most vocabulary words kept (default: the data config's)."
)
_UNIT_VARIANCE_SVD = flags.DEFINE_bool(
    "unit_variance_svd",
    False,
    "Write the library's tfidf_svd feature (SVD columns scaled to unit variance on "
    "train) instead of the raw SVD projections.",
)
_TEXTS = flags.DEFINE_bool(
    "texts",
    False,
    "Also write each split's raw texts (*_text.jsonl, ids: the text ids) and the "
    "folder's stopwords.txt.",
)
_SPLIT = flags.DEFINE_enum(
    "split",
    "test_list",
    SPLITS,
    "test_list: test = all 693 test-list rows, no validation; literature: the "
    "literature's 231 validation rows as valid_*, its 462 test rows as test_*.",
)


def _data_config(wikipedia_dir: str, text_feature: str, split: str):
  """The Wikipedia data config of the folder: raw images, the given text feature."""
  config = default_config.data_config("wikipedia")
  config.manual_dir = wikipedia_dir
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  if _VOCAB_SIZE.value:
    config.vocab_size = _VOCAB_SIZE.value
  config.text_feature = text_feature
  config.svd_dim = _SVD_DIM.value
  config.min_count = _MIN_COUNT.value
  config.sublinear_tf = True
  config.stopwords = "dataset"
  config.standardize_image = False
  config.word_sequences = False
  # "test_list": the test list in file order is the list-order validation rows, then its
  # test rows.
  config.wikipedia_split = "literature" if split == "literature" else "list_order"
  return config


def _raw_splits(config) -> dict[str, dict[str, np.ndarray]]:
  """The builder's train / validation / test rows (texts, text ids, list rows), in the
  order of the dataset's splits."""
  builder = tfds_io.prepare(
      wikipedia_builder.WikipediaCrossModal,
      config.manual_dir,
      config.data_dir,
      split=config.wikipedia_split,
  )
  return {s: tfds_io.read_split(builder, s) for s in ("train", "validation", "test")}


def build_splits(wikipedia_dir: str, split: str) -> dict[str, dict[str, np.ndarray]]:
  """{"train", ["valid"], "test"} -> {"img", "txt", "img_lab", "text", "text_id", "index"}:
  the folder's arrays, each split's raw texts and text ids, and its rows in the list file."""
  if _UNIT_VARIANCE_SVD.value:
    config = _data_config(wikipedia_dir, "tfidf_svd", split)
    dataset = data_lib.load_dataset(config)
    texts = {s: getattr(dataset, s)["text"] for s in ("train", "validation", "test")}
  else:
    # The library's TF-IDF (fitted on train), projected on its truncated SVD (fitted on
    # train, cached as the tfidf_svd feature's): that feature without its unit-variance
    # column scaling.
    config = _data_config(wikipedia_dir, "tfidf", split)
    dataset = data_lib.load_dataset(config)
    components = svd.cached_fit_svd(dataset.train["text"], _SVD_DIM.value, config.data_dir)
    texts = {
        s: svd.project(getattr(dataset, s)["text"], components)
        for s in ("train", "validation", "test")
    }
  raw = _raw_splits(config)
  if split == "literature":
    parts = {"train": ("train",), "valid": ("validation",), "test": ("test",)}
  else:
    # The official test list in file order: validation (first rows), then test.
    parts = {"train": ("train",), "test": ("validation", "test")}
  out = {}
  for name, splits in parts.items():
    img = np.concatenate([getattr(dataset, s)["image"] for s in splits])
    txt = np.concatenate([texts[s] for s in splits])
    lab = np.concatenate([getattr(dataset, s)["label"] for s in splits])
    out[name] = {
        "img": img.astype(np.float32),
        "txt": txt.astype(np.float32),
        "img_lab": lab.astype(np.int64).reshape(-1, 1),
        "text": [t for s in splits for t in raw[s]["text"]],
        "text_id": [t for s in splits for t in raw[s]["text_id"]],
        "index": np.concatenate([raw[s]["index"] for s in splits]),
    }
  _check_against_source(wikipedia_dir, out)
  return out


def _check_against_source(wikipedia_dir: str, out) -> None:
  """Images must be raw_features.mat's rows, labels and text ids the list files'."""
  mat = scipy.io.loadmat(os.path.join(wikipedia_dir, wikipedia_builder.FEATURES_MAT))
  sources = {
      "train": ("I_tr", wikipedia_builder.TRAIN_LIST),
      "valid": ("I_te", wikipedia_builder.TEST_LIST),
      "test": ("I_te", wikipedia_builder.TEST_LIST),
  }
  for name, part in out.items():
    var, list_file = sources[name]
    rows = part["index"]
    source = np.asarray(mat[var], dtype=np.float32)[rows]
    if not np.array_equal(part["img"], source):
      raise ValueError(f"{name} images differ from {wikipedia_builder.FEATURES_MAT}:{var}")
    with open(os.path.join(wikipedia_dir, list_file)) as f:
      lines = [line.split() for line in f if line.strip()]
    if not np.array_equal(part["img_lab"][:, 0], [int(lines[i][-1]) - 1 for i in rows]):
      raise ValueError(f"{name} labels differ from {list_file}")
    if part["text_id"] != [lines[i][0] for i in rows]:
      raise ValueError(f"{name} text ids differ from {list_file}")


def write_folder(splits, output_dir: str, wikipedia_dir: str, texts: bool) -> None:
  """The .mat files of `splits` (and, with `texts`, the raw texts and stop words)."""
  os.makedirs(output_dir, exist_ok=True)
  for prefix, arrays in splits.items():
    for modality in ("img", "txt", "img_lab"):
      var = f"{prefix}_{modality}"
      scipy.io.savemat(os.path.join(output_dir, f"{var}.mat"), {var: arrays[modality]})
    if texts:
      with open(feature_texts.path(output_dir, prefix), "w", encoding="utf-8") as f:
        for text, text_id in zip(arrays["text"], arrays["text_id"]):
          f.write(json.dumps({"text": text, "id": text_id}) + "\n")
  stopwords = os.path.join(wikipedia_dir, text_features.STOPWORDS_FILE)
  if texts and os.path.exists(stopwords):
    shutil.copyfile(stopwords, os.path.join(output_dir, text_features.STOPWORDS_FILE))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  splits = build_splits(_WIKIPEDIA_DIR.value, _SPLIT.value)
  write_folder(splits, _OUTPUT_DIR.value, _WIKIPEDIA_DIR.value, _TEXTS.value)
  # Read back through the features dataset, the .mat text vectors as its text.
  config = default_config.data_config("features")
  config.manual_dir = _OUTPUT_DIR.value
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  config.standardize_image = False
  config.num_validation = 0
  config.text_feature = "file"
  dataset = data_lib.load_dataset(config)
  print(f"Wrote {_OUTPUT_DIR.value}; read back as the features dataset:")
  for name in ("train", "validation", "test"):
    split = getattr(dataset, name)
    print(
        f"  {name:10s} image {split['image'].shape} text {split['text'].shape} "
        f"label {split['label'].shape} {split['label'].dtype}"
    )
  print(f"  num_classes {dataset.num_classes}")
  for name, written in splits.items():
    split = getattr(dataset, {"valid": "validation"}.get(name, name))
    same = (
        np.array_equal(split["image"], written["img"])
        and np.array_equal(split["text"], written["txt"])
        and np.array_equal(split["label"], written["img_lab"][:, 0])
    )
    if not same:
      raise ValueError(f"{name}: the features dataset does not read back what was written")
  if _TEXTS.value:
    builder = tfds_io.prepare(
        feature_builder.CrossModalFeatures, config.manual_dir, config.data_dir
    )
    for name, written in splits.items():
      built = tfds_io.read_split(builder, {"valid": "validation"}.get(name, name))
      if list(built["raw_text"]) != written["text"] or list(built["text_id"]) != written["text_id"]:
        raise ValueError(f"{name}: the folder does not read back the texts written")
  print("  read-back matches the written arrays" + (" and texts" if _TEXTS.value else ""))


if __name__ == "__main__":
  cli.run(main)
