"""Tests of the synthetic cross-modal benchmark (crossmodal_jax.data.sources.synthetic)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crossmodal_jax.data import common
from crossmodal_jax.data.sources import synthetic

SMALL = synthetic.SyntheticConfig(
    num_train=90,
    num_validation=25,
    num_test=40,
    num_groups=3,
    num_details=4,
    image_dim=24,
    num_regions=5,
    vocab_size=120,
    word_dim=16,
    max_words=14,
    min_words=4,
    seed=7,
)
SPLIT_SIZES = {"train": 90, "validation": 25, "test": 40}


@pytest.fixture(scope="module")
def small():
  return synthetic.make_dataset(SMALL)


def _assert_same(d1: common.Dataset, d2: common.Dataset):
  for name in ("train", "validation", "test"):
    s1, s2 = d1.splits[name], d2.splits[name]
    assert sorted(s1.arrays) == sorted(s2.arrays)
    for key in s1.arrays:
      assert s1[key].dtype == s2[key].dtype, (name, key)
      np.testing.assert_array_equal(s1[key], s2[key], err_msg=f"{name}/{key}")
  np.testing.assert_array_equal(d1.meta["word_vectors"], d2.meta["word_vectors"])
  assert d1.meta["class_names"] == d2.meta["class_names"]


def test_deterministic_from_seed(small):
  _assert_same(small, synthetic.make_dataset(SMALL))
  _assert_same(small, synthetic.make_dataset(dataclasses.replace(SMALL)))


def test_different_seed_differs(small):
  other = synthetic.make_dataset(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
  for name in ("train", "validation", "test"):
    for key in ("image", "text", "image_regions", "word_ids", "bow"):
      assert not np.array_equal(small.splits[name][key], other.splits[name][key]), (name, key)
  assert not np.array_equal(small.meta["word_vectors"], other.meta["word_vectors"])


def test_split_sizes_and_shapes_follow_config(small):
  c = SMALL
  assert small.name == "synthetic"
  assert small.num_classes == c.num_groups * c.num_details == c.num_classes == 12
  for name, n in SPLIT_SIZES.items():
    split = small.splits[name]
    assert len(split) == n
    expected = {
        "image": ((n, c.image_dim), np.float32),
        "text": ((n, c.word_dim), np.float32),
        "label": ((n,), np.int32),
        "image_regions": ((n, c.num_regions, c.image_dim), np.float32),
        "word_ids": ((n, c.max_words), np.int32),
        "word_mask": ((n, c.max_words), np.bool_),
        "bow": ((n, c.vocab_size), np.float32),
    }
    assert sorted(split.arrays) == sorted(expected)
    for key, (shape, dtype) in expected.items():
      assert split[key].shape == shape, (name, key)
      assert split[key].dtype == dtype, (name, key)
    assert not split.multi_label
  assert small.dims()["image_regions"] == (c.num_regions, c.image_dim)
  table = small.meta["word_vectors"]
  assert table.shape == (c.vocab_size + 2, c.word_dim) and table.dtype == np.float32
  np.testing.assert_array_equal(table[:2], 0.0)  # padding and OOV rows
  assert small.meta["class_names"] == [f"group{g}_detail{f}" for g in range(3) for f in range(4)]
  assert small.meta["config"] == dataclasses.asdict(SMALL)


@pytest.mark.parametrize("name", ["train", "validation", "test"])
def test_labels_words_and_masks(small, name):
  c = SMALL
  split = small.splits[name]
  labels, ids, mask, bow = split["label"], split["word_ids"], split["word_mask"], split["bow"]
  assert labels.min() >= 0 and labels.max() < c.num_classes
  # Masks are prefixes of length in [min_words, max_words].
  lengths = mask.sum(axis=1)
  assert lengths.min() >= c.min_words and lengths.max() <= c.max_words
  np.testing.assert_array_equal(mask, np.arange(c.max_words)[None, :] < lengths[:, None])
  # 0 = padding exactly where the mask is False; real words are ids >= 2 (< V + 2).
  np.testing.assert_array_equal(ids == 0, ~mask)
  assert np.all(ids[mask] >= 2) and np.all(ids[mask] < c.vocab_size + 2)
  # bag of words = per-text counts of the unmasked words.
  np.testing.assert_array_equal(bow.sum(axis=1), lengths)
  want_bow = np.zeros_like(bow)
  for i in range(len(ids)):
    for w in ids[i][mask[i]]:
      want_bow[i, w - 2] += 1
  np.testing.assert_array_equal(bow, want_bow)


@pytest.mark.parametrize("name", ["train", "validation", "test"])
def test_features_are_means(small, name):
  split = small.splits[name]
  table = small.meta["word_vectors"].astype(np.float64)
  ids, mask = split["word_ids"], split["word_mask"]
  vectors = table[ids] * mask[..., None]  # padding rows of the table are 0 anyway
  want_text = vectors.sum(axis=1) / mask.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(split["text"], want_text, rtol=1e-5, atol=1e-6)
  regions = split["image_regions"]
  assert regions.min() >= 0.0  # through a ReLU, like CNN activations
  np.testing.assert_allclose(
      split["image"], regions.astype(np.float64).mean(axis=1), rtol=1e-5, atol=1e-6
  )


# --------------------------------------------------------------------------------------
# The premise: each modality carries class evidence the other lacks.
# --------------------------------------------------------------------------------------


def _kappa(pred, truth, n):
  """Accuracy rescaled so chance (1/n) is 0 and perfect is 1."""
  return (np.mean(pred == truth) - 1.0 / n) / (1.0 - 1.0 / n)


def _nearest_mean(x_train, y_train, x_test, num):
  means = np.stack([x_train[y_train == c].mean(axis=0) for c in range(num)])
  d = ((x_test[:, None, :] - means[None, :, :]) ** 2).sum(-1)
  return d


def _group_and_detail_kappas(dataset, key, num_groups, num_details):
  x_tr = dataset.train[key].astype(np.float64)
  y_tr = dataset.train["label"]
  x_te = dataset.test[key].astype(np.float64)
  y_te = dataset.test["label"]
  # Groups: nearest group mean (chance 1 / num_groups).
  d = _nearest_mean(x_tr, y_tr // num_details, x_te, num_groups)
  group = _kappa(d.argmin(1), y_te // num_details, num_groups)
  # Details WITHIN the true group: nearest of that group's class means (chance
  # 1 / num_details).
  d = _nearest_mean(x_tr, y_tr, x_te, num_groups * num_details)
  d = d.reshape(len(y_te), num_groups, num_details)[np.arange(len(y_te)), y_te // num_details]
  detail = _kappa(d.argmin(1), y_te % num_details, num_details)
  return group, detail


@pytest.mark.parametrize("seed", [0, 1])
def test_each_modality_carries_evidence_the_other_lacks(seed):
  cfg = dataclasses.replace(synthetic.SyntheticConfig(), seed=seed)
  dataset = synthetic.make_dataset(cfg)
  img_group, img_detail = _group_and_detail_kappas(
      dataset, "image", cfg.num_groups, cfg.num_details
  )
  txt_group, txt_detail = _group_and_detail_kappas(dataset, "text", cfg.num_groups, cfg.num_details)
  # Everything is above chance ...
  for value in (img_group, img_detail, txt_group, txt_detail):
    assert value > 0.3
  # ... but images see groups much better than details, texts the reverse.
  assert img_group > img_detail + 0.15, (img_group, img_detail)
  assert txt_detail > txt_group + 0.15, (txt_detail, txt_group)
  # And each modality is better than the other on its own strength.
  assert img_group > txt_group + 0.1
  assert txt_detail > img_detail + 0.1


# --------------------------------------------------------------------------------------
# Presets and bad configs
# --------------------------------------------------------------------------------------


def test_xmedianet_preset_sizes():
  c = synthetic.XMEDIANET_SIZED  # check the config only: never generate it here
  assert synthetic.PRESETS["xmedianet"] is c
  assert (c.num_train, c.num_validation, c.num_test) == (32000, 4000, 4000)
  assert c.num_classes == c.num_groups * c.num_details == 200
  assert c.image_dim == 4096
  assert c.word_dim == 300  # the text feature is the mean word vector: 300-d
  # It passes make_dataset's own validity checks.
  assert 1 <= c.min_words <= c.max_words
  assert c.vocab_size >= 4 * c.num_classes


def test_default_preset():
  c = synthetic.PRESETS["default"]
  assert c == synthetic.SyntheticConfig()
  assert (c.num_train, c.num_validation, c.num_test) == (2000, 400, 600)
  assert c.num_classes == 10


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(min_words=0), "min_words"),
        (dict(min_words=15, max_words=14), "min_words"),
        (dict(vocab_size=47), "vocab_size"),  # < 4 * 12 classes
    ],
)
def test_bad_configs_raise(overrides, match):
  with pytest.raises(ValueError, match=match):
    synthetic.make_dataset(dataclasses.replace(SMALL, **overrides))


def test_smallest_valid_vocab_works():
  cfg = dataclasses.replace(SMALL, vocab_size=4 * SMALL.num_classes, min_words=14)
  dataset = synthetic.make_dataset(cfg)
  assert np.all(dataset.train["word_mask"])
  assert dataset.train["bow"].shape[1] == 48
