"""A Flax module built from a config section: the fields its dataclass declares, by name.

A method's `config.model` names most of its module's fields as the module does; `from_config`
passes those, so a method states only what differs: fields the data decides (input
sizes), fields the config names otherwise (`param_init=config.model.init`) and fields the
method transforms.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

import flax.linen as nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)

# Fields every Flax module has: its place in a module tree, never a setting of a config.
_TREE_FIELDS = ("parent", "name")


def from_config(module: type[ModuleT], config: Mapping[str, Any], **fields: Any) -> ModuleT:
  """`module(**fields)` plus every other field of `module` that `config` holds.

  A list in `config` (a config read back from JSON) is passed as a tuple, as the module's
  sequence fields are; a field `config` lacks keeps the module's default.

  Args:
    module: a Flax module class (a dataclass).
    config: the config section, e.g. `config.model` (a ConfigDict or a mapping).
    **fields: fields given here, not taken from `config` (they win over its same-named
      entries).
  """
  taken = {}
  for field in dataclasses.fields(module):
    name = field.name
    if not field.init or name in _TREE_FIELDS or name in fields or name not in config:
      continue
    value = config[name]
    taken[name] = tuple(value) if isinstance(value, list) else value
  return module(**taken, **fields)
