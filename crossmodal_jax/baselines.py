"""Classical baselines on a dataset's fixed features: CCA, semantic matching (SM) and
semantic correlation matching (SCM), after Rasiwasia et al., ACM MM 2010.

Every deep method's figure stands next to these, computed on the same splits and the
same features (a split's "image" and "text" arrays) and scored with the same metrics
(`crossmodal_jax.metrics`, via `evaluate_scores`), so the rows of a table compare like
for like:

- "cca": canonical correlation analysis fitted on the training pairs; each item is
  projected on the first k canonical directions of its modality and a pair scores the
  cosine of the two projections (Rasiwasia et al.'s correlation matching).
- "sm": semantic matching. One multinomial logistic regression per modality maps each
  item to its class posteriors; a pair scores the cosine of the two probability vectors
  (the "semantic space" of the paper). Multi-label datasets get one binary regression per
  class.
- "scm": semantic correlation matching: semantic matching on the first k canonical
  projections instead of the raw features.

The hyperparameters (k; the inverse regularisation C of each modality's regression) are
chosen on the validation split by mAP@ALL (mean of both directions), never on test. A
grid of one value fixes it. All three are deterministic: they have no seed.

Libraries: CCA is solved in closed form with numpy (`LinearCCA`: the classical canonical
directions, a small ridge, thin SVDs; milliseconds, and deterministic), or with
scikit-learn's `sklearn.cross_decomposition.CCA` (`solver="sklearn"`: the iterative
NIPALS, whose later components are not the classical ones, and which takes minutes for
tens of components; docs/experiments/comparison_table.md compares the two). The logistic
regressions are scikit-learn's `LogisticRegression` (lbfgs, multinomial). scikit-learn is imported only when it is used. In both solvers the
first k components do not depend on how many more are fitted, so one fit at the largest
k of a grid serves every smaller k.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from crossmodal_jax import errors
from crossmodal_jax import metrics
from crossmodal_jax.data import common
from crossmodal_jax.data import lazy

BASELINES = ("cca", "sm", "scm")
DESCRIPTIONS = {
    "cca": "CCA (correlation matching, cosine of the canonical projections)",
    "sm": "semantic matching (logistic-regression posteriors, cosine)",
    "scm": "semantic correlation matching (posteriors on the CCA projections, cosine)",
}
# Each baseline's name in a table's rows (experiments.reproduce).
LABELS = {"cca": "CCA", "sm": "SM", "scm": "SCM"}
DIRECTIONS = ("i2t", "t2i")
# The inverse regularisations C of the logistic regressions tried on validation.
DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
# Largest number of canonical components the default grid tries.
MAX_AUTO_COMPONENTS = 32
# Iterations of scikit-learn's solvers (its defaults stop short on the Wikipedia files).
CCA_MAX_ITER = 1000
LR_MAX_ITER = 5000


def _sklearn():
  try:
    from sklearn import cross_decomposition  # pylint: disable=g-import-not-at-top
    from sklearn import linear_model  # pylint: disable=g-import-not-at-top
    from sklearn import multiclass  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.UserError(
        f"The CCA / semantic matching baselines need scikit-learn ({e}): "
        "pip install scikit-learn"
    ) from e
  return cross_decomposition, linear_model, multiclass


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[n_a, n_b] cosine similarities of the rows of a and b (zero rows score 0)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
  return a @ b.T


def auto_components(image_dim: int, text_dim: int, num_train: int) -> tuple[int, ...]:
  """The default grid of k: powers of two up to the largest k CCA allows (capped at
  MAX_AUTO_COMPONENTS), and that largest k itself."""
  top = min(image_dim, text_dim, num_train, MAX_AUTO_COMPONENTS)
  grid = {top}
  k = 1
  while k < top:
    grid.add(k)
    k *= 2
  return tuple(sorted(grid))


class LinearCCA:
  """Classical (closed-form) CCA with a ridge: columns centred and scaled to unit
  variance on train (as scikit-learn's CCA), each modality whitened by
  (C + reg I)^(-1/2), then the SVD of the whitened cross-covariance. Works from thin SVDs
  of the data, so a feature size above the training pairs (raw TF-IDF) costs no d x d
  matrix; the k-th pair of directions does not depend on how many are kept."""

  def __init__(self, n_components: int, reg: float = 1e-3):
    self.n_components = n_components
    self.reg = reg

  @staticmethod
  def _standardize_fit(x: np.ndarray):
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1)
    return mean, np.where(std > 1e-12, std, 1.0)

  def fit(self, x: np.ndarray, y: np.ndarray) -> "LinearCCA":
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = len(x)
    self.x_mean_, self.x_std_ = self._standardize_fit(x)
    self.y_mean_, self.y_std_ = self._standardize_fit(y)
    factors = []
    for z, mean, std in ((x, self.x_mean_, self.x_std_), (y, self.y_mean_, self.y_std_)):
      u, s, vt = np.linalg.svd((z - mean) / std, full_matrices=False)
      var = s**2 / (n - 1)
      # The data whitened (C + reg I)^(-1/2): u diag(s / sqrt(var + reg)) vt.
      factors.append((u, s / np.sqrt(var + self.reg), vt, 1.0 / np.sqrt(var + self.reg)))
    (ux, gx, vtx, hx), (uy, gy, vty, hy) = factors
    core = (gx[:, None] * (ux.T @ uy) * gy[None, :]) / (n - 1)
    p, sigma, qt = np.linalg.svd(core, full_matrices=False)
    k = self.n_components
    self.x_weights_ = vtx.T @ (hx[:, None] * p[:, :k])
    self.y_weights_ = vty.T @ (hy[:, None] * qt.T[:, :k])
    self.correlations_ = sigma[:k]
    return self

  def transform(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = (np.asarray(x, np.float64) - self.x_mean_) / self.x_std_
    y = (np.asarray(y, np.float64) - self.y_mean_) / self.y_std_
    return x @ self.x_weights_, y @ self.y_weights_


CCA_SOLVERS = ("exact", "sklearn")


def fit_cca(
    train_image: np.ndarray,
    train_text: np.ndarray,
    n_components: int,
    solver: str = "exact",
    reg: float = 1e-3,
):
  """CCA fitted on the training pairs (columns centred and scaled on train).

  solver "exact": `LinearCCA`, the classical solution (ridge `reg`); "sklearn":
  scikit-learn's `CCA` (iterative NIPALS; its components after the first are not the
  classical canonical directions, and it is slow for many components).
  """
  limit = min(train_image.shape[1], train_text.shape[1], len(train_image))
  if not 1 <= n_components <= limit:
    raise errors.UserError(
        f"CCA components must be in 1..{limit} (the smaller feature size or the training "
        f"pairs), got {n_components}."
    )
  if solver == "exact":
    return LinearCCA(n_components, reg).fit(train_image, train_text)
  if solver != "sklearn":
    raise errors.UserError(f"Unknown CCA solver {solver!r}; choose one of {CCA_SOLVERS}.")
  cross_decomposition, _, _ = _sklearn()
  model = cross_decomposition.CCA(n_components=n_components, max_iter=CCA_MAX_ITER)
  return model.fit(np.asarray(train_image, np.float64), np.asarray(train_text, np.float64))


def cca_project(model, image: np.ndarray, text: np.ndarray, k: int | None = None):
  """(image, text) projected on the first k canonical directions (all with None)."""
  a, b = model.transform(np.asarray(image, np.float64), np.asarray(text, np.float64))
  return a[:, :k], b[:, :k]


def cca_scores(model, image: np.ndarray, text: np.ndarray, k: int | None = None) -> np.ndarray:
  """[n_images, n_texts] cosine of the first k canonical projections."""
  return cosine(*cca_project(model, image, text, k))


def _classifier(c: float, multi_label: bool):
  _, linear_model, multiclass = _sklearn()
  # lbfgs: a multinomial (softmax) regression for single labels.
  model = linear_model.LogisticRegression(C=c, max_iter=LR_MAX_ITER)
  return multiclass.OneVsRestClassifier(model) if multi_label else model


def class_posteriors(
    train_x: np.ndarray,
    train_labels: np.ndarray,
    xs: Sequence[np.ndarray],
    c: float,
) -> list[np.ndarray]:
  """Fits a logistic regression (inverse regularisation c) on the training rows and
  returns each of `xs`' class probabilities, [n, C] each: a softmax over classes for
  single labels (rows sum to 1), per-class binary probabilities for multi-hot labels."""
  labels = np.asarray(train_labels)
  multi_label = labels.ndim == 2
  if not multi_label and len(np.unique(labels)) < 2:
    raise errors.UserError("Semantic matching needs at least two classes in the train split.")
  model = _classifier(c, multi_label).fit(np.asarray(train_x, np.float64), labels)
  return [model.predict_proba(np.asarray(x, np.float64)) for x in xs]


def evaluate_scores(
    scores: np.ndarray | dict[str, np.ndarray],
    labels: np.ndarray,
    eval_config=None,
    gallery_labels: np.ndarray | None = None,
    map_r: int | None = None,
    recall_ks: Sequence[int] = (),
) -> dict[str, Any]:
  """The fields of a method's results.json (protocols.evaluate_split) from [n, n] image x
  text scores of one split: mAP@ALL, mAP@R, P@K and the PR and precision-scope curves of
  both directions. `eval_config` gives map_r and precision_ks (evaluate's defaults
  without it); `map_r`, if given, overrides its R.

  Against another split's gallery, `scores` is {"i2t": [n_query, n_gallery] query images
  x gallery texts, "t2i": [n_query, n_gallery] query texts x gallery images} and
  `gallery_labels` the gallery's labels."""
  if isinstance(scores, dict):
    scores = {d: np.asarray(scores[d], np.float32) for d in DIRECTIONS}
  else:
    scores = np.asarray(scores, np.float32)
    scores = {"i2t": scores, "t2i": scores.T}
  kwargs = {"gallery_labels": gallery_labels, "recall_ks": tuple(recall_ks)}
  if eval_config is not None:
    kwargs.update(map_r=eval_config.map_r, precision_ks=eval_config.precision_ks)
  if map_r is not None:
    kwargs["map_r"] = int(map_r)
  return metrics.split_metrics(scores, labels, **kwargs)


