"""DRSL's sparse text feed (`model.sparse_text`): padded rows, the gather-sum layer, and
the whole method against the dense path on the same parameters."""

from __future__ import annotations

import numpy as np
import pytest

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from configs.default import get_config
from crossmodal_jax import methods
from crossmodal_jax import parallel
from crossmodal_jax import ranking
from crossmodal_jax.data import common
from crossmodal_jax.data.text import sparse_rows
from crossmodal_jax.layers import sparse_dense


def sparse_matrix(seed: int, n: int, dim: int, most: int) -> np.ndarray:
  """[n, dim] float32 with 0..`most` non-zeros per row (row 1 empty, row 0 full to
  `most`), positive TF-IDF-like values."""
  rng = np.random.default_rng(seed)
  x = np.zeros((n, dim), np.float32)
  counts = rng.integers(1, most + 1, n)
  counts[0], counts[1] = most, 0
  for row, count in zip(x, counts):
    row[rng.choice(dim, count, replace=False)] = rng.uniform(0.05, 1.0, count)
  return x


def test_padded_rows_round_trip_to_the_dense_matrix():
  x = sparse_matrix(0, 9, 30, 12)
  ids, values = sparse_rows.to_padded(x)
  assert ids.shape == values.shape == (9, 12)
  assert (ids.dtype, values.dtype) == (np.int32, np.float32)
  np.testing.assert_array_equal(sparse_rows.to_dense(ids, values, 30), x)
  nnz = np.count_nonzero(x, axis=1)
  for row, k in enumerate(nnz):
    np.testing.assert_array_equal(ids[row, :k], np.flatnonzero(x[row]))  # ascending
    np.testing.assert_array_equal(ids[row, k:], 0)  # padding: id 0, value 0
    np.testing.assert_array_equal(values[row, k:], 0.0)
  assert np.all(values[np.arange(12)[None, :] < nnz[:, None]] > 0)
  # A longer static length pads more; a shorter one than a row needs is an error.
  longer_ids, longer_values = sparse_rows.to_padded(x, length=15)
  np.testing.assert_array_equal(longer_ids[:, :12], ids)
  np.testing.assert_array_equal(longer_values[:, 12:], 0.0)
  np.testing.assert_array_equal(sparse_rows.to_dense(longer_ids, longer_values, 30), x)
  with pytest.raises(ValueError, match="12 non-zeros"):
    sparse_rows.to_padded(x, length=11)
  arrays = sparse_rows.with_padded_rows({"text": x, "label": np.arange(9)})
  assert set(arrays) == {"text", "label", "text_ids", "text_values"}
  np.testing.assert_array_equal(arrays["text_ids"], ids)
  # An all-zero matrix still has one (padding) column.
  assert sparse_rows.to_padded(np.zeros((3, 5)))[0].shape == (3, 1)


