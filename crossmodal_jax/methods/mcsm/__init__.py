"""MCSM: Modality-specific Cross-modal Similarity Measurement (Y. Peng, J. Qi, Y. Yuan,
"Modality-specific cross-modal similarity measurement with recurrent attention network",
IEEE TIP 2018).

Files: `model.py` (the two spaces' Flax modules), `losses.py` (the bidirectional hinge,
and each anchor's negatives and positives in the global batch), `method.py` (the face:
inputs, loss, encodings, scores, the adaptive fusion and the choice of its weight on
validation), `flops.py` (the analytic FLOPs of an item through a space). The user's guide, with what the authors' code does and where we depart from
it, is docs/methods/mcsm.md.

Only the abstract of the paper was available to us; the model follows the authors' Torch
code (the MCSM_TIP2018 folder of BMC-SDNU/Cross-Modal-Retrieval on GitHub). Two semantic
spaces with disjoint parameters (params["image_space"], params["text_space"]):

- image space: the image's region sequence (split array "image_regions" [n, R, d]; a
  dataset with only "image" [n, d] gives a one-step sequence) -> `AttentionLSTMEncoder`
  (2-layer LSTM, hidden 512, dropout 0.5 between layers, per-step Dense(D), attention
  with W_a, weighted sum, L2 normalise); the text enters as its document vector (the
  split's fixed "text" feature) -> Dense(D) -> L2 normalise;
- text space: the text's word vectors (word_ids looked up in meta["word_vectors"],
  frozen; mask word_mask) -> optional `ConvFrontEnd` -> `AttentionLSTMEncoder` without
  W_a -> L2 normalise; the image enters as its global feature "image" -> Dense(D) ->
  sigmoid -> L2 normalise;
- similarity in each space: the cosine (dot product of the unit vectors);
- retrieval: W = i * (mnorm(W1) * W2) + (1 - i) * (mnorm(W2) * W1), W1 / W2 the image- /
  text-space scores of a direction (query x gallery), mnorm the row-wise min-max over the
  gallery; i chosen on the validation split.

Interpretation choices (where the code leaves it open, or where we differ):
- Training: both spaces in one model, the loss the sum of the two spaces' losses on the
  same batches. Since their parameters are disjoint this is training them independently,
  as the code's separate runs do, except that the batches and negatives are shared.
- Loss per space: for image anchor k (positive text k) one text j of a different label,
  max(0, 0.5 - s(k, k) + s(k, j)); symmetrically for text anchor k and an image j. Each
  direction's hinges are averaged over the global batch's anchors and the two directions
  summed (Torch's MarginRankingLoss averages over its batch; one criterion per direction),
  then summed over the spaces. An anchor whose batch holds no item of a different label
  contributes 0 and still counts in the mean (batch 40 of 10 classes makes this rare).
  "Different label" for multi-hot labels: no label shared.
- Negatives: drawn uniformly among the global batch's different-label items, anew every
  step, separately for the image anchors (a text) and the text anchors (an image), from
  the first device's key of the step, so the draw depends on (seed, step, global batch)
  and not on the number of devices; each device sums the hinges of its own anchors.
  `model.negatives="hardest"` takes instead each space's highest-scoring different-label
  item of the global batch, and `"all"` every one of them with the hinges averaged (the
  random draw's expected loss); options, not the code's.
- Positives: each anchor's match (the code's), or with `model.positives="same_label"` an
  item of the other modality drawn uniformly among the global batch's items with the
  anchor's label (its match included), from the step's key folded with 1, so the
  negatives stay the code's draw. An option, not the code's (the Wikipedia default).
- Label loss (`model.label_weight` > 0; 0, none, is the code's): each space gets a linear
  classifier of its unit vectors (params[space]["classifier"], D -> classes, the number
  of classes from meta["num_classes"] or the width of multi-hot labels), and the loss
  adds the weight times the sum, over the two spaces and the two modalities, of the
  batch mean of the softmax cross-entropy of the item's label (for multi-hot labels, the
  sigmoid cross-entropy averaged over the classes). A departure from the code, taken
  from the label-space objectives of later methods (DSCMR): it pulls every item of a
  class, of either modality, towards one region of the space. The classifiers are used
  only in training; retrieval ranks by the cosines as before.
- The text space's image vector is Dense -> sigmoid -> L2 normalise in that order (the
  code's): its entries are all positive; no extra scale or bias is added to the cosine.
- The word vectors are a constant of the encoder (frozen, as in the code), not a
  parameter: not trained, not checkpointed. Rows 0 (padding) and 1 (OOV) are whatever
  the table holds; the mask decides which steps are read.
- The conv front-end is available (`model.front_end`; the code's blocks by default) and
  off by default: at `data.max_words=400` (Wikipedia) the code's pools (5, 5, 6) would
  leave 3 steps of 400 words, and the synthetic texts have 40 words; it shortens long
  documents (the code's configuration: `front_end=True`, `data.max_words=2904`).
- Initialisation "pytorch" (U(+-1/sqrt(fan_in)) for Dense, conv and LSTM weights and
  biases), the closest of ours to Torch7's defaults; "flax" and "glorot" are options.
- RMSprop with decay 0.99, Torch optim.rmsprop's default alpha: of the code's RMSprop
  settings we know the learning rate, 1e-4, alone. optax puts eps inside the square root,
  Torch outside.
- D = 1024 by default (the code: 4096, the `paper` preset's), so that a 2-core CPU
  trains it.
- Fusion: mnorm of a constant row is 0 (no information from that space for that
  query), so W reduces to the other term there. The fused scores are computed in
  float64 and returned as float32. The weight i lives in the non-param collection
  variables["fusion"]["weight"] (0.5 at `init`, `model.fusion_weight`), so every
  checkpoint carries it; `loss` passes it through unchanged.
- Fusion orientation: mnorm runs over each query's gallery row in both directions. The
  code (calMAP/evalMAPMerge.m) fuses the image x text matrices once and ranks text
  queries by the transpose, so its text-to-image mnorm runs over each gallery image's
  scores against all the query texts. That makes a text's ranking depend on the other
  queries, and a single query could not be ranked (each image's min-max over one text is
  0).
- The weight is chosen on the VALIDATION split (the code grid-searched it on the test
  set): `choose_fusion_weight` takes the split's two score channels (encoded and scored
  once) and returns the first grid value (0, 0.01, ..., 1) with the highest average
  mAP@ALL of both directions; `MCSMMethod.calibrate(variables, channels, labels)`, which
  training calls with the validation split's channels, returns the variables with that
  weight stored. `model.retrieval = "image_space" | "text_space"` ranks by one
  space's cosines alone, to report each space's mAP.
- Scoring is separable (two matmuls of per-item unit vectors): `pair_bytes` is the two
  float32 scores of a pair.
"""

from crossmodal_jax.methods.mcsm.method import MCSMMethod
from crossmodal_jax.methods.mcsm.method import adaptive_fusion
from crossmodal_jax.methods.mcsm.method import choose_fusion_weight
from crossmodal_jax.methods.mcsm.method import fusion_weight
from crossmodal_jax.methods.mcsm.method import row_min_max
from crossmodal_jax.methods.mcsm.method import with_fusion_weight
from crossmodal_jax.methods.mcsm.model import MCSM
from crossmodal_jax.methods.mcsm.model import ImageSpace
from crossmodal_jax.methods.mcsm.model import TextSpace

__all__ = [
    "MCSM",
    "ImageSpace",
    "MCSMMethod",
    "TextSpace",
    "adaptive_fusion",
    "choose_fusion_weight",
    "fusion_weight",
    "row_min_max",
    "with_fusion_weight",
]