def validation_map(scores: np.ndarray, labels: np.ndarray) -> float:
  """mAP@ALL averaged over both directions: the selection criterion."""
  scores = np.asarray(scores, np.float32)
  return float(
      np.mean(
          [
              metrics.map_at_all(scores, labels, labels),
              metrics.map_at_all(scores.T, labels, labels),
          ]
      )
  )


def _grid(values, name: str) -> tuple:
  values = tuple(values)
  if not values:
    raise errors.UserError(f"The {name} grid is empty.")
  return values


def _check_validation(dataset: common.Dataset, grid_sizes: Sequence[int]):
  if len(dataset.validation) == 0 and any(n > 1 for n in grid_sizes):
    raise errors.UserError(
        f"{dataset.name} has no validation split to choose the baselines' hyperparameters "
        "on: give one value per grid (or a validation split)."
    )


def _posterior_pairs(train_x, train_t, labels, xs_image, xs_text, c_grid):
  """{(c_image, c_text): (image probabilities, text probabilities) of each evaluated
  split} for every pair of the grid (one regression per modality and C)."""
  probs_i = {c: class_posteriors(train_x, labels, xs_image, c) for c in c_grid}
  probs_t = {c: class_posteriors(train_t, labels, xs_text, c) for c in c_grid}
  return {
      (ci, ct): list(zip(probs_i[ci], probs_t[ct])) for ci, ct in itertools.product(c_grid, c_grid)
  }


