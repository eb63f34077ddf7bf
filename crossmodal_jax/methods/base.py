"""The face every method exposes to training, scoring and evaluation.

Training, pairwise scoring and evaluation are written once, against this class; a method
is one file that subclasses it and registers itself (`methods.register`). What a method
must define:

- `init(rng, batch)`: its variables ({"params": ..., maybe "batch_stats": ...});
- `loss(variables, batch, rng, axis_name)`: the training loss on one device's shard of the
  global batch, inside `shard_map` (see `crossmodal_jax.parallel`: gather the global
  batch's encodings and labels, and turn the device's share of the loss into the value to
  return). `axis_name` is None on one device outside `shard_map`;
- `encode_image(variables, x)` / `encode_text(variables, x)`: per-item encodings, each a
  pytree of arrays with a leading item axis, computed once per item. Structure shared by
  all items (a word graph, say) stays in the method, not in the encodings;
- `score(variables, image_block, text_block)`: the [P, Q] scores of every pair of a block
  of P image and Q text encodings (or a pytree of such [P, Q] score channels), jointly
  where the method needs it.

What it may override, with these defaults:

- `retrieval_scores(variables, scores, direction)`: the ranking scores of one direction
  from the full query x gallery score channels (for a direction-specific or fused score;
  by default the one channel, so t2i is the transpose of i2t);
- `pair_bytes(image_enc, text_enc)`: the peak bytes of intermediates per scored pair, from
  which blockwise scoring sizes its tiles within the memory budget;
- `calibrate(variables, channels, labels)`: settings chosen on the validation split's
  score channels after training steps, kept in non-param collections (MCSM's fusion
  weight); by default none;
- `optimizer(train_config, steps_per_epoch)`: `optimizers.from_config`;
- `batches(split, batch_size, seed, epoch)` and `num_batches(split, batch_size)`: the
  training sampler, by default a seeded permutation of the split's rows. Any sampler that
  is a function of (seed, epoch) keeps training deterministic and resumable.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Iterator, Mapping

import jax
import ml_collections
import numpy as np
import optax

from crossmodal_jax import optimizers
from crossmodal_jax import sampling
from crossmodal_jax.data import common

Variables = Mapping[str, Any]
Batch = Mapping[str, Any]
DIRECTIONS = ("i2t", "t2i")


class Method(abc.ABC):
  """Base class of the methods' training / retrieval face.

  Attributes:
    config: the whole experiment config; a method reads its own fields from
      `config.model` (and may read `config.train`).
    dims: per-row shapes of the dataset's arrays (from `Dataset.dims()`).
    meta: the dataset's metadata (a vocabulary, a word-vector table, ...).
    image_key: the split array `encode_image` reads.
    text_keys: the split arrays `encode_text` reads: one key gives that array, several
      a tuple of them (e.g. ("word_ids", "word_mask") for a text CNN).
  """

  image_key: str = "image"
  text_keys: tuple[str, ...] = ("text",)

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      dims: Mapping[str, tuple[int, ...]],
      meta: Mapping[str, Any] | None = None,
  ):
    self.config = config
    self.dims = dict(dims)
    self.meta = dict(meta or {})

  # --- Inputs ---------------------------------------------------------------------------

  @property
  def batch_keys(self) -> tuple[str, ...]:
    """The split arrays the default sampler puts in a batch (and `init` samples)."""
    return (self.image_key, *self.text_keys, "label")

  def init_batch(self, split: common.Split) -> dict[str, np.ndarray]:
    """Two rows of `split`'s `batch_keys`: what `init` is called with."""
    return {k: split[k][:2] for k in self.batch_keys}

  def image_input(self, arrays: Mapping[str, Any]) -> Any:
    """The input of `encode_image`, from a batch's or a split's arrays."""
    return arrays[self.image_key]

  def text_input(self, arrays: Mapping[str, Any]) -> Any:
    """The input of `encode_text`, from a batch's or a split's arrays."""
    if len(self.text_keys) == 1:
      return arrays[self.text_keys[0]]
    return tuple(arrays[k] for k in self.text_keys)

  def word_vector_table(self, who: str) -> np.ndarray:
    """The dataset's word-vector table, for a text path over word-id sequences.

    Raises:
      ValueError: naming `who` and what is missing: the word_ids / word_mask arrays (the
        data.word_sequences switch) or meta["word_vectors"].
    """
    if "word_ids" not in self.dims or "word_mask" not in self.dims:
      raise ValueError(
          f"{who} needs word sequences: set --config.data.word_sequences=True (arrays "
          "word_ids, word_mask)."
      )
    table = self.meta.get("word_vectors")
    if table is None:
      raise ValueError(
          f"{who} needs meta['word_vectors'] (the word-vector table) from the dataset."
      )
    return table

  # --- What every method defines --------------------------------------------------------

  @abc.abstractmethod
  def init(self, rng: jax.Array, batch: Batch) -> Variables:
    """The variables, from a key and a few rows of the split (`batch_keys`)."""

  @abc.abstractmethod
  def loss(
      self, variables: Variables, batch: Batch, rng: jax.Array, axis_name: str | None
  ) -> tuple[jax.Array, tuple[Variables, dict[str, jax.Array]]]:
    """(this device's loss value, (updated non-param collections, metrics)).

    The mean over devices of the loss values must be the global-batch loss, and so must
    the mean of their gradients be its gradient: return
    `parallel.loss_from_share(share, axis_name)` for a device's share of the loss.
    """

  @abc.abstractmethod
  def encode_image(self, variables: Variables, x: Any) -> Any:
    """Per-item image encodings: a pytree of arrays with a leading item axis."""

  @abc.abstractmethod
  def encode_text(self, variables: Variables, x: Any) -> Any:
    """Per-item text encodings: a pytree of arrays with a leading item axis."""

  @abc.abstractmethod
  def score(self, variables: Variables, image_block: Any, text_block: Any) -> Any:
    """[P, Q] scores (or a pytree of [P, Q] channels) of every pair of the two blocks."""

  # --- Optional, with defaults ----------------------------------------------------------

  def retrieval_scores(self, variables: Variables, scores: Any, direction: str) -> Any:
    """[n_query, n_gallery] ranking scores of `direction` from full score channels.

    Args:
      variables: the model variables (e.g. a fusion weight stored with them).
      scores: the pytree `score` returns, with every channel already laid out query x
        gallery ([n_images, n_texts] for "i2t", the transpose for "t2i") and covering the
        whole gallery, so row-wise operations (normalising a query's scores) are exact.
        A query's row must depend on that row's channels alone (not on other queries):
        streamed top-k evaluation (`scoring.top_k_of_rows`) ranks a few rows at a time
        and refuses a method whose first row changes when ranked alone.
      direction: "i2t" or "t2i".

    Returns:
      A [n_query, n_gallery] array; higher ranks first.
    """
    del variables, direction
    leaves = jax.tree.leaves(scores)
    if len(leaves) != 1:
      raise ValueError(
          f"{type(self).__name__}.score returns {len(leaves)} channels: define "
          "retrieval_scores to combine them."
      )
    return leaves[0]

  def separable_code(self, variables: Variables, encodings: Any, modality: str) -> Any:
    """Per-item codes [n, d] whose dot products (image code . text code) approximate this
    method's ranking score, for a cheap first stage of its own (`eval.shortlist="own"`),
    or None (the default): the method has no such approximation.

    Args:
      variables: the model variables.
      encodings: `encode_image`'s (modality "image") or `encode_text`'s ("text") output.
      modality: "image" or "text".
    """
    del variables, encodings, modality
    return None

  def pair_bytes(self, image_enc: Any, text_enc: Any) -> int:
    """Peak bytes of intermediates per scored pair, given one block of each encoding.

    The default assumes a joint scorer that holds one vector per pair as wide as the two
    encodings together (float32); a method whose score is cheaper (separable) or dearer
    (several joint layers) says so, so that blockwise scoring keeps to its budget.
    """
    width = sum(
        math.prod(x.shape[1:]) for x in jax.tree.leaves(image_enc) + jax.tree.leaves(text_enc)
    )
    return 4 * max(width, 1)

  def calibrate(self, variables: Variables, channels: Any, labels: np.ndarray) -> Variables:
    """`variables` with settings chosen on the validation split (e.g. a fusion weight in
    a non-param collection); default: unchanged.

    Training calls it before each validation evaluation, so the validation mAP is
    measured with the choice and every checkpoint carries it. The split is encoded and
    scored once for both: `channels` is `score`'s pytree over every (image, text) pair of
    the validation split ([n_images, n_texts] each, computed with `variables`) and
    `labels` its labels. So only what `retrieval_scores` reads may be chosen here, never
    what `encode_*` or `score` read; only non-param collections may change (same
    structure).
    """
    del channels, labels
    return variables

  def optimizer(self, train_config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer (default: built from `train_config`, see `optimizers`)."""
    return optimizers.from_config(train_config, steps_per_epoch)

  def batches(
      self, split: common.Split, batch_size: int, seed: int, epoch: int
  ) -> Iterator[dict[str, np.ndarray]]:
    """The global training batches of `epoch` (default: a seeded permutation of rows,
    the last partial batch kept only if `train.drop_remainder` is False)."""
    return sampling.permutation_batches(
        split, self.batch_keys, batch_size, seed, epoch, self._drop_remainder
    )

  def num_batches(self, split: common.Split, batch_size: int) -> int:
    """How many batches `batches` yields per epoch (the same every epoch)."""
    return sampling.num_permutation_batches(split, batch_size, self._drop_remainder)

  @property
  def _drop_remainder(self) -> bool:
    return self.config.train.drop_remainder
