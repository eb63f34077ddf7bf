"""DRSL as the authors' PyTorch code trains it (its XMediaNet setting).

Towers d-1024-1024-300, relation 600-1024-1024-1, batch norm everywhere, batch 200
keeping the last partial batch, Adam(b1 0.5, b2 0.99) at 1e-4 with coupled weight decay
1e-4, learning rate x0.98 per epoch, raw image features, 20 epochs (10 on the synthetic
benchmark). Presets: "full" (default), "ci" (at most 5 epochs, for the test suite); no
"paper" (the `drsl` config has the paper's sizes). What the code does, and what is left
as it is: docs/methods/drsl.md.
"""

from __future__ import annotations

import ml_collections

from . import drsl

LABEL = "DRSL (authors' code)"  # its rows' name in the comparison table

# The model fields and their base values are DRSL's (`default.completed` reads this).
model_config = drsl.model_config


def get_config(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """The common `config` completed for DRSL's code recipe on `dataset`."""
  config.model = model_config()
  config.model.image_layers = (1024, 1024, 300)
  config.model.text_layers = (1024, 1024, 300)
  config.model.relation_layers = (1024, 1024)
  t = config.train
  t.batch_size = 200
  t.num_epochs = 10 if dataset == "synthetic" else 20
  # 1e-4, but the code calls scheduler.step() at the start of every epoch, before the
  # first optimizer step, so epoch e trains at 1e-4 * 0.98^(e + 1).
  t.learning_rate = 1e-4 * 0.98
  t.b1, t.b2 = 0.5, 0.99
  t.weight_decay = 1e-4
  t.lr_decay_per_epoch = 0.98
  t.drop_remainder = False  # torch's DataLoader keeps the last partial batch
  config.data.standardize_image = False  # the code feeds the features as they are
  preset = config.preset
  if preset == "paper":
    raise ValueError("drsl_code has no 'paper' preset: it is the authors' code; drsl the paper.")
  if preset == "ci":
    t.num_epochs = min(t.num_epochs, 5)
  return config
