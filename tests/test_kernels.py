"""Tests of the native CPU kernels (crossmodal_jax.kernels): the all-pairs ReLU-dot against
a float64 reference, its bit-equal scores for equal inputs wherever they lie, its
gradient and its place among the platforms' forms; the streamed top-k's native merge
against a stable sort; building, caching and the XLA fallback without a compiler."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from crossmodal_jax import kernels
from crossmodal_jax import scoring
from crossmodal_jax.kernels import build
from crossmodal_jax.layers import pairwise

needs_kernels = pytest.mark.skipif(
    not kernels.available(), reason=f"native kernels unavailable: {kernels.why_not()}"
)


def np_pairwise(a, b, w):
  a, b, w = (np.asarray(x, np.float64) for x in (a, b, w))
  return np.maximum(a[:, None, :] + b[None, :, :], 0.0) @ w


def inputs(seed, p, q, k):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, k)).astype(np.float32)
  b = rng.standard_normal((q, k)).astype(np.float32)
  w = rng.standard_normal((k,)).astype(np.float32)
  return a, b, w


def assert_close(got, want, rtol):
  """|got - want| <= rtol * max(1, max|want|) elementwise."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape
  if want.size:
    scale = max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) <= rtol * scale


def test_a_compiler_builds_the_kernels():
  if build.compiler() is None or not build.enabled():
    pytest.skip("no C++ compiler, or CROSSMODAL_JAX_NATIVE=0")
  assert kernels.available(), build.reason()
  layout = kernels.layout()
  assert layout["lanes"] in (4, 8, 16) and layout["threads"] >= 1


@needs_kernels
@pytest.mark.parametrize(
    "p,q,k",
    [
        (7, 5, 16),
        (4, 11, 9),  # k below one vector: the scalar tail alone
        (1, 6, 3),
        (9, 13, 37),  # remainders of the register tile in rows, columns and k
        (3, 0, 4),
        (0, 3, 4),
        (5, 4, 0),
        (70, 300, 1030),  # several row blocks and column tasks, on the thread pool
    ],
)
def test_native_pairwise_matches_float64_reference(p, q, k):
  a, b, w = inputs(p * 1000 + q * 10 + k, p, q, k)
  got = jax.jit(kernels.pairwise_relu_dot)(a, b, w)
  assert got.shape == (p, q) and got.dtype == jnp.float32
  assert_close(got, np_pairwise(a, b, w), 1e-5)
  assert_close(pairwise.pairwise_relu_scores(a, b, w), np_pairwise(a, b, w), 1e-5)


@needs_kernels
def test_native_pairwise_gives_equal_inputs_bit_equal_scores_wherever_they_lie():
  # The same gallery row at many positions (first, in a tile's remainder, in another
  # column task and row block) and the same query row in several row blocks.
  a, b, w = inputs(4, 150, 600, 1024)
  a[[17, 64, 131]] = a[3]
  b[[1, 5, 255, 256, 257, 511, 599]] = b[0]
  r = np.asarray(jax.jit(kernels.pairwise_relu_dot)(a, b, w))
  for col in (1, 5, 255, 256, 257, 511, 599):
    np.testing.assert_array_equal(r[:, col], r[:, 0])
  for row in (17, 64, 131):
    np.testing.assert_array_equal(r[row], r[3])
  # And a single pair scored alone equals it within the big call.
  one = np.asarray(kernels.pairwise_relu_dot(a[64:65], b[511:512], w))
  assert one[0, 0] == r[64, 511]


@needs_kernels
def test_native_pairwise_propagates_nan_and_infinities_as_the_reference():
  a, b, w = inputs(5, 4, 3, 20)
  a[1, 7] = np.nan
  a[2, 3] = np.inf
  b[0, 3] = -np.inf  # inf + -inf = nan
  got = np.asarray(kernels.pairwise_relu_dot(a, b, w))
  with np.errstate(invalid="ignore"):
    want = np_pairwise(a, b, w)
  np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
  np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
  finite = np.isfinite(want)
  assert_close(got[finite], want[finite], 1e-5)


