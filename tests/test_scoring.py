"""Tests of blockwise scoring (crossmodal_jax.scoring) against direct full matrices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.default import get_config
from crossmodal_jax import kernels
from crossmodal_jax import ranking
from crossmodal_jax import scoring
from crossmodal_jax.methods import drsl

NQ, NG = 37, 53  # neither divides the block sizes below
QB, GB = 8, 16


# Score functions are module-level (hashable, and jit caches survive across tests).
def dot_score(variables, image_enc, text_enc):
  return (image_enc @ text_enc.T) * variables["scale"] + variables["shift"]


def tree_score(variables, image_enc, text_enc):
  """A pytree encoding: {"u": [n, 4], "v": [n]}; score = u_i . u_t - |v_i - v_t|."""
  return (
      image_enc["u"] @ text_enc["u"].T - jnp.abs(image_enc["v"][:, None] - text_enc["v"][None, :])
  ) * variables


def asym_score(variables, image_enc, text_enc):
  """Not symmetric in its arguments, and image / text encodings of different widths."""
  del variables
  return image_enc[:, :3] @ text_enc.T + image_enc[:, 3:4]


VARS = {"scale": jnp.float32(1.5), "shift": jnp.float32(-0.25)}


def np_dot(images, texts):
  return (np.asarray(images, np.float64) @ np.asarray(texts, np.float64).T) * 1.5 - 0.25


@pytest.fixture(scope="module")
def encodings():
  rng = np.random.default_rng(0)
  images = rng.standard_normal((NQ, 6)).astype(np.float32)
  texts = rng.standard_normal((NG, 6)).astype(np.float32)
  return images, texts


# --------------------------------------------------------------------------------------
# score_matrix
# --------------------------------------------------------------------------------------


def test_score_matrix_equals_full_matrix(encodings):
  images, texts = encodings
  got = scoring.score_matrix(dot_score, VARS, images, texts, query_block=QB, gallery_block=GB)
  assert got.shape == (NQ, NG) and got.dtype == np.float32
  np.testing.assert_allclose(got, np_dot(images, texts), rtol=1e-5, atol=1e-5)


def test_score_matrix_text_queries_is_transposed(encodings):
  images, texts = encodings
  # Queries = texts (53), gallery = images (37): [texts, images] = full.T.
  got = scoring.score_matrix(
      dot_score, VARS, texts, images, query_block=QB, gallery_block=GB, queries_are_images=False
  )
  assert got.shape == (NG, NQ)
  np.testing.assert_allclose(got, np_dot(images, texts).T, rtol=1e-5, atol=1e-5)


def test_score_matrix_asymmetric_score_both_orientations():
  rng = np.random.default_rng(1)
  images = rng.standard_normal((NQ, 4)).astype(np.float32)
  texts = rng.standard_normal((NG, 3)).astype(np.float32)
  full = images[:, :3].astype(np.float64) @ texts.T + images[:, 3:4]
  got = scoring.score_matrix(asym_score, None, images, texts, query_block=QB, gallery_block=GB)
  np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)
  got_t = scoring.score_matrix(
      asym_score, None, texts, images, query_block=GB, gallery_block=QB, queries_are_images=False
  )
  np.testing.assert_allclose(got_t, full.T, rtol=1e-5, atol=1e-5)


def test_score_matrix_pytree_encodings():
  rng = np.random.default_rng(2)
  images = {
      "u": rng.standard_normal((NQ, 4)).astype(np.float32),
      "v": rng.standard_normal(NQ).astype(np.float32),
  }
  texts = {
      "u": rng.standard_normal((NG, 4)).astype(np.float32),
      "v": rng.standard_normal(NG).astype(np.float32),
  }
  full = 2.0 * (
      images["u"].astype(np.float64) @ texts["u"].T
      - np.abs(images["v"][:, None] - texts["v"][None, :].astype(np.float64))
  )
  got = scoring.score_matrix(
      tree_score, jnp.float32(2.0), images, texts, query_block=QB, gallery_block=GB
  )
  np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)
  got_t = scoring.score_matrix(
      tree_score,
      jnp.float32(2.0),
      texts,
      images,
      query_block=QB,
      gallery_block=GB,
      queries_are_images=False,
  )
  np.testing.assert_allclose(got_t, full.T, rtol=1e-5, atol=1e-5)


def test_score_matrix_pytree_disagreeing_sizes_raise():
  bad = {"u": np.zeros((5, 2), np.float32), "v": np.zeros(4, np.float32)}
  with pytest.raises(ValueError, match="number of items"):
    scoring.score_matrix(tree_score, 1.0, bad, bad)


@pytest.mark.parametrize("qb,gb", [(512, 512), (NQ, NG), (1, NG + 1), (36, 52)])
def test_score_matrix_block_sizes(encodings, qb, gb):
  images, texts = encodings
  got = scoring.score_matrix(dot_score, VARS, images, texts, query_block=qb, gallery_block=gb)
  np.testing.assert_allclose(got, np_dot(images, texts), rtol=1e-5, atol=1e-5)


def test_score_matrix_padding_does_not_leak():
  # A score that depends on the whole gallery block (e.g. a softmax over it) would see the
  # zero padding; a per-pair score must not. Here each column's score is its own index,
  # read from the encoding, so any shifted / duplicated / padded column shows up.
  images = np.arange(NQ, dtype=np.float32)[:, None]
  texts = np.arange(NG, dtype=np.float32)[:, None] + 1.0
  got = scoring.score_matrix(
      dot_score,
      {"scale": jnp.float32(1.0), "shift": jnp.float32(0.0)},
      images,
      texts,
      query_block=QB,
      gallery_block=GB,
  )
  np.testing.assert_array_equal(got, images @ texts.T)


# --------------------------------------------------------------------------------------
# top_k
# --------------------------------------------------------------------------------------


@pytest.fixture(params=["native", "xla"])
def merge(request, monkeypatch):
  """Each top_k test runs with the native CPU merge (where it is built) and with XLA's."""
  if request.param == "xla":
    monkeypatch.setattr(scoring, "native_top_k", lambda *trees: False)
  elif not kernels.available():
    pytest.skip(f"native kernels unavailable: {kernels.why_not()}")
  return request.param


