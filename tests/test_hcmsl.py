"""HCMSL: its losses on hand-computed batches, the semi-supervised sampler, the shared top
layers, the method's loss against a numpy reference, exact resume, data parallelism, the
config, and the CI preset on real Wikipedia.

Shapes are tiny (the CPU is shared with long runs)."""

from __future__ import annotations

import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sharded_steps
from conftest import WIKI_DIR
from conftest import train_on_real_wikipedia
from configs.default import get_config
from crossmodal_jax import methods
from crossmodal_jax import training
from crossmodal_jax.data import common
from crossmodal_jax.data.sources import synthetic
from crossmodal_jax.methods import hcmsl
from crossmodal_jax.methods.hcmsl import batches as hcmsl_batches
from crossmodal_jax.methods.hcmsl import losses as hcmsl_losses


def small_dataset(num_train=80):
  return synthetic.make_dataset(
      synthetic.SyntheticConfig(
          num_train=num_train, num_validation=20, num_test=20, image_dim=12, vocab_size=60,
          word_dim=8, max_words=8, min_words=3, image_noise=0.3, text_group_strength=0.8,
      )
  )  # fmt: skip


def small_config(**model):
  config = get_config("hcmsl,synthetic,ci")
  config.model.update(image_layers=(16,), text_layers=(16,), shared_layers=(12,), dim=8)
  config.model.update(dropout=0.0)
  config.model.update(model)
  config.train.batch_size = 16
  config.train.progress_bar = False
  return config


@pytest.fixture(scope="module")
def dataset():
  return small_dataset()


def _method(dataset, **model):
  config = small_config(**model)
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables = method.init(jax.random.key(0), method.init_batch(dataset.train))
  return config, method, variables


# --------------------------------------------------------------------------------------
# The losses, by hand
# --------------------------------------------------------------------------------------


def test_contrastive_loss_on_a_hand_computed_batch():
  a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  b = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
  same = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  # Squared distances: (a0, b0) 0, (a0, b1) 0.16 + 0.64 = 0.8, (a1, b0) 2, (a1, b1) 0.4.
  # Same pairs cost d^2; different pairs (1.5 - d)^2 while d < 1.5.
  cost = np.array([[0.0, (1.5 - math.sqrt(0.8)) ** 2], [(1.5 - math.sqrt(2)) ** 2, 0.4]])
  np.testing.assert_allclose(
      hcmsl_losses.contrastive_loss(a, b, same, 1.5), cost.sum() / 4, rtol=1e-5
  )
  weight = np.array([[1.0, 1.0], [0.0, 1.0]], np.float32)
  want = (cost[0, 0] + cost[0, 1] + cost[1, 1]) / 3
  np.testing.assert_allclose(
      hcmsl_losses.contrastive_loss(a, b, same, 1.5, weight), want, rtol=1e-5
  )
  # An explicit normalizer (a global pair count) replaces the weights' sum.
  got = hcmsl_losses.contrastive_loss(a, b, same, 1.5, weight, 10.0)
  np.testing.assert_allclose(got, want * 3 / 10, rtol=1e-5)
  # Below the margin's reach (d = sqrt(2) > 1.2) a different pair costs nothing; all
  # weights 0 is a loss of 0, with finite gradients even for coincident points.
  assert float(hcmsl_losses.contrastive_loss(a[1:], b[:1], same[1:, :1], 1.2)) == 0.0
  zero = np.zeros((2, 2), np.float32)
  assert float(hcmsl_losses.contrastive_loss(a, b, same, 1.5, zero)) == 0.0
  grads = jax.grad(lambda x: hcmsl_losses.contrastive_loss(x, x, 1.0 - np.eye(2), 1.5))(a)
  assert np.all(np.isfinite(grads))


def test_instance_nce_on_a_hand_computed_batch():
  q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  k = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
  partner = np.array([0, 1])
  # Temperature 0.5: logits of query 0 are (2, 0, 1.2), of query 1 (0, 2, 1.6).
  want = [
      math.log(math.exp(2) + 1 + math.exp(1.2)) - 2,
      math.log(1 + math.exp(2) + math.exp(1.6)) - 2,
  ]
  np.testing.assert_allclose(hcmsl_losses.instance_nce(q, k, partner, 0.5), want, rtol=1e-5)
  # Key 2 dropped from query 0's softmax; the partner stays even when marked False.
  candidate = np.array([[False, True, False], [True, True, True]])
  want[0] = math.log(math.exp(2) + 1) - 2
  got = hcmsl_losses.instance_nce(q, k, partner, 0.5, candidate)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  grads = jax.grad(lambda x: hcmsl_losses.instance_nce(x, k, partner, 0.5, candidate).sum())(q)
  assert np.all(np.isfinite(grads))


