"""MCSM's recurrent attention encoder: (conv front-end) -> stacked LSTM -> attention pooling.

MCSM (Y. Peng, J. Qi, Y. Yuan, "Modality-specific cross-modal similarity measurement with
recurrent attention network", IEEE TIP 2018) encodes the modality that owns a semantic
space with a recurrent attention network. As the authors' Torch code builds it (the
MCSM_TIP2018 folder of BMC-SDNU/Cross-Modal-Retrieval on GitHub; see
docs/methods/mcsm.md):

  image space: regions [R, d] -> 2-layer LSTM (hidden H, dropout 0.5 between layers)
    -> per-step Dense(D) -> M_j = dropout(tanh(W_a p_j)), a = softmax_j(w . M_j)
    -> sum_j a_j p_j -> L2 normalise;
  text space: word vectors [W, d] -> conv blocks (conv-BN-ReLU-maxpool; the code: kernels
    15/9/7, channels 384/512/256, pools 5/5/6) to shorten the sequence -> the same, with
    no W_a (M_j = dropout(tanh(p_j))).

`AttentionLSTMEncoder` is that network for either space (`attention_projection` chooses
whether W_a is there; `front_end` adds the conv blocks, a `ConvFrontEnd`).

Sequences are [B, L, d] with a bool mask [B, L], True at real steps. The mask, not the
values, decides what is padding, and padding never changes an encoding:
- inputs at masked steps are set to zero before anything reads them (so even inf/NaN
  padding cannot leak into values or gradients);
- the LSTM skips masked steps: its carry passes through them unchanged (any mask pattern
  works, holes included; inserting masked steps anywhere leaves the encoding as it was);
- masked steps get exactly zero attention; the softmax runs over the real steps only;
- the front-end pools in windows fixed from step 0 (ceil mode, see `ConvFrontEnd`), so
  appending padding of any length leaves the windows that hold real steps unchanged, and
  its batch norm takes its moments over real steps only.

Interpretation choices (where the description of the authors' code leaves it open):
- "per-step Dense to D -> attention ... -> sum_j a_j h_j": the attention reads the
  projected steps p_j = Dense_D(h_j) (the pipeline's order) and the encoding is
  sum_j a_j p_j. Because the attention weights of a sequence sum to 1 and the Dense is
  affine, sum_j a_j p_j = Dense_D(sum_j a_j h_j): the two readings of the weighted sum give
  the same vector; only the input of the attention scores differs, and we take p_j.
- W_a is a Dense with a bias (Torch's nn.Linear default) from D to `attention_dim`
  (default D); w has no bias (a constant added to every score cancels in the softmax).
- `dropout` is applied to each LSTM layer's output sequence except the last (Torch's
  nn.LSTM convention); `score_dropout` is the dropout on M_j (not on the weights a).
- An all-padding sequence (no real step) encodes to zeros with all-zero attention.
- Conv padding is "SAME" and the pooling keeps a last partial window (ceil mode), which is
  what padding invariance needs. The authors' Torch code used unpadded ("VALID")
  convolutions and floor-mode pooling: 2,904 words -> 18 steps there, -> 581 -> 117 -> 20
  steps here.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossmodal_jax.layers import initializers
from crossmodal_jax.layers import mlp

_NORM_EPSILON = 1e-12


def _check_inputs(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Validates [B, L, d] / [B, L]; returns float x with masked steps zeroed, bool mask."""
  if x.ndim != 3 or mask.shape != x.shape[:2]:
    raise ValueError(f"x must be [B, L, d] and mask [B, L], got {x.shape} and {mask.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  mask = mask.astype(bool)
  return jnp.where(mask[..., None], x, 0.0), mask


class MaskedBatchNorm(nn.Module):
  """Batch norm over the real steps of [B, L, C] sequences (feature axis last).

  Training uses the mean and (biased) variance of the real steps of the whole batch: with
  `axis_name` (inside `shard_map`), of the global batch, exactly, whatever number of real
  steps each device holds. The moments come from `mlp.global_moments` (the same
  synchronisation as the rest of the repository) applied to [x * m, m]: its means give
  the global E[x m] and E[m], and E[x^2 m] = Var(x m) + E[x m]^2, so
  mean = E[x m] / E[m] and var = E[x^2 m] / E[m] - mean^2. Evaluation uses running
  averages, updated with `mlp.BN_MOMENTUM` as `nn.BatchNorm` does (and not at all by a
  batch without any real step). The variables have `nn.BatchNorm`'s names: params
  `scale`, `bias`; batch_stats `mean`, `var`.

  Attributes:
    axis_name: the data-parallel axis of `shard_map`, or None.
  """

  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """x: float [B, L, C]; mask: bool [B, L]. Returns [B, L, C] (masked steps arbitrary)."""
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,))
    ra_var = self.variable("batch_stats", "var", jnp.ones, (features,))
    if train:
      m = mask[..., None].astype(x.dtype)
      cols = jnp.concatenate([jnp.where(mask[..., None], x, 0.0), m], axis=-1)
      means, variances = mlp.global_moments(cols.reshape(-1, features + 1), self.axis_name)
      e_xm, e_m = means[:features], means[features]
      e_x2m = variances[:features] + jnp.square(e_xm)
      has_any = e_m > 0
      count = jnp.where(has_any, e_m, 1.0)
      mean = e_xm / count
      var = jnp.maximum(e_x2m / count - jnp.square(mean), 0.0)
      if not self.is_initializing():
        keep = mlp.BN_MOMENTUM
        ra_mean.value = jnp.where(has_any, keep * ra_mean.value + (1 - keep) * mean, ra_mean.value)
        ra_var.value = jnp.where(has_any, keep * ra_var.value + (1 - keep) * var, ra_var.value)
    else:
      mean, var = ra_mean.value, ra_var.value
    return (x - mean) * (scale * jax.lax.rsqrt(var + mlp.BN_EPSILON)) + bias


