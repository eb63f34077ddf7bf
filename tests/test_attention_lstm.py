"""Tests of MCSM's recurrent attention encoder (`crossmodal_jax.layers.attention_lstm`).

Shapes are tiny and every forward pass is jitted (the CPU is shared with long runs).
Two encoders: IMAGE, MCSM's image space (W_a, no front-end), and TEXT, its text space
(conv front-end with batch norm, no W_a).
"""

from __future__ import annotations

import flax
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from crossmodal_jax.layers import attention_lstm as A

D_IN, HIDDEN, OUT = 3, 6, 5
POOLS = (2, 3)

IMAGE = A.AttentionLSTMEncoder(hidden=HIDDEN, out_dim=OUT, attention_dim=4)
FRONT = A.ConvFrontEnd(kernel_sizes=(3, 2), channels=(4, 4), pools=POOLS)
TEXT = A.AttentionLSTMEncoder(
    hidden=HIDDEN, out_dim=OUT, attention_projection=False, front_end=FRONT
)


def _key(seed):
  # XLA's RngBitGenerator compiles much faster on CPU than threefry (keeps tests fast).
  return jax.random.key(seed, impl="unsafe_rbg")


def _eval_fn(model):
  return jax.jit(lambda v, x, m: model.apply(v, x, m, return_attention=True))


def _train_fn(model):
  def run(v, x, m, key):
    (enc, a), new = model.apply(
        v, x, m, train=True, return_attention=True, rngs={"dropout": key}, mutable=True
    )
    return enc, a, new

  return jax.jit(run)


EVAL = {"image": _eval_fn(IMAGE), "text": _eval_fn(TEXT)}
MODELS = {"image": IMAGE, "text": TEXT}