def run(
    name: str,
    dataset: common.Dataset,
    components: Sequence[int] | None = None,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    eval_config=None,
    solver: str = "exact",
    gallery_split: str = "test",
    map_r: int | None = None,
    relevance: str = "label",
) -> dict[str, Any]:
  """Fits baseline `name` ("cca", "sm" or "scm") on the train split, chooses its
  hyperparameters on validation and evaluates it on test: test queries against the test
  items of the other modality, or against `gallery_split`'s (protocols.PROTOCOLS' yu2018:
  "train"). The choice on validation is the same for any gallery.

  Args:
    name: one of BASELINES.
    dataset: its splits' "image", "text" and "label" arrays are used.
    components: the grid of k (CCA and SCM; values above the smaller feature size count
      as it); None: `auto_components`.
    c_grid: the grid of C (each modality's regression, chosen independently; SM, SCM).
    eval_config: map_r and precision_ks of the results (evaluate's defaults without).
    solver: the CCA solver of "cca" and "scm" (`fit_cca`).
    gallery_split: the split whose items of the other modality the test queries rank.
    map_r: R of mAP@R (None: eval_config's, or evaluate's default).
    relevance: "label" or "pair" (`protocols.relevance_labels`; test scored against
      test): which test items are relevant to a query. The choice on validation is by
      class labels either way.

  Returns:
    evaluate_scores' fields for the test queries plus "baseline", "dataset", "chosen"
    (the hyperparameters), "validation_map", "fit_seconds" (fitting and selection),
    "num_params" (the fitted model's weights), "gallery_split" and "num_gallery".

  Raises:
    UserError: an unknown name or gallery split, a bad grid value, or a grid with several
      values and no validation split.
  """
  if name not in BASELINES:
    raise errors.UserError(f"Unknown baseline {name!r}; choose one of {BASELINES}.")
  if relevance not in ("label", "pair") or (relevance == "pair" and gallery_split != "test"):
    raise errors.UserError(
        f"A baseline scores relevance 'label', or 'pair' against the test gallery; got "
        f"{relevance!r} against {gallery_split!r}."
    )
  if gallery_split not in dataset.splits:
    raise errors.UserError(
        f"Unknown gallery split {gallery_split!r}; choose one of {tuple(dataset.splits)}."
    )
  t0 = time.perf_counter()
  # The fits need whole arrays: a lazily read split (large feature files) is read here.
  train, val, test = (lazy.loaded(s) for s in (dataset.train, dataset.validation, dataset.test))
  d_img, d_txt = train["image"].shape[1], train["text"].shape[1]
  num_classes = dataset.num_classes
  if components is None:
    components = auto_components(d_img, d_txt, len(train))
  # A k beyond what CCA allows (the smaller feature size) counts as that largest k.
  limit = min(d_img, d_txt, len(train))
  components = _grid(sorted(set(min(int(k), limit) for k in components)), "components")
  c_grid = _grid([float(c) for c in c_grid], "C")
  if any(c <= 0 for c in c_grid):
    raise errors.UserError(f"C must be > 0, got {c_grid}.")
  has_val = len(val) > 0
  gallery = {"train": train, "validation": val, "test": test}[gallery_split]
  cross = gallery_split != "test"  # another split's gallery: its items are scored too
  splits = ([val] if has_val else []) + [test] + ([gallery] if cross else [])
  val_labels = val["label"] if has_val else None
  # (chosen, num_params, [(image, text) vectors of each split]): scored by cosine.
  candidates = []
  if name == "cca":
    _check_validation(dataset, [len(components)])
    model = fit_cca(train["image"], train["text"], max(components), solver)
    projected = [cca_project(model, s["image"], s["text"]) for s in splits]
    for k in components:
      vectors = [(a[:, :k], b[:, :k]) for a, b in projected]
      candidates.append(({"components": k}, (d_img + d_txt) * k, vectors))
  elif name == "sm":
    _check_validation(dataset, [len(c_grid)])
    grid = _posterior_pairs(
        train["image"],
        train["text"],
        train["label"],
        [s["image"] for s in splits],
        [s["text"] for s in splits],
        c_grid,
    )
    for (ci, ct), vectors in grid.items():
      candidates.append(({"c_image": ci, "c_text": ct}, (d_img + d_txt + 2) * num_classes, vectors))
  else:  # scm
    _check_validation(dataset, [len(components), len(c_grid)])
    model = fit_cca(train["image"], train["text"], max(components), solver)
    train_a, train_b = cca_project(model, train["image"], train["text"])
    projected = [cca_project(model, s["image"], s["text"]) for s in splits]
    for k in components:
      grid = _posterior_pairs(
          train_a[:, :k],
          train_b[:, :k],
          train["label"],
          [a[:, :k] for a, _ in projected],
          [b[:, :k] for _, b in projected],
          c_grid,
      )
      for (ci, ct), vectors in grid.items():
        candidates.append(
            (
                {"components": k, "c_image": ci, "c_text": ct},
                (d_img + d_txt) * k + 2 * (k + 1) * num_classes,
                vectors,
            )
        )
  if has_val:
    # The first best on validation (grids ascend: ties keep the smaller k or C).
    vals = [validation_map(cosine(*vectors[0]), val_labels) for _, _, vectors in candidates]
    best = int(np.argmax(vals))
    best_val = vals[best]
  else:
    best, best_val = 0, None
  chosen, num_params, vectors = candidates[best]
  if cross:
    (q_image, q_text), (g_image, g_text) = vectors[-2:]
    scores = {"i2t": cosine(q_image, g_text), "t2i": cosine(q_text, g_image)}
    result = evaluate_scores(scores, test["label"], eval_config, gallery["label"], map_r)
  elif relevance == "pair":
    groups = test.arrays.get("group")
    groups = np.arange(len(test)) if groups is None else np.asarray(groups)
    recall_ks = eval_config.recall_ks if eval_config is not None else (1, 5, 10)
    result = evaluate_scores(
        cosine(*vectors[-1]), groups, eval_config, map_r=map_r, recall_ks=recall_ks
    )
    result["relevance"] = "pair"
  else:
    result = evaluate_scores(cosine(*vectors[-1]), test["label"], eval_config, map_r=map_r)
  result.update(
      {
          "baseline": name,
          "description": DESCRIPTIONS[name],
          "dataset": dataset.name,
          "split": "test",
          "num_queries": len(test),
          "gallery_split": gallery_split,
          "num_gallery": len(gallery),
          "chosen": chosen,
          "validation_map": best_val,
          "fit_seconds": time.perf_counter() - t0,
          "num_params": int(num_params),
          "grid": {"components": list(components), "c": list(c_grid)},
          "cca_solver": solver if name != "sm" else None,
      }
  )
  return result