@needs_kernels
def test_scoring_form_gradient_is_the_training_forms():
  a, b, w = inputs(6, 9, 7, 33)
  s = np.random.default_rng(6).standard_normal((9, 7)).astype(np.float32)

  def grads(f):
    return jax.jit(jax.grad(lambda a, b, w: jnp.sum(f(a, b, w) * s), argnums=(0, 1, 2)))(a, b, w)

  for got, want in zip(grads(pairwise.pairwise_relu_scores), grads(pairwise.pairwise_relu_dot)):
    np.testing.assert_array_equal(got, want)


@needs_kernels
def test_scoring_form_is_native_on_the_cpu_only():
  a, b, w = inputs(7, 7, 5, 16)
  checks = [jax.export.DisabledSafetyCheck.custom_call(kernels.PAIRWISE_TARGET)]
  for platform in ("cpu", "cuda", "rocm", "tpu"):
    text = jax.export.export(
        jax.jit(pairwise.pairwise_relu_scores), platforms=[platform], disabled_checks=checks
    )(a, b, w).mlir_module()
    assert (kernels.PAIRWISE_TARGET in text) == (platform == "cpu"), platform
    assert pairwise.scoring_form(platform) == ("native" if platform == "cpu" else "blocks")
  # float64 inputs keep the XLA row loop on the CPU.
  assert pairwise.scoring_form("cpu", jnp.float64) == "rows"


def test_scoring_form_without_the_kernels_is_the_training_forms(monkeypatch):
  monkeypatch.setattr(kernels, "available", lambda: False)
  a, b, w = inputs(8, 7, 5, 16)
  fresh = jax.jit(lambda a, b, w: pairwise.pairwise_relu_scores(a, b, w))
  text = fresh.lower(a, b, w).as_text()
  assert kernels.PAIRWISE_TARGET not in text and "dot_general" in text
  np.testing.assert_array_equal(fresh(a, b, w), jax.jit(pairwise.pairwise_relu_dot)(a, b, w))
  assert pairwise.scoring_form("cpu") == "rows"


# --------------------------------------------------------------------------------------
# The native merge of the streamed top-k (scoring.top_k on the CPU)
# --------------------------------------------------------------------------------------


def relu_dot_score(variables, image_enc, text_enc):
  return pairwise.pairwise_relu_scores(image_enc, text_enc, variables)


