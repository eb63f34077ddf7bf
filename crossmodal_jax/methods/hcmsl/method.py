"""HCMSL's face: semi-supervised batches, the hybrid loss, common-space encodings and
cosine scores (see the package doc for the choices)."""

from __future__ import annotations

import jax.numpy as jnp

from crossmodal_jax import layers
from crossmodal_jax import losses
from crossmodal_jax import parallel
from crossmodal_jax.methods import base
from crossmodal_jax.methods import registry
from crossmodal_jax.methods.hcmsl import batches as batches_lib
from crossmodal_jax.methods.hcmsl import losses as hcmsl_losses
from crossmodal_jax.methods.hcmsl.model import HCMSL
from crossmodal_jax.methods.hcmsl.model import unit

INSTANCE_PAIRS = ("all", "unlabeled")  # the anchors of the instance-level loss
SIAMESE_SPACES = ("branch", "common")  # where the Siamese terms compare items


def _choice(value: str, choices: tuple[str, ...], field: str) -> str:
  if value not in choices:
    raise ValueError(f"Unknown model.{field} {value!r}; choose one of {choices}.")
  return value


@registry.register("hcmsl")
class HCMSLMethod(base.Method):
  """The training / retrieval face of HCMSL (see `base.Method` and the package doc).

  Training batches carry "labeled" (float32, 1 where the row keeps its label) and hide
  the other rows' labels; encodings are common-space unit vectors; `score` is their
  [P, Q] cosine matrix.
  """

  def __init__(self, config, dims, meta=None):
    super().__init__(config, dims, meta)
    c = config.model
    _choice(c.instance_pairs, INSTANCE_PAIRS, "instance_pairs")
    _choice(c.siamese_space, SIAMESE_SPACES, "siamese_space")
    if not 0.0 < c.labeled_fraction <= 1.0:
      raise ValueError(f"model.labeled_fraction must be in (0, 1], got {c.labeled_fraction}.")
    self.module = layers.from_config(HCMSL, c, param_init=c.init)

  # --- Semi-supervised data -------------------------------------------------------------

  def labeled_rows(self, split, seed: int):
    """bool [len(split)]: the training rows that keep their labels (fixed by the seed)."""
    return batches_lib.labeled_rows(len(split), self.config.model.labeled_fraction, seed)

  def batches(self, split, batch_size, seed, epoch):
    """All rows (or, with `use_unlabeled` False, the labelled rows alone, as many steps),
    each batch with "labeled" and the hidden rows' labels removed."""
    return batches_lib.semi_supervised_batches(
        split,
        self.batch_keys,
        batch_size,
        seed,
        epoch,
        self.labeled_rows(split, seed),
        labeled_only=not self.config.model.use_unlabeled,
        drop_remainder=self._drop_remainder,
    )

  # --- Training -------------------------------------------------------------------------

  def init(self, rng, batch):
    return self.module.init(rng, batch[self.image_key], self.text_input(batch), train=False)

  def loss(self, variables, batch, rng, axis_name):
    """w_class * class-level + w_instance * instance-level + w_siamese * (image + text
    Siamese), each a mean over the global batch's eligible pairs or anchors."""
    c = self.config.model
    if "labeled" not in batch:
      raise ValueError("HCMSL batches carry a 'labeled' array (HCMSLMethod.batches).")
    out = self.module.apply(
        variables, batch[self.image_key], self.text_input(batch), train=True, rngs={"dropout": rng}
    )
    local = out["image"].shape[0]
    start = parallel.shard_start(local, axis_name)
    labeled = batch["labeled"].astype(jnp.float32)
    labeled_all = parallel.gather(labeled, axis_name)
    labels_all = parallel.gather(batch["label"], axis_name)
    n = labeled_all.shape[0]
    rows = start + jnp.arange(local)  # this device's rows in the global batch
    not_self = (rows[:, None] != jnp.arange(n)[None, :]).astype(jnp.float32)
    same = losses.label_agreement(batch["label"], labels_all)
    both = labeled[:, None] * labeled_all[None, :]  # pairs whose labels are both known
    n_labeled = jnp.sum(labeled_all)
    terms = {}

    # Class-level, across modalities: every (image, text) pair of labelled rows.
    text_all = parallel.gather(out["text"], axis_name)
    terms["class"] = hcmsl_losses.contrastive_loss(
        out["image"], text_all, same, c.margin, both, jnp.maximum(n_labeled**2, 1.0)
    )

    # Instance-level: each anchor's true partner against the batch's other items of the
    # other modality (both directions); known same-label items are no negatives.
    image_all = parallel.gather(out["image"], axis_name)
    candidate = None
    if c.instance_exclude_same_label:
      candidate = ~((both * same) > 0)
    anchor = jnp.ones_like(labeled) if c.instance_pairs == "all" else 1.0 - labeled
    i2t = hcmsl_losses.instance_nce(out["image"], text_all, rows, c.temperature, candidate)
    t2i = hcmsl_losses.instance_nce(out["text"], image_all, rows, c.temperature, candidate)
    n_anchor = jnp.sum(parallel.gather(anchor, axis_name))
    terms["instance"] = jnp.sum(anchor * (i2t + t2i)) / (2.0 * jnp.maximum(n_anchor, 1.0))

    # Siamese, within each modality: pairs of distinct labelled rows.
    pair_weight = both * not_self
    pairs = jnp.maximum(n_labeled**2 - n_labeled, 1.0)
    for modality in ("image", "text"):
      if c.siamese_space == "branch":
        z = unit(out[f"{modality}_branch"])
      else:
        z = out[modality]
      z_all = parallel.gather(z, axis_name)
      terms[f"siamese_{modality}"] = hcmsl_losses.contrastive_loss(
          z, z_all, same, c.siamese_margin, pair_weight, pairs
      )

    share = (
        c.weight_class * terms["class"]
        + c.weight_instance * terms["instance"]
        + c.weight_siamese * (terms["siamese_image"] + terms["siamese_text"])
    )
    logs = {f"loss_{k}": parallel.loss_from_share(v, axis_name) for k, v in terms.items()}
    logs["labeled"] = n_labeled / n
    return parallel.loss_from_share(share, axis_name), ({}, logs)

  # --- Retrieval ------------------------------------------------------------------------

  def encode_image(self, variables, x):
    return self.module.apply(variables, x, method=HCMSL.encode_image)

  def encode_text(self, variables, x):
    return self.module.apply(variables, x, method=HCMSL.encode_text)

  def score(self, variables, image_block, text_block):
    """[P, Q] cosines: dot products of common-space unit vectors."""
    del variables
    return image_block @ text_block.T

  def pair_bytes(self, image_enc, text_enc):
    """Separable: a pair costs its float32 score."""
    del image_enc, text_enc
    return 4