def pooled_length(length: int, pools: Sequence[int]) -> int:
  """Sequence length after max-pools of window = stride = each of `pools` (ceil mode)."""
  for p in pools:
    length = -(-length // int(p))
  return length


def masked_max_pool(x: jax.Array, mask: jax.Array, pool: int) -> tuple[jax.Array, jax.Array]:
  """Max-pool of window = stride = `pool` over real steps only (ceil mode).

  Args:
    x: float [B, L, C].
    mask: bool [B, L].
    pool: the window (and stride), >= 1.

  Returns:
    (y [B, L', C], mask' [B, L']), L' = ceil(L / pool): window t covers steps
    t * pool .. t * pool + pool - 1 (the last one possibly partial); y[:, t] is the max over
    its real steps (padded steps are -inf there, so they never win), mask'[:, t] whether it
    has any; windows with none are 0.
  """
  batch, length, channels = x.shape
  out_len = -(-length // pool)
  extra = out_len * pool - length
  x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
  mask = jnp.pad(mask, ((0, 0), (0, extra)), constant_values=False)
  x = jnp.where(mask[..., None], x, -jnp.inf).reshape(batch, out_len, pool, channels)
  new_mask = jnp.any(mask.reshape(batch, out_len, pool), axis=-1)
  return jnp.where(new_mask[..., None], jnp.max(x, axis=2), 0.0), new_mask


class ConvFrontEnd(nn.Module):
  """Blocks of [Conv1D ("SAME") -> (masked BatchNorm) -> ReLU -> masked max-pool].

  Shortens a sequence by the product of `pools` (MCSM's text space: 15/9/7, 384/512/256,
  5/5/6). Before each convolution the masked steps are set to zero, so a real step's
  response is what it would be with the sequence ending at its last real step (SAME's
  zero padding). Pooling windows start at step 0 and have window = stride = pool; the last
  window may be partial (ceil mode, `masked_max_pool`), so a sequence of n real steps
  (right-padded) gives ceil(n / pool) real windows whatever L is.

  Attributes:
    kernel_sizes: each block's convolution width (in steps).
    channels: each block's output channels.
    pools: each block's max-pool window (= stride).
    use_batch_norm: `MaskedBatchNorm` between each conv and its ReLU (then the conv has
      no bias). In training pass `mutable=["batch_stats"]`.
    axis_name: the data-parallel axis over which batch moments are taken in training
      (synchronised batch norm, as `mlp.MLP`), or None outside `shard_map`.
    param_init: convolution initialisation, "flax", "pytorch" or "glorot" (see
      `initializers`; fan-in = kernel size x input channels).
  """

  kernel_sizes: Sequence[int]
  channels: Sequence[int]
  pools: Sequence[int]
  use_batch_norm: bool = True
  axis_name: str | None = None
  param_init: str = "flax"

  def _check(self):
    n = len(self.kernel_sizes)
    if n == 0 or len(self.channels) != n or len(self.pools) != n:
      raise ValueError(
          "kernel_sizes, channels and pools must be non-empty and of equal length, got "
          f"{self.kernel_sizes}, {self.channels}, {self.pools}."
      )
    if any(int(v) < 1 for v in (*self.kernel_sizes, *self.channels, *self.pools)):
      raise ValueError("kernel_sizes, channels and pools must all be >= 1.")
    initializers.check(self.param_init)

  def output_length(self, length: int) -> int:
    """L' for an input of length L: L divided by each pool in turn, rounded up."""
    return pooled_length(length, self.pools)

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """Shortens sequences.

    Args:
      x: float [B, L, d] step features.
      mask: bool [B, L], True at real steps.
      train: batch norm uses (and updates) batch moments in training, running averages
        otherwise.

    Returns:
      (y float [B, L', C], mask' bool [B, L']), C = channels[-1],
      L' = `output_length(L)`; mask'[:, t] is True when pooling window t held any real
      step, and y is 0 where mask' is False.
    """
    self._check()
    x, mask = _check_inputs(x, mask)
    for i, (k, c, p) in enumerate(zip(self.kernel_sizes, self.channels, self.pools)):
      k, c, p = int(k), int(c), int(p)
      fan_in = k * x.shape[-1]
      x = jnp.where(mask[..., None], x, 0.0)
      x = nn.Conv(
          c,
          kernel_size=(k,),
          padding="SAME",
          use_bias=not self.use_batch_norm,
          kernel_init=initializers.kernel(self.param_init, fan_in),
          bias_init=initializers.bias(self.param_init, fan_in),
          name=f"conv_{i}",
      )(x)
      if self.use_batch_norm:
        x = MaskedBatchNorm(axis_name=self.axis_name, name=f"bn_{i}")(x, mask, train=train)
      x = nn.relu(x)
      x, mask = masked_max_pool(x, mask, p)
    return x, mask


def _lstm_inits(init: str, hidden: int) -> dict[str, Any]:
  """nn.OptimizedLSTMCell initialisers for `init` (see `initializers`).

  "flax": Flax's defaults (LeCun normal input kernels, orthogonal recurrent kernels, zero
  bias); "pytorch": torch.nn.LSTM's U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias;
  "glorot": Keras' LSTM (Glorot uniform input, orthogonal recurrent, zero bias; without
  Keras' unit forget bias).
  """
  if initializers.check(init) == "pytorch":
    u = initializers.uniform(hidden**-0.5)
    return {"kernel_init": u, "recurrent_kernel_init": u, "bias_init": u}
  if init == "glorot":
    return {"kernel_init": nn.initializers.glorot_uniform()}
  return {}


def _masked_lstm_step(cell: nn.OptimizedLSTMCell, carry, inputs):
  """One scanned step: the carry advances at real steps only; emits the carry's h."""
  x_t, m_t = inputs  # [B, d], [B]
  new_carry, _ = cell(carry, x_t)
  carry = jax.tree.map(lambda new, old: jnp.where(m_t[:, None], new, old), new_carry, carry)
  return carry, carry[1]


_ScannedLSTM = nn.scan(
    _masked_lstm_step,
    variable_broadcast="params",
    split_rngs={"params": False},
    in_axes=1,
    out_axes=1,
)


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """Softmax over the last axis restricted to `mask`: exactly 0 off the mask.

  Rows with no True entry give all zeros (no NaN, in values or gradients).
  """
  top = jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1, keepdims=True)
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  e = jnp.where(mask, jnp.exp(jnp.where(mask, scores - top, 0.0)), 0.0)
  total = jnp.sum(e, axis=-1, keepdims=True)
  return e / jnp.where(total > 0, total, 1.0)


def l2_normalize(x: jax.Array) -> jax.Array:
  """x / ||x|| over the last axis; zero rows stay zero."""
  sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPSILON**2))


