"""MCSM's analytic FLOP counts, for the speed benchmark (`experiments.benchmark`).

A multiply-add counts as 2 FLOPs; elementwise work is not counted.
"""

from __future__ import annotations


def lstm_flops(d_in: int, hidden: int, layers: int, steps: int) -> int:
  """Forward FLOPs of a stacked LSTM over `steps` steps (4 gates: input and recurrent
  matmuls; elementwise work not counted)."""
  total, width = 0, d_in
  for _ in range(layers):
    total += 2 * 4 * hidden * (width + hidden) * steps
    width = hidden
  return total


def item_flops(model_cfg, dims, word_dim: int, num_classes: int = 0) -> dict[str, int]:
  """Analytic forward FLOPs of encoding one image and one text in both MCSM spaces: the
  text's conv front-end (if on), the LSTMs over R regions / L (pooled) words, the per-step
  projection to D and the attention, and the two cross-modal Dense layers; with a label
  loss (`model.label_weight`), each item's two classifiers (D -> `num_classes`)."""
  h, d, layers = model_cfg.hidden, model_cfg.dim, model_cfg.num_layers
  regions, d_img = dims.get("image_regions", (1, dims["image"][0]))
  words = dims["word_ids"][0]
  d_att = model_cfg.attention_dim or d
  image = (
      lstm_flops(d_img, h, layers, regions)
      + regions * (2 * h * d + 2 * d * d_att + 2 * d_att)
      + 2 * dims["image"][0] * d
  )
  front_end, width = 0, word_dim
  if model_cfg.front_end:
    for k, c, pool in zip(
        model_cfg.front_end_kernels, model_cfg.front_end_channels, model_cfg.front_end_pools
    ):
      front_end += 2 * words * k * width * c
      words, width = words // pool, c
  text_lstm = lstm_flops(width, h, layers, words)
  text = front_end + text_lstm + words * (2 * h * d + 2 * d) + 2 * dims["text"][0] * d
  if model_cfg.get("label_weight", 0.0):
    image, text = image + 2 * 2 * d * num_classes, text + 2 * 2 * d * num_classes
  return {"image": image, "text": text, "text_lstm": text_lstm, "text_front_end": front_end}
