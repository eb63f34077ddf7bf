"""HCMSL's Flax module: two modality branches and the top layers they share (see the
package doc)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossmodal_jax.layers import initializers
from crossmodal_jax.layers import mlp


def unit(x: jax.Array) -> jax.Array:
  """Rows scaled to unit length (a zero row stays 0)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), 1e-12))


class Top(nn.Module):
  """The top layers: [Dense -> ReLU -> Dropout] per hidden width, then a linear Dense to
  the common space (no ReLU, so cosines span [-1, 1])."""

  hidden: Sequence[int]
  dim: int
  dropout: float = 0.0
  param_init: str = "pytorch"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = mlp.MLP(
        tuple(self.hidden), dropout=self.dropout, param_init=self.param_init, name="hidden"
    )(x, train=train)
    return nn.Dense(self.dim, name="out", **initializers.dense(self.param_init, x.shape[-1]))(x)


class HCMSL(nn.Module):
  """Coupled image / text networks whose top layers share one set of weights.

  Attributes:
    image_layers: widths of the image branch ([Dense -> ReLU -> Dropout] each).
    text_layers: widths of the text branch; its last width must equal the image
      branch's when the top is shared.
    shared_layers: hidden widths of the top layers (before the output Dense).
    dim: width of the common space.
    dropout: dropout rate after every ReLU (branches and top).
    share_top: one set of top layers for both branches (HCMSL); False gives each branch
      its own (the ablation).
    param_init: Dense initialisation, "pytorch", "flax" or "glorot" (`initializers`).
  """

  image_layers: Sequence[int] = (1024,)
  text_layers: Sequence[int] = (1024,)
  shared_layers: Sequence[int] = (1024,)
  dim: int = 256
  dropout: float = 0.0
  share_top: bool = True
  param_init: str = "pytorch"

  def setup(self):
    initializers.check(self.param_init)
    if not self.image_layers or not self.text_layers:
      raise ValueError("HCMSL needs at least one layer in each branch (image_layers, text_layers).")
    if self.share_top and self.image_layers[-1] != self.text_layers[-1]:
      raise ValueError(
          "Shared top layers need branches of equal output width, got image "
          f"{self.image_layers[-1]} and text {self.text_layers[-1]}."
      )
    branch = dict(dropout=self.dropout, param_init=self.param_init)
    self.image_branch = mlp.MLP(tuple(self.image_layers), **branch)
    self.text_branch = mlp.MLP(tuple(self.text_layers), **branch)
    top = dict(hidden=tuple(self.shared_layers), dim=self.dim, **branch)
    if self.share_top:
      self.shared_top = Top(**top)
    else:
      self.image_top = Top(**top)
      self.text_top = Top(**top)

  def _tops(self):
    if self.share_top:
      return self.shared_top, self.shared_top
    return self.image_top, self.text_top

  def image_features(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """(branch output [n, image_layers[-1]], common-space unit vector [n, dim])."""
    h = self.image_branch(x, train=train)
    return h, unit(self._tops()[0](h, train=train))

  def text_features(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """(branch output [n, text_layers[-1]], common-space unit vector [n, dim])."""
    h = self.text_branch(x, train=train)
    return h, unit(self._tops()[1](h, train=train))

  def encode_image(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.image_features(x, train)[1]

  def encode_text(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.text_features(x, train)[1]

  def __call__(
      self, image: jax.Array, text: jax.Array, train: bool = False
  ) -> dict[str, jax.Array]:
    """{"image_branch", "text_branch"}: the branch outputs; {"image", "text"}: the
    common-space unit vectors."""
    image_branch, image_common = self.image_features(image, train)
    text_branch, text_common = self.text_features(text, train)
    return {
        "image_branch": image_branch,
        "text_branch": text_branch,
        "image": image_common,
        "text": text_common,
    }
