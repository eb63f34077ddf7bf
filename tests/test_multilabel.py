"""Multi-label data (0/1 float32 multi-hot labels [n, C]; two items are relevant when they
share a label): SCANet's pair sampler, the synthetic benchmark's multi-label option, and
SCANet training on such data (HCMSL's training on a multi-hot feature folder is in
test_lazy.py).

Shapes are tiny (the CPU is shared with long runs)."""

from __future__ import annotations

import dataclasses
import itertools
import json

import ml_collections
import numpy as np
import pytest

from configs.default import get_config
from crossmodal_jax import metrics
from crossmodal_jax import protocols
from crossmodal_jax import runs
from crossmodal_jax import training
from crossmodal_jax.data.sources import synthetic
from crossmodal_jax.data.text import word_graph
from crossmodal_jax.methods.scanet import pairs as pairs_lib


def _shares(hot, image, text) -> np.ndarray:
  """bool [P]: whether rows image[p] and text[p] of multi-hot `hot` share a label."""
  return np.einsum("pc,pc->p", hot[image], hot[text]) > 0


def _all_pairs(hot) -> tuple[set, set]:
  """(relevant, irrelevant): every ordered pair (i, j), i != j, of `hot`'s rows."""
  share = hot @ hot.T > 0
  relevant, irrelevant = set(), set()
  for i, j in itertools.permutations(range(len(hot)), 2):
    (relevant if share[i, j] else irrelevant).add((i, j))
  return relevant, irrelevant


def _pair_sets(pairs) -> tuple[set, set]:
  """(positives with i != j, negatives) of a PairSet, as sets of (image, text)."""
  rows = list(zip(pairs.image.tolist(), pairs.text.tolist(), pairs.positive.tolist()))
  positive = {(i, t) for i, t, p in rows if p and i != t}
  return positive, {(i, t) for i, t, p in rows if not p}


def _multi_hot(n, classes, p, seed, empty=0) -> np.ndarray:
  """float32 [n, classes]: one class per row plus each other with probability p; the
  first `empty` rows have no label."""
  rng = np.random.default_rng(seed)
  hot = (rng.random((n, classes)) < p).astype(np.float32)
  hot[np.arange(n), rng.integers(0, classes, n)] = 1.0
  hot[:empty] = 0.0
  return hot


# --------------------------------------------------------------------------------------
# Pair sampling
# --------------------------------------------------------------------------------------


def test_multi_hot_pairs_share_labels_are_distinct_and_fixed_by_seed():
  hot = _multi_hot(300, 8, 0.1, seed=0, empty=20)
  pairs = pairs_lib.sample_pairs(hot, 1000, 1200, seed=3)
  assert len(pairs) == 2200 and pairs.positive.sum() == 1000
  assert pairs.image.dtype == pairs.text.dtype == np.int32
  # The true pairs first (all 300), then pairs of distinct rows sharing a label.
  np.testing.assert_array_equal(pairs.image[:300], np.arange(300))
  np.testing.assert_array_equal(pairs.text[:300], np.arange(300))
  distinct = pairs.image != pairs.text
  assert distinct[300:].all()
  np.testing.assert_array_equal(_shares(hot, pairs.image, pairs.text)[300:], pairs.positive[300:])
  # Rows without a label are in no positive but their true pair.
  unlabeled = (pairs.image < 20) | (pairs.text < 20)
  assert not np.any(unlabeled & distinct & pairs.positive)
  assert np.any(unlabeled & ~pairs.positive)
  codes = pairs.image.astype(np.int64) * 300 + pairs.text
  assert len(np.unique(codes)) == len(pairs)
  again = pairs_lib.sample_pairs(hot, 1000, 1200, seed=3)
  for a, b in ((again.image, pairs.image), (again.text, pairs.text)):
    np.testing.assert_array_equal(a, b)
  other = pairs_lib.sample_pairs(hot, 1000, 1200, seed=4)
  assert not np.array_equal(other.text, pairs.text)
  few = pairs_lib.sample_pairs(hot, 100, 0, seed=3)  # fewer positives than rows
  assert len(few) == 100 and np.all(few.image == few.text)


