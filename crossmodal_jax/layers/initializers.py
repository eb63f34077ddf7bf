"""Parameter initialisations, chosen by name so a config can match a reference code.

- "flax": Flax's defaults, LeCun normal kernels (variance 1 / fan_in) and zero biases;
- "pytorch": what torch.nn.Linear (and Conv) do by default, U(-1/sqrt(fan_in),
  1/sqrt(fan_in)) for kernels and biases alike (kaiming_uniform with a = sqrt(5)). Its
  kernel variance is 1 / (3 fan_in), a third of Flax's: behind batch norm that is about
  sqrt(3) more effective step size, which is what the DRSL reference code trains with;
- "glorot": Keras' and TensorFlow's Dense defaults, Glorot (Xavier) uniform kernels,
  U(+-sqrt(6 / (fan_in + fan_out))), and zero biases (SCANet's TensorFlow/Keras code).

`fan_in` is passed explicitly because a separable layer (the concat layer of a relation
network, split into one half per item) must be initialised as the whole layer it stands
for, not as its half.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

INITS = ("flax", "pytorch", "glorot")
Initializer = Callable[..., jax.Array]


def check(init: str) -> str:
  if init not in INITS:
    raise ValueError(f"Unknown init {init!r}; choose one of {INITS}.")
  return init


def uniform(bound: float) -> Initializer:
  """U(-bound, bound) of any shape."""

  def sample(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return sample


def kernel(init: str, fan_in: int) -> Initializer:
  """A kernel initialiser for a layer with `fan_in` inputs."""
  if check(init) == "pytorch":
    return uniform(fan_in**-0.5)
  if init == "glorot":
    return nn.initializers.glorot_uniform()
  return nn.initializers.lecun_normal()


def bias(init: str, fan_in: int) -> Initializer:
  """A bias initialiser for a layer with `fan_in` inputs."""
  if check(init) == "pytorch":
    return uniform(fan_in**-0.5)
  return nn.initializers.zeros


def dense(init: str, fan_in: int) -> dict[str, Any]:
  """nn.Dense keyword arguments (kernel_init, bias_init) for `init`."""
  return {"kernel_init": kernel(init, fan_in), "bias_init": bias(init, fan_in)}
