"""SCANet's face: its training pairs and batches, the global loss, per-item encodings,
blockwise pair scores."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from crossmodal_jax import layers
from crossmodal_jax import parallel
from crossmodal_jax import sampling
from crossmodal_jax.methods import base
from crossmodal_jax.methods import registry
from crossmodal_jax.methods.scanet import losses as scanet_losses
from crossmodal_jax.methods.scanet import pairs as pairs_lib
from crossmodal_jax.methods.scanet.model import SCANet
from crossmodal_jax.methods.scanet.model import num_text_inputs


@registry.register("scanet")
class SCANetMethod(base.Method):
  """The training / retrieval face of SCANet (see `base.Method` and the package doc)."""

  image_key = "image"
  text_keys = ("bow",)

  def __init__(self, config, dims, meta=None):
    super().__init__(config, dims, meta)
    c = config.model
    graph = self.meta.get("word_graph")
    if graph is None or "bow" not in self.dims:
      raise ValueError(
          "scanet needs the word graph and bag-of-words counts: set "
          "--config.data.word_graph=True."
      )
    if not config.train.drop_remainder:
      raise ValueError(
          "scanet drops each epoch's last partial batch of pairs: train.drop_remainder "
          "must be True."
      )
    if c.pair_draw not in ("fixed", "epoch"):
      raise ValueError(f"model.pair_draw must be 'fixed' or 'epoch', got {c.pair_draw!r}.")
    if not 0 <= c.attention_layers <= 3:
      raise ValueError(f"model.attention_layers must be 0..3, got {c.attention_layers}.")
    if self.dims["bow"] != (graph.num_nodes,):
      raise ValueError(
          f"bow has {self.dims['bow']} columns but the word graph {graph.num_nodes} vertices."
      )
    self.graph = jax.tree.map(jnp.asarray, graph.to_graphs_tuple())
    self.module = layers.from_config(
        SCANet,
        c,
        text_fan_in=num_text_inputs(graph.num_nodes, tuple(c.gcn_filters)),
        image_fan_in=self.dims["image"][0],
        param_init=c.init,
    )
    self._pairs = None  # (split, seed, PairSet) of the last draw

  # --- Pairs ----------------------------------------------------------------------------

  def pairs(self, split, seed: int, epoch: int = 0) -> pairs_lib.PairSet:
    """The training pairs of `split` for `epoch`: drawn once from `seed` (the paper's
    fixed set, `model.pair_draw="fixed"`), or anew each epoch from (seed, epoch)
    (`"epoch"`; epoch 0 draws the fixed set)."""
    if self.config.model.pair_draw == "epoch" and epoch:
      seed = sampling.epoch_seed(seed, epoch)
    if self._pairs is None or self._pairs[0] is not split or self._pairs[1] != seed:
      c = self.config.model
      pairs = pairs_lib.sample_pairs(split["label"], c.num_positive, c.num_negative, seed)
      self._pairs = (split, seed, pairs)
    return self._pairs[2]

  def num_batches(self, split, batch_size):
    """Whole batches of the num_positive + num_negative pairs (the last partial one is
    dropped; the next epoch's shuffle differs)."""
    del split
    c = self.config.model
    return (c.num_positive + c.num_negative) // batch_size

  def batches(self, split, batch_size, seed, epoch):
    """Batches of `batch_size` pairs; each distinct image and text appears once, so the
    GCN and the V x N Dense run per text, not per pair (`pairs.pair_batches`)."""
    pairs = self.pairs(split, seed, epoch)
    order = self.config.model.pair_order
    max_images, max_texts = pairs_lib.max_items_per_batch(
        pairs, batch_size, order, multiple=jax.device_count()
    )
    for b in pairs_lib.pair_batches(pairs, batch_size, seed, epoch, order, max_images, max_texts):
      yield {
          "image": split[self.image_key][b["image_rows"]],
          "bow": split["bow"][b["text_rows"]],
          **{k: b[k] for k in ("pair_image", "pair_text", "pair_positive")},
      }

  # --- Training -------------------------------------------------------------------------

  def init(self, rng, batch):
    return self.module.init(rng, batch[self.image_key], batch["bow"], self.graph)

  def loss(self, variables, batch, rng, axis_name):
    # Each device encodes its share of the batch's distinct items; every device then
    # sees all encodings and scores its share of the pairs.
    images = parallel.gather(self.encode_image(variables, batch[self.image_key]), axis_name)
    words = {}  # word dropout's key (split off only when on: the head's key is unchanged)
    if self.config.model.word_dropout:
      rng, words["dropout"] = jax.random.split(rng)
    texts = self.module.apply(
        variables,
        batch["bow"],
        self.graph,
        deterministic=not words,
        method=SCANet.encode_text,
        rngs=words,
    )
    texts = parallel.gather(texts, axis_name)
    take = lambda enc, rows: jax.tree.map(lambda x: x[rows], enc)
    logits = self.module.apply(
        variables,
        take(images, batch["pair_image"]),
        take(texts, batch["pair_text"]),
        deterministic=False,
        method=SCANet.pair_logits,
        rngs={"dropout": rng},
    )
    scores = parallel.gather(jax.nn.sigmoid(logits), axis_name)
    positive = parallel.gather(batch["pair_positive"], axis_name)
    c = self.config.model
    total = scanet_losses.global_loss(scores, positive, c.margin, c.lam)
    share = total / parallel.num_shards(axis_name)
    gap = jnp.sum(scores * positive) / jnp.maximum(jnp.sum(positive), 1.0) - jnp.sum(
        scores * (1 - positive)
    ) / jnp.maximum(jnp.sum(1 - positive), 1.0)
    return parallel.loss_from_share(share, axis_name), ({}, {"mean_gap": gap})

  # --- Retrieval ------------------------------------------------------------------------

  def encode_image(self, variables, x):
    return self.module.apply(variables, x, method=SCANet.encode_image)

  def encode_text(self, variables, x):
    return self.module.apply(variables, x, self.graph, method=SCANet.encode_text)

  def score(self, variables, image_block, text_block):
    """[P, Q] logits: the sigmoid of the similarity is monotone, so logits rank the
    same and do not tie where the sigmoid saturates in float32."""
    return self.module.apply(variables, image_block, text_block, method=SCANet.score)

  def separable_code(self, variables, encodings, modality):
    """The first co-attention layer's bilinear score as codes, (f_I p_I h) . (f_T p_T):
    the logit with every later layer's attention uniform (up to a positive factor and
    the bias), and the exact logit with at most one layer (`SCANet.separable_code`)."""
    return self.module.apply(variables, encodings, modality, method=SCANet.separable_code)

  def pair_bytes(self, image_enc, text_enc):
    """Per pair, from the second co-attention layer on: about 8 N-wide float32 vectors
    (both features, both Dense outputs and attentions, the product); else one score."""
    if self.config.model.attention_layers <= 1:
      return 4
    return 4 * 8 * self.config.model.dim
