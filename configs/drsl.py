"""DRSL (Wang et al., Information Sciences 2021) at the paper's sizes.

Towers d-1024-300, relation 600-1024-1 (concat fusion), batch norm, initialised and
scaled as the authors' code does (PyTorch init, loss / B). Presets
(`configs/default.py:drsl,DATASET[,PRESET]`):
- "full" (default): on Wikipedia the recipe chosen on the validation split;
- "ci": the same, at most 5 epochs, for the test suite;
- "paper": not offered (this config has the paper's sizes; `drsl_code` is the authors' code).
See docs/methods/drsl.md.
"""

from __future__ import annotations

import ml_collections

LABEL = "DRSL"  # its rows' name in the comparison table (experiments.reproduce)
# The ablations `experiments.reproduce --ablations=NAME` runs: NAME -> (the heading of its
# tables, its variants (label, {"section.field": value}), each label a run folder's name).
# The relation fusion at each of the DRSL paper's four (its tables 5-6).
ABLATIONS = {
    "drsl_fusion": (
        "DRSL relation fusion (DRSL paper, tables 5-6)",
        tuple((f, {"model.fusion": f}) for f in ("concat", "multiply", "add", "subtract")),
    ),
}


def model_config() -> ml_collections.ConfigDict:
  model = ml_collections.ConfigDict()
  model.image_layers = (1024, 300)  # image tower widths, each Dense -> BN -> ReLU -> dropout
  model.text_layers = (1024, 300)  # text tower widths, each Dense -> BN -> ReLU -> dropout
  model.relation_layers = (1024,)  # hidden widths of the relation MLP (output 1 implicit)
  model.fusion = "concat"  # "concat", "multiply", "add" or "subtract"
  model.tower_batch_norm = True  # batch norm in both towers (synced over devices)
  model.relation_batch_norm = True  # batch norm in the relation MLP, over all pairs of the batch
  model.dropout = 0.0  # dropout rate after each tower ReLU (0: none)
  # Text input: "mlp" = fixed text features (data.text_feature); "cnn" = a Kim text CNN
  # over word vectors (needs data.word_sequences=True), trained jointly.
  model.text_encoder = "mlp"
  model.cnn_kernel_sizes = (3, 4, 5)  # text CNN: widths of its convolution kernels, in words
  model.cnn_filters = 100  # text CNN: filters per kernel width
  model.cnn_dropout = 0.5  # text CNN: dropout rate on its max-pooled features
  model.cnn_freeze_embeddings = False  # text CNN: keep the word vectors fixed
  # Feed the "mlp" text tower sparse: its first layer sums the kernel rows of each text's
  # non-zeros (for raw TF-IDF / bag-of-words text); same parameters as the dense layer.
  model.sparse_text = False
  # ||R - S||_F^2 divided by: "sum" (1), "batch" (B, the authors' code), "mean" (B^2).
  model.loss_normalizer = "batch"
  # Dense initialisation: "pytorch" (U(+-1/sqrt(fan_in)), the authors' code) or "flax".
  model.init = "pytorch"
  return model


def get_config(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """The common `config` completed for DRSL on `dataset`."""
  config.model = model_config()
  if config.preset == "paper":
    raise ValueError(
        "drsl has no 'paper' preset: the drsl config has the paper's sizes (its Wikipedia "
        "recipe re-chosen on validation), drsl_code the authors' code."
    )
  # Chosen on the Wikipedia validation split (docs/experiments/drsl.md): SVD-300 text ties
  # raw TF-IDF there at a cheaper epoch; also a feature folder's text with raw texts.
  config.data.text_feature = "tfidf_svd"
  if dataset == "wikipedia":
    # The best-by-validation checkpoint is used.
    config.model.dropout = 0.3
    config.train.learning_rate = 5e-4
    config.train.num_epochs = 60
  elif dataset == "synthetic":
    config.train.num_epochs = 10
  if config.preset == "ci":
    config.train.num_epochs = min(config.train.num_epochs, 5)
  return config
