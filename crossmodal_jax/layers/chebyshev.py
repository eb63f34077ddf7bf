"""Chebyshev graph convolution (Defferrard et al., 2016) over one shared jraph graph.

A Chebyshev filter of order K maps a graph signal `f_in` to

  f_out = sum_{k<K} theta_k T_k(L~) f_in,

with T_0 = I, T_1 = L~, T_k = 2 L~ T_{k-1} - T_{k-2} and the rescaled Laplacian
L~ = 2 L / lambda_max - I (eigenvalues in [-1, 1]). T_k(L~) is a polynomial of degree k
in L~, so vertex i's output depends only on its (K - 1)-hop neighbourhood.

The graph is a `jraph.GraphsTuple` that stores L~ in edge form:
- `edges`: float [E], the nonzero entries of L~ (its diagonal included, as self edges);
- `senders`, `receivers`: int32 [E], so that
  `(L~ x)[i] = sum_{e: receivers[e] == i} edges[e] * x[senders[e]]`;
- edges sorted by receiver (`laplacian_matvec` tells XLA so);
- `n_node = [V]`; `nodes` may be None (the signal is passed separately).

SCANet's text model runs such layers over ONE word graph shared by all texts, each text's
signal being its bag-of-words counts. `ChebConv` therefore takes a batch of B signals on
the same graph, [B, V, F_in], and carries the batch in the feature axis of that one graph
([V, B * F]): the graph is never copied per text, and each propagation step is a single
gather of [E, B * F] messages plus one segment sum, F = min(F_in, F_out) (`ChebConv`).

The graph is built once with `jraph.GraphsTuple(...)` directly; jraph's padding helpers
(`zero_out_padding` and others) call the removed `jax.tree_map` and are not used here.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

Initializer = Callable[..., jax.Array]

# The initialisation of Defferrard's reference code (cnn_graph, TensorFlow 1): weights from
# a normal of std 0.1 truncated at 2 std (tf.truncated_normal_initializer(0, 0.1); Flax's
# `truncated_normal` has the same convention) and every bias 0.1. Pass these as
# `ChebConv(kernel_init=CNN_GRAPH_KERNEL_INIT, bias_init=CNN_GRAPH_BIAS_INIT)` to match it.
CNN_GRAPH_KERNEL_INIT = nn.initializers.truncated_normal(stddev=0.1)
CNN_GRAPH_BIAS_INIT = nn.initializers.constant(0.1)

# The default: LeCun normal over the fan-in of the whole filter, K * F_in (theta is
# [K, F_in, F_out]), i.e. Flax's Dense default for a layer that reads the K stacked
# T_k(L~) x -- see `ChebConv`.
DEFAULT_KERNEL_INIT = nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
DEFAULT_BIAS_INIT = nn.initializers.zeros


def laplacian_matvec(graph: jraph.GraphsTuple, x: jax.Array) -> jax.Array:
  """L~ x for the rescaled Laplacian stored in `graph`'s edges.

  Args:
    graph: L~ in edge form (see the module docstring): `edges` [E] the entries,
      `senders`/`receivers` int32 [E] their column/row, sorted by receiver.
    x: [V, ...], a signal on the V vertices with any trailing feature shape.

  Returns:
    [V, ...] with `out[i] = sum_{e: receivers[e] == i} edges[e] * x[senders[e]]`, in the
    promoted dtype of `edges` and `x`. V is taken from `x.shape[0]` (static under jit;
    `graph.n_node` is not read).

  Memory: the gathered messages are [E, *x.shape[1:]] (E * B * F floats for the
  [V, B * F] signal of `ChebConv`, F = min(F_in, F_out)).
  """
  num_vertices = x.shape[0]
  weights = jnp.reshape(graph.edges, (-1,) + (1,) * (x.ndim - 1))
  messages = weights * jnp.take(x, graph.senders, axis=0)  # [E, ...]
  return jax.ops.segment_sum(
      messages, graph.receivers, num_segments=num_vertices, indices_are_sorted=True
  )


class ChebConv(nn.Module):
  """One Chebyshev graph convolution: `sum_{k<K} T_k(L~) x theta_k (+ bias)`.

  No activation is applied (SCANet follows each layer with a ReLU). When F_out < F_in the
  series is projected to F_out first and summed by Clenshaw's recurrence (`_clenshaw`), so
  the K - 1 propagations over the graph carry the narrower of the two feature widths (the
  same sum up to float rounding; e.g. SCANet's 8 -> 1 second layer propagates one
  channel, not 8).

  Initialisation. Defaults: `kernel_init` is LeCun normal with fan-in K * F_in (variance
  1 / (K * F_in), truncated normal as in Flax's Dense) and `bias_init` zeros. That is the
  repository's default convention ("flax" in `crossmodal_jax.layers.initializers`) applied
  to the layer as a whole: the filter is a linear map of the K stacked signals T_k(L~) x,
  whose scales match x's (the eigenvalues of L~ lie in [-1, 1], so |T_k(L~)| <= 1), so the
  output variance is about the input's whatever K and F_in are. Defferrard's cnn_graph
  instead draws every weight with a fixed std 0.1 (truncated normal) and sets every bias to
  0.1; pass `CNN_GRAPH_KERNEL_INIT` and `CNN_GRAPH_BIAS_INIT` to reproduce it. (With a
  bias of 0.1 and a ReLU, vertices far from every word of a text output 0.1 rather than 0.)

  Attributes:
    features: F_out, output features per vertex.
    order: K, the number of Chebyshev terms (polynomial degree K - 1; K = 1 is a
      per-vertex linear map with no propagation at all).
    use_bias: add a bias [F_out] (shared by all vertices).
    kernel_init: initializer of theta, shape [K, F_in, F_out].
    bias_init: initializer of the bias, shape [F_out].
  """

  features: int
  order: int = 3
  use_bias: bool = True
  kernel_init: Initializer = DEFAULT_KERNEL_INIT
  bias_init: Initializer = DEFAULT_BIAS_INIT

  @nn.compact
  def __call__(self, graph: jraph.GraphsTuple, x: jax.Array) -> jax.Array:
    """Filters B signals on the same graph.

    Args:
      graph: L~ in edge form (see the module docstring).
      x: [B, V, F_in], B signals (e.g. texts) with F_in features per vertex. Integer
        inputs (bag-of-words counts) are cast to float32.

    Returns:
      float [B, V, F_out].
    """
    if self.features < 1 or self.order < 1:
      raise ValueError(
          f"features and order must be >= 1, got features={self.features}, order={self.order}."
      )
    if x.ndim != 3:
      raise ValueError(f"x must be [B, V, F_in], got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    f_in = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (self.order, f_in, self.features))

    # Propagate the narrower width: project first when F_out < F_in.
    series = _clenshaw if self.order > 1 and self.features < f_in else _forward
    out = series(graph, jnp.transpose(x, (1, 0, 2)), kernel)  # [V, B, F_out]
    if self.use_bias:
      out = out + self.param("bias", self.bias_init, (self.features,))
    return jnp.transpose(out, (1, 0, 2))  # [B, V, F_out]


def _forward(graph: jraph.GraphsTuple, x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`sum_k (T_k(L~) x) theta_k` by the forward recurrence: [V, B, F_in] -> [V, B, F_out].

  `kernel` is theta, [K, F_in, F_out]. The K - 1 products by L~ run on F_in channels, the
  batch riding in the feature axis of the one graph ([V, B * F_in]).
  """
  num_vertices, batch, f_in = x.shape
  t_cur = x.reshape(num_vertices, batch * f_in)

  def project(t, k):  # [V, B * F_in] -> [V, B, F_out]
    return jnp.einsum("vbi,io->vbo", t.reshape(num_vertices, batch, f_in), kernel[k])

  out = project(t_cur, 0)
  if len(kernel) > 1:
    t_prev, t_cur = t_cur, laplacian_matvec(graph, t_cur)
    out = out + project(t_cur, 1)
    for k in range(2, len(kernel)):
      t_prev, t_cur = t_cur, 2.0 * laplacian_matvec(graph, t_cur) - t_prev
      out = out + project(t_cur, k)
  return out


def _clenshaw(graph: jraph.GraphsTuple, x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`sum_k T_k(L~) (x theta_k)` by Clenshaw's recurrence: [V, B, F_in] -> [V, B, F_out].

  `kernel` is theta, [K, F_in, F_out].

  The filter is linear, so each term may be projected before it is propagated:
  `T_k(L~) x theta_k = T_k(L~) (x theta_k)`. Clenshaw's recurrence then sums the
  projected series with K - 1 products by L~, as the forward recurrence does, but on
  F_out channels instead of F_in: `b_{K-1} = y_{K-1}`, `b_k = y_k + 2 L~ b_{k+1} - b_{k+2}`
  down to k = 1, and the sum is `y_0 + L~ b_1 - b_2` (with `y_k = x theta_k`, and
  `b_K = 0`). `ChebConv` takes this path when F_out < F_in.
  """
  num_vertices, batch, _ = x.shape
  order, _, f_out = kernel.shape
  y = jnp.einsum("vbi,kio->kvbo", x, kernel).reshape(order, num_vertices, batch * f_out)
  b1, b2 = y[order - 1], None  # b_{k+1}, b_{k+2}
  for k in range(order - 2, 0, -1):
    b = y[k] + 2.0 * laplacian_matvec(graph, b1)
    b1, b2 = (b if b2 is None else b - b2), b1
  out = y[0] + laplacian_matvec(graph, b1)
  if b2 is not None:
    out = out - b2
  return out.reshape(num_vertices, batch, f_out)
