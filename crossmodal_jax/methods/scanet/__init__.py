"""SCANet (Lu et al., KSEM 2018: stacked co-attention networks), with Yu et al.'s GCN text model.

Y. Lu, J. Yu, Y. Liu, J. Tan, L. Guo, W. Zhang, "Fine-grained correlation learning with
stacked co-attention networks for cross-modal information retrieval", KSEM 2018. The user's
guide (presets, departures from the paper and their measured effect) is
docs/methods/scanet.md; the runs behind the defaults are in docs/experiments/scanet.md.

Files: `model.py` (the Flax module), `pairs.py` (the training pairs and their batches:
`sample_pairs`, `pair_batches`), `losses.py` (the global loss, `global_loss`), `method.py`
(its face: pairs, loss, scoring), `flops.py` (the analytic FLOPs of a training step).

Text path: each text's bag-of-words counts over the word graph's V vertices
(`data.word_graph`: V most frequent training words with a GloVe vector, k=8 nearest
neighbours by cosine, symmetrised) -> two Chebyshev graph convolutions (K=3, each + ReLU;
`model.gcn_filters`: 1 and 1 filters in the paper, 8 and 1 by default) -> Dense V -> N.
Image path: Dense d -> N (hidden layers optional). Then 0..3 stacked co-attention layers,
the product of the two attended features, dropout, Dense(1) and sigmoid; trained with the
global loss (variance + lambda x mean-gap hinge) on 40,000 positive and 40,000 negative
training pairs.

Choices the paper leaves open (decided here, with the reason):
- Co-attention layer k >= 2 reads the previous layer's attended features f~^{k-1} on
  both sides (eq. 8 writes f_I^{k-1}; "stacked" and eq. 7 read f~).
- Layer k >= 2 re-weights the previous layer's attended features (eq. 9 writes f^{k-1};
  with the tilde dropped, layer k would discard layers 1..k-1's attention).
- No activation after the common-space Dense layers in the model's default (the paper
  names none; `model.activation` offers relu / tanh). `scanet,wikipedia` takes a ReLU,
  chosen on its validation split (`configs/scanet.py`).
- Dense layers initialised as Keras/TensorFlow do (Glorot uniform, zero bias), the
  framework of the authors' code; L2 is `train.weight_decay` (coupled, on every
  parameter: 5e-3 x tf.nn.l2_loss in the paper preset).
- L2 5e-3 (paper) is read as 5e-3 x tf.nn.l2_loss over every parameter; if the code
  used Keras' l2(0.005) on kernels only it is 2x that, on fewer parameters.
- Retrieval ranks by the head's logit (the sigmoid is monotone; logits do not tie where
  the sigmoid saturates).

Where the default differs from the paper (`configs/scanet.py`, chosen on the Wikipedia
validation split; the "paper" preset keeps the paper's):
- Attention N x softmax(.) (`model.attention_scale="mean_one"`): the paper's softmax
  over N = 1024 features divides each feature by about N per layer while the attention
  is near uniform, so with two layers the head sees products of order N^-4 and the model
  does not start learning (the loss stays at lambda x m).
- The graph signal log(1 + counts) and LeCun-normal filter taps with zero bias instead
  of raw counts and cnn_graph's N(0, 0.1) taps with bias 0.1: one filter of 3 taps per
  layer is fragile; these kept the text path alive.
- 8 filters in the first graph layer (`model.gcn_filters=(8, 1)`; the paper's "3
  parameters per layer" is one filter each): the second layer maps the 8 rectified
  responses back to one per word, so the V x N Dense keeps its size. With one filter,
  which of a seed's 3 taps survive the ReLU decides the text feature's scale at init,
  and seeds whose text feature starts small learn late; 8 rectified responses make that
  scale depend far less on the draw.
- Except on Wikipedia, batches group each text's pairs (`model.pair_order="text"`; the
  paper draws them uniformly, "shuffled"): a batch of 256 pairs holds about 8 distinct
  texts instead of about 240, so the GCN and the V x N Dense run per text (much cheaper
  steps). The global loss is a statistic of the batch, so this changes the objective's
  batches, not only its cost: its means and variances are over ~8 texts' pairs. On
  Wikipedia the shuffled pairs were better on validation, so it keeps them.
- Adam 3e-4 with a coupled L2 of 5e-4 (2.5e-4 on Wikipedia) for a few epochs instead of
  1e-4 with L2 5e-3 for 80: the L2 term dominates the small gradients of the global loss
  under Adam and shrinks the text path to a constant at 5e-3; at 1e-3 the text path's
  ReLUs die. The model peaks on validation within a few epochs and then fits its
  training pairs; the best-by-validation checkpoint is kept.
- On Wikipedia the image path reads the square roots of the SIFT histograms
  (`data.image_power=0.5`, the Hellinger map), standardised; a ReLU after the
  common-space Dense layers, dropout 0.5 before the head, and validation and checkpoints
  on an exponential moving average of the parameters; all chosen on validation.
- On the synthetic benchmark, AdamW's decoupled decay (1.0) instead of the coupled L2:
  there even 5e-4 x w exceeds the loss gradient at init for most seeds, because the
  1-filter ReLU graph layers, whose dead fraction is a draw of 3 taps, leave the text
  feature much smaller than the image's, and every gradient goes through their product;
  Adam then follows the L2 pull, shrinks the network by about the learning rate per
  step, and the scores go constant. Decoupled decay is not normalised by Adam, so it
  cannot take over.
"""

from crossmodal_jax.methods.scanet.method import SCANetMethod
from crossmodal_jax.methods.scanet.model import SCANet

__all__ = ["SCANet", "SCANetMethod"]