def ref_top_k(full, k):
  order = np.argsort(-full, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(full, order, axis=1), order


@pytest.mark.parametrize("k", [1, 5, 16, 17, NG])
def test_top_k_equals_stable_argsort(encodings, k, merge):
  images, texts = encodings
  full = scoring.score_matrix(dot_score, VARS, images, texts, query_block=QB, gallery_block=GB)
  scores, indices = scoring.top_k(
      dot_score, VARS, images, texts, k, query_block=QB, gallery_block=GB
  )
  want_scores, want_indices = ref_top_k(full, k)
  assert scores.shape == indices.shape == (NQ, k)
  assert scores.dtype == np.float32 and indices.dtype == np.int32
  np.testing.assert_array_equal(indices, want_indices)
  np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-6)


def tied_encodings():
  """Integer encodings: exact scores with many ties; all real scores are NEGATIVE, so
  zero-padded gallery rows (score 0) would win every query if they were not masked."""
  rng = np.random.default_rng(3)
  images = rng.integers(1, 3, size=(NQ, 2)).astype(np.float32)  # {1, 2}
  texts = -rng.integers(1, 3, size=(NG, 2)).astype(np.float32)  # {-2, -1}
  return images, texts


@pytest.mark.parametrize("k", [1, 3, 20, NG])
def test_top_k_ties_resolve_to_lower_gallery_index(k, merge):
  images, texts = tied_encodings()
  full = images.astype(np.float64) @ texts.T.astype(np.float64)
  assert len(np.unique(full)) <= 6  # heavy ties: 37 x 53 scores, at most 6 values
  assert full.max() < 0
  ones = {"scale": jnp.float32(1.0), "shift": jnp.float32(0.0)}
  scores, indices = scoring.top_k(
      dot_score, ones, images, texts, k, query_block=QB, gallery_block=GB
  )
  want_scores, want_indices = ref_top_k(full, k)
  np.testing.assert_array_equal(indices, want_indices)
  np.testing.assert_array_equal(scores, want_scores)
  assert indices.max() < NG and np.all(np.isfinite(scores))
  # Within each row, equal scores appear in increasing gallery index.
  for row_s, row_i in zip(scores, indices):
    same = row_s[1:] == row_s[:-1]
    assert np.all(row_i[1:][same] > row_i[:-1][same])
  if k == NG:  # every gallery item exactly once
    np.testing.assert_array_equal(
        np.sort(indices, axis=1), np.broadcast_to(np.arange(NG), (NQ, NG))
    )


