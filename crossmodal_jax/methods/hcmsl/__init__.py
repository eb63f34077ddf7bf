"""HCMSL: Hybrid Cross-Modal Similarity Learning (Zhang et al., ACM TOMM 2021, doi
10.1145/3412847).

Files: `model.py` (the Flax module), `losses.py` (the contrastive loss and InfoNCE),
`batches.py` (which training rows keep their labels, and the semi-supervised batches),
`method.py` (the face: batches, the hybrid loss, encodings, cosine scores).

Only the abstract is available. What it says: coupled deep fully connected networks
map image and text features into a common subspace; the two branches share weights
("weight-sharing strategy ... between two branches"); two Siamese models learn
intra-modal similarity from same-label samples of one modality; both labelled and
unlabelled cross-modal pairs contribute. Everything below that is more precise than that
is our interpretation, not the paper's (the user's guide, with where each choice was
measured: docs/methods/hcmsl.md):

- Branches: image and text MLPs, [Dense -> ReLU -> Dropout] per layer
  (`model.image_layers`, `model.text_layers`), on the dataset's fixed features (the
  paper's "CNN" models ran on raw inputs we do not have).
- Weight sharing: the TOP layers are one module applied to both branches' outputs
  (`shared_top`: [Dense -> ReLU -> Dropout] per `model.shared_layers`, then a linear Dense
  to `model.dim`), so the branches' last widths must be equal. The common vector is the
  L2-normalised output; no ReLU on it, so cosines span [-1, 1]. `model.share_top=False`
  gives each branch its own top layers of the same sizes (the ablation).
- Cross-modal similarity at retrieval: the cosine in the common space (`score` is the
  [P, Q] matrix of dot products of unit vectors). The "hybrid" of the name is read as
  the hybrid training signal (class-level + instance-level + intra-modal), not as a
  fused score: the Siamese similarities do not enter retrieval.
- Class-level cross-modal loss (labelled pairs): the contrastive loss of Hadsell et al.
  (`losses.contrastive_loss`) over EVERY (image, text) pair of labelled rows of the global
  batch, not only the true pairs: d^2 for same-label pairs, max(0, m - d)^2 for
  different-label ones, d the Euclidean distance of the unit vectors (`model.margin`),
  averaged over those pairs.
- Instance-level cross-modal loss (the pairing is known, the label may not be): InfoNCE
  (`losses.instance_nce`) of each anchor's true partner against the global batch's items
  of the other modality, image->text and text->image averaged, temperature
  `model.temperature`. Anchors: `model.instance_pairs` "all" rows (labelled pairs have a
  known pairing too) or only the "unlabeled" ones. With
  `model.instance_exclude_same_label`, items known (both labelled) to share the anchor's
  label are dropped from its softmax: they are not negatives.
- Siamese intra-modal losses: one per modality, the same contrastive loss over pairs of
  DISTINCT labelled rows of that modality (same label close, different apart by
  `model.siamese_margin`). The Siamese network of a modality is its branch, below the
  shared layers: by default it compares the unit-normalised branch outputs
  (`model.siamese_space="branch"`; they are ReLU outputs, so d lies in [0, sqrt(2)]);
  "common" compares the common vectors instead.
- Loss = weight_class * class + weight_instance * instance + weight_siamese * (image
  Siamese + text Siamese); each term is a mean over the global batch, so the sharded
  step computes the same function as one device (encodings, labels and the labelled mask
  are all-gathered over the data axis).
- Semi-supervised data: `model.labeled_fraction` keeps the labels of round(fraction * n)
  training rows, drawn uniformly (not stratified by class) by a permutation seeded by
  `config.seed` alone (`batches.labeled_rows`): the same rows every epoch and on
  resume, and the rows of a smaller fraction are a subset of a larger one's. The other
  rows' labels are overwritten in every batch (-1, or an all-zero multi-hot row) and a
  "labeled" array marks the rows that keep theirs: labelled-only terms mask the others
  out, which still train the instance-level loss. Validation keeps its labels: the
  best-by-validation checkpoint is chosen on the labelled validation pairs at every
  fraction.
- `model.use_unlabeled=False` (the "labelled rows alone" baseline) samples only the
  labelled rows, with as many steps per epoch as the whole split gives (successive
  permutations of the labelled rows), so both runs take the same number of steps.
- Initialisation: PyTorch's U(+-1/sqrt(fan_in)) by default (`model.init`), as the other
  methods' code-faithful configs; no batch norm (none is named in the abstract).
- No "paper" preset: the abstract gives no hyperparameter. The Wikipedia recipe
  (configs/hcmsl.py) was chosen on the validation split (docs/experiments/hcmsl.md),
  including the square roots of the SIFT histograms before standardising
  (`data.image_power=0.5`).
"""

from crossmodal_jax.methods.hcmsl.method import INSTANCE_PAIRS
from crossmodal_jax.methods.hcmsl.method import SIAMESE_SPACES
from crossmodal_jax.methods.hcmsl.method import HCMSLMethod
from crossmodal_jax.methods.hcmsl.model import HCMSL

__all__ = ["HCMSL", "HCMSLMethod", "INSTANCE_PAIRS", "SIAMESE_SPACES"]
