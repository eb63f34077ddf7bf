"""The registry of datasets by name: the one list of what `config.data.name` may be.

A dataset is a loader, `load(data_config) -> common.Dataset`, registered under its name
(`@registry.register("wikipedia")`); the modules of `crossmodal_jax.data.sources`
register theirs when the package is imported.
"""

from __future__ import annotations

from typing import Callable

from crossmodal_jax import errors
from crossmodal_jax.data import common

Loader = Callable[..., common.Dataset]
REGISTRY: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
  """Function decorator: makes the loader available as `config.data.name` = `name`."""

  def add(load: Loader) -> Loader:
    if name in REGISTRY and REGISTRY[name] is not load:
      raise ValueError(f"Dataset name {name!r} is already registered to {REGISTRY[name]}.")
    REGISTRY[name] = load
    return load

  return add


def names() -> tuple[str, ...]:
  """The registered dataset names."""
  return tuple(REGISTRY)


def loader(name: str) -> Loader:
  """The loader of dataset `name`; a UserError listing the choices if none is."""
  if name not in REGISTRY:
    raise errors.UserError(f"Unknown dataset {name!r}; choose one of {names()}.")
  return REGISTRY[name]
