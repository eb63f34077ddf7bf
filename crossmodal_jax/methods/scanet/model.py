"""SCANet's Flax module: GCN text path, Dense image path, stacked co-attention, head.

Shapes: B items, V graph vertices (words), N the common dimension. The module's methods
split the network where the per-item / per-pair boundary lies:

- `encode_text(bow [B, V], graph)` and `encode_image(image [B, d])`: per item, the
  common-space feature "f" [B, N] and, with co-attention, the item's first attention
  distribution "p" [B, N] (layer 1 reads one item only);
- `pair_logits(image_enc, text_enc)`: per pair (any broadcastable leading shape), the
  co-attention layers 2.. and the head; the logit whose sigmoid is the similarity;
- `separable_code(enc, modality)`: per item, the first co-attention layer's bilinear
  score as a code, for a first stage of SCANet's own (`eval.shortlist="own"`);
- `score(image_block, text_block)`: the [P, Q] logits of every pair of two blocks. With
  at most one co-attention layer the score is bilinear, (u_i * w) . v_t + b, and is one
  matmul; from the second layer on each pair runs two N x N Dense layers.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import jraph
from flax import linen as nn

from crossmodal_jax.layers import chebyshev
from crossmodal_jax.layers import initializers

# Chebyshev filter inits: "cnn_graph" is Defferrard et al.'s code (truncated normal 0.1,
# bias 0.1), which Yu et al.'s GCN builds on; "flax" is LeCun normal over the K x F_in taps.
GCN_INITS = {
    "cnn_graph": dict(
        kernel_init=chebyshev.CNN_GRAPH_KERNEL_INIT, bias_init=chebyshev.CNN_GRAPH_BIAS_INIT
    ),
    "flax": dict(kernel_init=chebyshev.DEFAULT_KERNEL_INIT, bias_init=chebyshev.DEFAULT_BIAS_INIT),
}
ACTIVATIONS = {"linear": lambda x: x, "relu": nn.relu, "tanh": jnp.tanh}
TEXT_INPUTS = {
    "counts": lambda c: c,
    "log1p": jnp.log1p,
    "l2": lambda c: c / jnp.maximum(jnp.linalg.norm(c, axis=-1, keepdims=True), 1e-12),
}


ATTENTION_SCALES = ("softmax", "mean_one")


def _attention(dense: nn.Dense, f: jax.Array, scale: str) -> jax.Array:
  """p = softmax(relu(W f + b)) over the N features (Lu et al., eqs. 4-5, 7-8); with
  scale "mean_one", N x that, so that uniform attention leaves a feature unchanged."""
  p = jax.nn.softmax(nn.relu(dense(f)), axis=-1)
  return p * p.shape[-1] if scale == "mean_one" else p


class SCANet(nn.Module):
  """SCANet (Lu et al.): see the package docstring for the choices made.

  Attributes:
    dim: N, the common dimension of the two paths.
    text_fan_in: V (vertices) x the last graph layer's filters: the text Dense's input.
    image_fan_in: the image feature's width.
    gcn_filters: output filters of each Chebyshev layer (each + ReLU).
    cheb_order: K, the Chebyshev polynomial order of the graph filters.
    image_layers: widths of hidden image FC layers (+ ReLU) before the common mapping.
    attention_layers: stacked co-attention layers, 0..3.
    dropout: dropout rate at the head's input.
    activation: after each path's common-space Dense: "linear", "relu" or "tanh".
    param_init: Dense initialisation (`layers.initializers`).
    gcn_init: the graph filters' initialisation, a key of `GCN_INITS`.
    attention_scale: "softmax" (the paper's) or "mean_one" (N x softmax): the paper's
      attention divides a feature by about N per layer while it is near uniform.
    text_input: the graph signal from a text's counts: "counts", "log1p" (log(1 + c)) or
      "l2" (counts over their L2 norm).
    word_dropout: dropout rate on the graph signal in training (a dropped word is 0 at
      its vertex; the kept ones are scaled by 1 / (1 - rate)).
  """

  dim: int
  text_fan_in: int
  image_fan_in: int
  gcn_filters: Sequence[int] = (1, 1)
  cheb_order: int = 3
  image_layers: Sequence[int] = ()
  attention_layers: int = 2
  dropout: float = 0.2
  activation: str = "linear"
  param_init: str = "glorot"
  gcn_init: str = "cnn_graph"
  text_input: str = "counts"
  attention_scale: str = "softmax"
  word_dropout: float = 0.0

  def setup(self):
    if self.attention_scale not in ATTENTION_SCALES:
      raise ValueError(
          f"Unknown attention_scale {self.attention_scale!r}; choose one of {ATTENTION_SCALES}."
      )
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f"Unknown SCANet activation {self.activation!r}; choose one of {tuple(ACTIVATIONS)}."
      )
    dense = lambda width, fan_in, name: nn.Dense(
        width, name=name, **initializers.dense(self.param_init, fan_in)
    )
    self.graph_convs = [
        chebyshev.ChebConv(
            f, order=self.cheb_order, **GCN_INITS[self.gcn_init], name=f"graph_conv_{i}"
        )
        for i, f in enumerate(self.gcn_filters)
    ]
    self.text_map = dense(self.dim, self.text_fan_in, "text_map")
    widths = (self.image_fan_in, *self.image_layers)
    self.image_hidden = [
        dense(w, fan_in, f"image_hidden_{i}")
        for i, (fan_in, w) in enumerate(zip(widths[:-1], widths[1:]))
    ]
    self.image_map = dense(self.dim, widths[-1], "image_map")
    # Layer k's W_T^k reads the text feature, W_I^k the image feature.
    self.text_attention = [
        dense(self.dim, self.dim, f"text_attention_{k}") for k in range(self.attention_layers)
    ]
    self.image_attention = [
        dense(self.dim, self.dim, f"image_attention_{k}") for k in range(self.attention_layers)
    ]
    self.head_kernel = self.param(
        "head_kernel", initializers.kernel(self.param_init, self.dim), (self.dim, 1)
    )
    self.head_bias = self.param("head_bias", initializers.bias(self.param_init, self.dim), (1,))
    self.head_dropout = nn.Dropout(self.dropout)
    self.word_dropout_layer = nn.Dropout(self.word_dropout)

  def __call__(self, image, bow, graph, train: bool = False):
    """Logits of the matched pairs (row i with row i): builds every parameter."""
    return self.pair_logits(
        self.encode_image(image), self.encode_text(bow, graph), deterministic=not train
    )

  def _common(self, f: jax.Array, attention: list[nn.Dense]) -> dict[str, jax.Array]:
    f = ACTIVATIONS[self.activation](f)
    if not attention:
      return {"f": f}
    return {"f": f, "p": _attention(attention[0], f, self.attention_scale)}

  def encode_text(
      self, bow: jax.Array, graph: jraph.GraphsTuple, deterministic: bool = True
  ) -> dict[str, jax.Array]:
    """bow [B, V] word counts on the shared graph -> {"f", "p"} [B, N]; with
    `deterministic` False, word dropout on the signal (needs a "dropout" rng)."""
    x = TEXT_INPUTS[self.text_input](bow.astype(jnp.float32))
    x = self.word_dropout_layer(x, deterministic=deterministic)[..., None]
    for conv in self.graph_convs:
      x = nn.relu(conv(graph, x))
    return self._common(self.text_map(x.reshape(x.shape[0], -1)), self.text_attention)

  def encode_image(self, image: jax.Array) -> dict[str, jax.Array]:
    """image [B, d] -> {"f", "p"} [B, N]."""
    x = image
    for layer in self.image_hidden:
      x = nn.relu(layer(x))
    return self._common(self.image_map(x), self.image_attention)

  def _attended(self, image_enc, text_enc) -> tuple[jax.Array, jax.Array]:
    """(f~_I, f~_T) after every co-attention layer, per pair (broadcast leading axes)."""
    f_image, f_text = image_enc["f"], text_enc["f"]
    if self.attention_layers == 0:
      return f_image, f_text
    # Layer 1: each side is re-weighted by the other's attention (eq. 6).
    f_image, f_text = text_enc["p"] * f_image, image_enc["p"] * f_text
    for k in range(1, self.attention_layers):
      p_text = _attention(self.text_attention[k], f_text, self.attention_scale)
      p_image = _attention(self.image_attention[k], f_image, self.attention_scale)
      f_image, f_text = p_text * f_image, p_image * f_text
    return f_image, f_text

  def pair_logits(self, image_enc, text_enc, deterministic: bool = True) -> jax.Array:
    """The head's logit of each pair: Dense(dropout(f~_I * f~_T)) (eq. 10's input)."""
    f_image, f_text = self._attended(image_enc, text_enc)
    z = self.head_dropout(f_image * f_text, deterministic=deterministic)
    return (z @ self.head_kernel)[..., 0] + self.head_bias[0]

  def separable_code(self, enc, modality: str) -> jax.Array:
    """[B, N] codes of the first co-attention layer's bilinear score: f_I * p_I * h for
    images, f_T * p_T for texts (f alone without co-attention). Layer 1 multiplies the
    pair's features into (f_I p_I) * (f_T p_T), the same for every pair, so an image
    code . a text code + the head's bias is the logit with at most one layer, and with
    more, the logit when every later layer's attention is uniform (a constant factor,
    1 / N^2 per layer with "softmax" scaling, 1 with "mean_one")."""
    u = enc["f"] * enc["p"] if self.attention_layers >= 1 else enc["f"]
    return u * self.head_kernel[:, 0] if modality == "image" else u

  def score(self, image_block, text_block) -> jax.Array:
    """[P, Q] logits of every pair of a block of P images and Q texts."""
    if self.attention_layers <= 1:
      # f~_I * f~_T = (p_T f_T) * (p_I f_I): one vector per item, then a matmul.
      u = self.separable_code(image_block, "image")
      return u @ self.separable_code(text_block, "text").T + self.head_bias[0]
    expand = lambda enc, axis: jax.tree.map(lambda x: jnp.expand_dims(x, axis), enc)
    return self.pair_logits(expand(image_block, 1), expand(text_block, 0))


def num_text_inputs(num_nodes: int, gcn_filters: Sequence[int]) -> int:
  """The text Dense's fan-in: every vertex's last-layer filters."""
  return num_nodes * (gcn_filters[-1] if gcn_filters else 1)