def test_top_k_text_queries(merge):
  images, texts = tied_encodings()
  full_t = (images.astype(np.float64) @ texts.T.astype(np.float64)).T  # [texts, images]
  ones = {"scale": jnp.float32(1.0), "shift": jnp.float32(0.0)}
  # Queries = texts; the gallery (37 images) pads its last block of 16 with 11 rows.
  scores, indices = scoring.top_k(
      dot_score, ones, texts, images, 10, query_block=QB, gallery_block=GB, queries_are_images=False
  )
  want_scores, want_indices = ref_top_k(full_t, 10)
  assert indices.shape == (NG, 10)
  np.testing.assert_array_equal(indices, want_indices)
  np.testing.assert_array_equal(scores, want_scores)


@pytest.mark.parametrize("gb", [1, 7, NG, 4096])
def test_top_k_gallery_block_sizes(gb, merge):
  images, texts = tied_encodings()
  full = images.astype(np.float64) @ texts.T.astype(np.float64)
  ones = {"scale": jnp.float32(1.0), "shift": jnp.float32(0.0)}
  _, indices = scoring.top_k(dot_score, ones, images, texts, 6, query_block=QB, gallery_block=gb)
  np.testing.assert_array_equal(indices, ref_top_k(full, 6)[1])


@pytest.mark.parametrize("k", [0, -1, NG + 1])
def test_top_k_out_of_range_raises(encodings, k):
  images, texts = encodings
  with pytest.raises(ValueError, match="k must be"):
    scoring.top_k(dot_score, VARS, images, texts, k)


def signed_score(variables, image_enc, text_enc):
  """Integer scores with ties, -inf where the dot product is <= -2, and the zeros signed:
  -0.0 where the first features' product is negative."""
  del variables
  s = image_enc @ text_enc.T
  negative = (image_enc[:, :1] @ text_enc[:, :1].T) < 0
  s = jnp.where(s == 0, jnp.where(negative, -0.0, 0.0), s)
  return jnp.where(s <= -2, -jnp.inf, s)


def signed_encodings():
  rng = np.random.default_rng(8)
  return (
      rng.integers(-1, 2, size=(NQ, 3)).astype(np.float32),
      rng.integers(-1, 2, size=(NG, 3)).astype(np.float32),
  )


