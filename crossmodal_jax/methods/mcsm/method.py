"""MCSM's face: inputs, the two spaces' hinge loss, per-item encodings, cosine scores,
the adaptive fusion of the two spaces' scores, and the choice of its weight on
validation (see the package docstring for the choices)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from crossmodal_jax import losses
from crossmodal_jax import metrics
from crossmodal_jax import parallel
from crossmodal_jax.methods import base
from crossmodal_jax.methods import registry
from crossmodal_jax.methods.mcsm import losses as mcsm_losses
from crossmodal_jax.methods.mcsm.model import MCSM
from crossmodal_jax.methods.mcsm.model import SPACES
from crossmodal_jax.methods.mcsm.model import ImageSpace
from crossmodal_jax.methods.mcsm.model import TextSpace
from crossmodal_jax.methods.mcsm.model import cosine_scores

# What `retrieval_scores` ranks by (`model.retrieval`): the adaptive fusion of both spaces'
# scores, or one space's cosine alone.
RETRIEVALS = ("fusion", *SPACES)
# How each anchor's different-label negative is picked (`model.negatives`): drawn at random
# (the code's), the space's highest-scoring one in the global batch, or all of them with
# the hinges averaged (the random draw's expected loss).
NEGATIVES = ("random", "hardest", "all")
# Each anchor's positive (`model.positives`): its own match (the code's), or an item of
# the other modality drawn uniformly among the global batch's same-label ones (its match
# included), anew every step.
POSITIVES = ("pair", "same_label")
FUSION = "fusion"  # the non-param collection holding the fusion weight i
DEFAULT_GRID = np.linspace(0.0, 1.0, 101)


def row_min_max(s: np.ndarray) -> np.ndarray:
  """(s - row min) / (row max - row min), float64; a constant row gives zeros."""
  s = np.asarray(s, np.float64)
  lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
  span = hi - lo
  return np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 0.0)


def adaptive_fusion(w1: np.ndarray, w2: np.ndarray, weight: float) -> np.ndarray:
  """MCSM's fused scores W = i * (mnorm(W1) * W2) + (1 - i) * (mnorm(W2) * W1).

  Args:
    w1: [n_query, n_gallery] image-space scores of one direction.
    w2: [n_query, n_gallery] text-space scores of the same direction.
    weight: i.

  Returns:
    float32 [n_query, n_gallery] (computed in float64; mnorm = `row_min_max` over the
    whole gallery row).
  """
  w1, w2 = np.asarray(w1, np.float64), np.asarray(w2, np.float64)
  i = float(weight)
  return (i * (row_min_max(w1) * w2) + (1.0 - i) * (row_min_max(w2) * w1)).astype(np.float32)


def fusion_weight(variables: Mapping[str, Any]) -> float:
  """The fusion weight i stored in `variables[FUSION]["weight"]`."""
  if FUSION not in variables:
    raise ValueError(
        f"MCSM variables lack the {FUSION!r} collection (the fusion weight); have "
        f"{sorted(variables)}."
    )
  return float(np.asarray(variables[FUSION]["weight"]))


def with_fusion_weight(variables: Mapping[str, Any], weight: float) -> dict[str, Any]:
  """`variables` with the fusion weight set to `weight` (float32 scalar)."""
  return {**variables, FUSION: {"weight": jnp.asarray(weight, jnp.float32)}}


def _label_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """[B] softmax cross-entropy of integer labels, or the mean over classes of the
  sigmoid cross-entropy of multi-hot ones."""
  if labels.ndim == 2:
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)), -1)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def _batch_key(rng: jax.Array, axis_name: str | None) -> jax.Array:
  """The first device's key on every device: the training step folds the device index
  into `rng`, and the negatives of the global batch must not depend on the device count
  (on one device this is `rng` itself)."""
  if axis_name is None:
    return rng
  data = jax.lax.all_gather(jax.random.key_data(rng), axis_name)
  return jax.random.wrap_key_data(data[0], impl=jax.random.key_impl(rng))


@registry.register("mcsm")
class MCSMMethod(base.Method):
  """The training / retrieval face of MCSM (see `base.Method` and the package doc).

  Inputs: `image_input` gives {"image": [n, d_img]} and, when the dataset has them (and
  `model.image_regions`), {"regions": [n, R, d_img]}; `text_input` gives {"word_ids",
  "word_mask", "text"}. Encodings are {"image_space": [n, D], "text_space": [n, D]}
  unit vectors; `score` gives both spaces' [P, Q] cosines; `retrieval_scores` fuses them
  with the weight i in `variables["fusion"]["weight"]` (or ranks by one space,
  `model.retrieval`).
  """

  text_keys = ("word_ids", "word_mask", "text")

  def __init__(self, config, dims, meta=None):
    super().__init__(config, dims, meta)
    c = config.model
    table = self.word_vector_table("mcsm")
    if c.retrieval not in RETRIEVALS:
      raise ValueError(f"Unknown model.retrieval {c.retrieval!r}; choose one of {RETRIEVALS}.")
    if c.negatives not in NEGATIVES:
      raise ValueError(f"Unknown model.negatives {c.negatives!r}; choose one of {NEGATIVES}.")
    if c.positives not in POSITIVES:
      raise ValueError(f"Unknown model.positives {c.positives!r}; choose one of {POSITIVES}.")
    # Frozen word vectors: a constant of the encoder, not a parameter (nothing trains or
    # checkpoints them).
    self.word_vectors = np.asarray(table, np.float32)
    self.label_weight = float(c.label_weight)
    self.num_classes = 0
    if self.label_weight:
      label_shape = self.dims.get("label", ())
      self.num_classes = (
          int(label_shape[0]) if label_shape else int(self.meta.get("num_classes", 0))
      )
      if self.num_classes < 2:
        raise ValueError(
            f"model.label_weight={self.label_weight} needs the dataset's number of classes "
            f"(meta['num_classes'] or multi-hot labels); got {self.num_classes}."
        )
    self.use_regions = bool(c.image_regions) and "image_regions" in self.dims
    self.image_key = "image_regions" if self.use_regions else "image"
    self.module = self._module(axis_name=None)

  def _module(self, axis_name: str | None) -> MCSM:
    c = self.config.model
    common = dict(
        hidden=c.hidden,
        dim=c.dim,
        num_layers=c.num_layers,
        dropout=c.dropout,
        score_dropout=c.score_dropout,
        param_init=c.init,
        uniform_attention=c.uniform_attention,
        num_classes=self.num_classes,
    )
    front_end = {}
    if c.front_end:
      front_end = dict(
          front_end_kernels=tuple(c.front_end_kernels),
          front_end_channels=tuple(c.front_end_channels),
          front_end_pools=tuple(c.front_end_pools),
          front_end_batch_norm=c.front_end_batch_norm,
      )
    return MCSM(
        image_space=ImageSpace(
            **common, attention_dim=c.attention_dim or None, text_dim=self.dims["text"][0]
        ),
        text_space=TextSpace(
            **common, image_dim=self.dims["image"][0], axis_name=axis_name, **front_end
        ),
    )

  # --- Inputs ---------------------------------------------------------------------------

  @property
  def batch_keys(self) -> tuple[str, ...]:
    images = ("image_regions", "image") if self.use_regions else ("image",)
    return (*images, *self.text_keys, "label")

  def image_input(self, arrays):
    """{"image": [n, d]} (the text space's input), plus {"regions": [n, R, d]} (the image
    space's) when the dataset has region sequences."""
    x = {"image": arrays["image"]}
    if self.use_regions:
      x["regions"] = arrays["image_regions"]
    return x

  def text_input(self, arrays):
    """{"word_ids", "word_mask", "text"}: the word sequence and the document vector."""
    return {k: arrays[k] for k in self.text_keys}

  def _image_args(self, x) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(regions [n, R, d], region mask [n, R], global image [n, d]); without regions the
    global feature is a one-step sequence."""
    image = jnp.asarray(x["image"], jnp.float32)
    regions = jnp.asarray(x["regions"], jnp.float32) if "regions" in x else image[:, None, :]
    return regions, jnp.ones(regions.shape[:2], bool), image

  def _text_args(self, x) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(word vectors [n, L, d_word], word mask [n, L], document vector [n, d_txt])."""
    words = jnp.take(self.word_vectors, jnp.asarray(x["word_ids"]), axis=0)
    return words, jnp.asarray(x["word_mask"], bool), jnp.asarray(x["text"], jnp.float32)

  @staticmethod
  def _model_variables(variables) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if k != FUSION}

  # --- Training -------------------------------------------------------------------------

  def init(self, rng, batch):
    variables = self.module.init(
        rng,
        *self._image_args(self.image_input(batch)),
        *self._text_args(self.text_input(batch)),
        train=False,
    )
    return with_fusion_weight(dict(variables), self.config.model.fusion_weight)

  def loss(self, variables, batch, rng, axis_name):
    """Sum over the two spaces of the bidirectional hinge, each direction's hinges
    averaged over the global batch's anchors (an anchor without a different-label item
    counts 0). Negatives come from the global batch: drawn from the first device's key
    (`model.negatives="random"`), each space's hardest (`"hardest"`) or all of them, the
    hinges averaged (`"all"`), so the loss is the same on any number of devices. The
    positive is the anchor's match, or a same-label item of the global batch drawn from
    that key folded with 1 (`model.positives="same_label"`)."""
    c = self.config.model
    model_vars = self._model_variables(variables)
    mutable = [k for k in model_vars if k != "params"]  # the front-end's batch_stats
    module = self._module(axis_name)
    (image, text), new_state = module.apply(
        model_vars,
        *self._image_args(self.image_input(batch)),
        *self._text_args(self.text_input(batch)),
        train=True,
        mutable=mutable,
        rngs={"dropout": rng},
    )
    local = batch["label"].shape[0]
    labels = parallel.gather(batch["label"], axis_name)
    image_all, text_all = parallel.gather((image, text), axis_name)
    # Draws for every anchor of the global batch from the first device's key (gathered
    # only when something is drawn), then this device's rows.
    if c.negatives == "random" or c.positives == "same_label":
      batch_key = _batch_key(rng, axis_name)
    start = parallel.shard_start(local, axis_name)
    rows = lambda x: jax.lax.dynamic_slice_in_dim(x, start, local)
    if c.negatives == "random":
      key_text, key_image = jax.random.split(batch_key)
      negatives = mcsm_losses.different_label_negatives
      negative_text, text_found = map(rows, negatives(key_text, labels))
      negative_image, image_found = map(rows, negatives(key_image, labels))
    else:
      # This device's anchors against the global batch.
      different = losses.label_agreement(batch["label"], labels) == 0  # [local, n]
    if c.positives == "same_label":
      # A key of its own, so that the negatives are those of `positives="pair"`.
      key_text, key_image = jax.random.split(jax.random.fold_in(batch_key, 1))
      positive_text = rows(mcsm_losses.same_label_positives(key_text, labels))
      positive_image = rows(mcsm_losses.same_label_positives(key_image, labels))
    n = labels.shape[0]
    total, logs = 0.0, {}
    for space in SPACES:
      if c.positives == "same_label":
        pos_text, pos_image = text_all[space][positive_text], image_all[space][positive_image]
      else:
        pos_text, pos_image = text[space], image[space]
      if c.negatives == "all":
        # Every different-label item of the global batch, the hinges averaged.
        i2t = mcsm_losses.expected_hinge(
            jnp.sum(image[space] * pos_text, axis=-1),
            image[space] @ text_all[space].T,
            different,
            c.margin,
        )
        t2i = mcsm_losses.expected_hinge(
            jnp.sum(pos_image * text[space], axis=-1),
            text[space] @ image_all[space].T,
            different,
            c.margin,
        )
      else:
        if c.negatives == "hardest":
          # This space's hardest different-label item of the global batch, per anchor.
          negative_text, text_found = mcsm_losses.hardest_negatives(
              image[space] @ text_all[space].T, different
          )
          negative_image, image_found = mcsm_losses.hardest_negatives(
              text[space] @ image_all[space].T, different
          )
        i2t, t2i = mcsm_losses.bidirectional_hinge(
            image[space],
            text[space],
            text_all[space][negative_text],
            image_all[space][negative_image],
            c.margin,
            text_found,
            image_found,
            pos_text,
            pos_image,
        )
      share = (jnp.sum(i2t) + jnp.sum(t2i)) / n
      total = total + share
      logs[f"loss_{space}"] = parallel.loss_from_share(share, axis_name)
      active = jnp.sum(i2t > 0) + jnp.sum(t2i > 0)
      logs[f"active_{space}"] = parallel.loss_from_share(active / (2 * n), axis_name)
    if self.label_weight:
      label_share = 0.0
      for enc in (image, text):
        logits = module.apply(model_vars, enc, method=MCSM.classify)
        for space in SPACES:
          label_share = label_share + jnp.sum(_label_loss(logits[space], batch["label"])) / n
      logs["loss_label"] = parallel.loss_from_share(label_share, axis_name)
      total = total + self.label_weight * label_share
    collections = {k: v for k, v in variables.items() if k != "params"}
    collections.update(new_state)  # the fusion weight passes through unchanged
    return parallel.loss_from_share(total, axis_name), (collections, logs)

  # --- Retrieval ------------------------------------------------------------------------

  def encode_image(self, variables, x):
    return self.module.apply(
        self._model_variables(variables), *self._image_args(x), method=MCSM.encode_image
    )

  def encode_text(self, variables, x):
    return self.module.apply(
        self._model_variables(variables), *self._text_args(x), method=MCSM.encode_text
    )

  def score(self, variables, image_block, text_block):
    """{"image_space", "text_space"}: [P, Q] cosines (dot products of unit vectors)."""
    del variables
    return cosine_scores(image_block, text_block)

  def retrieval_scores(self, variables, scores, direction):
    """The adaptive fusion of the direction's two channels with the stored weight i
    (`model.retrieval="fusion"`), or one space's cosines."""
    del direction  # the channels arrive already oriented query x gallery
    mode = self.config.model.retrieval
    if mode != "fusion":
      return np.asarray(scores[mode], np.float32)
    return adaptive_fusion(scores["image_space"], scores["text_space"], fusion_weight(variables))

  def pair_bytes(self, image_enc, text_enc):
    """Separable: each space's scores are one matmul of per-item unit vectors, so a pair
    costs its two float32 scores."""
    del image_enc, text_enc
    return 4 * len(SPACES)

  # --- The fusion weight ----------------------------------------------------------------

  def calibrate(self, variables, channels, labels):
    """`variables` with the fusion weight chosen on the validation split's score channels
    (the hook a training loop calls before validating and checkpointing)."""
    grid = np.linspace(0.0, 1.0, int(self.config.model.fusion_grid_points))
    best, _ = choose_fusion_weight(channels, labels, grid)
    return with_fusion_weight(variables, best)


