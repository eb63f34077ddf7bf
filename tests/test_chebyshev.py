"""Tests of the Chebyshev graph convolution (`crossmodal_jax.layers.chebyshev`).

The layer is checked against a dense float64 numpy reference, sum_k T_k(L~) x theta_k + b,
on a small random graph whose rescaled Laplacian L~ is built from its definition and then
converted to the edge form the layer reads.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp
import jraph

from crossmodal_jax.layers import chebyshev

V = 13


def _key(seed):
  # XLA's RngBitGenerator compiles much faster on CPU than threefry (keeps tests fast).
  return jax.random.key(seed, impl="unsafe_rbg")


def _rescaled_laplacian(num_vertices=V, p=0.3, seed=0):
  """Dense L~ = 2 L / lambda_max - I, L = I - D^-1/2 A D^-1/2, A random symmetric binary."""
  rng = np.random.default_rng(seed)
  upper = np.triu(rng.random((num_vertices, num_vertices)) < p, k=1)
  adjacency = (upper | upper.T).astype(np.float64)
  degree = adjacency.sum(1)
  d_inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
  laplacian = np.eye(num_vertices) - d_inv_sqrt[:, None] * adjacency * d_inv_sqrt[None, :]
  lambda_max = np.linalg.eigvalsh(laplacian)[-1]
  return 2.0 * laplacian / lambda_max - np.eye(num_vertices)


def graph_from_laplacian(dense: np.ndarray) -> jraph.GraphsTuple:
  """A dense L~ in the layer's edge form: nonzeros plus the whole diagonal, by receiver."""
  dense = np.asarray(dense)
  keep = (dense != 0) | np.eye(len(dense), dtype=bool)
  receivers, senders = np.nonzero(keep)  # row-major: sorted by receiver (row)
  return jraph.GraphsTuple(
      nodes=None,
      edges=jnp.asarray(dense[receivers, senders], jnp.float32),
      senders=jnp.asarray(senders, jnp.int32),
      receivers=jnp.asarray(receivers, jnp.int32),
      n_node=jnp.asarray([len(dense)], jnp.int32),
      n_edge=jnp.asarray([len(receivers)], jnp.int32),
      globals=None,
  )


def _chebyshev_polynomials(dense, order):
  """[T_0(L~), ..., T_{order-1}(L~)] as dense float64 matrices."""
  terms = [np.eye(len(dense)), dense]
  while len(terms) < order:
    terms.append(2.0 * dense @ terms[-1] - terms[-2])
  return terms[:order]


def _reference(dense, x, kernel, bias):
  """sum_k T_k(L~) x theta_k + b for x [B, V, F_in], in float64."""
  x = np.asarray(x, np.float64)
  kernel = np.asarray(kernel, np.float64)
  out = sum(
      np.einsum("uv,bvi,io->buo", t, x, kernel[k])
      for k, t in enumerate(_chebyshev_polynomials(dense, len(kernel)))
  )
  return out + np.asarray(bias, np.float64)


def _params(order, f_in, f_out, seed=0):
  rng = np.random.default_rng(seed)
  return {
      "params": {
          "kernel": rng.standard_normal((order, f_in, f_out)).astype(np.float32),
          "bias": rng.standard_normal((f_out,)).astype(np.float32),
      }
  }


def _signals(batch, f_in, seed=1):
  return np.random.default_rng(seed).standard_normal((batch, V, f_in)).astype(np.float32)


@pytest.fixture(scope="module")
def dense():
  out = _rescaled_laplacian()
  assert not np.allclose(out, np.diag(np.diag(out)))  # the graph has edges
  return out


@pytest.fixture(scope="module")
def graph(dense):
  return graph_from_laplacian(dense)


def test_graph_edge_form(dense, graph):
  """The helper's edges are sorted by receiver and include every diagonal entry."""
  receivers = np.asarray(graph.receivers)
  assert np.all(np.diff(receivers) >= 0)
  self_edges = receivers == np.asarray(graph.senders)
  assert self_edges.sum() == V
  rebuilt = np.zeros((V, V))
  rebuilt[receivers, np.asarray(graph.senders)] = np.asarray(graph.edges)
  np.testing.assert_allclose(rebuilt, dense, atol=1e-6)