# --------------------------------------------------------------------------------------
# Semi-supervised data
# --------------------------------------------------------------------------------------


def test_labeled_rows_are_a_seeded_fraction_nested_across_fractions():
  for fraction in (1.0, 0.5, 0.1, 0.013):
    mask = hcmsl_batches.labeled_rows(2173, fraction, seed=3)
    assert mask.dtype == bool and mask.sum() == max(1, round(fraction * 2173))
    np.testing.assert_array_equal(mask, hcmsl_batches.labeled_rows(2173, fraction, seed=3))
  ten, half = hcmsl_batches.labeled_rows(2173, 0.1, 3), hcmsl_batches.labeled_rows(2173, 0.5, 3)
  assert np.all(half[ten])  # the rows labelled at 10% keep their labels at 50%
  assert not np.array_equal(ten, hcmsl_batches.labeled_rows(2173, 0.1, 4))
  with pytest.raises(ValueError, match=r"in \(0, 1\]"):
    hcmsl_batches.labeled_rows(10, 0.0, 0)


@pytest.mark.parametrize("multi_hot", [False, True])
def test_semi_supervised_batches_hide_labels_and_depend_on_seed_and_epoch(multi_hot):
  rng = np.random.default_rng(0)
  n = 50
  labels = rng.integers(0, 4, n).astype(np.int32)
  if multi_hot:
    labels = np.eye(4, dtype=np.float32)[labels]
  split = common.Split(
      {"image": np.arange(n, dtype=np.float32)[:, None], "text": np.zeros((n, 2)), "label": labels}
  )
  labeled = hcmsl_batches.labeled_rows(n, 0.3, seed=1)
  keys = ("image", "text", "label")
  make = lambda epoch, only=False: list(
      hcmsl_batches.semi_supervised_batches(split, keys, 8, 1, epoch, labeled, only)
  )
  a, b, c = make(2), make(2), make(3)
  assert len(a) == 6 and set(a[0]) == {"image", "text", "label", "labeled"}
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  rows = np.concatenate([x["image"][:, 0] for x in a]).astype(int)
  assert len(set(rows)) == 48  # a permutation, the last partial batch dropped
  for batch in a:
    r = batch["image"][:, 0].astype(int)
    np.testing.assert_array_equal(batch["labeled"], labeled[r].astype(np.float32))
    known = labeled[r]
    np.testing.assert_array_equal(batch["label"][known], labels[r][known])
    np.testing.assert_array_equal(batch["label"][~known], -1 if not multi_hot else 0)
  # The labelled rows alone: as many batches, every row labelled, every labelled row seen.
  only = make(2, True)
  assert len(only) == 6 and all(x["labeled"].all() for x in only)
  rows = np.concatenate([x["image"][:, 0] for x in only]).astype(int)
  assert set(rows) == set(np.flatnonzero(labeled))
  np.testing.assert_array_equal(only[0]["label"], labels[only[0]["image"][:, 0].astype(int)])


def test_method_batches_follow_the_config(dataset):
  _, method, _ = _method(dataset, labeled_fraction=0.25)
  batches = list(method.batches(dataset.train, 16, 5, 0))
  assert len(batches) == method.num_batches(dataset.train, 16) == 5
  assert sum(float(x["labeled"].sum()) for x in batches) == 20  # 25% of 80, all seen
  _, alone, _ = _method(dataset, labeled_fraction=0.25, use_unlabeled=False)
  batches = list(alone.batches(dataset.train, 16, 5, 0))
  assert len(batches) == 5 and all(x["labeled"].all() for x in batches)


# --------------------------------------------------------------------------------------
# The shared top layers
# --------------------------------------------------------------------------------------


def test_parameter_tree_holds_the_shared_top_once(dataset):
  _, method, variables = _method(dataset)
  assert isinstance(method, hcmsl.HCMSLMethod) and isinstance(method.module, hcmsl.HCMSL)
  params = variables["params"]
  assert set(params) == {"image_branch", "text_branch", "shared_top"}
  top = params["shared_top"]
  assert top["hidden"]["dense_0"]["kernel"].shape == (16, 12)
  assert top["out"]["kernel"].shape == (12, 8)
  assert params["image_branch"]["dense_0"]["kernel"].shape == (12, 16)
  assert params["text_branch"]["dense_0"]["kernel"].shape == (dataset.dims()["text"][0], 16)
  _, _, separate = _method(dataset, share_top=False)
  assert set(separate["params"]) == {"image_branch", "text_branch", "image_top", "text_top"}
  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
  assert count(separate["params"]) == count(params) + count(top)
  with pytest.raises(ValueError, match="equal output width"):
    _method(dataset, text_layers=(10,))


