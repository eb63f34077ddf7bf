"""DRSL: Deep Relational Similarity Learning (Wang et al., Information Sciences 2020).

Two modality-specific fully connected towers map image and text features to vectors
z_i, z_t; a relation network scores every (image, text) pair of a batch from a fusion of
the two; the loss is ||R - S||_F^2 against the batch's label-agreement matrix S.

Choices (see also METHODS-NOTES.md):
- Towers: Dense -> (BatchNorm) -> ReLU per layer, ReLU after every layer as the paper says.
  Paper sizes (Wikipedia, NUS-WIDE-10K): image d-1024-300, text d-1024-300, relation
  600-1024-1; the authors' code (XMediaNet): towers d-1024-1024-300 and relation
  600-1024-1024-1, with batch norm everywhere. Input sizes follow the data.
- Fusions: "concat" (the paper's), "multiply", "add", "subtract".
- Concat makes the relation's first layer separable: W [z_i; z_t] + c = W_a z_i + (W_b z_t + c).
  Each item is projected once (A = W_a z_i, B = W_b z_t + c) and a pair's hidden layer is
  relu(A_p + B_q). Batch norm over the whole B x B grid stays separable: over the grid,
  mean(A_p + B_q) = mean(A) + mean(B) and var(A_p + B_q) = var(A) + var(B) exactly, so the
  normalised pre-activation is a'_p + b'_q with a' = gamma (A - mean A)/s + beta,
  b' = gamma (B - mean B)/s, s = sqrt(var A + var B + eps). With one hidden relation layer
  the pair score is sum_k relu(a'_pk + b'_qk) w_k + c_out, computed by
  `pairwise.pairwise_relu_dot` without materialising the [P, Q, K] grid.
- Data parallel training: each device holds its shard of images and texts; text encodings
  are all-gathered so each device scores its images against the whole global batch, and
  batch-norm statistics are averaged over the data axis (synchronised batch norm), so the
  sharded step computes the same function as the single-device step.
"""

from crossmodal_jax.methods.drsl.method import DRSLMethod
from crossmodal_jax.methods.drsl.model import DRSL
from crossmodal_jax.methods.drsl.model import FUSIONS

__all__ = ["DRSL", "DRSLMethod", "FUSIONS"]
