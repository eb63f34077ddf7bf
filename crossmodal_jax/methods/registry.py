"""The registry of methods by name: the one list of what `config.method` may be."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from crossmodal_jax.methods import base

REGISTRY: dict[str, type[base.Method]] = {}


def register(*names: str) -> Callable[[type[base.Method]], type[base.Method]]:
  """Class decorator: makes the method available as `config.method` = each of `names`."""

  def add(cls: type[base.Method]) -> type[base.Method]:
    for name in names:
      if name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"Method name {name!r} is already registered to {REGISTRY[name]}.")
      REGISTRY[name] = cls
    return cls

  return add


def names() -> tuple[str, ...]:
  """The registered method names."""
  return tuple(REGISTRY)


def get_method(
    config, dims: Mapping[str, tuple[int, ...]], meta: Mapping[str, Any] | None = None
) -> base.Method:
  """The method named by `config.method`, for data with per-row shapes `dims`."""
  try:
    cls = REGISTRY[config.method]
  except KeyError:
    raise ValueError(f"Unknown method {config.method!r}; choose one of {names()}.") from None
  return cls(config, dims, meta)