def test_each_modality_moves_the_shared_top(dataset):
  _, method, variables = _method(dataset)
  image, text = dataset.train["image"][:6], dataset.train["text"][:6]

  def grads(encode, x):
    return jax.grad(lambda p: jnp.sum(encode({"params": p}, x)[:, :3]))(variables["params"])

  from_image = grads(method.encode_image, image)
  from_text = grads(method.encode_text, text)
  norm = lambda tree: float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))
  for g, own, other in ((from_image, "image", "text"), (from_text, "text", "image")):
    assert norm(g["shared_top"]["out"]) > 0 and norm(g["shared_top"]["hidden"]) > 0, own
    assert norm(g[f"{own}_branch"]) > 0 and norm(g[f"{other}_branch"]) == 0, own
  # The same parameters, hence one update for both: the gradient of the sum of the two
  # encodings' losses on the shared top is the sum of the two gradients.
  both = jax.grad(
      lambda p: jnp.sum(method.encode_image({"params": p}, image)[:, :3])
      + jnp.sum(method.encode_text({"params": p}, text)[:, :3])
  )(variables["params"])
  jax.tree.map(
      lambda x, y, z: np.testing.assert_allclose(x, y + z, rtol=1e-5, atol=1e-6),
      both["shared_top"], from_image["shared_top"], from_text["shared_top"],
  )  # fmt: skip


def test_score_is_the_cosine_of_the_encodings(dataset):
  _, method, variables = _method(dataset)
  zi = method.encode_image(variables, dataset.test["image"])
  zt = method.encode_text(variables, dataset.test["text"])
  np.testing.assert_allclose(np.linalg.norm(zi, axis=1), 1.0, rtol=1e-5)
  s = np.asarray(method.score(variables, zi[:7], zt[:5]))
  want = np.array([[np.dot(a, b) for b in zt[:5]] for a in zi[:7]])
  assert s.shape == (7, 5)
  np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------
# The method's loss
# --------------------------------------------------------------------------------------


def _np_contrastive(a, b, same, margin, weight):
  d2 = np.array([[np.sum((x - y) ** 2) for y in b] for x in a])
  cost = same * d2 + (1 - same) * np.maximum(0.0, margin - np.sqrt(d2)) ** 2
  return np.sum(weight * cost)


def _np_nce(q, k, temperature, candidate):
  logits = q @ k.T / temperature
  out = []
  for p in range(len(q)):
    keep = candidate[p] | (np.arange(len(k)) == p)
    out.append(np.log(np.sum(np.exp(logits[p][keep]))) - logits[p, p])
  return np.array(out)


def np_hcmsl_loss(method, variables, batch):
  """The loss written pair by pair from the module's outputs (dropout 0), float64."""
  c = method.config.model
  out = method.module.apply(variables, batch["image"], batch["text"], train=False)
  out = {k: np.asarray(v, np.float64) for k, v in out.items()}
  lab, y = np.asarray(batch["labeled"], bool), np.asarray(batch["label"])
  n, k = len(y), int(lab.sum())
  same = (y[:, None] == y[None, :]).astype(float)
  both = np.outer(lab, lab).astype(float)
  class_term = _np_contrastive(out["image"], out["text"], same, c.margin, both) / k**2
  candidate = ~((both * same) > 0) if c.instance_exclude_same_label else np.ones((n, n), bool)
  anchor = np.ones(n) if c.instance_pairs == "all" else 1.0 - lab
  nce = _np_nce(out["image"], out["text"], c.temperature, candidate)
  nce = nce + _np_nce(out["text"], out["image"], c.temperature, candidate)
  instance = np.sum(anchor * nce) / (2 * max(anchor.sum(), 1))
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  siamese = 0.0
  for m in ("image", "text"):
    z = unit(out[f"{m}_branch"]) if c.siamese_space == "branch" else out[m]
    siamese += _np_contrastive(z, z, same, c.siamese_margin, both * (1 - np.eye(n)))
  siamese /= k * k - k
  return c.weight_class * class_term + c.weight_instance * instance + c.weight_siamese * siamese


@pytest.mark.parametrize(
    "model",
    [
        dict(labeled_fraction=0.5),
        dict(labeled_fraction=0.5, instance_pairs="unlabeled", siamese_space="common"),
        dict(instance_exclude_same_label=False, weight_siamese=0.3, margin=1.3),
    ],
)
def test_method_loss_equals_the_pairwise_reference(dataset, model):
  _, method, variables = _method(dataset, **model)
  batch = next(iter(method.batches(dataset.train, 16, 0, 0)))
  value, (collections, logs) = method.loss(variables, batch, jax.random.key(1), None)
  assert collections == {}
  np.testing.assert_allclose(value, np_hcmsl_loss(method, variables, batch), rtol=1e-4)
  assert float(logs["labeled"]) == float(batch["labeled"].mean())
  # A hidden label cannot matter: rewriting the unlabelled rows' labels changes nothing.
  hidden = batch["labeled"] == 0
  if hidden.any():
    other = dict(batch, label=np.where(hidden, 7, batch["label"]).astype(np.int32))
    again, _ = method.loss(variables, other, jax.random.key(1), None)
    np.testing.assert_allclose(again, value, rtol=1e-6)


