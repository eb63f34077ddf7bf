"""Kim (2014)-style text CNN over word vectors (DRSL's "Text CNN" text encoder).

DRSL feeds text features from a sentence/document CNN over word vectors; here the CNN is a
Flax module trained jointly with the rest of the model. A text is a right-padded sequence
of word ids (`crossmodal_jax.data.text.vocab`: PAD_ID = 0, OOV_ID = 1, vocabulary word i has id
i + 2) with a bool mask, True at real words. The network is

  embedding lookup -> for each kernel size k: Conv1D(k, num_filters) -> ReLU
  -> masked max-pool over time -> concatenate over k -> dropout,

giving `num_filters * len(kernel_sizes)` features per text.

Masking rule (what makes the output independent of how much padding follows a text):
- Embeddings at masked positions are set to zero before the convolution, and each
  sequence is extended on the right by k - 1 zero vectors, so there is a window starting
  at every position t = 0..L-1 and the window content never depends on the padding id's
  embedding row.
- A window position t (words t..t+k-1) is valid when all its k words are unmasked; the
  max-pool runs over valid positions only.
- A text with no valid window (fewer than k consecutive real words, e.g. shorter than k)
  falls back to the positions whose window STARTS on a real word (the window then runs
  into zero padding).
- A text with no real word (all padding) gives zeros.
The max is taken after setting invalid positions to -inf; rows with no position left
(empty texts) are replaced by 0.

The GloVe table of `crossmodal_jax.data.text.glove.glove_table` has a zero row for the padding
id 0, but the embedding is trainable unless `freeze_embeddings` is set, so that row need
not stay zero: the masking above, not the zero row, is what guarantees padding invariance
(and it also keeps the padding row's gradient exactly zero).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def pretrained_embedding_init(table: np.ndarray) -> Callable[..., jax.Array]:
  """A Flax initializer that returns a fixed, pretrained embedding table.

  Args:
    table: the `[vocab_size, embed_dim]` table (e.g. from `glove_table(vocab)[0]`).

  Returns:
    `init(key, shape, dtype)` returning `jnp.asarray(table, dtype)`; the key is ignored.
    Pass it as `TextCNN(embedding_init=...)`.

  Raises:
    ValueError (from `init`): if the requested shape differs from `table.shape`.
  """
  table = np.array(table, copy=True)

  def init(key, shape, dtype=jnp.float32):
    del key
    if tuple(shape) != tuple(table.shape):
      raise ValueError(
          f"Pretrained embedding table has shape {tuple(table.shape)}, but the embedding "
          f"asks for shape {tuple(shape)}."
      )
    return jnp.asarray(table, dtype)

  return init


def _shift_left(x: jax.Array, j: int) -> jax.Array:
  """x[:, j:] padded on the right with False to length L (x is bool [B, L])."""
  if j == 0:
    return x
  if j >= x.shape[1]:
    return jnp.zeros_like(x)
  return jnp.pad(x[:, j:], ((0, 0), (0, j)), constant_values=False)


def window_masks(mask: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Which window positions the max-pool of kernel size `k` may use.

  Args:
    mask: bool [B, L], True at real words.
    k: kernel size.

  Returns:
    `(positions, has_any)`: bool [B, L], position t usable (all of words t..t+k-1 real;
    or, for a text without such a window, word t real), and bool [B], whether the text has
    any usable position (False only for an all-padding text).
  """
  valid = mask
  for j in range(1, k):
    valid = valid & _shift_left(mask, j)
  has_valid = jnp.any(valid, axis=1, keepdims=True)
  positions = jnp.where(has_valid, valid, mask)
  return positions, jnp.any(positions, axis=1)


class TextCNN(nn.Module):
  """Kim-style CNN text encoder with padding-invariant masked max-pooling.

  Attributes:
    vocab_size: rows of the embedding table (`sequence_vocab_size(vocab)`, i.e. the
      vocabulary plus PAD and OOV).
    embed_dim: word-vector size (50 for the offline GloVe vectors).
    kernel_sizes: convolution widths (in words).
    num_filters: filters per kernel size.
    dropout: dropout rate on the concatenated features (training only).
    freeze_embeddings: stop gradients into the embedding table (looked-up vectors pass
      through `jax.lax.stop_gradient`).
    embedding_init: initializer of the embedding table, e.g.
      `pretrained_embedding_init(glove_table(vocab)[0])`; None uses `nn.Embed`'s default.
  """

  vocab_size: int
  embed_dim: int = 50
  kernel_sizes: Sequence[int] = (3, 4, 5)
  num_filters: int = 100
  dropout: float = 0.5
  freeze_embeddings: bool = False
  embedding_init: Callable | None = None

  @property
  def features(self) -> int:
    """Output width: `num_filters * len(kernel_sizes)`."""
    return self.num_filters * len(self.kernel_sizes)

  def _check(self):
    if self.vocab_size < 1 or self.embed_dim < 1 or self.num_filters < 1:
      raise ValueError(
          f"vocab_size, embed_dim and num_filters must be >= 1, got {self.vocab_size}, "
          f"{self.embed_dim}, {self.num_filters}."
      )
    if not self.kernel_sizes or any(int(k) < 1 for k in self.kernel_sizes):
      raise ValueError(f"kernel_sizes must be non-empty and >= 1, got {self.kernel_sizes}.")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")

  @nn.compact
  def __call__(self, word_ids: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """Encodes texts.

    Args:
      word_ids: int [B, L] word ids (PAD_ID = 0 at padding).
      mask: bool [B, L], True at real words (padding positions must be False; the mask,
        not the ids, decides what is padding).
      train: dropout is active only in training (then pass `rngs={"dropout": key}`).

    Returns:
      float32 [B, num_filters * len(kernel_sizes)] features; zeros (before dropout) for an
      all-padding text.
    """
    self._check()
    if word_ids.ndim != 2 or mask.shape != word_ids.shape:
      raise ValueError(
          f"word_ids and mask must both be [B, L], got {word_ids.shape} and {mask.shape}."
      )
    word_ids = word_ids.astype(jnp.int32)
    mask = mask.astype(bool)
    embed_kwargs = {}
    if self.embedding_init is not None:
      embed_kwargs["embedding_init"] = self.embedding_init
    x = nn.Embed(
        self.vocab_size,
        self.embed_dim,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        name="embed",
        **embed_kwargs,
    )(word_ids)
    if self.freeze_embeddings:
      x = jax.lax.stop_gradient(x)
    x = jnp.where(mask[..., None], x, 0.0)  # [B, L, E]; padding never reaches the conv

    pooled = []
    for i, k in enumerate(self.kernel_sizes):
      k = int(k)
      xk = jnp.pad(x, ((0, 0), (0, k - 1), (0, 0)))  # a window starts at every position
      h = nn.Conv(self.num_filters, kernel_size=(k,), padding="VALID", name=f"conv_{i}")(
          xk
      )  # [B, L, F]
      h = nn.relu(h)
      positions, has_any = window_masks(mask, k)
      h = jnp.where(positions[..., None], h, -jnp.inf)
      h = jnp.max(h, axis=1)  # [B, F]; -inf only where has_any is False
      pooled.append(jnp.where(has_any[:, None], h, 0.0))
    out = jnp.concatenate(pooled, axis=-1)
    if self.dropout > 0:
      out = nn.Dropout(self.dropout, deterministic=not train)(out)
    return out
