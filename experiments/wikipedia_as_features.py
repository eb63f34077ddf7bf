r"""Writes the Wikipedia dataset as a DRSL / DSCMR-layout folder of .mat files.

  python -m experiments.wikipedia_as_features \
      --wikipedia_dir=/path/to/wikipedia_dataset --output_dir=/tmp/wiki_features

The folder holds the files `crossmodal_jax.data.sources.feature_builder` reads (and the DRSL and DSCMR
reference codes load), each with one variable named like the file:

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

Splits: train = the 2,173 official training pairs; test = ALL 693 official test pairs in
list-file order (our Wikipedia dataset's validation split, its first 231 rows, followed
by its test split). No valid_* files are written: read the folder with
`--config.data.num_validation=0` for the reference protocol.

The written folder is read back through the `features` dataset and its shapes printed.
"""

import os

from absl import app
from absl import flags
import numpy as np
import scipy.io

from configs import default as default_config
from crossmodal_jax import data as data_lib
from crossmodal_jax import logs
from crossmodal_jax.data.text import svd
from crossmodal_jax.data.sources import wikipedia_builder

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


def _data_config(wikipedia_dir: str, text_feature: str):
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
  # The test list in file order is its validation rows, then its test rows.
  config.wikipedia_split = "list_order"
  return config


def build_splits(wikipedia_dir: str) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "test"} -> {"img", "txt", "img_lab"} arrays of the folder's files."""
  if _UNIT_VARIANCE_SVD.value:
    dataset = data_lib.load_dataset(_data_config(wikipedia_dir, "tfidf_svd"))
    texts = {s: getattr(dataset, s)["text"] for s in ("train", "validation", "test")}
  else:
    # The library's TF-IDF (fitted on train), projected on its truncated SVD (fitted on
    # train): the tfidf_svd feature without its unit-variance column scaling.
    dataset = data_lib.load_dataset(_data_config(wikipedia_dir, "tfidf"))
    components = svd.fit_svd(dataset.train["text"], _SVD_DIM.value, seed=0)
    texts = {
        s: svd.project(getattr(dataset, s)["text"], components)
        for s in ("train", "validation", "test")
    }
  parts = {
      "train": ("train",),
      # The official test list in file order: validation (first rows), then test.
      "test": ("validation", "test"),
  }
  out = {}
  for name, splits in parts.items():
    img = np.concatenate([getattr(dataset, s)["image"] for s in splits])
    txt = np.concatenate([texts[s] for s in splits])
    lab = np.concatenate([getattr(dataset, s)["label"] for s in splits])
    out[name] = {
        "img": img.astype(np.float32),
        "txt": txt.astype(np.float32),
        "img_lab": lab.astype(np.int64).reshape(-1, 1),
    }
  _check_against_source(wikipedia_dir, out)
  return out


def _check_against_source(wikipedia_dir: str, out) -> None:
  """Images must be raw_features.mat's rows, labels the list files' classes - 1."""
  mat = scipy.io.loadmat(os.path.join(wikipedia_dir, wikipedia_builder.FEATURES_MAT))
  lists = {"train": wikipedia_builder.TRAIN_LIST, "test": wikipedia_builder.TEST_LIST}
  for name, var in (("train", "I_tr"), ("test", "I_te")):
    source = np.asarray(mat[var], dtype=np.float32)
    if not np.array_equal(out[name]["img"], source):
      raise ValueError(f"{name} images differ from {wikipedia_builder.FEATURES_MAT}:{var}")
    with open(os.path.join(wikipedia_dir, lists[name])) as f:
      classes = [int(line.split()[-1]) - 1 for line in f if line.strip()]
    if not np.array_equal(out[name]["img_lab"][:, 0], classes):
      raise ValueError(f"{name} labels differ from {lists[name]}")


def write_folder(splits, output_dir: str) -> None:
  os.makedirs(output_dir, exist_ok=True)
  for prefix, arrays in splits.items():
    for modality, x in arrays.items():
      var = f"{prefix}_{modality}"
      scipy.io.savemat(os.path.join(output_dir, f"{var}.mat"), {var: x})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  splits = build_splits(_WIKIPEDIA_DIR.value)
  write_folder(splits, _OUTPUT_DIR.value)
  # Read back through the features dataset.
  config = default_config.data_config("features")
  config.manual_dir = _OUTPUT_DIR.value
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  config.standardize_image = False
  config.num_validation = 0
  dataset = data_lib.load_dataset(config)
  print(f"Wrote {_OUTPUT_DIR.value}; read back as the features dataset:")
  for name in ("train", "validation", "test"):
    split = getattr(dataset, name)
    print(
        f"  {name:10s} image {split['image'].shape} text {split['text'].shape} "
        f"label {split['label'].shape} {split['label'].dtype}"
    )
  print(f"  num_classes {dataset.num_classes}")
  for name in ("train", "test"):
    written = splits[name]
    split = getattr(dataset, name)
    same = (
        np.array_equal(split["image"], written["img"])
        and np.array_equal(split["text"], written["txt"])
        and np.array_equal(split["label"], written["img_lab"][:, 0])
    )
    if not same:
      raise ValueError(f"{name}: the features dataset does not read back what was written")
  print("  read-back matches the written arrays")


if __name__ == "__main__":
  app.run(main)
