"""Experiment configs: `get_config("METHOD,DATASET[,PRESET]")`, as `--config=drsl,wikipedia`.

The common defaults below, completed by `configs/<METHOD>.py` (its `model_config()` and
`get_config(config, dataset)`). DATASET is "synthetic", "wikipedia" or "features"; PRESET
"full" (the recipe chosen on validation), "ci" (small and fast) or "paper" (the paper's
hyperparameters). Configs are data: they import nothing of the library.
"""

import importlib
import os

import ml_collections

DATASETS = ("synthetic", "wikipedia", "features")
DEFAULT = "drsl,synthetic"
PRESETS = ("full", "ci", "paper")


def method_names() -> tuple[str, ...]:
  """The methods a config may name: the method files beside this one."""
  files = os.listdir(os.path.dirname(os.path.abspath(__file__)))
  return tuple(
      sorted(f[:-3] for f in files if f.endswith(".py") and f[0] != "_" and f != "default.py")
  )


def config_module(method: str):
  """The config file of `method`, `configs/<method>.py`, as a module of this package."""
  if method not in method_names():
    raise ValueError(f"Method {method!r} has no config file configs/{method}.py.")
  # Loaded by its path (not as a package module), this file's package is its folder's name.
  package = __package__ or os.path.basename(os.path.dirname(os.path.abspath(__file__)))
  return importlib.import_module(f"{package}.{method}")


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
  data.synthetic_multi_label = 0.0  # chance a synthetic row also has each other class
  if dataset == "wikipedia":
    data.wikipedia_split = "literature"  # validation / test: "literature" or "list_order"
  data.text_feature = "tfidf_svd"  # from raw texts "tfidf_svd", "tfidf", "bow", "lda"; *_txt "file"
  data.vocab_size = 10000  # text vocabulary: the most frequent training words
  data.min_count = 2  # a vocabulary word occurs at least this often in training texts
  data.svd_dim = 300  # width of "tfidf_svd" (a truncated SVD fit on train)
  data.lda_topics = 10  # a feature folder's "lda": topics of an LDA fit on train
  data.sublinear_tf = True  # TF-IDF with 1 + log(tf) instead of tf
  data.stopwords = "dataset"  # "dataset" (the folder's stopwords.txt if any) or "builtin"
  data.word_sequences = False  # add word-id sequences and their GloVe 6B-50d vectors
  data.random_word_vectors = False  # without GloVe installed: random vectors, not an error
  data.max_words = 400  # length of the word-id sequences
  data.word_graph = False  # add SCANet's word graph and each text's counts on it ("bow")
  data.graph_vocab_size = 10055  # graph vertices: the most frequent training words with GloVe
  data.graph_neighbors = 8  # k: each word joined to its k nearest words by cosine
  data.graph_lambda_max = 0.0  # the Laplacian's largest eigenvalue (0: computed)
  data.graph_signal = "counts"  # each text's graph signal: "counts" or "tfidf"
  data.image_power = 1.0  # p in (0, 1]: x -> sign(x) |x|^p (0.5: Hellinger map), 1: as is
  data.standardize_image = True  # image features standardised with training statistics
  data.num_validation = 0  # feature folders without valid_*: rows carved as validation
  data.validation_from = "train"  # ... from "train" (its last rows) or "test" (its first)
  data.single_label_rows = False  # feature folders: keep only the rows with one label
  data.lazy_mb = 256.0  # a feature split larger than this is read lazily (<0: never)
  return data


def train_config() -> ml_collections.ConfigDict:
  """Common training defaults (the recipe a method's file adjusts)."""
  train = ml_collections.ConfigDict()
  train.batch_size = 100  # global batch, divisible by the device count
  train.drop_remainder = True  # drop an epoch's last partial batch (False: PyTorch's way)
  train.num_epochs = 20  # epochs to train (may grow when resuming, to train longer)
  train.optimizer = "adam"  # "adam", "adamw", "rmsprop" or "sgd" (crossmodal_jax.optimizers)
  train.learning_rate = 1e-3  # peak learning rate (after warm-up)
  train.schedule = "exponential"  # "constant", "exponential" (per epoch) or "cosine" (to 0)
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
  train.param_groups = ()  # ("REGEX=MULT", ...): lr x MULT where a param path matches REGEX
  train.ema_decay = 0.0  # EMA of the parameters, validated and evaluated (0: off)
  train.ema_warmup = 10.0  # w >= 1: decay at step t is min(ema_decay, (1 + t) / (w + t))
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
  evaluation.relevance = "label"  # relevant: same "label" (class), or same "pair" (or group)
  evaluation.recall_ks = (1, 5, 10)  # K of Recall@K, reported with relevance="pair"
  evaluation.select_by = "validation_map"  # evaluated: "validation_map" (best) or "latest"
  evaluation.ranking = "auto"  # "full" score matrices, streamed "top_k", or "auto"
  evaluation.full_matrix_mb = 1024.0  # "auto" streams when the full matrices exceed this
  evaluation.top_k = 0  # items kept per query when streaming (0: map_r, max precision_ks)
  evaluation.shortlist = ""  # first stage to rerank: "sm", "own" or a run's workdir; "": off, exact
  evaluation.rerank_k = 100  # K shortlisted per query and reranked: the largest default P@K
  return evaluation


def parse(spec: str | None) -> tuple[str, str, str]:
  """ "METHOD,DATASET[,PRESET]" -> (method, dataset, preset); one error lists the choices."""
  parts = [p.strip() for p in (spec or DEFAULT).split(",")]
  allowed = {"METHOD": method_names(), "DATASET": DATASETS, "PRESET": PRESETS}
  if len(parts) not in (2, 3):
    listed = ", ".join(f"{name} in {choices}" for name, choices in allowed.items())
    raise ValueError(f"Config spec {spec!r} must be 'METHOD,DATASET[,PRESET]' with {listed}.")
  parts = (*parts, "full")[:3]
  for (name, choices), value in zip(allowed.items(), parts):
    if value not in choices:
      raise ValueError(f"Unknown {name.lower()} {value!r}; choose one of {choices}.")
  return parts


def common_config(method: str, dataset: str, preset: str = "full") -> ml_collections.ConfigDict:
  """The defaults every method starts from (no `model` section yet)."""
  config = ml_collections.ConfigDict()
  config.method = method  # the method (from --config=configs/default.py:METHOD,DATASET)
  config.preset = preset  # "full", "ci" or "paper"; read by the method's config file
  config.seed = 0  # seeds initialisation, batch order and dropout
  config.data, config.train, config.eval = data_config(dataset), train_config(), eval_config()
  return config


def get_config(spec: str = DEFAULT) -> ml_collections.ConfigDict:
  """Returns the config for "METHOD,DATASET[,PRESET]"."""
  method, dataset, preset = parse(spec)
  return config_module(method).get_config(common_config(method, dataset, preset), dataset)
