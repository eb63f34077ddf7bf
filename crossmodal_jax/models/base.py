"""The face every method exposes to training, scoring and evaluation.

A method is a Flax module plus four pure functions of its variables:

- `init(rng, batch)`: the variables ({"params": ..., maybe "batch_stats": ...});
- `loss(variables, batch, rng, axis_name)`: per-device training loss. It is written for a
  device holding one shard of the global batch inside `shard_map`; collectives over
  `axis_name` (all-gathers of encodings, synchronised batch statistics) make the mean of
  the per-device losses equal the global-batch loss, so averaging per-device gradients
  with `lax.pmean` gives the gradient of the global loss;
- `encode_image(variables, x)` / `encode_text(variables, x)`: per-item encodings (any
  pytree of arrays with a leading item axis), computed once per item;
- `score(variables, image_enc, text_enc)`: the [P, Q] scores of every pair of a block.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping

import jax

Variables = Mapping[str, Any]
Batch = Mapping[str, jax.Array]


class Method(abc.ABC):
  """Base class of the methods' training / retrieval face."""

  #: Keys of a data split the method reads (see data.common).
  image_key: str = "image"
  #: The text input's arrays: one key gives that array, several give a tuple of them
  #: (e.g. ("word_ids", "word_mask") for a text CNN).
  text_keys: tuple[str, ...] = ("text",)

  @property
  def batch_keys(self) -> tuple[str, ...]:
    return (self.image_key, *self.text_keys, "label")

  def image_input(self, arrays: Mapping[str, Any]) -> Any:
    """The image input of `encode_image`, from a batch or split's arrays."""
    return arrays[self.image_key]

  def text_input(self, arrays: Mapping[str, Any]) -> Any:
    """The text input of `encode_text`, from a batch or split's arrays."""
    if len(self.text_keys) == 1:
      return arrays[self.text_keys[0]]
    return tuple(arrays[k] for k in self.text_keys)

  @abc.abstractmethod
  def init(self, rng: jax.Array, batch: Batch) -> Variables:
    ...

  @abc.abstractmethod
  def loss(self, variables: Variables, batch: Batch, rng: jax.Array,
           axis_name: str | None) -> tuple[jax.Array, tuple[Variables, dict[str, jax.Array]]]:
    """Returns (per-device loss, (updated non-param collections, metrics))."""

  @abc.abstractmethod
  def encode_image(self, variables: Variables, x: Any) -> Any:
    ...

  @abc.abstractmethod
  def encode_text(self, variables: Variables, x: Any) -> Any:
    ...

  @abc.abstractmethod
  def score(self, variables: Variables, image_enc: Any, text_enc: Any) -> jax.Array:
    ...