def ref_top_k(full, k):
  order = np.argsort(-full, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(full, order, axis=1), order


@needs_kernels
@pytest.mark.parametrize("k", [1, 7, 100, 301])
def test_native_top_k_equals_a_stable_sort_of_the_native_matrix(k):
  a, b, w = inputs(9, 61, 301, 48)
  b[200:260] = b[5]  # 61 equal columns: every tie in index order
  assert scoring.native_top_k()
  full = scoring.score_matrix(relu_dot_score, w, a, b, query_block=16, gallery_block=32)
  scores, indices = scoring.top_k(relu_dot_score, w, a, b, k, query_block=16, gallery_block=32)
  want_scores, want_indices = ref_top_k(full, k)
  np.testing.assert_array_equal(indices, want_indices)
  np.testing.assert_array_equal(scores, want_scores)
  assert_close(full, np_pairwise(a, b, w), 1e-5)


@needs_kernels
@pytest.mark.parametrize("k", [1, 4])
def test_native_merge_keeps_the_k_best_across_blocks(k):
  scores = jnp.asarray([[3.0, -0.0, np.nan, 5.0, 3.0, -np.inf, 9.0]], jnp.float32)
  state = kernels.top_k_start(1, k)
  state = kernels.top_k_merge(state, scores[:, :4], 0, 7, k)
  state = kernels.top_k_merge(state, scores[:, 4:], 4, 6, k)  # index 6 is padding
  s, i, nan = kernels.top_k_finish(state, k)
  np.testing.assert_array_equal(i, [[3, 0, 4, 1][:k]])
  np.testing.assert_array_equal(s, [[5.0, 3.0, 3.0, 0.0][:k]])
  assert not np.signbit(s).any() and bool(nan[0])


@needs_kernels
def test_native_merge_selects_when_its_buffer_fills():
  # Ascending scores: every candidate beats the worst kept, so the buffer fills and is
  # selected from many times; equal scores in pairs keep the lower index.
  k, n = 5, 1000
  scores = np.repeat(np.arange(n // 2, dtype=np.float32), 2)[None, :]
  state = kernels.top_k_start(1, k)
  for start in range(0, n, 300):
    state = kernels.top_k_merge(state, jnp.asarray(scores[:, start : start + 300]), start, n, k)
  s, i, _ = kernels.top_k_finish(state, k)
  np.testing.assert_array_equal(i, [[998, 999, 996, 997, 994]])
  np.testing.assert_array_equal(s, [[499, 499, 498, 498, 497]])


@needs_kernels
def test_native_finish_ranks_many_rows_as_a_stable_sort():
  # 500 rows (several of the finish's tasks), few distinct scores (ties everywhere),
  # blocks of 70 with the buffer filling at different times in different rows.
  k, n = 50, 1000
  scores = np.random.default_rng(3).integers(0, 40, (500, n)).astype(np.float32)
  state = kernels.top_k_start(500, k)
  for start in range(0, n, 70):
    block = jnp.asarray(scores[:, start : start + 70])
    state = kernels.top_k_merge(state, block, start, n, k)
  s, i, _ = kernels.top_k_finish(state, k)
  want = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(i, want)
  np.testing.assert_array_equal(s, np.take_along_axis(scores, want, axis=1))


@needs_kernels
@pytest.mark.parametrize("budget", [2**20, 2**26])
def test_top_k_memory_of_a_native_call_is_within_the_budget(budget):
  a, b, w = inputs(10, 500, 700, 64)
  got = scoring.top_k_memory(
      relu_dot_score, w, a, b, 10, query_block=128, gallery_block=512, pair_bytes=4,
      memory_budget=budget,
  )  # fmt: skip
  assert got["native"] and got["merge_block"] == got["gallery_chunk"]
  assert 0 < got["temp_bytes"] <= budget
  if budget == 2**26:  # evened out: 500 queries in 4 calls of 125, 700 items in 2 chunks
    assert (got["query_rows"], got["query_chunk"], got["gallery_chunk"]) == (125, 125, 350)


# --------------------------------------------------------------------------------------
# Building, the cache and the fallback
# --------------------------------------------------------------------------------------


_PROBE = textwrap.dedent("""
    import numpy as np
    from crossmodal_jax import kernels, scoring
    from crossmodal_jax.kernels import build
    from crossmodal_jax.layers import pairwise
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 8), np.float32), rng.standard_normal((6, 8), np.float32)
    w = rng.standard_normal(8, np.float32)
    r = np.asarray(pairwise.pairwise_relu_scores(a, b, w), np.float64)
    want = np.maximum(a[:, None].astype(np.float64) + b[None], 0) @ w
    assert np.abs(r - want).max() < 1e-4
    print(kernels.available(), scoring.native_top_k(), build.reason())
    """)


def _run(env_changes, tmp_path):
  env = {**os.environ, "CROSSMODAL_JAX_KERNEL_CACHE": str(tmp_path), **env_changes}
  proc = subprocess.run(
      [sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True,
      timeout=900,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout.strip()


def test_without_a_compiler_or_turned_off_the_xla_forms_score(tmp_path):
  no_compiler = {"CXX": "", "PATH": str(tmp_path / "empty")}
  assert (
      _run(no_compiler, tmp_path) == "False False no C++ compiler found ($CXX, c++, g++, clang++)"
  )
  off = _run({"CROSSMODAL_JAX_NATIVE": "0"}, tmp_path)
  assert off == "False False turned off by CROSSMODAL_JAX_NATIVE=0"


def test_the_build_is_cached(tmp_path):
  if build.compiler() is None:
    pytest.skip("no C++ compiler")
  first = _run({}, tmp_path)
  assert first.startswith("True True compiled by"), first
  assert _run({}, tmp_path).startswith("True True loaded from the cache"), first
  assert len(list(tmp_path.glob("cpu_kernels-*.so"))) == 1
