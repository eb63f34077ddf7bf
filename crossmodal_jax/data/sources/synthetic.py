"""A synthetic cross-modal benchmark, deterministic from a seed (the embedded default).

Every class c is a pair (group g, detail f) with g = c // num_details, f = c % num_details.
The premise of all four methods is that the two modalities carry unequal information, so
the generator splits the class evidence between them:

- images see the group strongly and the detail weakly (`image_detail_strength`);
- texts see the detail strongly and the group weakly (`text_group_strength`).

Neither modality alone pins the class as well as both together, and a similarity that
only matches a shared common part discards some of it.

Images are sequences of `num_regions` region features: each region shows the class
pattern with probability `region_signal_prob` (else only noise), through a fixed random
ReLU layer so features are non-negative like CNN activations. The global image feature is
the mean over regions. Texts are word sequences drawn from a class-dependent mixture of
group words, detail words and background words, with word vectors built the same way
(topic direction + noise), and lengths varying per text. Every text form is emitted:
word ids + mask, bag-of-words counts, and a fixed text feature (the mean word vector).
With ``multi_label`` p > 0 the data is multi-label: besides its primary class, a row gets
every other class independently with probability p, each signal region shows one of the
row's classes and each word is drawn from one of them (uniformly), and labels are 0/1
float32 multi-hot rows ``[n, C]`` (``meta["multi_label"]``); two items are relevant when
they share a class. p = 0 (the default) draws nothing more: the single-label data, with
int labels, is unchanged.
With ``data_config.word_graph``, :func:`load` adds ``meta["word_graph"]``, the
:class:`~crossmodal_jax.data.text.word_graph.WordGraph` of the words' vectors (its vertex ``w``
is word ``w``, column ``w`` of "bow"); the generated arrays do not change. Its
``meta["preprocessing"]`` takes the generated arrays as the raw inputs (images as region
sequences, whose mean is the global feature), with the graph signal's fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from crossmodal_jax import errors
from crossmodal_jax.data import common
from crossmodal_jax.data import preprocessing
from crossmodal_jax.data import registry
from crossmodal_jax.data.text import pipeline
from crossmodal_jax.data.text import word_graph as word_graph_lib


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  num_train: int = 2000
  num_validation: int = 400
  num_test: int = 600
  num_groups: int = 5
  num_details: int = 2
  image_dim: int = 128
  num_regions: int = 8
  region_signal_prob: float = 0.6
  image_noise: float = 1.0
  image_detail_strength: float = 0.35
  vocab_size: int = 500
  word_dim: int = 64
  max_words: int = 40
  min_words: int = 10
  text_group_strength: float = 0.35
  topic_word_prob: float = 0.5
  multi_label: float = 0.0  # probability that a row also gets each other class
  seed: int = 0

  @property
  def num_classes(self) -> int:
    return self.num_groups * self.num_details


# An XMediaNet-sized preset: 32,000 / 4,000 / 4,000 pairs, 200 classes, 4096-d images,
# 300-d text features.
XMEDIANET_SIZED = SyntheticConfig(
    num_train=32000,
    num_validation=4000,
    num_test=4000,
    num_groups=20,
    num_details=10,
    image_dim=4096,
    num_regions=8,
    vocab_size=5000,
    word_dim=300,
    max_words=60,
)

PRESETS = {"default": SyntheticConfig(), "xmedianet": XMEDIANET_SIZED}


@registry.register("synthetic")
def load(data_config) -> common.Dataset:
  """The synthetic dataset of a dataset config.

  Args:
    data_config: the ``data`` section of a config; reads ``synthetic_preset`` (a key of
      :data:`PRESETS`), ``synthetic_seed``, ``synthetic_num_train`` (``<= 0``: the
      preset's size) and ``synthetic_multi_label`` (absent: 0), and ``word_graph``,
      ``graph_neighbors``, ``graph_lambda_max``.

  Returns:
    ``make_dataset`` of the preset with that seed, training size and multi-label
    probability, with ``meta["word_graph"]`` (built from ``meta["word_vectors"]``) when
    ``word_graph`` is set.

  Raises:
    ValueError: if the preset is unknown.
  """
  try:
    preset = PRESETS[data_config.synthetic_preset]
  except KeyError:
    raise errors.UserError(
        f"Unknown synthetic preset {data_config.synthetic_preset!r}; choose "
        f"one of {tuple(PRESETS)}."
    ) from None
  cfg = dataclasses.replace(
      preset,
      seed=data_config.synthetic_seed,
      multi_label=float(data_config.synthetic_multi_label),
  )
  if data_config.synthetic_num_train > 0:
    cfg = dataclasses.replace(cfg, num_train=data_config.synthetic_num_train)
  dataset = make_dataset(cfg)
  # The raw inputs are the generated arrays; only the graph signal is fitted (on train).
  text = pipeline.TextFit(feature=dataset.meta["text_feature"], given=True)
  if data_config.word_graph:
    dataset.meta["word_graph"] = word_graph_lib.build_word_graph(
        dataset.meta["word_vectors"][2:],  # row w + 2 is word w
        num_neighbors=data_config.graph_neighbors,
        lambda_max=data_config.graph_lambda_max or None,  # 0: computed
    )
    signal = data_config.graph_signal
    text = dataclasses.replace(
        text,
        graph_signal=signal,
        graph_idf=word_graph_lib.signal_idf(dataset.train["bow"], signal),
    )
    if signal != "counts":
      dataset = dataclasses.replace(
          dataset,
          **{
              s: common.Split({**split.arrays, "bow": text.signal(split["bow"])})
              for s, split in dataset.splits.items()
          },
      )
  dataset.meta[preprocessing.META_KEY] = preprocessing.Preprocessing(
      text=text, image_from_regions=True
  )
  return dataset


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _pick_labels(rng: np.random.Generator, hot: np.ndarray, slots: int) -> np.ndarray:
  """int [n, slots]: for each row of bool `hot` [n, C] and each slot, one of the row's
  classes, uniformly."""
  _, classes = np.nonzero(hot)  # each row's classes, row by row
  per_row = hot.sum(axis=1)
  first = np.cumsum(per_row) - per_row
  k = (rng.random((len(hot), slots)) * per_row[:, None]).astype(np.int64)
  return classes[first[:, None] + np.minimum(k, per_row[:, None] - 1)]


def make_dataset(cfg: SyntheticConfig = SyntheticConfig()) -> common.Dataset:
  """Generates the three splits (and word vectors) deterministically from cfg.seed."""
  if not 0.0 <= cfg.multi_label <= 1.0:
    raise ValueError(f"Synthetic multi_label must be in [0, 1], got {cfg.multi_label}.")
  for field in ("num_train", "num_groups", "num_details", "num_regions", "vocab_size", "word_dim"):
    if getattr(cfg, field) < 1:
      raise ValueError(f"Synthetic {field} must be >= 1, got {getattr(cfg, field)}.")
  if cfg.image_dim < 2:
    raise ValueError(f"Synthetic image_dim must be >= 2, got {cfg.image_dim}.")
  if cfg.min_words < 1 or cfg.min_words > cfg.max_words:
    raise ValueError(f"Need 1 <= min_words <= max_words, got {cfg.min_words}, {cfg.max_words}.")
  if cfg.vocab_size < 4 * cfg.num_classes:
    raise ValueError(
        f"vocab_size {cfg.vocab_size} too small for {cfg.num_classes} classes "
        "(need at least 4 words per class)."
    )
  rng = np.random.default_rng(cfg.seed)
  n_cls = cfg.num_classes
  # Image side: group and detail directions in a latent space, lifted by a fixed ReLU layer.
  latent = cfg.image_dim // 2
  group_dir = _unit(rng.standard_normal((cfg.num_groups, latent)))
  detail_dir = _unit(rng.standard_normal((cfg.num_details, latent)))
  lift = rng.standard_normal((latent, cfg.image_dim)) / np.sqrt(latent)
  cls = np.arange(n_cls)
  image_proto = 3.0 * (
      group_dir[cls // cfg.num_details]
      + cfg.image_detail_strength * detail_dir[cls % cfg.num_details]
  )

  # Text side: words 0..V-1; each group and each detail owns a disjoint block of topic
  # words, the rest are background words. Word vectors = topic direction + noise.
  perm = rng.permutation(cfg.vocab_size)
  per_topic = max(2, cfg.vocab_size // (4 * (cfg.num_groups + cfg.num_details)))
  group_words = perm[: cfg.num_groups * per_topic].reshape(cfg.num_groups, per_topic)
  off = cfg.num_groups * per_topic
  detail_words = perm[off : off + cfg.num_details * per_topic].reshape(cfg.num_details, per_topic)
  topic_vec = _unit(rng.standard_normal((cfg.num_groups + cfg.num_details, cfg.word_dim)))
  word_vectors = 0.6 * _unit(rng.standard_normal((cfg.vocab_size, cfg.word_dim)))
  for g in range(cfg.num_groups):
    word_vectors[group_words[g]] += topic_vec[g]
  for f in range(cfg.num_details):
    word_vectors[detail_words[f]] += topic_vec[cfg.num_groups + f]
  word_probs = np.full((n_cls, cfg.vocab_size), 1.0)
  for c in range(n_cls):
    g, f = divmod(c, cfg.num_details)
    topic_mass = cfg.topic_word_prob * cfg.vocab_size / per_topic
    word_probs[c, detail_words[f]] += topic_mass
    word_probs[c, group_words[g]] += topic_mass * cfg.text_group_strength
  word_probs /= word_probs.sum(axis=1, keepdims=True)
  word_cdf = np.cumsum(word_probs, axis=1)

  multi = cfg.multi_label > 0

  def make_split(n: int) -> common.Split:
    labels = rng.integers(0, n_cls, size=n)
    if multi:  # the primary class, and each other one with probability multi_label
      hot = rng.random((n, n_cls)) < cfg.multi_label
      hot[np.arange(n), labels] = True
    shows = rng.random((n, cfg.num_regions)) < cfg.region_signal_prob
    shows[np.arange(n), rng.integers(0, cfg.num_regions, size=n)] = True  # >= 1 region
    if multi:  # each region shows one of the row's classes (added a region at a time)
      shown = _pick_labels(rng, hot, cfg.num_regions)
      region_latent = cfg.image_noise * rng.standard_normal((n, cfg.num_regions, latent))
      for r in range(cfg.num_regions):
        region_latent[:, r] += shows[:, r, None] * image_proto[shown[:, r]]
    else:
      region_latent = shows[..., None] * image_proto[labels][
          :, None, :
      ] + cfg.image_noise * rng.standard_normal((n, cfg.num_regions, latent))
    regions = np.maximum(region_latent @ lift, 0.0).astype(np.float32)
    lengths = rng.integers(cfg.min_words, cfg.max_words + 1, size=n)
    u = rng.random((n, cfg.max_words))
    # The class each word is drawn from: the row's, or one of the row's.
    word_class = _pick_labels(rng, hot, cfg.max_words) if multi else labels[:, None]
    ids = np.empty((n, cfg.max_words), dtype=np.int64)
    for c in range(n_cls):  # inverse-CDF sampling, vectorised per class
      words = np.broadcast_to(word_class == c, ids.shape)
      ids[words] = np.minimum(np.searchsorted(word_cdf[c], u[words]), cfg.vocab_size - 1)
    mask = np.arange(cfg.max_words)[None, :] < lengths[:, None]
    bow = np.zeros((n, cfg.vocab_size), dtype=np.float32)
    np.add.at(bow, (np.repeat(np.arange(n), cfg.max_words)[mask.ravel()], ids[mask]), 1.0)
    text = (bow @ word_vectors) / lengths[:, None]
    return common.Split(
        {
            "image": regions.mean(axis=1),
            "text": text.astype(np.float32),
            "label": hot.astype(np.float32) if multi else labels.astype(np.int32),
            "image_regions": regions,
            # Sequence ids follow data.vocab's convention: 0 = padding, 1 = OOV, word w -> w + 2.
            "word_ids": np.where(mask, ids + 2, 0).astype(np.int32),
            "word_mask": mask,
            "bow": bow,
        }
    )

  train = make_split(cfg.num_train)
  validation = make_split(cfg.num_validation)
  test = make_split(cfg.num_test)
  table = np.zeros((cfg.vocab_size + 2, cfg.word_dim), dtype=np.float32)
  table[2:] = word_vectors
  class_names = [f"group{c // cfg.num_details}_detail{c % cfg.num_details}" for c in range(n_cls)]
  return common.Dataset(
      name="synthetic",
      train=train,
      validation=validation,
      test=test,
      num_classes=n_cls,
      meta={
          "word_vectors": table,
          "class_names": class_names,
          "text_feature": "mean word vector",
          "multi_label": multi,
          "config": dataclasses.asdict(cfg),
      },
  )