def choose_fusion_weight(
    channels: Mapping[str, Any], labels: np.ndarray, grid: Sequence[float] = DEFAULT_GRID
) -> tuple[float, dict[str, Any]]:
  """The fusion weight i of the grid with the best average mAP@ALL on a split.

  For each i the two directions' fused scores (`adaptive_fusion`, exactly what
  `retrieval_scores` ranks by) are ranked over the whole split (queries = its items of
  one modality, gallery = its items of the other).

  Args:
    channels: the split's score channels, {"image_space", "text_space"} [n_images,
      n_texts] cosines (`ranking.split_channels`; the stored fusion weight plays no part).
      Choose on the validation split, never the test one.
    labels: the split's labels.
    grid: the candidate weights (default 0, 0.01, ..., 1, the code's grid).

  Returns:
    (best i, table): the first grid value with the highest average mAP@ALL, and
    {"weight": [G], "i2t": [G], "t2i": [G], "avg": [G]} (numpy, the mAP@ALL of each
    weight) plus "image_space" and "text_space": {"i2t", "t2i", "avg"} mAP@ALL of each
    space's cosines alone.
  """
  grid = np.asarray(grid, np.float64)
  if grid.ndim != 1 or grid.size == 0:
    raise ValueError(f"grid must be a non-empty 1-D sequence, got shape {grid.shape}.")
  oriented = {"i2t": channels, "t2i": {k: np.transpose(v) for k, v in channels.items()}}
  table: dict[str, Any] = {"weight": grid}
  for d in base.DIRECTIONS:
    w1, w2 = oriented[d]["image_space"], oriented[d]["text_space"]
    table[d] = np.array(
        [metrics.map_at_all(adaptive_fusion(w1, w2, i), labels, labels) for i in grid]
    )
  table["avg"] = (table["i2t"] + table["t2i"]) / 2
  for space in SPACES:
    one = {d: np.asarray(oriented[d][space], np.float32) for d in base.DIRECTIONS}
    table[space] = metrics.split_metrics(one, labels, full=False)["map_all"]
  return float(grid[int(np.argmax(table["avg"]))]), table
