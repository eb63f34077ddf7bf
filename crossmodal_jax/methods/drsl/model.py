"""DRSL's Flax module: the two towers and the relation network (see the package doc)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossmodal_jax.layers import initializers
from crossmodal_jax.layers import mlp
from crossmodal_jax.layers import pairwise
from crossmodal_jax.layers import text_cnn

FUSIONS = ("concat", "multiply", "add", "subtract")


class DRSL(nn.Module):
  """DRSL towers + relation network.

  Attributes:
    image_layers: image tower widths (e.g. (1024, 300)).
    text_layers: text tower widths; the last width must equal image_layers[-1] for the
      elementwise fusions.
    relation_layers: hidden widths of the relation MLP (the paper's 600-1024-1 is (1024,));
      the output layer (1 unit, linear) is implicit.
    fusion: one of FUSIONS.
    tower_batch_norm: batch norm in the towers.
    relation_batch_norm: batch norm in the relation MLP (over all pairs of the batch).
    dropout: dropout rate after each tower ReLU.
    axis_name: data-parallel axis name in training (under shard_map), else None.
    param_init: "flax" or "pytorch" initialisation of every Dense layer (`initializers`); the
      separable halves of the concat layer are initialised as the whole layer.
  """

  image_layers: Sequence[int] = (1024, 300)
  text_layers: Sequence[int] = (1024, 300)
  relation_layers: Sequence[int] = (1024,)
  fusion: str = "concat"
  tower_batch_norm: bool = True
  relation_batch_norm: bool = True
  dropout: float = 0.0
  axis_name: str | None = None
  param_init: str = "flax"
  # Text input: "mlp" reads fixed text features; "cnn" reads (word_ids, word_mask) through
  # a Kim text CNN (trained jointly) before the text tower.
  text_encoder: str = "mlp"
  cnn_vocab_size: int = 0
  cnn_embed_dim: int = 50
  cnn_kernel_sizes: Sequence[int] = (3, 4, 5)
  cnn_filters: int = 100
  cnn_dropout: float = 0.5
  cnn_freeze_embeddings: bool = False
  cnn_embedding_init: Callable[..., Any] | None = None
  # Sparse text (text_encoder "mlp"): 0 reads dense text features [n, d]; V > 0 reads the
  # padded non-zeros (ids, values) [n, L] of [n, V] features, the text tower's first layer
  # a gather-sum over the same kernel as the dense layer's (`mlp.MLP.sparse_input_dim`).
  sparse_text_dim: int = 0

  def setup(self):
    if self.fusion not in FUSIONS:
      raise ValueError(f"Unknown fusion {self.fusion!r}; choose one of {FUSIONS}.")
    if not self.relation_layers:
      raise ValueError("relation_layers needs at least one hidden layer.")
    if self.fusion != "concat" and self.image_layers[-1] != self.text_layers[-1]:
      raise ValueError(
          f"Fusion {self.fusion!r} needs equal tower outputs, got image "
          f"{self.image_layers[-1]} and text {self.text_layers[-1]}."
      )
    tower = dict(
        batch_norm=self.tower_batch_norm,
        dropout=self.dropout,
        axis_name=self.axis_name,
        param_init=self.param_init,
    )
    self.image_tower = mlp.MLP(tuple(self.image_layers), **tower)
    self.text_tower = mlp.MLP(
        tuple(self.text_layers), sparse_input_dim=self.sparse_text_dim, **tower
    )
    if self.sparse_text_dim and self.text_encoder != "mlp":
      raise ValueError(f"Sparse text needs text_encoder 'mlp', got {self.text_encoder!r}.")
    if self.text_encoder == "cnn":
      self.text_cnn = text_cnn.TextCNN(
          vocab_size=self.cnn_vocab_size,
          embed_dim=self.cnn_embed_dim,
          kernel_sizes=tuple(self.cnn_kernel_sizes),
          num_filters=self.cnn_filters,
          dropout=self.cnn_dropout,
          freeze_embeddings=self.cnn_freeze_embeddings,
          embedding_init=self.cnn_embedding_init,
      )
    elif self.text_encoder != "mlp":
      raise ValueError(f"Unknown text_encoder {self.text_encoder!r}; choose 'mlp' or 'cnn'.")
    width = self.relation_layers[0]
    if self.fusion == "concat":
      # The two halves of one Dense over [z_i; z_t]: initialised as that whole layer.
      dense = initializers.dense(self.param_init, self.image_layers[-1] + self.text_layers[-1])
      self.proj_image = nn.Dense(width, use_bias=False, **dense)
      # With grid batch norm a bias here would cancel against the batch mean.
      self.proj_text = nn.Dense(width, use_bias=not self.relation_batch_norm, **dense)
      if self.relation_batch_norm:
        self.grid_scale = self.param("grid_scale", nn.initializers.ones, (width,))
        self.grid_bias = self.param("grid_bias", nn.initializers.zeros, (width,))
        self.grid_mean = self.variable("batch_stats", "grid_mean", jnp.zeros, (width,))
        self.grid_var = self.variable("batch_stats", "grid_var", jnp.ones, (width,))
    else:
      self.proj_pair = nn.Dense(
          width,
          use_bias=not self.relation_batch_norm,
          **initializers.dense(self.param_init, self.image_layers[-1]),
      )
      if self.relation_batch_norm:
        self.pair_bn = self._pair_bn()
    tail_dense, tail_bn = [], []
    for fan_in, w in zip(self.relation_layers[:-1], self.relation_layers[1:]):
      tail_dense.append(
          nn.Dense(
              w,
              use_bias=not self.relation_batch_norm,
              **initializers.dense(self.param_init, fan_in),
          )
      )
      if self.relation_batch_norm:
        tail_bn.append(self._pair_bn())
    self.tail_dense, self.tail_bn = tail_dense, tail_bn
    last = self.relation_layers[-1]
    self.out_kernel = self.param(
        "out_kernel", initializers.kernel(self.param_init, last), (last, 1)
    )
    self.out_bias = self.param("out_bias", initializers.bias(self.param_init, last), (1,))

  def _pair_bn(self) -> nn.BatchNorm:
    return nn.BatchNorm(momentum=mlp.BN_MOMENTUM, epsilon=mlp.BN_EPSILON, axis_name=self.axis_name)

  # --- Per-item encodings -------------------------------------------------------------

  def encode_image(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Image features [n, d] -> per-item encoding used by `score` (eval mode)."""
    z = self.image_tower(x, train=train)
    if self.fusion != "concat":
      return z
    a = self.proj_image(z)
    if self.relation_batch_norm:
      a = (a - self.grid_mean.value) * self._grid_scale() + self.grid_bias
    return a

  def _text_features(self, x, train: bool) -> jax.Array:
    if self.text_encoder == "cnn":
      word_ids, word_mask = x
      x = self.text_cnn(word_ids, word_mask, train=train)
    return self.text_tower(x, train=train)

  def encode_text(self, x, train: bool = False) -> jax.Array:
    """Text features [n, d] (or (word_ids, word_mask) with the CNN, (ids, values) with
    sparse text) -> per-item encoding."""
    z = self._text_features(x, train)
    if self.fusion != "concat":
      return z
    b = self.proj_text(z)
    if self.relation_batch_norm:
      b = b * self._grid_scale()
    return b

  def _grid_scale(self) -> jax.Array:
    """Eval-mode grid batch-norm scale: gamma / sqrt(running var + eps)."""
    return self.grid_scale * jax.lax.rsqrt(self.grid_var.value + mlp.BN_EPSILON)

  # --- Pair scores --------------------------------------------------------------------

  def score(self, image_enc: jax.Array, text_enc: jax.Array, train: bool = False) -> jax.Array:
    """Encodings [P, .], [Q, .] -> relation scores [P, Q] for every pair.

    With concat fusion and one hidden relation layer the pairs go through the fused
    kernel: in training `pairwise_relu_dot`, in scoring `pairwise_relu_scores` (the same
    scores, by the native kernel on the CPU)."""
    if self.fusion == "concat":
      if len(self.relation_layers) == 1:
        fused = pairwise.pairwise_relu_dot if train else pairwise.pairwise_relu_scores
        r = fused(image_enc, text_enc, self.out_kernel[:, 0])
        return r + self.out_bias[0]
      hidden = nn.relu(image_enc[:, None, :] + text_enc[None, :, :])
    else:
      fused = _fuse(self.fusion, image_enc[:, None, :], text_enc[None, :, :])
      hidden = self.proj_pair(fused)
      if self.relation_batch_norm:
        hidden = self._pair_norm(self.pair_bn, hidden, train)
      hidden = nn.relu(hidden)
    for i, dense in enumerate(self.tail_dense):
      hidden = dense(hidden)
      if self.relation_batch_norm:
        hidden = self._pair_norm(self.tail_bn[i], hidden, train)
      hidden = nn.relu(hidden)
    return hidden @ self.out_kernel[:, 0] + self.out_bias[0]

  def _pair_norm(self, bn: nn.BatchNorm, h: jax.Array, train: bool) -> jax.Array:
    p, q, k = h.shape
    return bn(h.reshape(p * q, k), use_running_average=not train).reshape(p, q, k)

  # --- Training forward ---------------------------------------------------------------

  def __call__(self, image: jax.Array, text: jax.Array, train: bool = False) -> jax.Array:
    """Relation matrix R [P_local, Q_global] of this device's images x all batch texts.

    Outside shard_map (axis_name None) this is the plain [P, Q] all-pairs matrix.
    """
    if not train:
      return self.score(self.encode_image(image), self.encode_text(text))
    zi = self.image_tower(image, train=True)
    zt = self._text_features(text, True)
    if self.fusion != "concat":
      zt = self._gather(zt)
      return self.score(zi, zt, train=True)
    a = self.proj_image(zi)
    b = self._gather(self.proj_text(zt))
    if self.relation_batch_norm:
      mean_a, var_a = mlp.global_moments(a, self.axis_name)
      mean_b, var_b = mlp.global_moments(b, None)  # b is already the global batch
      mean, var = mean_a + mean_b, var_a + var_b
      if not self.is_initializing():
        m = mlp.BN_MOMENTUM
        self.grid_mean.value = m * self.grid_mean.value + (1 - m) * mean
        self.grid_var.value = m * self.grid_var.value + (1 - m) * var
      scale = self.grid_scale * jax.lax.rsqrt(var + mlp.BN_EPSILON)
      a = (a - mean_a) * scale + self.grid_bias
      b = (b - mean_b) * scale
    return self.score(a, b, train=True)

  def _gather(self, x: jax.Array) -> jax.Array:
    if self.axis_name is None:
      return x
    return jax.lax.all_gather(x, self.axis_name, tiled=True)


def _fuse(fusion: str, zi: jax.Array, zt: jax.Array) -> jax.Array:
  if fusion == "multiply":
    return zi * zt
  if fusion == "add":
    return zi + zt
  if fusion == "subtract":
    return zi - zt
  raise ValueError(f"Unknown elementwise fusion {fusion!r}.")
