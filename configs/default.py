"""Experiment configs: `get_config("METHOD,DATASET")`, the documented entry.

Used as `--config=configs/default.py:drsl,wikipedia` (a third part picks a preset:
`...:scanet,wikipedia,ci` is a small version for tests, `...:scanet,wikipedia,paper` the
paper's hyperparameters as published); every field can be overridden on the
command line after it (`--config.train.num_epochs=5`). Sequence fields are tuples
(ml_collections cannot override lists): `--config.model.image_layers="(512, 300)"`.

The config is the common defaults below (seed, data, train, eval) completed by the
method's own file, `configs/<METHOD>.py`, whose `get_config(config, dataset)` adds the
`model` fields and the method's per-dataset choices. The methods are those registered in
`crossmodal_jax.methods` (each with its config file); the datasets are those of
`crossmodal_jax.data`:

  synthetic   the embedded benchmark (no files);
  wikipedia   the Rasiwasia et al. folder (--config.data.manual_dir);
  features    a folder of feature files: DRSL .mat, .npy, HDF5 or Pascal VOC 2007
              (--config.data.manual_dir).
"""

from __future__ import annotations

import importlib
import os
import sys

import ml_collections

# Method config files are imported as `configs.<method>`, also when this file is loaded by
# path from another working directory.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from crossmodal_jax import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from crossmodal_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position

DATASETS = data_lib.DATASETS
DEFAULT = "drsl,synthetic"
PRESETS = ("full", "ci", "paper")


def method_names() -> tuple[str, ...]:
  """The methods a config may name (the registry of `crossmodal_jax.methods`)."""
  return methods.names()


def data_config(dataset: str) -> ml_collections.ConfigDict:
  """Common data defaults (docs/data.md describes the datasets and their files)."""
  data = ml_collections.ConfigDict()
  data.name = dataset  # the dataset: "synthetic", "wikipedia" or "features" (from --config)
  data.manual_dir = ""  # the source folder of a real dataset ("wikipedia", "features")
  # Where built TFDS datasets and fitted text features are cached (one build per folder).
  data.data_dir = os.path.join(os.path.expanduser("~"), ".cache", "crossmodal_jax", "tfds")
  data.synthetic_preset = "default"  # synthetic size: "default" or "xmedianet" (32k pairs)
  data.synthetic_seed = 0  # seed that generates the synthetic benchmark
  data.synthetic_num_train = -1  # synthetic training pairs (-1: the preset's size)
  # Probability in [0, 1) that a synthetic row also has each other class (multi-hot
  # labels; 0: one class per row).
  data.synthetic_multi_label = 0.0
  if dataset == "wikipedia":
    # Validation / test pairs: "literature" (the published tables' 231 / 462, see
    # docs/data.md) or "list_order" (the test list's first 231 rows, then the rest).
    data.wikipedia_split = "literature"
  data.text_feature = "tfidf_svd"  # Wikipedia text: "tfidf_svd", "tfidf", "bow" or "lda"
  data.vocab_size = 10000  # Wikipedia vocabulary: the most frequent training words
  data.min_count = 2  # a vocabulary word occurs at least this often in training articles
  data.svd_dim = 300  # width of "tfidf_svd" (a truncated SVD fit on train)
  data.sublinear_tf = True  # TF-IDF with 1 + log(tf) instead of tf
  data.stopwords = "dataset"  # "dataset" (the folder's stopwords.txt if any) or "builtin"
  # Add word-id sequences (the first max_words vocabulary words of each text) and their
  # GloVe 6B-50d vectors, for the methods that read words.
  data.word_sequences = False
  data.max_words = 400  # length of the word-id sequences
  # Add SCANet's word graph ("bow" counts over its vocabulary, meta["word_graph"]).
  data.word_graph = False
  data.graph_vocab_size = 10055  # graph vertices: the most frequent training words with GloVe
  data.graph_neighbors = 8  # k: each word joined to its k nearest words by cosine
  data.graph_lambda_max = 0.0  # the Laplacian's largest eigenvalue (0: computed)
  data.graph_signal = "counts"  # each text's graph signal: "counts" or "tfidf"
  # Each image feature x becomes sign(x) |x|^image_power, in (0, 1] (1: unchanged; 0.5:
  # the Hellinger map of histograms), before standardising.
  data.image_power = 1.0
  data.standardize_image = True  # image features standardised with training statistics
  # Feature folders without valid_* files: this many rows form the validation split.
  data.num_validation = 0
  # Where those rows come from: "train" (its last rows) or "test" (its first rows, as
  # SDML's and MRL's scripts take them).
  data.validation_from = "train"
  # Feature folders: keep only the rows with exactly one label (single-label protocols of
  # multi-label data such as Pascal VOC 2007).
  data.single_label_rows = False
  # Feature folders: a split whose features take more MB than this is read lazily from
  # the built files, a batch of rows at a time (negative: always loaded whole).
  data.lazy_mb = 256.0
  return data