@pytest.mark.parametrize("budget", [2_000, 20_000, None])
@pytest.mark.parametrize("k", [1, 9, NG])
def test_top_k_within_a_budget_keeps_ties_zeros_and_infinities_in_index_order(budget, k, merge):
  images, texts = signed_encodings()
  full = scoring.score_matrix(signed_score, None, images, texts)
  assert np.isneginf(full).sum() > NQ and np.signbit(full[full == 0]).any()
  kw = dict(query_block=QB, gallery_block=GB, pair_bytes=12, memory_budget=budget)
  scores, indices = scoring.top_k(signed_score, None, images, texts, k, **kw)
  want_scores, want_indices = ref_top_k(full, k)
  np.testing.assert_array_equal(indices, want_indices)
  np.testing.assert_array_equal(scores, want_scores)
  p = scoring.top_k_plan(NQ, NG, k, QB, GB, 12, budget)
  assert p.merge_block >= k and p.merge_block % p.gallery_chunk == 0
  if budget is not None:  # the budget holds, and a small one makes many tiles
    assert p.query_chunk * p.gallery_chunk * 12 <= budget // 2
    merge = p.query_rows * ((k + p.merge_block) * scoring.MERGE_BYTES + 4 * p.merge_block)
    assert merge <= budget // 2 or p.query_rows == 1
    if budget == 2_000:
      assert p.query_rows < NQ and p.gallery_chunk < NG


def test_top_k_nan_scores_raise(merge):
  images, texts = signed_encodings()
  nan = {"scale": jnp.float32(np.nan), "shift": jnp.float32(0.0)}
  with pytest.raises(ValueError, match="NaN"):
    scoring.top_k(dot_score, nan, images, texts, 3, query_block=QB, gallery_block=GB)


def two_channels(variables, image_enc, text_enc):
  del variables
  return {"a": image_enc[:, :2] @ text_enc[:, :2].T, "b": image_enc[:, 2:] @ text_enc[:, 2:].T}