class AttentionLSTMEncoder(nn.Module):
  """MCSM's recurrent attention encoder: [B, L, d] sequences -> unit vectors [B, D].

  (front-end) -> num_layers x LSTM(hidden), scanned, dropout between layers
  -> p_j = Dense_D(h_j) -> M_j = score_dropout(tanh(W_a p_j)) (or tanh(p_j) without W_a)
  -> a = masked softmax_j(w . M_j) -> sum_j a_j p_j -> L2 normalise.
  See the module docstring for the masking rules and interpretation choices.

  Attributes:
    hidden: H, the LSTM width (512 in MCSM's code).
    out_dim: D, the encoding width (4096 in MCSM's code).
    num_layers: stacked LSTM layers.
    dropout: rate on each LSTM layer's output sequence except the last's (training only).
    attention_projection: M_j = tanh(W_a p_j) (MCSM's image space) when True, tanh(p_j)
      (its text space) when False.
    attention_dim: W_a's output width; None means D.
    score_dropout: dropout rate on M_j, the tanh features the attention scores are read
      from (not on the weights a); training only.
    uniform_attention: ablation: a_j = 1 / (number of real steps) at every real step; the
      attention parameters (W_a, w) are then not created.
    front_end: a `ConvFrontEnd` to shorten the sequences first (MCSM's text space), or
      None. Its batch norm needs `mutable=["batch_stats"]` in training.
    param_init: "flax", "pytorch" or "glorot" initialisation of the Dense layers and the
      LSTM (see `initializers`, `_lstm_inits`).
  """

  hidden: int
  out_dim: int
  num_layers: int = 2
  dropout: float = 0.5
  attention_projection: bool = True
  attention_dim: int | None = None
  score_dropout: float = 0.5
  uniform_attention: bool = False
  front_end: ConvFrontEnd | None = None
  param_init: str = "flax"

  def _check(self):
    if self.hidden < 1 or self.out_dim < 1 or self.num_layers < 1:
      raise ValueError(
          f"hidden, out_dim and num_layers must be >= 1, got {self.hidden}, {self.out_dim}, "
          f"{self.num_layers}."
      )
    if self.attention_dim is not None and self.attention_dim < 1:
      raise ValueError(f"attention_dim must be >= 1 or None, got {self.attention_dim}.")
    for name in ("dropout", "score_dropout"):
      rate = getattr(self, name)
      if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}.")
    initializers.check(self.param_init)

  @nn.compact
  def __call__(
      self,
      x: jax.Array,
      mask: jax.Array,
      train: bool = False,
      return_attention: bool = False,
  ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Encodes sequences.

    Args:
      x: float [B, L, d] step features (regions or word vectors); L >= 1 (L = 1: one
        global feature per item, attention is then 1).
      mask: bool [B, L], True at real steps.
      train: dropout (pass `rngs={"dropout": key}`) and batch moments (with a front-end,
        pass `mutable=["batch_stats"]`) in training.
      return_attention: also return the attention weights.

    Returns:
      float [B, D] unit-norm encodings (zeros for an all-padding sequence); with
      `return_attention`, (encodings, a [B, L']) where a sums to 1 over real steps and is
      exactly 0 elsewhere; L' = L, or the front-end's output length (the weights are over
      its pooled steps).
    """
    self._check()
    x, mask = _check_inputs(x, mask)
    if self.front_end is not None:
      x, mask = self.front_end(x, mask, train=train)

    h = x
    for i in range(self.num_layers):
      if i > 0 and self.dropout > 0:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
      h = jnp.where(mask[..., None], h, 0.0)
      cell = nn.OptimizedLSTMCell(
          self.hidden, name=f"lstm_{i}", **_lstm_inits(self.param_init, self.hidden)
      )
      # zeros_like: inside shard_map the initial carry must vary over the axes h varies
      # over, as the carry the scan returns does.
      zeros = jnp.zeros_like(h, shape=(h.shape[0], self.hidden))
      _, h = _ScannedLSTM(cell, (zeros, zeros), (h, mask))  # [B, L, H]

    p = nn.Dense(self.out_dim, name="project", **initializers.dense(self.param_init, self.hidden))(
        h
    )  # [B, L, D]
    if self.uniform_attention:
      scores = jnp.zeros(mask.shape, p.dtype)
    else:
      m = p
      if self.attention_projection:
        width = self.attention_dim or self.out_dim
        m = nn.Dense(width, name="attention", **initializers.dense(self.param_init, self.out_dim))(
            m
        )
      m = jnp.tanh(m)
      if self.score_dropout > 0:
        m = nn.Dropout(self.score_dropout, deterministic=not train)(m)
      w_init = initializers.kernel(self.param_init, m.shape[-1])
      scores = nn.Dense(1, use_bias=False, name="score", kernel_init=w_init)(m)[..., 0]
    a = masked_softmax(scores, mask)  # [B, L']
    enc = l2_normalize(jnp.einsum("bl,bld->bd", a, jnp.where(mask[..., None], p, 0.0)))
    if return_attention:
      return enc, a
    return enc