def train_config() -> ml_collections.ConfigDict:
  """Common training defaults (the recipe a method's file adjusts)."""
  train = ml_collections.ConfigDict()
  train.batch_size = 100  # global batch, divisible by the device count
  # Drop an epoch's last partial batch (static shapes); False keeps it, as PyTorch's
  # DataLoader does.
  train.drop_remainder = True
  train.num_epochs = 20  # epochs to train (may grow when resuming, to train longer)
  train.optimizer = "adam"  # "adam", "adamw", "rmsprop" or "sgd" (crossmodal_jax.optimizers)
  train.learning_rate = 1e-3  # peak learning rate (after warm-up)
  # Learning-rate schedule: "constant", "exponential" (x lr_decay_per_epoch each epoch) or
  # "cosine" (to 0 at the last step).
  train.schedule = "exponential"
  train.lr_decay_per_epoch = 1.0  # factor per epoch of the "exponential" schedule
  train.warmup_epochs = 0.0  # epochs of linear warm-up from 0
  train.b1 = 0.9  # Adam / AdamW first-moment decay
  train.b2 = 0.999  # Adam / AdamW second-moment decay
  train.eps = 1e-8  # Adam / AdamW / RMSprop epsilon
  train.momentum = 0.0  # SGD / RMSprop momentum (0: none)
  train.rmsprop_decay = 0.9  # RMSprop's decay of the squared-gradient average
  train.adamw_weight_decay = 1e-4  # AdamW's decoupled weight decay
  train.weight_decay = 0.0  # coupled L2, added to the gradient as torch.optim.Adam does
  train.grad_clip_norm = 0.0  # clip the global gradient norm to this (0: off)
  # ("REGEX=MULT", ...): scale the learning rate of the parameters whose path
  # ("image_tower/dense_0/kernel") matches REGEX by MULT (0 freezes them).
  train.param_groups = ()
  # Decay of an exponential moving average of the parameters (0: off); validation,
  # checkpoints and evaluation then use the average.
  train.ema_decay = 0.0
  # The average's warm-up (>= 1): the decay at step t is min(ema_decay, (1 + t) /
  # (ema_warmup + t)), so it lags about t / ema_warmup steps early on.
  train.ema_warmup = 10.0
  train.checkpoint_every_epochs = 1  # save checkpoints/latest every this many epochs
  train.keep_checkpoints = 2  # latest checkpoints kept (the best one is kept apart)
  train.log_every_steps = 10  # write training metrics every this many steps
  train.multi_host = False  # call jax.distributed.initialize() (run on every host)
  train.progress_bar = True  # a tqdm bar of training steps
  return train


def eval_config() -> ml_collections.ConfigDict:
  """Common evaluation defaults (docs/evaluation.md)."""
  evaluation = ml_collections.ConfigDict()
  evaluation.batch_size = 1024  # items encoded at a time
  evaluation.query_block = 512  # queries per scoring chunk, at most
  evaluation.gallery_block = 512  # gallery items per scoring chunk, at most
  evaluation.memory_budget_mb = 256.0  # a scoring chunk's intermediates stay within this
  evaluation.map_r = 50  # R of mAP@R in results.json
  evaluation.precision_ks = (1, 5, 10, 50, 100)  # K of P@K in results.json
  # The checkpoint evaluation restores: "validation_map" (the best by validation mAP).
  evaluation.select_by = "validation_map"
  # How test evaluation ranks: "full" (whole score matrices, every metric), "top_k" (each
  # query's top k streamed: mAP@R, P@K) or "auto" (full while it fits full_matrix_mb).
  evaluation.ranking = "auto"
  # Under "auto": the most MB of full score matrices (4 B x queries x gallery x (score
  # channels + 2)) before evaluation streams the top k instead.
  evaluation.full_matrix_mb = 1024.0
  # Gallery items kept per query when streaming, at least map_r and the largest of
  # precision_ks (0: just that); the gallery size also gives mAP@ALL and the PR curve.
  evaluation.top_k = 0
  return evaluation


