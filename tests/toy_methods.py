"""Two toy methods, defined only here, that plug into the library through its face alone.

- `ToyJoint` ("toy_joint"): a non-separable scorer. A pair's score needs both items
  jointly (an MLP over the elementwise product of the two encodings), and `score`
  returns two channels that `retrieval_scores` fuses row by row (row-wise min-max, as
  MCSM's adaptive fusion does), so its t2i scores are not the transpose of its i2t ones.
- `ToySampler` ("toy_sampler"): samples its own training pairs (half matching, half
  not, by label) as a function of (seed, epoch), and brings its own optimizer.

Importing this module registers both.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from crossmodal_jax import losses
from crossmodal_jax import methods
from crossmodal_jax import parallel
from crossmodal_jax import sampling
from crossmodal_jax.methods import base


def model_config(width: int = 16, hidden: int = 12) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"width": width, "hidden": hidden})


class _Encoders(nn.Module):
  width: int
  hidden: int

  def setup(self):
    self.image_proj = nn.Dense(self.width)
    self.text_proj = nn.Dense(self.width)
    self.joint = nn.Dense(self.hidden)
    self.out = nn.Dense(1)

  def encode_image(self, x):
    return jnp.tanh(self.image_proj(x))

  def encode_text(self, x):
    return jnp.tanh(self.text_proj(x))

  def joint_score(self, zi, zt):
    """[P, W] x [Q, W] -> [P, Q]: an MLP on each pair's product (not separable)."""
    h = jnp.tanh(self.joint(zi[:, None, :] * zt[None, :, :]))
    return self.out(h)[..., 0]

  def __call__(self, x_image, x_text):
    return self.joint_score(self.encode_image(x_image), self.encode_text(x_text))


def row_min_max(s):
  lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
  return (s - lo) / np.maximum(hi - lo, 1e-12)


class _Toy(base.Method):
  """What both toys share: the `_Encoders` module, built from config.model."""

  def __init__(self, config, dims, meta=None):
    super().__init__(config, dims, meta)
    self.module = _Encoders(config.model.width, config.model.hidden)

  def init(self, rng, batch):
    return self.module.init(rng, batch["image"], batch["text"])


@methods.register("toy_joint")
class ToyJoint(_Toy):
  """Joint scorer with two score channels fused per query row."""

  def loss(self, variables, batch, rng, axis_name):
    del rng
    zi = self.module.apply(variables, batch["image"], method=_Encoders.encode_image)
    zt = parallel.gather(
        self.module.apply(variables, batch["text"], method=_Encoders.encode_text), axis_name
    )
    r = self.module.apply(variables, zi, zt, method=_Encoders.joint_score)
    s = losses.label_agreement(batch["label"], parallel.gather(batch["label"], axis_name))
    # Both channels learn the label agreement: the joint MLP and the scaled dot product.
    bce = optax.sigmoid_binary_cross_entropy(r, s) + optax.sigmoid_binary_cross_entropy(
        2.0 * zi @ zt.T - 2.0, s
    )
    share = jnp.sum(bce) / (parallel.global_batch_size(r.shape[0], axis_name) * r.shape[1])
    return parallel.loss_from_share(share, axis_name), ({}, {})

  def encode_image(self, variables, x):
    return self.module.apply(variables, x, method=_Encoders.encode_image)

  def encode_text(self, variables, x):
    return self.module.apply(variables, x, method=_Encoders.encode_text)

  def score(self, variables, image_block, text_block):
    joint = self.module.apply(variables, image_block, text_block, method=_Encoders.joint_score)
    return {"joint": joint, "dot": image_block @ text_block.T}

  def retrieval_scores(self, variables, scores, direction):
    del variables, direction
    a, b = np.asarray(scores["joint"]), np.asarray(scores["dot"])
    return 0.7 * row_min_max(a) * b + 0.3 * row_min_max(b) * a

  def pair_bytes(self, image_enc, text_enc):
    del image_enc, text_enc
    c = self.config.model
    return 4 * (c.width + c.hidden + 2)


@methods.register("toy_sampler")
class ToySampler(_Toy):
  """Separable cosine scorer trained on pairs it samples itself, with its own optimizer."""

  def _pairs_of_epoch(self, split, seed, epoch):
    """(image rows, text rows, targets): every image once, with a matching text for the
    even positions and a non-matching one for the odd ones, drawn by (seed, epoch)."""
    rng = sampling.epoch_rng(seed, epoch)
    labels = split["label"]
    images = rng.permutation(len(split))
    texts = np.empty_like(images)
    for i, row in enumerate(images):
      same = labels == labels[row]
      pool = np.flatnonzero(same if i % 2 == 0 else ~same)
      texts[i] = rng.choice(pool)
    return images, texts, (labels[images] == labels[texts]).astype(np.float32)

  def num_batches(self, split, batch_size):
    return len(split) // batch_size

  def batches(self, split, batch_size, seed, epoch):
    images, texts, targets = self._pairs_of_epoch(split, seed, epoch)
    for b in range(self.num_batches(split, batch_size)):
      rows = slice(b * batch_size, (b + 1) * batch_size)
      yield {
          "image": split["image"][images[rows]],
          "text": split["text"][texts[rows]],
          "target": targets[rows],
      }

  def optimizer(self, train_config, steps_per_epoch):
    del steps_per_epoch
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.sgd(train_config.learning_rate, momentum=0.9)
    )

  def loss(self, variables, batch, rng, axis_name):
    del rng
    zi = self.encode_image(variables, batch["image"])
    zt = self.encode_text(variables, batch["text"])
    cos = jnp.sum(zi * zt, -1) / (
        jnp.linalg.norm(zi, axis=-1) * jnp.linalg.norm(zt, axis=-1) + 1e-6
    )
    per_pair = optax.sigmoid_binary_cross_entropy(4.0 * cos, batch["target"])
    share = jnp.sum(per_pair) / parallel.global_batch_size(per_pair.shape[0], axis_name)
    return parallel.loss_from_share(share, axis_name), ({}, {"cos": jnp.mean(cos)})

  def encode_image(self, variables, x):
    z = self.module.apply(variables, x, method=_Encoders.encode_image)
    return z / (jnp.linalg.norm(z, axis=-1, keepdims=True) + 1e-6)

  def encode_text(self, variables, x):
    z = self.module.apply(variables, x, method=_Encoders.encode_text)
    return z / (jnp.linalg.norm(z, axis=-1, keepdims=True) + 1e-6)

  def score(self, variables, image_block, text_block):
    del variables
    return image_block @ text_block.T
