"""Tests of the DRSL model, its fused pairwise kernel and its losses.

Everything is checked against slow references written from the definitions: the naive
[P, Q, K] grid for `pairwise.pairwise_relu_dot`, and, for DRSL, a numpy float64 forward pass
that builds every (image, text) pair's fused vector explicitly and runs the relation MLP
on the [P * Q, .] matrix of all pairs (batch norm over all pairs in training).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import jax
import jax.numpy as jnp
import optax
from jax.test_util import check_grads

from configs.default import get_config
from crossmodal_jax import kernels
from crossmodal_jax import losses
from crossmodal_jax.layers import mlp
from crossmodal_jax.layers import pairwise
from crossmodal_jax.methods import drsl
from crossmodal_jax.methods.drsl import losses as drsl_losses

EPS = mlp.BN_EPSILON
MOMENTUM = mlp.BN_MOMENTUM


def _np(tree):
  return jax.tree.map(lambda x: np.asarray(x, dtype=np.float64), tree)


def assert_close(got, want, rtol, what=""):
  """|got - want| <= rtol * max(1, max|want|) elementwise (scale-aware relative check)."""
  got = np.asarray(got, np.float64)
  want = np.asarray(want, np.float64)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
  err = float(np.max(np.abs(got - want))) if want.size else 0.0
  assert err <= rtol * scale, f"{what}: max abs err {err:.3g} > {rtol:.1g} * {scale:.3g}"


# ======================================================================================
# pairwise.pairwise_relu_dot
# ======================================================================================


def np_pairwise(a, b, w):
  a, b, w = (np.asarray(x, np.float64) for x in (a, b, w))
  grid = np.maximum(a[:, None, :] + b[None, :, :], 0.0)
  return np.einsum("pqk,k->pq", grid, w)


def np_pairwise_grads(a, b, w, s):
  """Gradients of L = sum((R - S)^2) w.r.t. a, b, w, in float64, by the chain rule."""
  a, b, w, s = (np.asarray(x, np.float64) for x in (a, b, w, s))
  pre = a[:, None, :] + b[None, :, :]
  mask = (pre > 0).astype(np.float64)
  g = 2.0 * (np_pairwise(a, b, w) - s)  # dL/dR
  da = np.einsum("pq,pqk,k->pk", g, mask, w)
  db = np.einsum("pq,pqk,k->qk", g, mask, w)
  dw = np.einsum("pq,pqk->k", g, np.maximum(pre, 0.0))
  return da, db, dw


@functools.partial(jax.jit, static_argnums=0)
def fwd_and_loss_grads(fn, a, b, w, s):
  """R = fn(a, b, w) and the gradients of sum((R - S)^2) w.r.t. (a, b, w)."""
  loss = lambda a, b, w: jnp.sum(jnp.square(fn(a, b, w) - s))
  return fn(a, b, w), jax.grad(loss, argnums=(0, 1, 2))(a, b, w)


def pairwise_inputs(seed, p, q, k, integer=False):
  rng = np.random.default_rng(seed)
  if integer:  # many a_pk + b_qk exactly 0
    a = rng.integers(-2, 3, size=(p, k)).astype(np.float32)
    b = rng.integers(-2, 3, size=(q, k)).astype(np.float32)
  else:
    a = rng.standard_normal((p, k)).astype(np.float32)
    b = rng.standard_normal((q, k)).astype(np.float32)
  w = rng.standard_normal((k,)).astype(np.float32)
  s = (rng.random((p, q)) < 0.3).astype(np.float32)
  return a, b, w, s


# Every form of the kernel: the one the backend picks (the row loop on the CPU), scoring's
# form, the row loop, and the accelerator's row blocks, also with blocks small enough that several run
# and the last one is padded (2 rows of 5 x 16 floats: 7 rows -> 4 blocks of 2), and
# with a bound below one row's grid (a row per block).
PAIRWISE_FORMS = {
    "picked": pairwise.pairwise_relu_dot,
    # Scoring's form: the native CPU kernel where it is built (the gradient: "picked"'s).
    "scores": pairwise.pairwise_relu_scores,
    "rows": pairwise.pairwise_relu_dot_rows,
    "blocks": pairwise.pairwise_relu_dot_blocks,
    "small_blocks": pairwise.row_block_form(block_elements=2 * 5 * 16),
    "bound_below_a_row": pairwise.row_block_form(block_elements=1),
}


def test_block_rows_share_the_rows_evenly():
  assert pairwise.block_rows(200, 200, 1024) == 67  # at most 81 a block: 3 blocks
  assert pairwise.block_rows(7, 5, 16, block_elements=160) == 2
  assert pairwise.block_rows(3, 40000, 1024) == 1  # one row is above the bound
  assert pairwise.block_rows(0, 5, 16) == 1 and pairwise.block_rows(5, 0, 16) == 5


@pytest.mark.parametrize("form", sorted(PAIRWISE_FORMS))
@pytest.mark.parametrize("p,q,k", [(7, 5, 16), (4, 11, 9), (1, 6, 3), (3, 0, 4), (0, 3, 4)])
def test_pairwise_relu_dot_matches_reference(p, q, k, form):
  a, b, w, s = pairwise_inputs(p * 100 + q * 10 + k, p, q, k)
  want = np_pairwise(a, b, w)
  want_grads = np_pairwise_grads(a, b, w, s)
  r_fused, g_fused = fwd_and_loss_grads(PAIRWISE_FORMS[form], a, b, w, s)
  r_naive, g_naive = fwd_and_loss_grads(pairwise.pairwise_relu_dot_reference, a, b, w, s)
  assert_close(r_fused, want, 1e-5, "fused forward")
  assert_close(r_naive, want, 1e-5, "reference forward")
  for name, gf, gn, gw, x in zip("abw", g_fused, g_naive, want_grads, (a, b, w)):
    assert gf.shape == x.shape and gf.dtype == x.dtype
    assert_close(gf, gw, 1e-5, f"fused d/d{name}")
    assert_close(gn, gw, 1e-5, f"reference d/d{name}")


def test_pairwise_relu_dot_eager_forward():
  a, b, w, _ = pairwise_inputs(1, 7, 5, 16)
  assert_close(pairwise.pairwise_relu_dot(a, b, w), np_pairwise(a, b, w), 1e-5)


@pytest.mark.parametrize("form", sorted(PAIRWISE_FORMS))
def test_pairwise_relu_dot_grad_at_kink_matches_reference(form):
  # Integer inputs put many a_pk + b_qk exactly at 0: the recomputed mask must use the
  # same convention as jax.nn.relu (derivative 0 at 0).
  a, b, w, s = pairwise_inputs(3, 7, 5, 16, integer=True)
  assert np.sum(a[:, None, :] + b[None, :, :] == 0) > 50
  r_fused, g_fused = fwd_and_loss_grads(PAIRWISE_FORMS[form], a, b, w, s)
  r_naive, g_naive = fwd_and_loss_grads(pairwise.pairwise_relu_dot_reference, a, b, w, s)
  np.testing.assert_allclose(r_fused, r_naive, rtol=1e-6, atol=1e-5)
  for gf, gn, gw in zip(g_fused, g_naive, np_pairwise_grads(a, b, w, s)):
    np.testing.assert_allclose(gf, gn, rtol=1e-5, atol=1e-4)
    assert_close(gf, gw, 1e-5)


def test_pairwise_relu_dot_picks_its_form_by_platform():
  # The CPU program loops over rows (a mat-vec each); every other backend's reduces
  # blocks of rows (no dot at all), for the forward pass and the gradient alike.
  a, b, w, s = pairwise_inputs(2, 7, 5, 16)
  loss = lambda a, b, w: jnp.sum(jnp.square(pairwise.pairwise_relu_dot(a, b, w) - s))
  for fn in (pairwise.pairwise_relu_dot, jax.grad(loss, argnums=(0, 1, 2))):
    for platform, loops_rows in (("cpu", True), ("cuda", False), ("rocm", False), ("tpu", False)):
      text = jax.export.export(jax.jit(fn), platforms=[platform])(a, b, w).mlir_module()
      assert ("dot_general" in text) == loops_rows, (fn, platform)
      # The rule the benchmark reads names the form the program was lowered to.
      assert pairwise.picked_form(platform) == ("rows" if loops_rows else "blocks")
  assert pairwise.picked_form("gpu") == "blocks"  # jax.default_backend()'s name for cuda, rocm


def test_pairwise_relu_dot_finite_differences():
  rng = np.random.default_rng(0)
  # a + b = integer + 0.5 elementwise: every pre-activation is >= 0.5 away from the kink,
  # so central differences with eps = 1e-2 see a smooth (bilinear) function.
  a = (rng.integers(-2, 3, size=(3, 4)) + 0.25).astype(np.float32)
  b = (rng.integers(-2, 3, size=(2, 4)) + 0.25).astype(np.float32)
  w = rng.standard_normal(4).astype(np.float32)
  s = rng.standard_normal((3, 2)).astype(np.float32)
  loss = jax.jit(lambda a, b, w: jnp.sum(jnp.square(pairwise.pairwise_relu_dot(a, b, w) - s)))
  check_grads(loss, (a, b, w), order=1, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)


# ======================================================================================
# DRSL: a numpy float64 reference forward pass, built pair by pair.
# ======================================================================================


def np_bn(h, scale, bias, mean, var):
  return (h - mean) / np.sqrt(var + EPS) * scale + bias


def np_tower(params, stats, x, train):
  """mlp.MLP: Dense (no bias with BN) -> BN -> ReLU per layer. Returns (z, new stats)."""
  h = np.asarray(x, np.float64)
  new_stats = {}
  i = 0
  while f"dense_{i}" in params:
    dense = params[f"dense_{i}"]
    h = h @ dense["kernel"] + dense.get("bias", 0.0)
    if f"bn_{i}" in params:
      bn = params[f"bn_{i}"]
      if train:
        mean, var = h.mean(0), h.var(0)
        old = stats[f"bn_{i}"]
        new_stats[f"bn_{i}"] = {
            "mean": MOMENTUM * old["mean"] + (1 - MOMENTUM) * mean,
            "var": MOMENTUM * old["var"] + (1 - MOMENTUM) * var,
        }
      else:
        mean, var = stats[f"bn_{i}"]["mean"], stats[f"bn_{i}"]["var"]
      h = np_bn(h, bn["scale"], bn["bias"], mean, var)
    h = np.maximum(h, 0.0)
    i += 1
  return h, new_stats


def np_drsl(variables, image, text, fusion, train):
  """The DRSL relation matrix R [P, Q] built naively from the per-pair fused vectors.

  Returns (R, new batch_stats as a flat dict of the relation's statistics) where the
  second is only filled in train mode.
  """
  params = _np(variables["params"])
  stats = _np(variables.get("batch_stats", {}))
  zi, _ = np_tower(params["image_tower"], stats.get("image_tower"), image, train)
  zt, _ = np_tower(params["text_tower"], stats.get("text_tower"), text, train)
  p, q = len(zi), len(zt)
  zi_pairs = np.repeat(zi, q, axis=0)  # row p * Q + j holds image p ...
  zt_pairs = np.tile(zt, (p, 1))  # ... and text j
  new = {}
  if fusion == "concat":
    fused = np.concatenate([zi_pairs, zt_pairs], axis=1)  # [P*Q, d_i + d_t]
    w = np.concatenate([params["proj_image"]["kernel"], params["proj_text"]["kernel"]], 0)
    h = fused @ w + params["proj_text"].get("bias", 0.0)
    if "grid_scale" in params:
      if train:
        mean, var = h.mean(0), h.var(0)  # over ALL P*Q pairs, biased variance
        new["grid_mean"] = MOMENTUM * stats["grid_mean"] + (1 - MOMENTUM) * mean
        new["grid_var"] = MOMENTUM * stats["grid_var"] + (1 - MOMENTUM) * var
      else:
        mean, var = stats["grid_mean"], stats["grid_var"]
      h = np_bn(h, params["grid_scale"], params["grid_bias"], mean, var)
  else:
    fused = {
        "multiply": zi_pairs * zt_pairs,
        "add": zi_pairs + zt_pairs,
        "subtract": zi_pairs - zt_pairs,
    }[fusion]
    h = fused @ params["proj_pair"]["kernel"] + params["proj_pair"].get("bias", 0.0)
    if "pair_bn" in params:
      h, new["pair_bn"] = _np_pair_bn(h, params["pair_bn"], stats["pair_bn"], train)
  h = np.maximum(h, 0.0)
  i = 0
  while f"tail_dense_{i}" in params:
    dense = params[f"tail_dense_{i}"]
    h = h @ dense["kernel"] + dense.get("bias", 0.0)
    if f"tail_bn_{i}" in params:
      h, new[f"tail_bn_{i}"] = _np_pair_bn(h, params[f"tail_bn_{i}"], stats[f"tail_bn_{i}"], train)
    h = np.maximum(h, 0.0)
    i += 1
  r = h @ params["out_kernel"][:, 0] + params["out_bias"][0]
  return r.reshape(p, q), new


def _np_pair_bn(h, bn_params, bn_stats, train):
  if train:
    mean, var = h.mean(0), h.var(0)
    new = {
        "mean": MOMENTUM * bn_stats["mean"] + (1 - MOMENTUM) * mean,
        "var": MOMENTUM * bn_stats["var"] + (1 - MOMENTUM) * var,
    }
  else:
    mean, var, new = bn_stats["mean"], bn_stats["var"], None
  return np_bn(h, bn_params["scale"], bn_params["bias"], mean, var), new


# ======================================================================================
# DRSL fixtures
# ======================================================================================

IMAGE_DIM, TEXT_DIM = 20, 12


def small_model_config(method="drsl", **overrides):
  """The config's model section with every width divided by 32 (depths unchanged)."""
  model = get_config(f"{method},synthetic").model
  shrink = lambda widths: tuple(max(4, w // 32) for w in widths)
  model.image_layers = shrink(model.image_layers)
  model.text_layers = shrink(model.text_layers)
  model.relation_layers = shrink(model.relation_layers)
  for key, value in overrides.items():
    setattr(model, key, value)
  return model


def make_method(model_config):
  config = get_config("drsl,synthetic")
  config.model = model_config
  return drsl.DRSLMethod(config, dims={"image": (IMAGE_DIM,), "text": (TEXT_DIM,)})


def random_inputs(seed, p, q):
  rng = np.random.default_rng(seed)
  # Non-zero means so batch statistics are far from the init values (0, 1).
  image = (rng.standard_normal((p, IMAGE_DIM)) * 1.5 + 0.7).astype(np.float32)
  text = (rng.standard_normal((q, TEXT_DIM)) - 0.4).astype(np.float32)
  return image, text


def random_variables(method, seed=0):
  """Variables of the method's shapes with every entry random and non-trivial.

  The shapes come from `jax.eval_shape(method.init, ...)` (no initialiser is compiled);
  kernels are scaled Gaussians, BN / grid scales and running variances lie in [0.6, 1.6],
  biases and running means are Gaussians, so a reference that ignores or misplaces any
  parameter or statistic disagrees.
  """
  image, text = random_inputs(seed, 3, 3)
  shapes = jax.eval_shape(method.init, jax.random.key(0), {"image": image, "text": text})
  rng = np.random.default_rng(seed + 17)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    shape = leaf.shape
    if "kernel" in name:
      x = rng.standard_normal(shape) * (1.5 / np.sqrt(shape[0]))
    elif "scale" in name or "var" in name:
      x = rng.uniform(0.6, 1.6, shape)
    else:  # biases, running means
      x = 0.3 * rng.standard_normal(shape)
    return jnp.asarray(x, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def eval_outputs(method, variables, image, text):
  """(method.score of the encodings, module __call__(train=False)).

  Run op by op (no jit): the tests share shapes, so the per-op compile cache stays warm
  and that is much cheaper than compiling each configuration as a whole.
  """
  enc_i = method.encode_image(variables, image)
  enc_t = method.encode_text(variables, text)
  return (
      method.score(variables, enc_i, enc_t),
      method.module.apply(variables, image, text, train=False),
  )


def train_outputs(method, variables, image, text):
  """module __call__(train=True) -> (R, updated batch_stats), op by op."""
  r, state = method.module.apply(variables, image, text, train=True, mutable=["batch_stats"])
  return r, state["batch_stats"]


def concat_config(method_name, relation_bn):
  """Small config for concat fusion, with unequal tower outputs (d_i = 9, d_t = 7)."""
  text_layers = tuple(small_model_config(method_name).text_layers[:-1]) + (7,)
  return small_model_config(method_name, relation_batch_norm=relation_bn, text_layers=text_layers)


CONCAT_CASES = [
    pytest.param("drsl", True, id="paper-bn"),
    pytest.param("drsl", False, id="paper-nobn"),
    pytest.param("drsl_code", True, id="code-bn"),
    pytest.param("drsl_code", False, id="code-nobn"),
]


# ======================================================================================
# DRSL tests
# ======================================================================================


P, Q = 7, 5  # P != Q throughout; one pair of shapes keeps the op-by-op compile cache warm


def _check_stats(got_stats, want_stats, what):
  for name, value in want_stats.items():
    got_leaves, want_leaves = jax.tree.leaves(got_stats[name]), jax.tree.leaves(value)
    assert len(got_leaves) == len(want_leaves) > 0, name
    for a, b in zip(got_leaves, want_leaves):
      assert_close(a, b, 1e-4, f"{what}: running stats {name}")


@pytest.mark.parametrize("method_name", ["drsl", "drsl_code"])
def test_drsl_full_size_shapes(method_name):
  """The configs' real widths: variable shapes and every output shape (abstractly)."""
  model = get_config(f"{method_name},synthetic").model
  method = make_method(model)
  image, text = random_inputs(0, 5, 3)
  variables = jax.eval_shape(method.init, jax.random.key(0), {"image": image, "text": text})
  params = variables["params"]
  dims_i = (IMAGE_DIM,) + tuple(model.image_layers)
  dims_t = (TEXT_DIM,) + tuple(model.text_layers)
  for tower, dims in (("image_tower", dims_i), ("text_tower", dims_t)):
    got = [params[tower][f"dense_{i}"]["kernel"].shape for i in range(len(dims) - 1)]
    assert got == list(zip(dims[:-1], dims[1:])), tower
    assert f"dense_{len(dims) - 1}" not in params[tower]
  k = model.relation_layers[0]
  assert params["proj_image"]["kernel"].shape == (model.image_layers[-1], k)
  assert params["proj_text"]["kernel"].shape == (model.text_layers[-1], k)
  assert params["out_kernel"].shape == (model.relation_layers[-1], 1)
  tails = sorted(n for n in params if n.startswith("tail_dense"))
  assert [params[n]["kernel"].shape for n in tails] == list(
      zip(model.relation_layers[:-1], model.relation_layers[1:])
  )
  assert variables["batch_stats"]["grid_mean"].shape == (k,)

  enc_i = jax.eval_shape(method.encode_image, variables, image)
  enc_t = jax.eval_shape(method.encode_text, variables, text)
  assert enc_i.shape == (5, k) and enc_t.shape == (3, k)
  assert jax.eval_shape(method.score, variables, enc_i, enc_t).shape == (5, 3)
  r = jax.eval_shape(lambda v: method.module.apply(v, image, text, train=False), variables)
  assert r.shape == (5, 3) and r.dtype == jnp.float32
  r_train, _ = jax.eval_shape(
      lambda v: method.module.apply(v, image, text, train=True, mutable=["batch_stats"]), variables
  )
  assert r_train.shape == (5, 3)


@pytest.mark.parametrize("method_name,relation_bn", CONCAT_CASES)
def test_drsl_concat_eval_scores_equal_naive_pairs(method_name, relation_bn):
  method = make_method(concat_config(method_name, relation_bn))
  variables = random_variables(method, seed=1)
  assert ("grid_mean" in variables["batch_stats"]) == relation_bn
  image, text = random_inputs(5, P, Q)
  want, _ = np_drsl(variables, image, text, "concat", train=False)

  separable, called = eval_outputs(method, variables, image, text)
  assert separable.shape == (P, Q)
  assert_close(separable, want, 1e-5, "separable all-pairs score")
  assert_close(called, want, 1e-5, "module __call__(train=False)")


def test_drsl_scores_with_the_scoring_form_and_trains_with_the_training_form():
  """Eval-mode scores take `pairwise_relu_scores` (the native kernel on the CPU, where it
  is built), a training forward `pairwise_relu_dot` (the XLA row loop): training does
  not change. At the paper's width (K = 1024) the scores equal the float64 reference."""
  model = get_config("drsl,synthetic").model
  method = make_method(model)
  variables = random_variables(method, seed=4)
  image, text = random_inputs(6, 13, 11)
  enc_i = method.encode_image(variables, image)
  enc_t = method.encode_text(variables, text)
  scored = jax.jit(method.score).lower(variables, enc_i, enc_t).as_text()
  trained = (
      jax.jit(lambda v: method.module.apply(v, image, text, train=True, mutable=["batch_stats"]))
      .lower(variables)
      .as_text()
  )
  native = pairwise.scoring_form("cpu") == "native"
  assert (kernels.PAIRWISE_TARGET in scored) == native
  assert kernels.PAIRWISE_TARGET not in trained and "dot_general" in trained
  want, _ = np_drsl(variables, image, text, "concat", train=False)
  assert_close(method.score(variables, enc_i, enc_t), want, 1e-5, "paper-size scores")
  assert_close(jax.jit(method.score)(variables, enc_i, enc_t), want, 1e-5, "jitted scores")


@pytest.mark.parametrize("method_name,relation_bn", CONCAT_CASES)
def test_drsl_concat_train_mode_equals_grid_batch_norm(method_name, relation_bn):
  """train=True: BN over the full [P*Q, K] grid of first-layer pre-activations."""
  method = make_method(concat_config(method_name, relation_bn))
  variables = random_variables(method, seed=3)
  image, text = random_inputs(8, P, Q)
  want, want_stats = np_drsl(variables, image, text, "concat", train=True)
  got, stats = train_outputs(method, variables, image, text)
  assert_close(got, want, 1e-4, "train-mode R")
  _check_stats(stats, want_stats, "concat")
  # Tower statistics are updated in train mode too.
  _, want_tower = np_tower(
      _np(variables["params"]["image_tower"]),
      _np(variables["batch_stats"]["image_tower"]),
      image,
      train=True,
  )
  _check_stats(stats["image_tower"], want_tower, "image tower")


@pytest.mark.parametrize("method_name,relation_bn", [CONCAT_CASES[0], CONCAT_CASES[3]])
def test_drsl_loss_gradients_and_adam_steps(method_name, relation_bn):
  """Loss = relation_loss of the naive train-mode R; every gradient leaf is finite and
  non-zero; 20 Adam steps on a tiny synthetic batch reduce the loss; the running
  statistics they accumulate are what eval-mode scoring then uses."""
  from crossmodal_jax.data.sources import synthetic

  data = synthetic.make_dataset(
      synthetic.SyntheticConfig(
          num_train=12,
          num_validation=2,
          num_test=2,
          num_groups=3,
          num_details=2,
          image_dim=IMAGE_DIM,
          word_dim=TEXT_DIM,
          vocab_size=40,
          max_words=8,
          min_words=3,
          seed=5,
      )
  )
  batch = {k: np.asarray(data.train[k]) for k in ("image", "text", "label")}
  image, text, labels = batch["image"], batch["text"], batch["label"]
  n = len(labels)
  assert 0 < np.sum(labels[:, None] == labels[None, :]) - n < n * (n - 1)
  model = concat_config(method_name, relation_bn)
  method = make_method(model)
  # (Random variables of init's shapes: running the real initialisers compiles threefry
  # and truncated-normal kernels, seconds on a small CPU for nothing these tests check.)
  variables = random_variables(method, seed=4)
  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  opt = optax.adam(1e-3)

  @jax.jit
  def step(params, state, opt_state):
    def f(p):
      return method.loss({"params": p, **state}, batch, jax.random.key(1), None)

    (value, (new_state, metrics)), grads = jax.value_and_grad(f, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, value, metrics, grads

  opt_state = opt.init(params)
  first_variables = {"params": params, **state}
  params, state, opt_state, value, metrics, grads = step(params, state, opt_state)

  # The loss is relation_loss(R, S) of the (naive) train-mode forward pass.
  r, want_stats = np_drsl(first_variables, image, text, "concat", train=True)
  s = (labels[:, None] == labels[None, :]).astype(np.float64)
  want = np.sum((r - s) ** 2) / {"sum": 1.0, "batch": n, "mean": n * n}[model.loss_normalizer]
  np.testing.assert_allclose(value, want, rtol=1e-4)
  np.testing.assert_allclose(metrics["mse"], np.mean((r - s) ** 2), rtol=1e-4)
  assert jax.tree.structure(state) == jax.tree.structure(
      {k: v for k, v in first_variables.items() if k != "params"}
  )
  _check_stats(state["batch_stats"], want_stats, "loss's new state")

  leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert len(leaves) == len(jax.tree.leaves(params))
  for path, g in leaves:
    name = jax.tree_util.keystr(path)
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), name
    if relation_bn and name == "['proj_text']['bias']":
      # (Only if the module has one.) The text projection's bias is a per-column
      # constant over the grid, removed exactly by the grid batch norm's mean: its
      # gradient is (numerically) 0.
      assert np.max(np.abs(g)) < 1e-4 * max(
          float(np.max(np.abs(grads["proj_text"]["kernel"]))), 1e-12
      ), name
      continue
    assert np.any(g != 0), f"zero gradient for {name}"

  history = [float(value)]
  for _ in range(20):
    params, state, opt_state, value, _, _ = step(params, state, opt_state)
    history.append(float(value))
  assert all(np.isfinite(history))
  assert history[-1] < 0.7 * history[0], history

  variables = {"params": params, **state}
  want, _ = np_drsl(variables, image[:P], text[:Q], "concat", train=False)
  got, _ = eval_outputs(method, variables, image[:P], text[:Q])
  assert_close(got, want, 1e-5, "eval after training")


FUSION_CASES = [
    pytest.param(f, bn, id=f"{f}-{'bn' if bn else 'nobn'}")
    for f in ("multiply", "add", "subtract")
    for bn in (True, False)
]


@pytest.mark.parametrize("fusion,relation_bn", FUSION_CASES)
def test_drsl_elementwise_fusions_equal_naive_pairs(fusion, relation_bn):
  method = make_method(
      small_model_config("drsl_code", fusion=fusion, relation_batch_norm=relation_bn)
  )
  variables = random_variables(method, seed=6)
  image, text = random_inputs(10, P, Q)
  want, _ = np_drsl(variables, image, text, fusion, train=False)
  got, called = eval_outputs(method, variables, image, text)
  assert got.shape == (P, Q)
  assert_close(got, want, 1e-5, f"{fusion} eval score")
  assert_close(called, want, 1e-5, f"{fusion} __call__")
  # Training: BN over the P*Q pairs of the batch, running stats updated.
  want_train, want_stats = np_drsl(variables, image, text, fusion, train=True)
  got_train, new_stats = train_outputs(method, variables, image, text)
  assert_close(got_train, want_train, 1e-4, f"{fusion} train-mode R")
  _check_stats(new_stats, want_stats, fusion)


def test_drsl_paper_depth_multiply_fusion_equals_naive_pairs():
  method = make_method(small_model_config("drsl", fusion="multiply"))
  variables = random_variables(method, seed=7)
  image, text = random_inputs(11, P, Q)
  want, _ = np_drsl(variables, image, text, "multiply", train=False)
  assert_close(eval_outputs(method, variables, image, text)[0], want, 1e-5)


def test_drsl_unknown_fusion_raises():
  method = make_method(small_model_config("drsl", fusion="bilinear"))
  image, text = random_inputs(0, 2, 2)
  with pytest.raises(ValueError) as info:
    jax.eval_shape(method.init, jax.random.key(0), {"image": image, "text": text})
  message = str(info.value)
  assert "bilinear" in message
  for choice in drsl.FUSIONS:
    assert choice in message


def test_drsl_elementwise_fusion_needs_equal_widths():
  method = make_method(small_model_config("drsl", fusion="add", text_layers=(32, 5)))
  image, text = random_inputs(0, 2, 2)
  with pytest.raises(ValueError, match="equal tower outputs"):
    jax.eval_shape(method.init, jax.random.key(0), {"image": image, "text": text})


# ======================================================================================
# losses
# ======================================================================================


def test_label_agreement_int_labels():
  a = np.array([0, 3, 1, 3, 2], np.int32)
  b = np.array([3, 3, 0, 5], np.int32)
  s = np.asarray(losses.label_agreement(a, b))
  want = np.array([[float(x == y) for y in b] for x in a])
  assert s.dtype == np.float32 and s.shape == (5, 4)
  np.testing.assert_array_equal(s, want)


def test_label_agreement_multi_hot_labels():
  rng = np.random.default_rng(0)
  a = (rng.random((6, 5)) < 0.3).astype(np.float32)
  b = (rng.random((4, 5)) < 0.3).astype(np.float32)
  a[0] = 0  # an item with no label matches nothing
  b[1] = 1  # an item with every label matches every labelled item
  s = np.asarray(losses.label_agreement(a, b))
  want = np.array([[float(any(x[c] and y[c] for c in range(5))) for y in b] for x in a])
  assert s.dtype == np.float32 and s.shape == (6, 4)
  np.testing.assert_array_equal(s, want)
  np.testing.assert_array_equal(s[0], 0)
  np.testing.assert_array_equal(s[1:, 1], (a[1:].sum(1) > 0).astype(np.float32))
  # Boolean / int multi-hot give the same answer.
  np.testing.assert_array_equal(losses.label_agreement(a.astype(bool), b.astype(np.int32)), s)


def test_relation_loss_normalizers():
  rng = np.random.default_rng(1)
  r = rng.standard_normal((3, 8)).astype(np.float32)  # a row shard of an 8-item batch
  s = (rng.random((3, 8)) < 0.5).astype(np.float32)
  total = float(np.sum((r.astype(np.float64) - s) ** 2))
  np.testing.assert_allclose(drsl_losses.relation_loss(r, s, "sum", 8), total, rtol=1e-6)
  # The authors' code: sum((R - S)^2) / sqrt(S.size(0)) after S is reshaped to B^2 x 1.
  np.testing.assert_allclose(drsl_losses.relation_loss(r, s, "batch", 8), total / 8, rtol=1e-6)
  np.testing.assert_allclose(drsl_losses.relation_loss(r, s, "mean", 8), total / 64, rtol=1e-6)
  assert float(drsl_losses.relation_loss(s, s, "sum", 8)) == 0.0
  with pytest.raises(ValueError) as info:
    drsl_losses.relation_loss(r, s, "frobenius", 8)
  for choice in drsl_losses.NORMALIZERS:
    assert choice in str(info.value)


def test_configs_that_reproduce_the_paper_and_code_use_its_loss_scale_and_init():
  for name, dataset in (
      ("drsl", "synthetic"),
      ("drsl", "features"),
      ("drsl_code", "synthetic"),
      ("drsl_code", "wikipedia"),
      ("drsl_code", "features"),
  ):
    model = get_config(f"{name},{dataset}").model
    assert (model.loss_normalizer, model.init) == ("batch", "pytorch"), (name, dataset)


@pytest.mark.parametrize("fusion", ["concat", "multiply"])
def test_pytorch_init_is_uniform_with_the_whole_layers_fan_in(fusion):
  """Every Dense kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear;
  the separable halves of the concat layer use the concat width; BN starts at (1, 0)."""
  image_layers, text_layers, relation = (512, 300), (512, 300), (1024, 256)
  config = get_config("drsl_code,synthetic")
  config.model.update(
      image_layers=image_layers,
      text_layers=text_layers,
      relation_layers=relation,
      fusion=fusion,
      tower_batch_norm=False,
      relation_batch_norm=False,
      init="pytorch",
  )
  method = drsl.DRSLMethod(config, dims={"image": (128,), "text": (200,)})
  params = method.init(
      jax.random.key(0),
      {"image": np.zeros((2, 128), np.float32), "text": np.zeros((2, 200), np.float32)},
  )["params"]
  first = image_layers[-1] + text_layers[-1] if fusion == "concat" else image_layers[-1]
  fan_ins = {
      ("image_tower", "dense_0"): 128,
      ("image_tower", "dense_1"): 512,
      ("text_tower", "dense_0"): 200,
      ("text_tower", "dense_1"): 512,
      ("tail_dense_0",): relation[0],
  }
  if fusion == "concat":
    fan_ins.update({("proj_image",): first, ("proj_text",): first})
  else:
    fan_ins[("proj_pair",)] = first
  checked = 0
  for path, fan_in in fan_ins.items():
    layer = params
    for key in path:
      layer = layer[key]
    for name, x in layer.items():
      x = np.asarray(x).ravel()
      bound = fan_in**-0.5
      assert np.abs(x).max() <= bound, (path, name)
      assert np.abs(x).max() > 0.95 * bound, (path, name)  # uniform over the whole range
      if x.size > 1000:  # U(-b, b): mean 0, variance b^2 / 3
        np.testing.assert_allclose(x.var(), bound**2 / 3, rtol=0.1, err_msg=str(path))
        assert abs(x.mean()) < 0.05 * bound
      checked += 1
  out = np.asarray(params["out_kernel"]).ravel()
  assert np.abs(out).max() <= relation[-1] ** -0.5 and abs(float(params["out_bias"][0])) <= (
      relation[-1] ** -0.5
  )
  assert checked >= 10
  # Flax's default is LeCun normal: 3x the variance.
  config.model.init = "flax"
  flax_params = drsl.DRSLMethod(config, dims={"image": (128,), "text": (200,)}).init(
      jax.random.key(0),
      {"image": np.zeros((2, 128), np.float32), "text": np.zeros((2, 200), np.float32)},
  )["params"]
  k = np.asarray(flax_params["image_tower"]["dense_0"]["kernel"])
  np.testing.assert_allclose(k.var(), 1 / 128, rtol=0.1)
  np.testing.assert_array_equal(flax_params["image_tower"]["dense_0"]["bias"], 0.0)


def test_drsl_with_text_cnn_trains_from_word_sequences():
  import optax  # pylint: disable=g-import-not-at-top
  from configs.default import get_config  # pylint: disable=g-import-not-at-top
  from crossmodal_jax import methods  # pylint: disable=g-import-not-at-top
  from crossmodal_jax.data.sources import synthetic  # pylint: disable=g-import-not-at-top

  ds = synthetic.make_dataset(
      synthetic.SyntheticConfig(
          num_train=64,
          num_validation=4,
          num_test=4,
          image_dim=16,
          vocab_size=60,
          word_dim=8,
          max_words=12,
          min_words=2,
      )
  )
  cfg = get_config("drsl,synthetic")
  cfg.model.image_layers, cfg.model.text_layers = (16, 8), (16, 8)
  cfg.model.relation_layers = (16,)
  cfg.model.text_encoder = "cnn"
  cfg.model.cnn_filters, cfg.model.cnn_kernel_sizes = 4, (2, 3)
  method = methods.get_method(cfg, ds.dims(), ds.meta)
  assert set(method.batch_keys) == {"image", "word_ids", "word_mask", "label"}
  batch = {k: jnp.asarray(ds.train[k]) for k in method.batch_keys}
  variables = method.init(jax.random.key(0), batch)
  # The embedding starts from the dataset's word-vector table.
  np.testing.assert_allclose(
      variables["params"]["text_cnn"]["embed"]["embedding"], ds.meta["word_vectors"]
  )
  opt = optax.adam(1e-2)
  params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
  opt_state = opt.init(params)

  @jax.jit
  def step(params, state, opt_state, key):
    (loss, (new_state, _)), grads = jax.value_and_grad(
        lambda p: method.loss({"params": p, **state}, batch, key, None), has_aux=True
    )(params)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), new_state, opt_state, loss, grads

  losses = []
  for i in range(15):
    params, state, opt_state, loss, grads = step(params, state, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert float(jnp.abs(grads["text_cnn"]["conv_0"]["kernel"]).max()) > 0
  assert losses[-1] < 0.8 * losses[0], losses
  v = {"params": params, **state}
  enc_t = method.encode_text(v, method.text_input(batch))
  enc_i = method.encode_image(v, batch["image"])
  assert method.score(v, enc_i, enc_t).shape == (64, 64)


def test_text_cnn_without_word_sequences_is_a_clear_error():
  from configs.default import get_config  # pylint: disable=g-import-not-at-top
  from crossmodal_jax import methods  # pylint: disable=g-import-not-at-top

  cfg = get_config("drsl,wikipedia")
  cfg.model.text_encoder = "cnn"
  with pytest.raises(ValueError, match="word_sequences"):
    methods.get_method(cfg, {"image": (128,), "text": (300,), "label": ()}, {})
