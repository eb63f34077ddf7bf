"""MCSM's Flax modules: two modality-specific semantic spaces with disjoint parameters.

Shapes: B items, R image regions, L words, D the width of both spaces.

- `ImageSpace`: the image's region sequence [B, R, d_img] -> `AttentionLSTMEncoder` (with
  W_a) -> unit vector; the text's document vector [B, d_txt] -> Dense(D) -> L2 normalise.
- `TextSpace`: the text's word-vector sequence [B, L, d_word] -> (conv front-end) ->
  `AttentionLSTMEncoder` (without W_a) -> unit vector; the image's global feature
  [B, d_img] -> Dense(D) -> sigmoid -> L2 normalise.
- `MCSM`: both spaces. `encode_image` / `encode_text` give each item's unit vector in
  each space, {"image_space": [B, D], "text_space": [B, D]}; the similarity in a space is
  the dot product of two unit vectors (cosine), so scoring is two matmuls.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from crossmodal_jax.layers import attention_lstm
from crossmodal_jax.layers import initializers

SPACES = ("image_space", "text_space")


class ImageSpace(nn.Module):
  """The image's semantic space: a recurrent attention network over the image's regions;
  the text enters as one document vector through a Dense layer.

  Attributes:
    hidden: the LSTM width.
    dim: D, the width of the space.
    num_layers: stacked LSTM layers.
    dropout: between LSTM layers (training only).
    score_dropout: on the attention's tanh features (training only).
    attention_dim: W_a's output width (None: D).
    text_dim: the document vector's width (the Dense layer's fan-in).
    param_init: "flax", "pytorch" or "glorot" (`layers.initializers`).
    uniform_attention: ablation: every real step weighs the same (no learned attention).
    num_classes: the width of the label loss's linear classifier of the space's unit
      vectors (`classify`); 0: no classifier (the code's model).
  """

  hidden: int
  dim: int
  num_layers: int = 2
  dropout: float = 0.5
  score_dropout: float = 0.5
  attention_dim: int | None = None
  text_dim: int = 1
  param_init: str = "pytorch"
  uniform_attention: bool = False
  num_classes: int = 0

  def setup(self):
    self.encoder = attention_lstm.AttentionLSTMEncoder(
        hidden=self.hidden,
        out_dim=self.dim,
        num_layers=self.num_layers,
        dropout=self.dropout,
        attention_projection=True,
        attention_dim=self.attention_dim,
        score_dropout=self.score_dropout,
        param_init=self.param_init,
        uniform_attention=self.uniform_attention,
    )
    self.text_projection = nn.Dense(self.dim, **initializers.dense(self.param_init, self.text_dim))
    if self.num_classes:
      self.classifier = nn.Dense(self.num_classes, **initializers.dense(self.param_init, self.dim))

  def classify(self, x: jax.Array) -> jax.Array:
    """Unit vectors [B, D] -> class logits [B, num_classes] (the label loss's head)."""
    return self.classifier(x)

  def encode_image(self, regions: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
    """regions [B, R, d_img], mask [B, R] -> unit vectors [B, D]."""
    return self.encoder(regions, mask, train=train)

  def encode_text(self, text: jax.Array) -> jax.Array:
    """Document vectors [B, d_txt] -> unit vectors [B, D]."""
    return attention_lstm.l2_normalize(self.text_projection(text))


class TextSpace(nn.Module):
  """The text's semantic space: a recurrent attention network (no W_a, optional conv
  front-end) over the text's word vectors; the image enters as its global feature
  through Dense -> sigmoid.

  Attributes:
    hidden, dim, num_layers, dropout, score_dropout, param_init, uniform_attention,
      num_classes: as `ImageSpace`.
    image_dim: the global image feature's width (the Dense layer's fan-in).
    front_end_kernels, front_end_channels, front_end_pools: the conv front-end's blocks
      (`ConvFrontEnd`); empty: no front-end.
    front_end_batch_norm: batch norm in the front-end's blocks.
    axis_name: the data axis over which the front-end's batch norm takes its moments in
      training (inside `shard_map`), or None.
  """

  hidden: int
  dim: int
  num_layers: int = 2
  dropout: float = 0.5
  score_dropout: float = 0.5
  image_dim: int = 1
  front_end_kernels: Sequence[int] = ()
  front_end_channels: Sequence[int] = ()
  front_end_pools: Sequence[int] = ()
  front_end_batch_norm: bool = True
  axis_name: str | None = None
  param_init: str = "pytorch"
  uniform_attention: bool = False
  num_classes: int = 0

  def setup(self):
    front_end = None
    if self.front_end_kernels:
      front_end = attention_lstm.ConvFrontEnd(
          kernel_sizes=tuple(self.front_end_kernels),
          channels=tuple(self.front_end_channels),
          pools=tuple(self.front_end_pools),
          use_batch_norm=self.front_end_batch_norm,
          axis_name=self.axis_name,
          param_init=self.param_init,
      )
    self.encoder = attention_lstm.AttentionLSTMEncoder(
        hidden=self.hidden,
        out_dim=self.dim,
        num_layers=self.num_layers,
        dropout=self.dropout,
        attention_projection=False,
        score_dropout=self.score_dropout,
        front_end=front_end,
        param_init=self.param_init,
        uniform_attention=self.uniform_attention,
    )
    self.image_projection = nn.Dense(
        self.dim, **initializers.dense(self.param_init, self.image_dim)
    )
    if self.num_classes:
      self.classifier = nn.Dense(self.num_classes, **initializers.dense(self.param_init, self.dim))

  def classify(self, x: jax.Array) -> jax.Array:
    """Unit vectors [B, D] -> class logits [B, num_classes] (the label loss's head)."""
    return self.classifier(x)

  def encode_text(self, words: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
    """Word vectors [B, L, d_word], mask [B, L] -> unit vectors [B, D]."""
    return self.encoder(words, mask, train=train)

  def encode_image(self, image: jax.Array) -> jax.Array:
    """Global image features [B, d_img] -> unit vectors [B, D]."""
    return attention_lstm.l2_normalize(jax.nn.sigmoid(self.image_projection(image)))


class MCSM(nn.Module):
  """Both spaces (disjoint parameters under "image_space" and "text_space").

  Attributes:
    image_space: the image's space.
    text_space: the text's space.
  """

  image_space: ImageSpace
  text_space: TextSpace

  def encode_image(
      self, regions: jax.Array, region_mask: jax.Array, image: jax.Array, train: bool = False
  ) -> dict[str, jax.Array]:
    """An image's unit vector in each space: its regions in its own, its global feature
    projected into the text's. Returns {"image_space", "text_space"} [B, D]."""
    return {
        "image_space": self.image_space.encode_image(regions, region_mask, train=train),
        "text_space": self.text_space.encode_image(image),
    }

  def encode_text(
      self, words: jax.Array, word_mask: jax.Array, text: jax.Array, train: bool = False
  ) -> dict[str, jax.Array]:
    """A text's unit vector in each space: its document vector projected into the
    image's, its word vectors in its own. Returns {"image_space", "text_space"} [B, D]."""
    return {
        "image_space": self.image_space.encode_text(text),
        "text_space": self.text_space.encode_text(words, word_mask, train=train),
    }

  def __call__(self, regions, region_mask, image, words, word_mask, text, train: bool = False):
    """(image encodings, text encodings): builds every parameter (the classifiers too,
    when the spaces have them)."""
    image_enc = self.encode_image(regions, region_mask, image, train=train)
    text_enc = self.encode_text(words, word_mask, text, train=train)
    if self.image_space.num_classes:
      self.image_space.classify(image_enc["image_space"])
      self.text_space.classify(text_enc["text_space"])
    return image_enc, text_enc

  def classify(self, encodings: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Each space's class logits of its unit vectors, {"image_space", "text_space"}
    [B, num_classes]."""
    return {
        "image_space": self.image_space.classify(encodings["image_space"]),
        "text_space": self.text_space.classify(encodings["text_space"]),
    }


def cosine_scores(image_block: dict, text_block: dict) -> dict[str, jax.Array]:
  """[P, Q] cosine of every pair in each space, from unit vectors: two matmuls."""
  dot = lambda a, b: jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
  return {s: dot(image_block[s], text_block[s]) for s in SPACES}
