"""DRSL's face: training loss, per-item encodings and pair scores (see `base.Method`)."""

from __future__ import annotations

import jax.numpy as jnp

from crossmodal_jax import layers
from crossmodal_jax import losses
from crossmodal_jax import parallel
from crossmodal_jax.data import common
from crossmodal_jax.data.text import sparse_rows
from crossmodal_jax.layers import text_cnn
from crossmodal_jax.methods import base
from crossmodal_jax.methods import registry
from crossmodal_jax.methods.drsl import losses as drsl_losses
from crossmodal_jax.methods.drsl.model import DRSL


@registry.register("drsl", "drsl_code")
class DRSLMethod(base.Method):
  """The training / retrieval face of DRSL (see `base.Method`).

  With `model.sparse_text` the text tower reads the padded non-zeros of "text"
  (`sparse_rows`: "text_ids", "text_values" [n, L], L the split's most non-zeros per row).
  A split that lacks them gets them here, once per split: the sampler and `init_batch` read
  them from the split, `text_input` from a split's arrays (scoring), while a training batch
  already carries them.
  """

  def __init__(self, config, dims, meta=None):
    super().__init__(config, dims, meta)
    c = config.model
    # Raw TF-IDF over V words fed sparse: the text tower's first layer gathers the kernel
    # rows of each text's non-zeros (same parameters as the dense layer). A config saved
    # before the field existed reads dense.
    self._sparse_dim = 0
    self._padded = {}  # id of a split's "text" -> (that array, its padded-rows arrays)
    if c.sparse_text:
      if c.text_encoder != "mlp":
        raise ValueError("model.sparse_text needs model.text_encoder='mlp'.")
      if len(self.dims.get("text", ())) != 1:
        raise ValueError(
            f"model.sparse_text needs 2-D text features, got per-row shape "
            f"{self.dims.get('text')}."
        )
      self._sparse_dim = self.dims["text"][0]
      self.text_keys = (sparse_rows.IDS_KEY, sparse_rows.VALUES_KEY)
    # Dense layers infer input sizes from the data; the text CNN needs the vocabulary
    # size and, when the dataset provides one, a pretrained word-vector table (its other
    # fields come from the config, as the towers'; only the "cnn" encoder reads them).
    self._cnn = {}
    if c.text_encoder == "cnn":
      table = self.word_vector_table("text_encoder='cnn'")
      self._cnn = dict(
          cnn_vocab_size=table.shape[0],
          cnn_embed_dim=table.shape[1],
          cnn_embedding_init=text_cnn.pretrained_embedding_init(table),
      )
      self.text_keys = ("word_ids", "word_mask")
    self.module = self._module(axis_name=None)

  def _module(self, axis_name: str | None) -> DRSL:
    c = self.config.model
    return layers.from_config(
        DRSL,
        c,
        **self._cnn,
        axis_name=axis_name,
        param_init=c.init,
        sparse_text_dim=self._sparse_dim,
    )

  # --- Sparse text: the padded non-zeros, derived once per split ------------------------

  def _with_padded_text(self, arrays):
    """`arrays` with the sparse text form if the method reads it and they lack it."""
    if not self._sparse_dim or all(k in arrays for k in self.text_keys):
      return arrays
    text = arrays["text"]
    cached = self._padded.get(id(text))
    if cached is None or cached[0] is not text:
      cached = (text, sparse_rows.with_padded_rows({"text": text}))
      self._padded[id(text)] = cached
    return {**arrays, **cached[1]}

  def _split(self, split: common.Split) -> common.Split:
    if not self._sparse_dim or all(k in split for k in self.text_keys):
      return split
    return common.Split(self._with_padded_text(split.arrays))

  def init_batch(self, split):
    return super().init_batch(self._split(split))

  def batches(self, split, batch_size, seed, epoch):
    return super().batches(self._split(split), batch_size, seed, epoch)

  def text_input(self, arrays):
    return super().text_input(self._with_padded_text(arrays))

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
    share = drsl_losses.relation_loss(r, s, self.config.model.loss_normalizer, text_labels.shape[0])
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
