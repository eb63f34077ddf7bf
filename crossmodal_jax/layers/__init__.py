"""Reusable Flax building blocks of the methods.

- `mlp`: the MLP tower (Dense -> BatchNorm -> ReLU -> Dropout per layer) and synchronised
  batch moments;
- `sparse_dense`: a Dense layer fed a sparse input's padded non-zeros (a gather-sum over
  kernel rows), with nn.Dense's parameters;
- `text_cnn`: a Kim-style text CNN over word-id sequences;
- `pairwise`: the fused all-pairs ReLU-dot kernel of a separable relation network;
- `chebyshev`: a Chebyshev graph convolution (Defferrard et al., 2016) over one jraph graph
  shared by a batch of signals;
- `attention_lstm`: MCSM's recurrent attention encoder (optional conv front-end -> scanned,
  masked LSTM stack -> per-step Dense -> attention over real steps -> L2 normalise);
- `configured`: `from_config`, a module built from a config section's fields of the same
  names (re-exported here as `layers.from_config`).
"""

from crossmodal_jax.layers.configured import from_config

__all__ = ["from_config"]
