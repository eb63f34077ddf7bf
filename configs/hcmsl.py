"""HCMSL (Zhang et al., ACM TOMM 2021, doi 10.1145/3412847). Only its abstract is
available: every field below is our reading of it, listed in docs/methods/hcmsl.md.

Presets (`configs/default.py:hcmsl,DATASET[,PRESET]`):
- "full" (default): the recipe chosen on the Wikipedia validation split;
- "ci": small widths and few epochs, for the test suite;
- "paper": not offered (only the abstract exists, with no hyperparameters).
"""

from __future__ import annotations

import ml_collections

LABEL = "HCMSL"  # its rows' name in the comparison table (experiments.reproduce)


def model_config() -> ml_collections.ConfigDict:
  model = ml_collections.ConfigDict()
  model.image_layers = (1024,)  # image branch widths, [Dense -> ReLU -> Dropout] each
  model.text_layers = (1024,)  # text branch widths (last = the image branch's when shared)
  model.shared_layers = (1024,)  # hidden widths of the top layers, before the output Dense
  model.dim = 256  # width of the common space (linear output of the top layers)
  model.share_top = True  # one set of top layers for both branches; False: one per branch
  model.dropout = 0.35  # dropout rate after every ReLU (branches and top layers)
  # Dense initialisation: "pytorch" (U(+-1/sqrt(fan_in))), "flax" or "glorot".
  model.init = "pytorch"
  # Class-level cross-modal loss: contrastive over every (image, text) pair of labelled
  # rows, Euclidean distance of unit vectors, different labels pushed to >= margin.
  model.weight_class = 1.0  # weight of the class-level cross-modal loss
  # Margin of the class-level loss on d, the Euclidean distance of unit vectors (d in
  # [0, 2]; 1.0 asks cos <= 0.5 of different-label pairs).
  model.margin = 1.0
  # Instance-level cross-modal loss: InfoNCE of each anchor's true partner against the
  # global batch's other items of the other modality, both directions.
  model.weight_instance = 0.1  # weight of the instance-level cross-modal loss
  model.temperature = 0.1  # softmax temperature over cosines
  model.instance_pairs = "all"  # anchors: "all" rows or only the "unlabeled" ones
  # Drop items known (both labelled) to share the anchor's label from its softmax.
  model.instance_exclude_same_label = True
  # Siamese contrastive losses within each modality (image-image, text-text), over pairs
  # of distinct labelled rows.
  model.weight_siamese = 0.5  # weight of each modality's Siamese term (0 turns them off)
  model.siamese_space = "branch"  # compare "branch" outputs (unit) or "common" vectors
  # Margin of the Siamese terms on d (unit ReLU branch outputs: d in [0, sqrt(2)]).
  model.siamese_margin = 1.0
  # Semi-supervised data: the share of training rows, in (0, 1], that keep their labels
  # (a subset fixed by config.seed); the others' labels are hidden.
  model.labeled_fraction = 1.0
  # True: the unlabelled rows still train the instance-level loss; False: train on the
  # labelled rows alone, as many steps per epoch.
  model.use_unlabeled = True
  return model


def get_config(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """The common `config` completed for HCMSL on `dataset`."""
  preset = config.preset
  if preset == "paper":
    raise ValueError(
        "hcmsl has no 'paper' preset: only the abstract is available; 'full' is our "
        "reading of it, chosen on validation."
    )
  config.model = model_config()
  t = config.train
  t.learning_rate = 1e-3
  t.batch_size = 200
  # The text feature chosen on the Wikipedia validation split, also a feature folder's
  # with raw texts.
  config.data.text_feature = "tfidf_svd"
  if dataset == "wikipedia":
    # Chosen on the validation split (docs/experiments/hcmsl.md), as are the text feature,
    # instance weight, dropout, batch and learning rate; the best-by-validation checkpoint
    # is used.
    t.num_epochs = 60
    # The SIFT histograms' square roots (the Hellinger map) before standardising, chosen
    # on validation.
    config.data.image_power = 0.5
  elif dataset == "synthetic":
    t.num_epochs = 10
  if preset == "ci":
    config.model.image_layers = (256,)
    config.model.text_layers = (256,)
    config.model.shared_layers = (256,)
    config.model.dim = 64
    t.batch_size = 100
    t.learning_rate = 3e-3
    t.num_epochs = min(t.num_epochs, 20)
  return config