def min_max_fusion(channels):
  """A row-wise ranking: each channel min-max normalised over its query's row."""

  def mnorm(s):
    s = np.asarray(s, np.float64)
    lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
    return np.where(hi > lo, (s - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)

  return 0.6 * mnorm(channels["a"]) * channels["b"] + 0.4 * mnorm(channels["b"]) * channels["a"]


@pytest.mark.parametrize("queries_are_images", [True, False])
@pytest.mark.parametrize("k", [1, 6, None])
def test_top_k_of_rows_equals_ranking_the_full_rows(queries_are_images, k):
  images, texts = signed_encodings()
  queries, gallery = (images, texts) if queries_are_images else (texts, images)
  k = k or len(gallery)
  kw = dict(query_block=QB, gallery_block=GB, queries_are_images=queries_are_images)
  full = scoring.score_matrix(two_channels, None, queries, gallery, **kw)
  ranking = np.asarray(min_max_fusion(full), np.float32)
  assert all(len(np.unique(row)) < len(row) for row in ranking)  # ties in every row
  # Room for 3 whole rows per block (128 + 4 B of ranking, 4 x 2 B of channels per item).
  budget = 2 * 3 * len(gallery) * scoring.row_entry_bytes(2)
  scores, indices = scoring.top_k_of_rows(
      two_channels,
      min_max_fusion,
      None,
      queries,
      gallery,
      k,
      pair_bytes=8,
      memory_budget=budget,
      **kw,
  )
  want_scores, want_indices = ref_top_k(ranking, k)
  np.testing.assert_array_equal(indices, want_indices)
  np.testing.assert_array_equal(scores, want_scores)


def test_top_k_of_rows_refuses_what_it_cannot_stream():
  images, texts = signed_encodings()
  with pytest.raises(scoring.StreamingError, match="not row-wise"):
    scoring.top_k_of_rows(
        two_channels, lambda c: c["a"] - c["a"].mean(axis=0), None, images, texts, 3
    )
  with pytest.raises(scoring.StreamingError, match=f"one query's row of {NG} gallery items"):
    scoring.top_k_of_rows(
        two_channels, min_max_fusion, None, images, texts, 3, memory_budget=NG * 100
    )


# --------------------------------------------------------------------------------------
# encode
# --------------------------------------------------------------------------------------


@jax.jit
def _encoder(x):
  return {"twice": 2.0 * x["a"], "row": jnp.sum(x["a"], axis=1) + x["b"]}


@pytest.mark.parametrize("batch_size", [1, 8, 10, 37, 64])
def test_encode_padded_batches_equal_all_at_once(batch_size):
  n = 37
  rng = np.random.default_rng(4)
  inputs = {
      "a": rng.standard_normal((n, 3)).astype(np.float32),
      "b": np.arange(n, dtype=np.float32),
  }  # row ids: reveal drops / duplicates
  got = ranking.encode(_encoder, inputs, batch_size)
  want = _encoder(inputs)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  np.testing.assert_allclose(got["twice"], want["twice"], rtol=1e-6)
  np.testing.assert_allclose(got["row"], want["row"], rtol=1e-6, atol=1e-6)
  assert got["row"].shape == (n,)
  # Identity on row ids: every row exactly once and in order.
  ids = ranking.encode(lambda x: x, np.arange(n, dtype=np.int32), batch_size)
  np.testing.assert_array_equal(ids, np.arange(n))


# --------------------------------------------------------------------------------------
# With a real DRSL method
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method_name", ["drsl", "drsl_code"])
def test_score_matrix_of_drsl_equals_module_call(method_name, merge):
  config = get_config(f"{method_name},synthetic")
  model = config.model
  shrink = lambda widths: tuple(max(4, w // 64) for w in widths)
  model.image_layers = shrink(model.image_layers)
  model.text_layers = shrink(model.text_layers)
  model.relation_layers = shrink(model.relation_layers)
  method = drsl.DRSLMethod(config, dims={"image": (10,), "text": (6,)})
  rng = np.random.default_rng(5)
  images = (rng.standard_normal((NQ, 10)) + 0.5).astype(np.float32)
  texts = rng.standard_normal((NG, 6)).astype(np.float32)
  # Variables of init's shapes, every entry random (non-trivial BN statistics too).
  shapes = jax.eval_shape(method.init, jax.random.key(0), {"image": images[:4], "text": texts[:4]})
  leaves, treedef = jax.tree.flatten(shapes)
  variables = jax.tree.unflatten(
      treedef,
      [
          jnp.asarray(
              rng.uniform(0.5, 1.5, x.shape)
              if x.ndim == 1
              else rng.standard_normal(x.shape) / np.sqrt(x.shape[0]),
              jnp.float32,
          )
          for x in leaves
      ],
  )
  assert "grid_mean" in variables["batch_stats"]

  want = np.asarray(method.module.apply(variables, images, texts, train=False))
  enc_i = method.encode_image(variables, images)
  enc_t = method.encode_text(variables, texts)
  got = scoring.score_matrix(
      method.score, variables, enc_i, enc_t, query_block=QB, gallery_block=GB
  )
  scale = max(1.0, float(np.abs(want).max()))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
  if method_name == "drsl_code":
    return  # (the orientation / top-k checks below are the same for both)
  got_t = scoring.score_matrix(
      method.score,
      variables,
      enc_t,
      enc_i,
      query_block=GB,
      gallery_block=QB,
      queries_are_images=False,
  )
  np.testing.assert_allclose(got_t, want.T, rtol=1e-5, atol=1e-5 * scale)
  scores, indices = scoring.top_k(
      method.score, variables, enc_i, enc_t, 5, query_block=QB, gallery_block=GB
  )
  # (Indices of near-ties could differ by rounding between the two programs: compare
  # the scores, and the indices where the ranking is unambiguous.)
  want_scores, want_indices = ref_top_k(got, 5)
  np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5 * scale)
  gaps = np.min(np.abs(np.diff(np.sort(got, axis=1)[:, ::-1][:, :6], axis=1)), axis=1)
  clear = gaps > 1e-3 * scale
  np.testing.assert_array_equal(indices[clear], want_indices[clear])
  # Every returned index carries its own score, and no index repeats within a row.
  np.testing.assert_allclose(
      np.take_along_axis(got, indices, axis=1), scores, rtol=1e-5, atol=1e-5 * scale
  )
  assert all(len(set(row)) == 5 for row in indices.tolist())
