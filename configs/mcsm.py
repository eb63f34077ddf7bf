"""MCSM (Peng, Qi, Yuan, "Modality-specific cross-modal similarity measurement with
recurrent attention network", IEEE TIP 2018): two modality-specific semantic spaces, each
with a recurrent attention network, their cosines adaptively fused. The user's guide is
docs/methods/mcsm.md; the measurements behind every default, docs/experiments/mcsm.md.

Presets (`configs/default.py:mcsm,DATASET[,PRESET]`):
- "full" (default): on Wikipedia, the authors' code's optimizer, batch, margin, negatives
  and dropouts at widths a 2-core CPU trains (LSTM 128, D 1024, the first 100 words, no
  front-end), RMSprop 3e-4 for 20 epochs, the raw TF-IDF rows as the image space's
  document vector, the square roots of the SIFT histograms, a same-label positive and a
  label loss of weight 3, each chosen on validation; on the synthetic benchmark LSTM 128,
  D 256, RMSprop 1e-3, 10 epochs and the same label loss;
- "ci": tiny (LSTM 32, D 64, 50 words, 3 epochs) for the test suite;
- "paper": the authors' code (the MCSM_TIP2018 folder of BMC-SDNU/Cross-Modal-Retrieval
  on GitHub): LSTM 512, D 4096, RMSprop 1e-4, batch 40, hinge margin 0.5 with the match
  as the positive and one random different-label negative, no label loss; on Wikipedia
  the text space's conv front-end over up to 2,904 words.
Every preset chooses the fusion weight i on the validation split, never on test. On
Wikipedia the text space reads GloVe 6B 50-d word vectors (frozen) of the first
`data.max_words` in-vocabulary words, the image space reads the text as its document
vector `data.text_feature`, and images are global SIFT vectors (a one-step sequence).
"""

from __future__ import annotations

import ml_collections

LABEL = "MCSM"  # its rows' name in the comparison table (experiments.reproduce)


def model_config() -> ml_collections.ConfigDict:
  model = ml_collections.ConfigDict()
  model.hidden = 512  # LSTM width of both spaces' recurrent attention networks
  model.dim = 1024  # D, the width of both spaces (the authors' code: 4096)
  model.num_layers = 2  # stacked LSTM layers per space
  model.dropout = 0.5  # rate between LSTM layers (training only)
  model.score_dropout = 0.5  # rate on the attention's tanh features M_j (training only)
  model.attention_dim = 0  # W_a's output width in the image space (0: D)
  # Ablation: both spaces weigh every real step of a sequence the same (no attention).
  model.uniform_attention = False
  # Use the dataset's image_regions [n, R, d] as the image's sequence when it has them;
  # False (or a dataset without them) uses the global image feature as one step.
  model.image_regions = True
  # The text space's conv front-end, conv-BN-ReLU-maxpool blocks that shorten the word
  # sequence before its LSTM (the authors' code has it; off: chosen on validation).
  model.front_end = False
  model.front_end_kernels = (15, 9, 7)  # conv front-end: each block's kernel width (steps)
  model.front_end_channels = (384, 512, 256)  # conv front-end: each block's output channels
  model.front_end_pools = (5, 5, 6)  # conv front-end: each block's max-pool window (= stride)
  model.front_end_batch_norm = True  # conv front-end: batch norm in each block (synchronised)
  # Dense, conv and LSTM init: "pytorch" (U(+-1/sqrt(fan_in)), Torch7's nn.Linear, the
  # authors' framework), "flax" or "glorot".
  model.init = "pytorch"
  model.margin = 0.5  # m of the bidirectional hinge in each space
  # Weight of a label loss added to the hinges (0: none, as in the authors' code; the full
  # preset takes 3, chosen on validation): in each space a linear classifier of the unit
  # vectors, softmax cross-entropy (sigmoid for multi-hot labels) on both modalities' items.
  model.label_weight = 0.0
  # Each anchor's different-label negative in the global batch: "random" (the code's: one
  # drawn uniformly, anew every step), "hardest" (the space's highest-scoring one) or "all"
  # (every one, the hinges averaged: the random draw's expected loss, without its noise).
  model.negatives = "random"
  # Each anchor's positive: "pair" (the code's: its own match) or "same_label" (an item of
  # the other modality with the anchor's label, drawn uniformly from the global batch, its
  # match included, anew every step: a class-level positive; the Wikipedia default).
  model.positives = "pair"
  # Ranking at evaluation: "fusion" (the adaptive fusion with the stored weight i),
  # "image_space" or "text_space" (one space's cosines alone, to report each space).
  model.retrieval = "fusion"
  model.fusion_weight = 0.5  # i before it is chosen on validation
  model.fusion_grid_points = 101  # the validation grid of i: linspace(0, 1, this)
  return model


def get_config(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """The common `config` completed for MCSM on `dataset`."""
  preset = config.preset
  config.model = model_config()
  config.data.word_sequences = True  # word_ids / word_mask + meta["word_vectors"]
  t = config.train
  t.optimizer = "rmsprop"
  t.learning_rate = 1e-4
  t.rmsprop_decay = 0.99  # Torch optim.rmsprop's default alpha (the authors' framework)
  t.schedule = "constant"
  t.batch_size = 40
  t.num_epochs = 30  # ours: the best-by-validation checkpoint is kept
  if preset == "paper":
    # The authors' code (only the paper's abstract was available to us).
    config.model.dim = 4096
    if dataset == "wikipedia":
      config.model.front_end = True
      config.data.max_words = 2904
    return config
  if dataset in ("wikipedia", "features"):
    # Wikipedia's text choices, for a feature folder's raw texts too: the first 100 words,
    # and the raw TF-IDF rows (10,000-d) as the image space's document vector.
    config.data.max_words = 100
    config.data.text_feature = "tfidf"
  if dataset == "wikipedia":
    # Widths a 2-core CPU trains, and the choices below, made on validation (see
    # docs/experiments/mcsm.md).
    config.model.hidden = 128
    t.num_epochs = 20
    t.learning_rate = 3e-4
    # A same-label positive instead of the match.
    config.model.positives = "same_label"
    # The square roots of the SIFT histograms (both spaces read the image feature).
    config.data.image_power = 0.5
    # A label loss of weight 3 (a departure from the authors' code, which has none).
    config.model.label_weight = 3.0
  if dataset == "synthetic":
    # Small widths and a faster rate so an epoch of the 2,000 synthetic pairs is seconds.
    config.model.hidden = 128
    config.model.dim = 256
    t.learning_rate = 1e-3
    t.num_epochs = 10
    # The label loss of weight 3, as on Wikipedia (chosen on validation here too).
    config.model.label_weight = 3.0
  if preset == "ci":
    config.model.hidden = 32
    config.model.dim = 64
    config.model.front_end_channels = (16, 16, 16)
    config.data.max_words = 50
    t.learning_rate = 1e-3
    t.num_epochs = 3
  return config
