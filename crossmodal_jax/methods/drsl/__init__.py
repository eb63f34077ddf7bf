"""DRSL: Deep Relational Similarity Learning (Wang et al., Information Sciences 2021).

Two modality-specific fully connected towers map image and text features to vectors
z_i, z_t; a relation network scores every (image, text) pair of a batch from a fusion of
the two; the loss is ||R - S||_F^2 against the batch's label-agreement matrix S. The
user's guide, with the configs and what departs from the paper: docs/methods/drsl.md.

Files: `model.py` (the Flax module), `losses.py` (the relation loss and its normalisers),
`method.py` (the face: sparse text, the training loss, encodings, scores), `flops.py` (the
analytic FLOPs of a training step and of a scored pair, for the benchmark).

Choices:
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
  `pairwise.pairwise_relu_dot` without materialising the [P, Q, K] grid (in scoring by
  `pairwise.pairwise_relu_scores`: the same scores, by a native C++ kernel on the CPU).
- Sparse text (`model.sparse_text`, off by default): raw TF-IDF over V words (an article
  has ~150 of 10,000) reaches the text tower as each row's non-zeros, ids and values
  padded to the split's longest row (`data.sparse_rows`, derived once per split by the
  method), and the first layer sums the kernel rows they pick (`layers.sparse_dense`):
  the same parameter as the dense layer, so seeds, gradients and checkpoints agree.
- Data parallel training: each device holds its shard of images and texts; text encodings
  are all-gathered so each device scores its images against the whole global batch, and
  batch-norm statistics are averaged over the data axis (synchronised batch norm), so the
  sharded step computes the same function as the single-device step.

Against the authors' PyTorch code (github.com/wangxu-scu/DRSL, `train2`; config
`drsl_code`), checked on identical files (`experiments/wikipedia_as_features.py`; the
measurements, and what each difference costs, are in docs/experiments/drsl.md):
- Matched:
  - initialisation: torch.nn.Linear's U(+-1/sqrt(fan_in)) for every kernel and bias
    (`model.init="pytorch"`; the two separable halves of the relation's Linear(600, 1024)
    with fan_in 600); BatchNorm starts at (1, 0). Flax's LeCun normal (3x the variance)
    is by far the largest difference;
  - the loss sum((R - S)^2) / B (`loss_normalizer="batch"`: the code divides by the
    square root of the B^2 entries); under Adam this only sets the weight of the coupled
    weight decay, which a / sqrt(B) loss would make 14x weaker at B = 200;
  - layer order Linear -> BN -> ReLU everywhere, including the towers' 300-d outputs,
    relation Linear(600, 1024)-BN-ReLU-Linear(1024, 1024)-BN-ReLU-Linear(1024, 1), batch
    norm over all B^2 pairs, momentum 0.1 (Flax 0.9), eps 1e-5, no dropout;
  - Adam(betas 0.5, 0.99, eps 1e-8) with coupled weight decay 1e-4 on every parameter;
  - StepLR(gamma 0.98) stepped at the start of every epoch, before the first optimizer
    step: epoch e trains at 1e-4 * 0.98^(e + 1), so `learning_rate` is 0.98e-4;
  - the last partial batch (2,173 = 10 x 200 + 173) is kept (`train.drop_remainder`
    False): one more compile for its shape; with several devices it must divide among
    them, otherwise training stops with an error saying so;
  - raw image features (`data.standardize_image=False`; the other configs standardise
    them).
- Not matched, named:
  - the code's Linear layers before batch norm carry biases; batch norm cancels them
    exactly (only the coupled weight decay touches them), so they are left out;
  - PyTorch updates BN running variances with the unbiased batch variance (x B/(B-1):
    x200/199 in the towers, x40000/39999 over the relation grid), Flax with the biased
    one: eval-time scales differ by at most 0.25%;
  - the sample order: torch.randperm against grain's seeded shuffle (same distribution,
    another stream), so single runs differ by seed noise, not in expectation;
  - the code's per-epoch pass over the test set in eval mode changes nothing and is not
    repeated; it evaluates the last epoch, as drsl_code does on a folder without a
    validation split (the latest checkpoint is used, with a warning).
"""

from crossmodal_jax.methods.drsl.method import DRSLMethod
from crossmodal_jax.methods.drsl.model import DRSL
from crossmodal_jax.methods.drsl.model import FUSIONS

__all__ = ["DRSL", "DRSLMethod", "FUSIONS"]