def test_multi_hot_pairs_exhaust_exactly_the_available_pairs():
  hot = _multi_hot(40, 5, 0.2, seed=1, empty=4)
  relevant, irrelevant = _all_pairs(hot)
  n_pos, n_neg = 40 + len(relevant), len(irrelevant)
  pairs = pairs_lib.sample_pairs(hot, n_pos, n_neg, seed=0)
  assert _pair_sets(pairs) == (relevant, irrelevant)
  with pytest.raises(ValueError, match=f"{n_pos + 1} positive pairs; .* 40 rows have {n_pos}"):
    pairs_lib.sample_pairs(hot, n_pos + 1, 0, seed=0)
  with pytest.raises(ValueError, match=f"{n_neg + 1} negative pairs; .* 40 rows have {n_neg}"):
    pairs_lib.sample_pairs(hot, 0, n_neg + 1, seed=0)
  with pytest.raises(ValueError, match="multi-hot labels"):
    pairs_lib.sample_pairs(hot[:, :, None], 10, 10, seed=0)


def test_multi_hot_pairs_are_uniform_over_pairs():
  # Rows with more labels have more partners, so they are in more of the drawn pairs: in
  # proportion to their partner counts if and only if pairs (not rows) are uniform.
  hot = _multi_hot(200, 6, 0.15, seed=2, empty=10)
  share = hot @ hot.T > 0
  np.fill_diagonal(share, False)
  group = np.minimum(hot.sum(axis=1), 3).astype(int)  # 0, 1, 2 or 3+ labels
  for positive, partners in ((True, share), (False, ~share)):
    np.fill_diagonal(partners, False)
    count = 6000
    pairs = pairs_lib.sample_pairs(hot, 200 + count if positive else 0, 0 if positive else count, 5)
    image = pairs.image[pairs.image != pairs.text]
    expected = count * np.bincount(group, partners.sum(axis=1), 4) / partners.sum()
    seen = np.bincount(group[image], minlength=4)
    assert seen[0] == 0 if positive else seen[0] > 0
    np.testing.assert_allclose(seen, expected, rtol=0.1, atol=1)


def test_two_dimensional_labels_must_be_multi_hot():
  with pytest.raises(ValueError, match="must be 0/1 multi-hot"):
    pairs_lib.sample_pairs(np.array([[0], [1], [2]]), 3, 1, seed=0)  # class ids as a column


def test_int_labels_and_their_one_hot_rows_give_the_same_relations():
  labels = np.random.default_rng(3).integers(0, 4, size=30)
  one_hot = np.eye(4, dtype=np.float32)[labels]
  relevant, irrelevant = _all_pairs(one_hot)
  assert relevant == {
      (i, j) for i, j in itertools.permutations(range(30), 2) if labels[i] == labels[j]
  }
  n_pos, n_neg = 30 + len(relevant), len(irrelevant)
  for y in (labels, one_hot):
    assert _pair_sets(pairs_lib.sample_pairs(y, n_pos, n_neg, seed=1)) == (relevant, irrelevant)
    part = pairs_lib.sample_pairs(y, 100, 150, seed=2)
    same = labels[part.image] == labels[part.text]
    np.testing.assert_array_equal(same, part.positive)
    for asked in ((n_pos + 1, 0), (0, n_neg + 1)):
      with pytest.raises(ValueError, match=f"Asked for {max(asked)} .* have {max(asked) - 1}"):
        pairs_lib.sample_pairs(y, *asked, seed=0)


# --------------------------------------------------------------------------------------
# The synthetic benchmark's multi-label option
# --------------------------------------------------------------------------------------

SMALL = synthetic.SyntheticConfig(
    num_train=300, num_validation=60, num_test=60, num_groups=4, num_details=2, image_dim=16,
    num_regions=3, vocab_size=60, word_dim=8, max_words=16, min_words=8, image_noise=0.3,
    text_group_strength=0.8, image_detail_strength=0.8, seed=3,
)  # fmt: skip


MULTI_LABEL = 0.1  # about half of the rows get an extra class, a third of pairs share one


@pytest.fixture(scope="module")
def multi():
  return synthetic.make_dataset(dataclasses.replace(SMALL, multi_label=MULTI_LABEL))


def _cosine(a, b) -> float:
  return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_synthetic_multi_label_rows_have_their_class_and_more(multi):
  single = synthetic.make_dataset(SMALL)
  assert multi.meta["multi_label"] and not single.meta["multi_label"]
  assert multi.num_classes == single.num_classes == 8
  for name, split in multi.splits.items():
    labels = split["label"]
    assert labels.shape == (len(single.splits[name]), 8) and labels.dtype == np.float32
    assert split.multi_label and set(np.unique(labels)) == {0.0, 1.0}
    assert labels.sum(axis=1).min() >= 1 and 0.3 < np.mean(labels.sum(axis=1) > 1) < 0.7
    for key in ("image", "text", "image_regions", "word_ids", "word_mask", "bow"):
      assert split[key].shape == single.splits[name][key].shape, (name, key)
      assert split[key].dtype == single.splits[name][key].dtype, (name, key)
  # The first split draws its primary classes as the single-label data does.
  np.testing.assert_array_equal(multi.train["label"][np.arange(300), single.train["label"]], 1)