def parse(spec: str | None) -> tuple[str, str, str]:
  """ "METHOD,DATASET[,PRESET]" -> (method, dataset, preset), with one error listing the
  choices. PRESET is "full" (the default: the method's recipe, re-chosen on validation
  where the paper's did not transfer), "ci" (a small, fast version of it, for tests) or
  "paper" (the paper's hyperparameters as published, where they differ from "full")."""
  parts = [p.strip() for p in (spec or DEFAULT).split(",")]
  choices = f"METHOD in {method_names()}, DATASET in {DATASETS} and PRESET in {PRESETS}"
  if len(parts) not in (2, 3):
    raise ValueError(f"Config spec {spec!r} must be 'METHOD,DATASET[,PRESET]' with {choices}.")
  method, dataset, preset = (*parts, "full")[:3]
  if method not in method_names():
    raise ValueError(f"Unknown method {method!r}; choose one of {method_names()}.")
  if dataset not in DATASETS:
    raise ValueError(f"Unknown dataset {dataset!r}; choose one of {DATASETS}.")
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; choose one of {PRESETS}.")
  return method, dataset, preset


def common_config(method: str, dataset: str, preset: str = "full") -> ml_collections.ConfigDict:
  """The defaults every method starts from (no `model` section yet)."""
  config = ml_collections.ConfigDict()
  config.method = method  # the method (from --config=configs/default.py:METHOD,DATASET)
  config.preset = preset  # "full", "ci" or "paper"; read by the method's config file
  config.seed = 0  # seeds initialisation, batch order and dropout
  config.data = data_config(dataset)
  config.train = train_config()
  config.eval = eval_config()
  return config


# The value a field had, in effect, in configs saved before it existed, where that is not
# its default today: such a config is completed with it (resume, evaluate and reuse).
SAVED_BEFORE_FIELD = {"data": {"wikipedia_split": "list_order"}}


def _before_fields(config: ml_collections.ConfigDict, saved=None):
  """Sets each SAVED_BEFORE_FIELD field of `config` (that `saved`, if given, lacks) to its
  earlier value; a field the config does not have (another dataset's) stays absent."""
  for section, fields in SAVED_BEFORE_FIELD.items():
    for field, value in fields.items():
      if field in config.get(section, {}) and (
          saved is None or field not in saved.get(section, {})
      ):
        config[section][field] = value


def neutral_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with its data, train and eval fields at their common defaults.

  A field is added to the common defaults at the value that keeps the earlier behaviour
  (or, where the default changed with it, listed in SAVED_BEFORE_FIELD, whose value this
  takes); a method's file may then set another. A run saved before the field existed
  behaved as that value, not as the method's: resume checks and `reproduce` compare a
  field absent from an old config.json with this. A config without `method` and
  `data.name` (not built by this file) is returned as it is.
  """
  if "method" not in config or "data" not in config or "name" not in config.data:
    return config
  out = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  common = common_config(config.method, config.data.name, config.get("preset", "full"))
  for section in ("data", "train", "eval"):
    if section in out:
      out[section].update(common[section].to_dict())
  _before_fields(out)
  return out


def _config_module(method: str):
  try:
    return importlib.import_module(f"configs.{method}")
  except ModuleNotFoundError as e:
    raise ValueError(
        f"Method {method!r} is registered but has no config file configs/{method}.py ({e})."
    ) from None


def completed(saved: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A saved config (a workdir's config.json) with the fields added to the code since it
  was written, each at the value that keeps the earlier behaviour: data, train and eval
  fields at their common defaults (`neutral_defaults`' rule), model fields at the method
  file's `model_config()` (a model field is added there at that value; a preset may set
  another later, which the saved config then records). Saved values always win. A config
  without `method` and `data.name` is returned as it is."""
  if "method" not in saved or "data" not in saved or "name" not in saved.data:
    return saved
  base = common_config(saved.method, saved.data.name, saved.get("preset", "full"))
  _before_fields(base, saved)
  model_config = getattr(_config_module(saved.method), "model_config", None)
  if model_config is not None:
    base.model = model_config()

  def merge(into: dict, values: dict) -> dict:
    for k, v in values.items():
      into[k] = merge(into[k], v) if isinstance(v, dict) and isinstance(into.get(k), dict) else v
    return into

  return ml_collections.ConfigDict(merge(base.to_dict(), saved.to_dict()))


def get_config(spec: str = DEFAULT) -> ml_collections.ConfigDict:
  """Returns the config for "METHOD,DATASET[,PRESET]"."""
  method, dataset, preset = parse(spec)
  config = common_config(method, dataset, preset)
  return _config_module(method).get_config(config, dataset)