# --------------------------------------------------------------------------------------
# Training, resume, data parallelism
# --------------------------------------------------------------------------------------


def test_resumed_training_equals_an_unbroken_run(tmp_path, dataset):
  config = small_config(labeled_fraction=0.3, dropout=0.2)
  config.train.num_epochs = 3
  unbroken, _ = training.train(config, str(tmp_path / "unbroken"), dataset=dataset)
  config.train.num_epochs = 1
  training.train(config, str(tmp_path / "resumed"), dataset=dataset)
  config.train.num_epochs = 3
  resumed, _ = training.train(config, str(tmp_path / "resumed"), dataset=dataset)
  assert int(resumed.step) == int(unbroken.step) == 15
  diffs = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), unbroken.params, resumed.params)
  assert max(jax.tree.leaves(diffs)) == 0.0


_PARALLEL_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from test_hcmsl import small_config, small_dataset
    from crossmodal_jax import methods, training
    from sharded_steps import run_steps

    assert jax.device_count() == 8, jax.devices()
    ds = small_dataset()
    out = {}
    for name, model in (("shared", {}),):
      cfg = small_config(labeled_fraction=0.5, **model)
      # Plain SGD: Adam's update is blind to a gradient's scale, so it would hide a
      # collective that scales a gradient by the device count.
      cfg.train.optimizer, cfg.train.learning_rate = "sgd", 0.5
      method = methods.get_method(cfg, ds.dims(), ds.meta)
      opt = method.optimizer(cfg.train, 3)
      batches = list(method.batches(ds.train, 16, 0, 0))[:3]
      one, losses1 = run_steps(method, opt, ds, jax.devices()[:1], batches)
      eight, losses8 = run_steps(method, opt, ds, jax.devices(), batches)
      start = jax.device_get(training.initial_state(method, opt, ds, 0))
      diff = lambda a, b: jax.tree.leaves(
          jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, b))
      out[name] = {"diff": max(diff(one.params, eight.params)),
                   "moved": max(diff(one.params, start.params)),
                   "loss": max(abs(a - b) for a, b in zip(losses1, losses8))}
    print(json.dumps(out))
""")


def test_sharded_steps_equal_single_device():
  r = sharded_steps.run_on_8_devices(_PARALLEL_SCRIPT)
  for name in ("shared",):
    assert r[name]["moved"] > 1e-4, r
    assert r[name]["diff"] < 1e-5 and r[name]["loss"] < 1e-5, r


# --------------------------------------------------------------------------------------
# Config and real data
# --------------------------------------------------------------------------------------


def test_config_presets_and_no_paper_preset():
  full, ci = get_config("hcmsl,wikipedia"), get_config("hcmsl,wikipedia,ci")
  assert full.model.share_top and full.model.init == "pytorch"
  assert (full.model.labeled_fraction, full.model.use_unlabeled) == (1.0, True)
  assert ci.model.dim < full.model.dim and ci.train.num_epochs < full.train.num_epochs
  assert get_config("hcmsl,synthetic").train.num_epochs < full.train.num_epochs
  # Square roots of Wikipedia's SIFT histograms; the synthetic features stay as they are.
  assert full.data.image_power == ci.data.image_power == 0.5
  assert get_config("hcmsl,synthetic").data.image_power == 1.0
  with pytest.raises(ValueError, match="hcmsl has no 'paper' preset"):
    get_config("hcmsl,wikipedia,paper")
  config = get_config("hcmsl,synthetic")
  config.model.instance_pairs = "some"
  with pytest.raises(ValueError, match="instance_pairs 'some'"):
    methods.get_method(config, {"image": (4,), "text": (4,), "label": ()})


@pytest.mark.skipif(not WIKI_DIR.is_dir(), reason=f"Wikipedia dataset not found at {WIKI_DIR}")
def test_ci_preset_learns_on_real_wikipedia(tmp_path, wiki_data_dir):
  results = train_on_real_wikipedia(
      "hcmsl,wikipedia,ci", tmp_path, wiki_data_dir, "--config.model.labeled_fraction=0.5"
  )
  assert results["num_queries"] == 462
  # Chance is about 0.11.
  assert results["map_all"]["avg"] > 0.2, results["map_all"]