def test_synthetic_extra_classes_show_in_both_modalities():
  # Rows holding class c as an extra label differ from rows without c in the direction of
  # rows whose primary class is c: in the image features, the words and the text feature.
  config = dataclasses.replace(SMALL, num_train=1000)
  primary = synthetic.make_dataset(config).train["label"]
  split = synthetic.make_dataset(dataclasses.replace(config, multi_label=MULTI_LABEL)).train
  hot = split["label"] > 0
  for key in ("image", "bow", "text"):
    x = split[key].astype(np.float64)
    for c in range(8):
      extra, without = hot[:, c] & (primary != c), ~hot[:, c]
      toward = x[extra].mean(0) - x[without].mean(0)
      assert _cosine(toward, x[primary == c].mean(0) - x[without].mean(0)) > 0.7, (key, c)


def test_synthetic_default_is_single_label_and_load_reads_the_option():
  config = get_config("mcsm,synthetic")
  assert config.data.synthetic_multi_label == 0.0
  config.data.synthetic_num_train = 50
  default = synthetic.load(config.data)
  assert default.meta["config"]["multi_label"] == 0.0 and not default.meta["multi_label"]
  assert default.train["label"].dtype == np.int32 and default.train["label"].shape == (50,)
  legacy = config.to_dict()
  del legacy["data"]["synthetic_multi_label"]  # a config.json older than the option
  legacy = runs.complete(ml_collections.ConfigDict(legacy))  # as a workdir's is loaded
  np.testing.assert_array_equal(synthetic.load(legacy.data).test["bow"], default.test["bow"])
  config.data.synthetic_multi_label = 0.2
  labels = synthetic.load(config.data).train["label"]
  assert labels.shape == (50, 10) and labels.dtype == np.float32
  with pytest.raises(ValueError, match="multi_label"):
    synthetic.make_dataset(dataclasses.replace(SMALL, multi_label=1.5))


# --------------------------------------------------------------------------------------
# Training on multi-label data
# --------------------------------------------------------------------------------------
# SCANet here: its multi-hot pair sampler. HCMSL trains on a multi-hot feature folder in
# test_lazy.py (read lazily). DRSL and MCSM train on the same data too (measured: +0.15
# and +0.23 over chance); their multi-hot paths (label_agreement, the different-label
# negatives) are tested in test_drsl.py and test_mcsm.py, and their training here (10-18 s
# of compilation each) is left out to keep the suite within its time.


def test_scanet_trains_on_multi_label_data(tmp_path, multi):
  dataset = dataclasses.replace(multi, meta=dict(multi.meta))
  vectors = dataset.meta["word_vectors"][2:]
  dataset.meta["word_graph"] = word_graph.build_word_graph(vectors, 8)
  config = get_config("scanet,synthetic,ci")
  config.model.update(dim=16, num_positive=1200, num_negative=1200)
  # The fewest epochs (compiling dominates the time) that clear chance by a margin.
  config.train.update(batch_size=200, num_epochs=4, learning_rate=3e-3, progress_bar=False)
  config.train.checkpoint_every_epochs = config.train.num_epochs
  config.data.synthetic_multi_label = MULTI_LABEL  # as the data (recorded in config.json)
  workdir = str(tmp_path / "wd")
  state, trained = training.train(config, workdir, dataset=dataset)
  labels = dataset.test["label"]
  assert labels.ndim == 2 and np.mean(labels.sum(axis=1) > 1) > 0.3
  with open(f"{workdir}/metrics.jsonl") as f:
    epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
  assert len(epochs) == config.train.num_epochs
  for record in epochs:  # validation on multi-hot labels
    assert np.isfinite(record["loss"]) and 0 < record["validation_map"] <= 1, record
  # What training.train_and_evaluate's test evaluation computes, by the trained method itself
  # (its encoders already compiled for the validation split of the same size).
  results = protocols.evaluate_split(
      trained, state.variables, dataset.test, config.eval, full=False
  )
  chance = float(metrics.relevance(labels, labels).mean())  # a random ranking's mAP
  assert results["map_all"]["avg"] > chance + 0.08, (results["map_all"], chance)