def _random_variables(model, seed=0):
  """Random variables of `model`'s structure (biases, BN stats too), without compiling."""
  x, m = _seqs([3], 6)
  shapes = jax.eval_shape(lambda: model.init(_key(0), x, m))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    if path[-1].key == "var":
      return rng.uniform(0.5, 2.0, s.shape).astype(np.float32)
    return (0.5 * rng.standard_normal(s.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def variables():
  return {name: _random_variables(model) for name, model in MODELS.items()}


def _seqs(lengths, length, seed=0, pad_value=np.nan):
  """Random right-padded sequences: (x float32 [B, L, d], mask bool [B, L])."""
  rng = np.random.default_rng(seed)
  x = np.full((len(lengths), length, D_IN), pad_value, np.float32)
  mask = np.zeros((len(lengths), length), bool)
  for i, n in enumerate(lengths):
    x[i, :n] = rng.standard_normal((n, D_IN))
    mask[i, :n] = True
  return x, mask


def _pad_more(x, mask, extra, value):
  """Appends `extra` masked steps holding `value`."""
  b, _, d = x.shape
  x = np.concatenate([x, np.full((b, extra, d), value, np.float32)], axis=1)
  return x, np.concatenate([mask, np.zeros((b, extra), bool)], axis=1)


LENGTHS = [12, 7, 4, 2, 1, 0]


# (a) padding invariance ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image", "text"])
def test_padding_does_not_change_encodings(variables, name):
  x, mask = _seqs(LENGTHS, 12, pad_value=0.0)
  enc, a = map(np.asarray, EVAL[name](variables[name], x, mask))
  # Extra masked steps with huge, inf or NaN values; for the front-end both whole pooling
  # windows (6 steps) and a partial one (5 steps: ceil-mode windows stay aligned anyway).
  for extra, value in [(6, 1e30), (5, np.nan), (6, -np.inf)]:
    xp, mp = _pad_more(x, mask, extra, value)
    enc_p, a_p = map(np.asarray, EVAL[name](variables[name], xp, mp))
    np.testing.assert_allclose(enc_p, enc, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a_p[:, : a.shape[1]], a, rtol=0, atol=1e-6)
    assert np.all(a_p[:, a.shape[1] :] == 0)
  # Junk in the padded slots of the original length changes nothing either.
  xj = np.where(mask[..., None], x, 1e30).astype(np.float32)
  np.testing.assert_allclose(
      np.asarray(EVAL[name](variables[name], xj, mask)[0]), enc, rtol=0, atol=1e-5
  )


def test_masked_steps_anywhere_are_skipped_by_the_lstm(variables):
  """Without a front-end, masked steps inserted mid-sequence leave the encoding as is."""
  x, mask = _seqs([5, 3], 5, pad_value=0.0)
  enc = np.asarray(EVAL["image"](variables["image"], x, mask)[0])
  holes = np.full((2, 8, D_IN), 1e30, np.float32)
  holes_mask = np.zeros((2, 8), bool)
  where = [0, 2, 3, 6, 7]  # the 5 real steps' new positions (steps 1, 4 and 5 are holes)
  holes[:, where] = x
  holes_mask[:, where] = mask
  got, a = map(np.asarray, EVAL["image"](variables["image"], holes, holes_mask))
  np.testing.assert_allclose(got, enc, rtol=0, atol=1e-5)
  assert np.all(a[~holes_mask] == 0)


def test_front_end_batch_norm_training_ignores_padding(variables):
  """Training-mode batch moments (and running averages) come from real steps only."""
  model = TEXT.clone(dropout=0.0, score_dropout=0.0)
  run = _train_fn(model)
  x, mask = _seqs(LENGTHS, 12, pad_value=0.0)
  enc, _, new = run(variables["text"], x, mask, _key(0))
  xp, mp = _pad_more(x, mask, 7, 1e30)
  enc_p, _, new_p = run(variables["text"], xp, mp, _key(0))
  np.testing.assert_allclose(np.asarray(enc_p), np.asarray(enc), rtol=0, atol=1e-5)
  jax.tree.map(
      lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6),
      new["batch_stats"],
      new_p["batch_stats"],
  )
  old = variables["text"]["batch_stats"]["front_end"]["bn_0"]["mean"]
  assert not np.allclose(new["batch_stats"]["front_end"]["bn_0"]["mean"], old)


def test_masked_batch_norm_moments_match_numpy():
  bn = A.MaskedBatchNorm()
  rng = np.random.default_rng(1)
  x = rng.standard_normal((3, 5, 4)).astype(np.float32) * 3 + 1
  mask = np.arange(5)[None] < np.array([[5], [2], [0]])
  x[~mask] = 1e6
  v = bn.init(_key(0), x, mask, train=False)
  y, new = jax.jit(lambda v, x, m: bn.apply(v, x, m, train=True, mutable=["batch_stats"]))(
      v, x, mask
  )
  real = x[mask].astype(np.float64)
  mean, var = real.mean(0), real.var(0)
  want = (real - mean) / np.sqrt(var + 1e-5)
  np.testing.assert_allclose(np.asarray(y)[mask], want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(new["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)


def test_masked_batch_norm_synced_moments_are_global():
  """With axis_name, two shards with unequal real steps get the whole batch's moments."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((4, 6, 3)).astype(np.float32)
  mask = np.arange(6)[None] < np.array([[6], [5], [1], [0]])  # 11 real steps vs 1
  v = A.MaskedBatchNorm().init(_key(0), x, mask, train=False)

  def apply(name, x, m):
    return A.MaskedBatchNorm(axis_name=name).apply(v, x, m, train=True, mutable=["batch_stats"])

  whole, stats = jax.jit(lambda x, m: apply(None, x, m))(x, mask)
  sharded, sharded_stats = jax.jit(
      jax.vmap(lambda x, m: apply("shard", x, m), axis_name="shard", out_axes=(0, None))
  )(x.reshape(2, 2, 6, 3), mask.reshape(2, 2, 6))
  got = np.asarray(sharded).reshape(4, 6, 3)
  np.testing.assert_allclose(got[mask], np.asarray(whole)[mask], rtol=1e-5, atol=1e-5)
  jax.tree.map(
      lambda u, w: np.testing.assert_allclose(u, w, rtol=1e-5, atol=1e-6), sharded_stats, stats
  )


# (b), (c) attention weights, output ------------------------------------------------------


@pytest.mark.parametrize("name", ["image", "text"])
def test_attention_is_a_distribution_over_real_steps(variables, name):
  x, mask = _seqs(LENGTHS, 12)
  enc, a = map(np.asarray, EVAL[name](variables[name], x, mask))
  real = mask if name == "image" else _front_mask(mask)
  assert a.shape == real.shape
  assert np.all(a[~real] == 0)  # exactly zero, not merely small
  assert np.all(a[real] > 0)
  sums = a.sum(1)
  np.testing.assert_allclose(sums[:-1], 1.0, rtol=0, atol=1e-6)
  assert sums[-1] == 0  # the empty sequence
  # (c) shape, dtype, unit norm (zeros for the empty sequence).
  assert enc.shape == (len(LENGTHS), OUT) and enc.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(enc[:-1], axis=1), 1.0, rtol=0, atol=1e-6)
  assert np.all(enc[-1] == 0)
  assert np.all(np.isfinite(enc))


def _front_mask(mask):
  """The pooled mask by the rule (a window is real when any of its steps is), in numpy."""
  for p in POOLS:
    b, n = mask.shape
    out = -(-n // p)
    padded = np.zeros((b, out * p), bool)
    padded[:, :n] = mask
    mask = padded.reshape(b, out, p).any(-1)
  return mask


# (d) length-1 sequences ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image", "text"])
def test_length_one_sequences(variables, name):
  x, mask = _seqs([1, 1], 1)
  enc, a = map(np.asarray, EVAL[name](variables[name], x, mask))
  assert a.shape == (2, 1)
  np.testing.assert_array_equal(a, 1.0)
  np.testing.assert_allclose(np.linalg.norm(enc, axis=1), 1.0, rtol=0, atol=1e-6)
  # The same items padded to a longer batch encode the same.
  xp, mp = _pad_more(x, mask, 6, 7.0)
  enc_p, a_p = map(np.asarray, EVAL[name](variables[name], xp, mp))
  np.testing.assert_allclose(enc_p, enc, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(a_p[:, 0], 1.0)


# (e) uniform attention -------------------------------------------------------------------


def test_uniform_attention_ablation(variables):
  model = IMAGE.clone(uniform_attention=True)
  params = {"params": dict(variables["image"]["params"])}
  params["params"].pop("attention")
  params["params"].pop("score")
  x, mask = _seqs(LENGTHS, 12)
  shapes = jax.eval_shape(lambda: model.init(_key(0), x, mask))
  assert set(shapes["params"]) == {"lstm_0", "lstm_1", "project"}  # no W_a, no w
  enc, a = map(np.asarray, _eval_fn(model)(params, x, mask))
  lengths = np.array(LENGTHS)
  want = np.where(mask, 1.0 / np.maximum(lengths, 1)[:, None], 0.0)
  np.testing.assert_allclose(a, want, rtol=1e-6, atol=0)
  learned = np.asarray(EVAL["image"](variables["image"], x, mask)[0])
  assert not np.allclose(enc[:4], learned[:4], atol=1e-3)  # attention matters here
  np.testing.assert_allclose(enc[4], learned[4], rtol=0, atol=1e-6)  # length 1: the same


# (f) gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image", "text"])
def test_gradients_reach_every_parameter(variables, name):
  model = MODELS[name]
  x, mask = _seqs([13, 9, 4], 13)  # >= 2 pooled steps for all but the last
  target = jnp.asarray(np.random.default_rng(5).standard_normal((3, OUT)), jnp.float32)
  v = variables[name]
  rest = {k: c for k, c in v.items() if k != "params"}

  def loss(params, x):
    enc, _ = model.apply(
        {"params": params, **rest},
        x,
        mask,
        train=True,
        rngs={"dropout": _key(3)},
        mutable=["batch_stats"],
    )
    return jnp.sum(enc * target)

  g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(v["params"], x)
  flat = jax.tree_util.tree_leaves_with_path(g_params)
  assert len(flat) == len(jax.tree.leaves(v["params"]))
  for path, g in flat:
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
    assert np.any(g != 0), jax.tree_util.keystr(path)
  g_x = np.asarray(g_x)
  assert np.all(g_x[~mask] == 0)  # NaN padding: no gradient, and no NaN
  assert np.all(np.isfinite(g_x)) and np.any(g_x[mask] != 0)


# (g) the LSTM is scanned -----------------------------------------------------------------


def _eqns(jaxpr):
  """All equations of a jaxpr, its sub-jaxprs (scan bodies, pjit, ...) included."""
  out = []
  for eqn in jaxpr.eqns:
    out.append(eqn)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):  # ClosedJaxpr
          out.extend(_eqns(sub.jaxpr))
        elif hasattr(sub, "eqns"):  # Jaxpr
          out.extend(_eqns(sub))
  return out


def test_lstm_is_scanned_not_unrolled(variables):
  counts = {}
  for length in (5, 50):
    x, mask = _seqs([length, 2], length)
    for name in ("image", "text"):
      closed = jax.make_jaxpr(lambda v, x, m: MODELS[name].apply(v, x, m, return_attention=True))(
          variables[name], x, mask
      )
      eqns = _eqns(closed.jaxpr)
      scans = [e for e in eqns if e.primitive.name == "scan"]
      assert len(scans) == IMAGE.num_layers
      counts[name, length] = len(eqns)
  assert counts["image", 5] == counts["image", 50]
  assert counts["text", 5] == counts["text", 50]


# (h) front-end lengths and masks ---------------------------------------------------------


def test_front_end_output_length_and_mask_by_hand():
  # Pools 2 then 3: L = 13 -> ceil(13/2) = 7 -> ceil(7/3) = 3.
  mask = np.zeros((6, 13), bool)
  for i, n in enumerate([13, 7, 6, 1, 0]):
    mask[i, :n] = True
  mask[5, [0, 9]] = True  # holes: windows {0, 4} after pool 2 -> {0, 1} after pool 3
  want = np.array(
      [
          [1, 1, 1],  # 13 -> 7 -> 3
          [1, 1, 0],  # 7 -> 4 -> 2
          [1, 0, 0],  # 6 -> 3 -> 1
          [1, 0, 0],  # 1 -> 1 -> 1
          [0, 0, 0],  # 0
          [1, 1, 0],
      ],
      bool,
  )
  assert FRONT.output_length(13) == 3 and A.pooled_length(2904, (5, 5, 6)) == 20
  x = np.random.default_rng(0).standard_normal((6, 13, D_IN)).astype(np.float32)
  v = _random_variables(TEXT)["params"]["front_end"]
  stats = _random_variables(TEXT)["batch_stats"]["front_end"]
  y, m = jax.jit(
      lambda v, x, m: FRONT.apply({"params": v, "batch_stats": stats}, x, m, train=False)
  )(v, x, mask)
  assert y.shape == (6, 3, FRONT.channels[-1]) and y.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(m), want)
  np.testing.assert_array_equal(np.asarray(y)[~want], 0.0)
  assert np.all(np.isfinite(np.asarray(y)))


def test_masked_max_pool_padding_never_wins():
  x = np.array([[[1.0], [-2.0], [9e9], [-3.0], [-4.0], [9e9], [9e9]]], np.float32)
  mask = np.array([[True, True, False, True, True, False, False]])
  y, m = jax.jit(A.masked_max_pool, static_argnums=2)(x, mask, 3)
  # Windows {0,1,2} -> max(1, -2); {3,4,5} -> max(-3, -4); {6} -> no real step -> 0.
  np.testing.assert_array_equal(np.asarray(y)[0, :, 0], [1.0, -3.0, 0.0])
  np.testing.assert_array_equal(np.asarray(m), [[True, True, False]])


# (i) determinism and dropout -------------------------------------------------------------


def test_eval_is_deterministic_and_train_uses_the_dropout_rng(variables):
  x, mask = _seqs([6, 3], 6)
  v = variables["image"]
  enc1 = np.asarray(EVAL["image"](v, x, mask)[0])
  enc2 = np.asarray(
      jax.jit(lambda v, x, m: IMAGE.apply(v, x, m, rngs={"dropout": _key(9)}))(v, x, mask)
  )
  np.testing.assert_array_equal(enc1, enc2)
  run = _train_fn(IMAGE)
  t1, _, _ = run(v, x, mask, _key(1))
  t1b, _, _ = run(v, x, mask, _key(1))
  t2, _, _ = run(v, x, mask, _key(2))
  np.testing.assert_array_equal(np.asarray(t1), np.asarray(t1b))
  assert not np.allclose(np.asarray(t1), np.asarray(t2))
  assert not np.allclose(np.asarray(t1), enc1)
  with pytest.raises(flax.errors.InvalidRngError):
    jax.eval_shape(lambda: IMAGE.apply(v, x, mask, train=True))


# Configuration -----------------------------------------------------------------------------


def test_pytorch_init_bounds_and_bad_configs():
  model = IMAGE.clone(param_init="pytorch")
  x, mask = _seqs([3], 4)
  params = jax.jit(lambda k: model.init(k, x, mask))(_key(0))["params"]
  for leaf in jax.tree.leaves(params["lstm_0"]):
    assert np.all(np.abs(np.asarray(leaf)) <= HIDDEN**-0.5)
  assert np.abs(np.asarray(params["lstm_0"]["hi"]["bias"])).max() > 0
  bad = [
      IMAGE.clone(num_layers=0),
      IMAGE.clone(dropout=1.0),
      IMAGE.clone(param_init="torch"),
      TEXT.clone(front_end=A.ConvFrontEnd((3,), (4, 4), (2,))),
  ]
  for model in bad:
    with pytest.raises(ValueError):
      jax.eval_shape(lambda: model.init(_key(0), x, mask))
  with pytest.raises(ValueError, match="mask"):
    jax.eval_shape(lambda: IMAGE.init(_key(0), x, mask[:, :2]))
