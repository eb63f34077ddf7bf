"""Toy methods with exact integer scores, shared by the ranking tests: features in
{-1, 0, 1} times an integer weight, so every block shape gives the same scores, with
heavy ties.

- `IntDot`: separable, a dot product; ranks by its one channel (the face's default).
- `IntFused`: two channels fused by MCSM's adaptive fusion, a min-max normalisation of
  each query's row over its items (so t2i is not i2t transposed, and part of a row cannot
  be ranked alone).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from crossmodal_jax import losses
from crossmodal_jax import parallel
from crossmodal_jax.methods import base
from crossmodal_jax.methods.mcsm import method as mcsm


class IntDot(base.Method):
  """Separable: items are their integer features times an integer weight (2), the score a
  dot product; ranks by its one channel (the face's retrieval_scores)."""

  def init(self, rng, batch):
    del rng, batch
    return {"params": {"weight": jnp.float32(2.0)}}

  def loss(self, variables, batch, rng, axis_name):
    del rng
    zi = self.encode_image(variables, batch["image"])
    zt = parallel.gather(self.encode_text(variables, batch["text"]), axis_name)
    s = losses.label_agreement(batch["label"], parallel.gather(batch["label"], axis_name))
    bce = optax.sigmoid_binary_cross_entropy(zi @ zt.T, s)
    share = jnp.sum(bce) / (parallel.global_batch_size(zi.shape[0], axis_name) * zt.shape[0])
    return parallel.loss_from_share(share, axis_name), ({}, {})

  def encode_image(self, variables, x):
    return x[:, :4] * variables["params"]["weight"]

  def encode_text(self, variables, x):
    return x[:, :4] * variables["params"]["weight"]

  def score(self, variables, image_block, text_block):
    del variables
    return image_block @ text_block.T


class IntFused(IntDot):
  """Two channels fused by MCSM's adaptive fusion: a min-max normalisation of each
  query's row over the whole gallery, so t2i is not i2t transposed."""

  def score(self, variables, image_block, text_block):
    del variables
    return {
        "a": image_block[:, :2] @ text_block[:, :2].T,
        "b": image_block[:, 2:] @ text_block[:, 2:].T,
    }

  def retrieval_scores(self, variables, scores, direction):
    del variables, direction
    return mcsm.adaptive_fusion(scores["a"], scores["b"], 0.3)
