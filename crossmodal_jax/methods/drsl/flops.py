"""DRSL's analytic FLOP counts, for the speed benchmark (`experiments.benchmark`).

A multiply-add counts as 2 FLOPs; a training step as 3x its forward pass.
"""

from __future__ import annotations

from crossmodal_jax.layers import mlp


def step_flops(
    model_cfg, d_img: int, d_txt: int, batch: int, text_nonzeros: int | None = None
) -> dict[str, int]:
  """Analytic forward FLOPs of one DRSL training step; training ~ 3x forward.

  With `text_nonzeros` (sparse text) the first text layer reads that many (padded)
  non-zeros per text instead of all d_txt features.
  """
  d_txt = d_txt if text_nonzeros is None else text_nonzeros
  towers = batch * (
      mlp.dense_flops((d_img, *model_cfg.image_layers))
      + mlp.dense_flops((d_txt, *model_cfg.text_layers))
  )
  rel = tuple(model_cfg.relation_layers)
  proj = batch * 2 * (model_cfg.image_layers[-1] + model_cfg.text_layers[-1]) * rel[0]
  pairs = batch * batch
  # Per pair: add + ReLU on the first hidden layer, then the rest of the MLP and output.
  grid = pairs * (2 * rel[0] + mlp.dense_flops((*rel, 1)))
  forward = towers + proj + grid
  return {"forward": int(forward), "train_step": int(3 * forward)}


def pair_flops(model_cfg) -> int:
  """FLOPs of scoring one pair of encoded items with one hidden relation layer of width
  K (the separable form): add + ReLU over K, then the K-long dot."""
  k = model_cfg.relation_layers[0]
  return 2 * k + 2 * k
