"""SCANet's analytic FLOP counts, for the speed benchmark (`experiments.benchmark`).

A multiply-add counts as 2 FLOPs; a training step as 3x its forward pass.
"""

from __future__ import annotations

from crossmodal_jax.layers import mlp


def step_flops(model_cfg, graph, d_img: int, texts: int, images: int, pairs: int):
  """Analytic forward FLOPs of one SCANet step over `texts` / `images` distinct items and
  `pairs` pairs (a multiply-add = 2 FLOPs) on the word graph `graph` (its num_nodes and
  num_edges); training ~ 3x forward."""
  n, k = model_cfg.dim, model_cfg.cheb_order
  filters = (1, *model_cfg.gcn_filters)
  # Each layer propagates the narrower of its widths over the graph (`ChebConv` projects
  # first, by Clenshaw's recurrence, when F_out < F_in).
  gcn = sum(
      2 * graph.num_edges * (k - 1) * min(f_in, f_out) + 2 * graph.num_nodes * k * f_in * f_out
      for f_in, f_out in zip(filters[:-1], filters[1:])
  )
  att = model_cfg.attention_layers
  text = gcn + 2 * graph.num_nodes * filters[-1] * n + (2 * n * n if att else 0)
  image = mlp.dense_flops((d_img, *model_cfg.image_layers, n)) + (2 * n * n if att else 0)
  pair = 2 * 2 * n * n * max(att - 1, 0) + 2 * n
  forward = texts * text + images * image + pairs * pair
  return {"forward": int(forward), "train_step": int(3 * forward), "text": text, "pair": pair}
