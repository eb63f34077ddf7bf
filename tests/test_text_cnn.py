"""Tests of the Kim-style text CNN (`crossmodal_jax.layers.text_cnn`).

The masked max-pool is checked against a slow numpy reference that loops over windows
and applies the masking rule from its definition.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from crossmodal_jax.data.text import vocab as T
from crossmodal_jax.layers import text_cnn

VOCAB = 30
EMBED = 8
KERNELS = (3, 4, 5)


def _pad(seqs, length):
  """Right-pads id lists with PAD_ID to `length`: (ids int32 [B, L], mask bool [B, L])."""
  ids = np.full((len(seqs), length), T.PAD_ID, np.int32)
  mask = np.zeros((len(seqs), length), bool)
  for i, s in enumerate(seqs):
    ids[i, : len(s)] = s
    mask[i, : len(s)] = True
  return ids, mask


def _texts(seed=0):
  """Texts of various lengths, including shorter than every kernel and empty."""
  rng = np.random.default_rng(seed)
  lengths = [20, 13, 7, 5, 4, 3, 2, 1, 0]
  return [list(rng.integers(1, VOCAB, size=n)) for n in lengths]


def _model(**kw):
  args = dict(vocab_size=VOCAB, embed_dim=EMBED, kernel_sizes=KERNELS, num_filters=6, dropout=0.5)
  args.update(kw)
  return text_cnn.TextCNN(**args)


MODEL = _model()
# Jitted once per module (eager flax runs compile every small op separately: slow).
_apply_eval = jax.jit(lambda p, ids, mask: MODEL.apply(p, ids, mask, train=False))
_apply_train = jax.jit(
    lambda p, ids, mask, key: MODEL.apply(p, ids, mask, train=True, rngs={"dropout": key})
)


def _key(seed):
  # XLA's RngBitGenerator compiles much faster on CPU than threefry (keeps tests fast).
  return jax.random.key(seed, impl="unsafe_rbg")


def _init(model, ids, mask, seed=0):
  init = jax.jit(lambda key, i, m: model.init(key, i, m, train=False))
  return init(_key(seed), jnp.asarray(ids), jnp.asarray(mask))


@pytest.fixture(scope="module")
def params():
  """Random parameters with MODEL's structure (non-zero biases too).

  Filled with numpy from `jax.eval_shape(MODEL.init)` -- no compilation; parameters
  depend on neither batch size nor sequence length.
  """
  ids, mask = _pad([[2, 3, 4]], 8)
  shapes = jax.eval_shape(lambda: MODEL.init(_key(0), ids, mask, train=False))
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def test_output_shape_and_dtype(params):
  ids, mask = _pad(_texts(), 20)
  out = _apply_eval(params, ids, mask)
  assert out.shape == (len(ids), 6 * 3)
  assert out.dtype == jnp.float32
  assert MODEL.features == 18
  shapes = jax.tree.map(np.shape, params["params"])
  assert shapes["embed"] == {"embedding": (VOCAB, EMBED)}
  for i, k in enumerate(KERNELS):
    assert shapes[f"conv_{i}"] == {"kernel": (k, EMBED, 6), "bias": (6,)}


def test_padding_invariance(params):
  texts = _texts()
  ids20, mask20 = _pad(texts, 20)
  ids35, mask35 = _pad(texts, 35)
  # A non-zero padding row: invariance must come from the mask, not from a zero row.
  params = jax.tree.map(np.array, params)
  params["params"]["embed"]["embedding"][T.PAD_ID] = 3.0
  out20 = np.asarray(_apply_eval(params, ids20, mask20))
  out35 = np.asarray(_apply_eval(params, ids35, mask35))
  np.testing.assert_allclose(out20, out35, rtol=0, atol=1e-6)
  # Also when the padding slots hold arbitrary ids (the mask decides what is padding).
  ids35_junk = np.where(mask35, ids35, 7).astype(np.int32)
  out_junk = np.asarray(_apply_eval(params, ids35_junk, mask35))
  np.testing.assert_allclose(out20, out_junk, rtol=0, atol=1e-6)


def test_short_and_empty_texts(params):
  ids, mask = _pad([[5, 6], [9], []], 20)  # shorter than every kernel; empty
  out = np.asarray(_apply_eval(params, ids, mask))
  assert np.all(np.isfinite(out))
  assert np.any(out[0] != 0) and np.any(out[1] != 0)
  np.testing.assert_array_equal(out[2], np.zeros_like(out[2]))
  # A sequence shorter than the kernels (L < k) gives the same features.
  ids2, mask2 = _pad([[5, 6], [9], []], 2)
  out2 = np.asarray(_apply_eval(params, ids2, mask2))
  np.testing.assert_allclose(out2, out, rtol=0, atol=1e-6)


def _reference(table, params, ids, mask, kernel_sizes):
  """Slow numpy forward pass, looping over windows (float64)."""
  table = np.asarray(table, np.float64)
  out = []
  for b in range(ids.shape[0]):
    m = mask[b]
    length = len(m)
    vec = np.where(m[:, None], table[ids[b]], 0.0)  # masked words are zero vectors
    feats = []
    for i, k in enumerate(kernel_sizes):
      w = np.asarray(params[f"conv_{i}"]["kernel"], np.float64)  # [k, E, F]
      bias = np.asarray(params[f"conv_{i}"]["bias"], np.float64)
      responses, valid, starts_real = [], [], []
      for t in range(length):
        window = np.zeros((k, vec.shape[1]))
        for j in range(k):
          if t + j < length:
            window[j] = vec[t + j]
        responses.append(np.maximum(np.einsum("ke,kef->f", window, w) + bias, 0.0))
        valid.append(all(t + j < length and m[t + j] for j in range(k)))
        starts_real.append(bool(m[t]))
      use = valid if any(valid) else starts_real
      chosen = [r for r, u in zip(responses, use) if u]
      feats.append(np.max(chosen, axis=0) if chosen else np.zeros(w.shape[-1]))
    out.append(np.concatenate(feats))
  return np.stack(out)


def test_max_pool_matches_numpy_reference(params):
  rng = np.random.default_rng(3)
  table = rng.normal(size=(VOCAB, EMBED)).astype(np.float32)  # fixed embedding
  params = jax.tree.map(np.array, params)
  params["params"]["embed"]["embedding"] = table
  ids, mask = _pad(_texts(seed=4), 20)
  # Holes in the mask (the rule does not assume right padding): valid windows must not
  # span a hole; text 2 (7 words) keeps runs 0-2 and 4-6, so it has valid windows for
  # k=3 only and falls back to windows starting on real words for k=4 and k=5.
  mask[0, 6] = False
  mask[1, 2] = False
  mask[2, 3] = False
  got = np.asarray(_apply_eval(params, ids, mask))
  want = _reference(table, params["params"], ids, mask, KERNELS)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_pretrained_embedding_init():
  table = np.arange(VOCAB * EMBED, dtype=np.float32).reshape(VOCAB, EMBED) / 100.0
  table[T.PAD_ID] = 0.0
  init = text_cnn.pretrained_embedding_init(table)
  got = np.asarray(init(_key(0), (VOCAB, EMBED), jnp.float32))
  np.testing.assert_array_equal(got, table)
  model = _model(embedding_init=init)
  ids, mask = _pad([[2, 3, 4]], 8)
  variables = _init(model, ids, mask)
  got = np.asarray(variables["params"]["embed"]["embedding"])
  np.testing.assert_array_equal(got, table)
  assert got.dtype == np.float32

  with pytest.raises(ValueError, match=r"\(30, 8\).*\(31, 8\)"):
    init(_key(0), (VOCAB + 1, EMBED), jnp.float32)
  bad = _model(vocab_size=VOCAB + 1, embedding_init=init)
  with pytest.raises(ValueError, match=r"\(30, 8\).*\(31, 8\)"):
    jax.eval_shape(lambda: bad.init(_key(0), ids, mask, train=False))


def _grads(model, params, ids, mask):
  def loss(p):
    return jnp.sum(model.apply(p, ids, mask, train=False) ** 2)

  return jax.jit(jax.grad(loss))(params)


def test_frozen_embeddings_get_no_gradient(params):
  ids, mask = _pad(_texts(), 20)
  g = _grads(_model(freeze_embeddings=True), params, ids, mask)["params"]
  assert np.all(np.asarray(g["embed"]["embedding"]) == 0)
  for i in range(len(KERNELS)):
    assert np.any(np.asarray(g[f"conv_{i}"]["kernel"]) != 0)


def test_trainable_embeddings_gradient_only_on_used_rows(params):
  ids, mask = _pad([[2, 3, 4, 5, 6, 7], [8, 9, 10], [11], []], 20)
  g = np.asarray(_grads(MODEL, params, ids, mask)["params"]["embed"]["embedding"])
  used = np.unique(ids[mask])
  row_norm = np.abs(g).sum(axis=1)
  assert np.all(row_norm[used] > 0), row_norm[used]
  unused = np.setdiff1d(np.arange(VOCAB), used)  # includes PAD_ID (padding is masked)
  assert T.PAD_ID in unused
  assert np.all(g[unused] == 0)


def test_dropout_only_in_training(params):
  ids, mask = _pad(_texts(), 20)
  eval_a = np.asarray(_apply_eval(params, ids, mask))  # no dropout rng needed
  ta = np.asarray(_apply_train(params, ids, mask, _key(1)))
  tb = np.asarray(_apply_train(params, ids, mask, _key(2)))
  assert not np.array_equal(ta, tb)
  # Inverted dropout: kept units are scaled by 1 / (1 - rate), dropped ones are zero.
  kept = ta != 0
  np.testing.assert_allclose(ta[kept], 2.0 * eval_a[kept], rtol=1e-5, atol=1e-6)
  assert 0.2 < np.mean(~kept[eval_a != 0]) < 0.8
  with pytest.raises(Exception):  # training without a dropout rng
    jax.eval_shape(lambda: MODEL.apply(params, ids, mask, train=True))


def test_invalid_attributes():
  ids, mask = _pad([[2, 3, 4]], 8)
  key = _key(0)
  for bad in (_model(kernel_sizes=()), _model(dropout=1.0), _model(kernel_sizes=(0,))):
    with pytest.raises(ValueError):
      jax.eval_shape(lambda m=bad: m.init(key, ids, mask, train=False))
  with pytest.raises(ValueError, match="same shape|\\[B, L\\]"):
    jax.eval_shape(lambda: MODEL.init(key, ids, mask[:, :4], train=False))