@pytest.mark.parametrize("trailing", [(), (3,), (2, 4)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_laplacian_matvec_matches_dense(dense, trailing, symmetric):
  if not symmetric:  # any matrix in edge form: tells senders (columns) from receivers (rows)
    rng = np.random.default_rng(6)
    dense = rng.standard_normal((V, V)) * (rng.random((V, V)) < 0.3)
    assert not np.allclose(dense, dense.T)
  graph = graph_from_laplacian(dense)
  x = np.random.default_rng(2).standard_normal((V,) + trailing).astype(np.float32)
  out = jax.jit(chebyshev.laplacian_matvec)(graph, x)
  assert out.shape == x.shape
  np.testing.assert_allclose(out, np.tensordot(dense, x, axes=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "order, f_in, f_out",
    [(3, 1, 1), (3, 2, 3), (2, 2, 3), (5, 2, 3), (3, 4, 1), (2, 8, 1), (5, 8, 3)],
)
def test_layer_matches_dense_reference(dense, graph, order, f_in, f_out):
  layer = chebyshev.ChebConv(f_out, order=order)
  params = _params(order, f_in, f_out)
  x = _signals(5, f_in)
  out = jax.jit(layer.apply)(params, graph, x)
  assert out.shape == (5, V, f_out)
  expected = _reference(dense, x, params["params"]["kernel"], params["params"]["bias"])
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_projected_path_without_bias_matches_dense_reference(dense, graph):
  layer = chebyshev.ChebConv(3, order=5, use_bias=False)
  params = {"params": {"kernel": _params(5, 8, 3)["params"]["kernel"]}}
  x = _signals(4, 8)
  out = jax.jit(layer.apply)(params, graph, x)
  expected = _reference(dense, x, params["params"]["kernel"], np.zeros(3))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("f_in, f_out", [(8, 1), (1, 8), (3, 3)])
def test_propagation_carries_the_narrower_feature_width(graph, f_in, f_out):
  """The K - 1 propagations (gather of [E, B * F] messages) run on min(F_in, F_out)
  channels: an 8 -> 1 layer projects first (Clenshaw) and never propagates 8."""
  batch, num_edges = 5, int(graph.edges.shape[0])
  jaxpr = str(
      jax.make_jaxpr(chebyshev.ChebConv(f_out, order=3).apply)(
          _params(3, f_in, f_out), graph, _signals(batch, f_in)
      )
  )
  assert f"f32[{num_edges},{batch * min(f_in, f_out)}]" in jaxpr
  if f_in != f_out:
    assert f"f32[{num_edges},{batch * max(f_in, f_out)}]" not in jaxpr


def test_init_shapes_and_no_bias(graph):
  x = _signals(2, 2)
  params = chebyshev.ChebConv(3, order=4).init(_key(0), graph, x)["params"]
  assert params["kernel"].shape == (4, 2, 3)
  assert params["bias"].shape == (3,)
  no_bias = chebyshev.ChebConv(3, order=4, use_bias=False)
  params = no_bias.init(_key(0), graph, x)["params"]
  assert set(params) == {"kernel"}
  out = no_bias.apply({"params": params}, graph, x)
  zero = no_bias.apply({"params": params}, graph, np.zeros_like(x))
  np.testing.assert_array_equal(zero, 0.0)
  assert np.any(np.asarray(out) != 0.0)


def test_order_one_is_a_per_vertex_linear_map(dense, graph):
  layer = chebyshev.ChebConv(3, order=1)
  params = _params(1, 2, 3)
  x = _signals(4, 2)
  kernel, bias = params["params"]["kernel"], params["params"]["bias"]
  out = layer.apply(params, graph, x)
  np.testing.assert_allclose(out, x @ kernel[0] + bias, rtol=1e-6, atol=1e-6)
  # No propagation at all: the graph's weights are never read ...
  poisoned = graph._replace(edges=jnp.full_like(graph.edges, jnp.nan))
  np.testing.assert_array_equal(layer.apply(params, poisoned, x), out)
  # ... and no segment sum (scatter) is even traced.
  jaxpr = str(jax.make_jaxpr(layer.apply)(params, graph, x))
  assert "scatter" not in jaxpr
  jaxpr_k2 = str(jax.make_jaxpr(chebyshev.ChebConv(3, order=2).apply)(_params(2, 2, 3), graph, x))
  assert "scatter" in jaxpr_k2  # the check above can fail


def test_batch_equals_single_text_calls(graph):
  layer = chebyshev.ChebConv(3, order=3)
  params = _params(3, 2, 3)
  x = _signals(6, 2)
  apply = jax.jit(layer.apply)
  batched = np.asarray(apply(params, graph, x))
  for b in range(len(x)):
    np.testing.assert_allclose(
        batched[b], apply(params, graph, x[b : b + 1])[0], rtol=1e-6, atol=1e-6
    )
  # Texts do not mix: changing one text leaves the others' outputs alone.
  changed = x.copy()
  changed[2] += 1.0
  other = np.asarray(apply(params, graph, changed))
  np.testing.assert_array_equal(np.delete(other, 2, 0), np.delete(batched, 2, 0))
  assert not np.allclose(other[2], batched[2])


def test_integer_counts_are_accepted(dense, graph):
  layer = chebyshev.ChebConv(2, order=3)
  params = _params(3, 1, 2)
  counts = np.random.default_rng(3).poisson(0.7, size=(3, V, 1)).astype(np.int32)
  out = layer.apply(params, graph, counts)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(
      out, layer.apply(params, graph, counts.astype(np.float32)), rtol=1e-6, atol=1e-6
  )


def test_gradients_reach_every_theta_and_jit_works(graph):
  """Two stacked layers + ReLU (SCANet's text graph model), differentiated under jit."""
  first = chebyshev.ChebConv(4, order=3)
  second = chebyshev.ChebConv(1, order=3)
  x = np.abs(_signals(3, 1))
  p1, p2 = _params(3, 1, 4, seed=0), _params(3, 4, 1, seed=1)
  for p in (p1, p2):  # positive biases keep the ReLUs alive
    p["params"]["bias"] = np.abs(p["params"]["bias"]) + 0.5

  def loss(p1, p2, x):
    h = jax.nn.relu(first.apply(p1, graph, x))
    return jnp.sum(jax.nn.relu(second.apply(p2, graph, h)) ** 2)

  value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(p1, p2, x)
  np.testing.assert_allclose(value, loss(p1, p2, x), rtol=1e-5)
  for g in grads:
    kernel = np.asarray(g["params"]["kernel"])
    assert np.all(np.isfinite(kernel))
    for k in range(3):  # every Chebyshev term gets a gradient
      assert np.any(kernel[k] != 0.0), k
    assert np.all(np.isfinite(g["params"]["bias"]))
    assert np.any(np.asarray(g["params"]["bias"]) != 0.0)


def test_gradient_matches_finite_differences(graph):
  layer = chebyshev.ChebConv(2, order=3)
  params = _params(3, 2, 2)
  x = _signals(2, 2)
  target = np.random.default_rng(4).standard_normal((2, V, 2)).astype(np.float32)

  def loss(kernel):
    p = {"params": {**params["params"], "kernel": kernel}}
    return jnp.sum(layer.apply(p, graph, x) * target)

  kernel = jnp.asarray(params["params"]["kernel"])
  grad = np.asarray(jax.jit(jax.grad(loss))(kernel))
  # The loss is linear in theta, so the exact directional derivative is a difference.
  direction = np.random.default_rng(5).standard_normal(kernel.shape).astype(np.float32)
  expected = float(loss(kernel + direction) - loss(kernel))
  np.testing.assert_allclose(np.sum(grad * direction), expected, rtol=1e-3)


def test_default_and_cnn_graph_initialisation(graph):
  x = jnp.zeros((1, V, 64))
  order = 3
  params = chebyshev.ChebConv(64, order=order).init(_key(0), graph, x)["params"]
  std = float(np.std(params["kernel"]))
  assert abs(std - (order * 64) ** -0.5) < 0.1 * (order * 64) ** -0.5
  np.testing.assert_array_equal(params["bias"], 0.0)

  cnn_graph = chebyshev.ChebConv(
      64,
      order=order,
      kernel_init=chebyshev.CNN_GRAPH_KERNEL_INIT,
      bias_init=chebyshev.CNN_GRAPH_BIAS_INIT,
  )
  params = cnn_graph.init(_key(0), graph, x)["params"]
  kernel = np.asarray(params["kernel"])
  # A normal of std 0.1 truncated at 2 std has std 0.088 and no value beyond 0.2.
  assert abs(np.std(kernel) - 0.088) < 0.005
  assert np.max(np.abs(kernel)) <= 0.2 + 1e-6
  np.testing.assert_allclose(params["bias"], 0.1)


def test_rejects_bad_shapes_and_fields(graph):
  with pytest.raises(ValueError, match="B, V, F_in"):
    chebyshev.ChebConv(2).init(_key(0), graph, jnp.zeros((V, 1)))
  with pytest.raises(ValueError, match="order"):
    chebyshev.ChebConv(2, order=0).init(_key(0), graph, jnp.zeros((1, V, 1)))
