"""DRSL's face: training loss, per-item encodings and pair scores (see `base.Method`)."""

from __future__ import annotations

import jax.numpy as jnp

from crossmodal_jax import losses
from crossmodal_jax import parallel
from crossmodal_jax.layers import text_cnn
from crossmodal_jax.methods import base
from crossmodal_jax.methods import registry
from crossmodal_jax.methods.drsl.model import DRSL


@registry.register("drsl", "drsl_code")
class DRSLMethod(base.Method):
  """The training / retrieval face of DRSL (see `base.Method`)."""

  def __init__(self, config, dims, meta=None):
    super().__init__(config, dims, meta)
    # Dense layers infer input sizes from the data; the text CNN needs the vocabulary
    # size and, when the dataset provides one, a pretrained word-vector table.
    c = config.model
    self._cnn = {}
    if c.text_encoder == "cnn":
      table = self.word_vector_table("text_encoder='cnn'")
      self._cnn = dict(
          cnn_vocab_size=table.shape[0],
          cnn_embed_dim=table.shape[1],
          cnn_embedding_init=text_cnn.pretrained_embedding_init(table),
          cnn_kernel_sizes=tuple(c.cnn_kernel_sizes),
          cnn_filters=c.cnn_filters,
          cnn_dropout=c.cnn_dropout,
          cnn_freeze_embeddings=c.cnn_freeze_embeddings,
      )
      self.text_keys = ("word_ids", "word_mask")
    self.module = self._module(axis_name=None)

  def _module(self, axis_name: str | None) -> DRSL:
    c = self.config.model
    return DRSL(
        text_encoder=c.text_encoder,
        **self._cnn,
        image_layers=tuple(c.image_layers),
        text_layers=tuple(c.text_layers),
        relation_layers=tuple(c.relation_layers),
        fusion=c.fusion,
        tower_batch_norm=c.tower_batch_norm,
        relation_batch_norm=c.relation_batch_norm,
        dropout=c.dropout,
        axis_name=axis_name,
        param_init=c.init,
    )

  def init(self, rng, batch):
    return self.module.init(rng, batch[self.image_key], self.text_input(batch), train=False)

  def loss(self, variables, batch, rng, axis_name):
    module = self._module(axis_name)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    # R: this device's images x the global batch's texts.
    r, new_state = module.apply(
        {"params": params, **state},
        batch[self.image_key],
        self.text_input(batch),
        train=True,
        mutable=list(state.keys()),
        rngs={"dropout": rng},
    )
    text_labels = parallel.gather(batch["label"], axis_name)
    s = losses.label_agreement(batch["label"], text_labels)
    share = losses.relation_loss(r, s, self.config.model.loss_normalizer, text_labels.shape[0])
    metrics = {"mse": jnp.mean(jnp.square(r - s))}
    return parallel.loss_from_share(share, axis_name), (new_state, metrics)

  def encode_image(self, variables, x):
    return self.module.apply(variables, x, method=DRSL.encode_image)

  def encode_text(self, variables, x):
    return self.module.apply(variables, x, method=DRSL.encode_text)

  def score(self, variables, image_block, text_block):
    return self.module.apply(variables, image_block, text_block, method=DRSL.score)

  def pair_bytes(self, image_enc, text_enc):
    """Per pair: the [P, Q, K] grid of each joint relation layer, or (concat fusion with
    one hidden layer, the fused kernel streaming rows) just the float32 score."""
    c = self.config.model
    joint = list(c.relation_layers)
    if c.fusion == "concat":
      joint = joint[1:] if len(joint) > 1 else []
    else:
      joint.append(c.image_layers[-1])  # the fused pair vector
    return 4 * (1 + sum(joint))