def test_sparse_dense_equals_dense_on_the_same_params():
  """On nn.Dense's variables SparseDense's output equals the dense layer's, with L = 11
  summed over 4-position chunks (a padded scan) or in one block."""
  x = sparse_matrix(1, 6, 40, 11)
  ids, values = sparse_rows.to_padded(x)
  rng = np.random.default_rng(3)
  variables = {"params": {"kernel": rng.standard_normal((40, 8)), "bias": rng.standard_normal(8)}}
  variables = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), variables)
  want = nn.Dense(8).apply(variables, x)
  np.testing.assert_allclose(
      want, x @ np.asarray(variables["params"]["kernel"]) + variables["params"]["bias"], rtol=1e-5
  )
  for chunk in (4, 64):
    got = jax.jit(sparse_dense.SparseDense(8, 40, chunk=chunk).apply)(variables, ids, values)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gather_sum_gradient_in_a_sharded_step():
  """As the training step runs it (shard_map over the data axis, the parameters made
  device-varying, rows sharded): the scan's forward and the kernel's gradient equal the
  dense ones."""
  x = sparse_matrix(2, 6, 40, 11)
  ids, values = sparse_rows.to_padded(x)
  rng = np.random.default_rng(4)
  kernel = jnp.asarray(rng.standard_normal((40, 8)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((6, 8)), jnp.float32)
  mesh = parallel.create_mesh()

  def step(kernel, ids, values, g):
    local = jax.lax.pcast(kernel, parallel.AXIS, to="varying")
    loss = lambda k: jnp.sum(sparse_dense.gather_sum(k, ids, values, chunk=4) * g)
    y, grad = jax.value_and_grad(loss)(local)
    return jax.lax.psum(y, parallel.AXIS), jax.lax.psum(grad, parallel.AXIS)

  sharded = jax.jit(
      jax.shard_map(
          step,
          mesh=mesh,
          in_specs=(P(), P(parallel.AXIS), P(parallel.AXIS), P(parallel.AXIS)),
          out_specs=(P(), P()),
      )
  )
  rows = parallel.shard_batch({"ids": ids, "values": values, "g": g}, mesh)
  with jax.set_mesh(mesh):
    y, grad = sharded(kernel, rows["ids"], rows["values"], rows["g"])
  np.testing.assert_allclose(y, np.sum((x @ np.asarray(kernel)) * g), rtol=1e-5)
  np.testing.assert_allclose(grad, x.T @ np.asarray(g), rtol=1e-5, atol=1e-5)


# --- The whole method -------------------------------------------------------------------

IMAGE_DIM, TEXT_DIM, BATCH = 8, 150, 12


def drsl_config(sparse: bool, **model):
  """DRSL's config with small widths and `model` fields."""
  config = get_config("drsl,synthetic")
  config.model.update(dict(image_layers=(8, 8), text_layers=(8, 8), relation_layers=(8,)))
  config.model.update(dict(model, sparse_text=sparse))
  return config


def toy_split(seed: int, n: int) -> common.Split:
  rng = np.random.default_rng(seed)
  return common.Split(
      {
          "image": (rng.standard_normal((n, IMAGE_DIM)) + 0.5).astype(np.float32),
          # Up to 70 non-zeros: L > the layer's 64-position chunk, so the scan is used.
          "text": sparse_matrix(seed + 1, n, TEXT_DIM, 70),
          "label": rng.integers(0, 3, n).astype(np.int32),
      }
  )


def random_like(variables, seed: int):
  """Entries of `variables`' shapes, random and non-trivial: kernels scaled Gaussians,
  scales and running variances in [0.6, 1.6], biases and running means Gaussians, so a
  path that misplaces a parameter or statistic disagrees."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      x = rng.standard_normal(leaf.shape) * (1.5 / np.sqrt(leaf.shape[0]))
    elif "scale" in name or "var" in name:
      x = rng.uniform(0.6, 1.6, leaf.shape)
    else:
      x = 0.3 * rng.standard_normal(leaf.shape)
    return jnp.asarray(x, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, variables)


def flat(tree) -> dict[str, np.ndarray]:
  return {
      jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
  }


def test_drsl_sparse_text_equals_the_dense_path_through_the_face():
  """DRSL with model.sparse_text against the dense path, through the method's face:
  - init from the seed (on `init_batch`) gives identical variables;
  - on random variables and one training batch in training mode (batch statistics,
    dropout 0.3): the loss, its metrics, the new running statistics and the gradient of
    every parameter equal the dense path's to 1e-5;
  - a few gradient steps of the sparse path lower the loss, and then another split
    scored through the face (its padded rows derived in `text_input`) gets the dense
    method's scores on those variables."""
  split = toy_split(5, BATCH)
  dims = {k: v.shape[1:] for k, v in split.arrays.items()}
  dense = methods.get_method(drsl_config(False, dropout=0.3), dims)
  sparse = methods.get_method(drsl_config(True, dropout=0.3), dims)
  assert sparse.batch_keys == ("image", "text_ids", "text_values", "label")
  batches = dense.init_batch(split), sparse.init_batch(split)
  init = jax.jit(lambda key: (dense.init(key, batches[0]), sparse.init(key, batches[1])))(
      jax.random.key(0)
  )
  assert flat(init[1]).keys() == flat(init[0]).keys()
  jax.tree.map(np.testing.assert_array_equal, init[1], init[0])

  (batch,) = sparse.batches(split, BATCH, seed=0, epoch=0)
  (dense_batch,) = dense.batches(split, BATCH, seed=0, epoch=0)
  np.testing.assert_array_equal(batch["label"], dense_batch["label"])  # the same rows
  assert batch["text_ids"].shape == (BATCH, 70)  # L > the layer's chunk: the scan runs
  variables = random_like(init[0], seed=1)

  def loss_and_grads(method):
    def f(params, state, batch):
      return method.loss({"params": params, **state}, batch, jax.random.key(2), None)

    return jax.jit(jax.value_and_grad(f, has_aux=True))

  params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
  (want, (want_state, want_metrics)), want_grads = loss_and_grads(dense)(params, state, dense_batch)
  sparse_step = loss_and_grads(sparse)
  (got, (got_state, got_metrics)), got_grads = sparse_step(params, state, batch)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_metrics["mse"], want_metrics["mse"], rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got_state, want_state
  )
  want_grads, got_grads = flat(want_grads), flat(got_grads)
  assert got_grads.keys() == want_grads.keys()
  assert len(want_grads) == len(jax.tree.leaves(params))
  for name, g in want_grads.items():
    scale = max(float(np.max(np.abs(g))), 1e-3)
    assert np.max(np.abs(got_grads[name] - g)) <= 1e-5 * scale, (name, scale)
  # The first text layer's gradient is a real one: non-zero on the rows of the batch's
  # words, exactly zero on the others.
  kernel_grad = got_grads["['text_tower']['dense_0']['kernel']"]
  used = np.count_nonzero(split["text"], axis=0) > 0
  assert 0 < used.sum() < TEXT_DIM
  assert np.all(np.any(kernel_grad[used] != 0, axis=1))
  np.testing.assert_array_equal(kernel_grad[~used], 0.0)

  # A few gradient steps of the sparse path lower the loss.
  descend = jax.jit(lambda p, g: jax.tree.map(lambda a, b: a - 2e-3 * b, p, g))
  losses = []
  for _ in range(4):
    (loss, (state, _)), grads = sparse_step(params, state, batch)
    params = descend(params, grads)
    losses.append(float(loss))
  assert losses[-1] < losses[0], losses
  trained = {"params": params, **state}
  test = toy_split(9, 7)
  assert sparse.text_input(test.arrays)[0].shape == (7, 70)
  eval_config = get_config("drsl,synthetic").eval
  got = ranking.score_split(sparse, trained, test, eval_config)
  want = ranking.score_split(dense, trained, test, eval_config)
  np.testing.assert_allclose(got["i2t"], want["i2t"], rtol=1e-5, atol=1e-5)
  assert np.std(got["i2t"]) > 1e-3  # not a constant


def test_sparse_text_needs_the_mlp_text_encoder_and_flat_text():
  config = drsl_config(True, text_encoder="cnn")
  with pytest.raises(ValueError, match="text_encoder='mlp'"):
    methods.get_method(config, {"image": (4,), "text": (9,), "label": ()})
  with pytest.raises(ValueError, match="2-D text"):
    methods.get_method(drsl_config(True), {"image": (4,), "text": (3, 3), "label": ()})
