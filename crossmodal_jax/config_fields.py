"""A config's fields by name: the one nearest a misspelt name, and overrides from Python.

`closest_field` is the suggestion of every "unknown field" error: the commands' check of
`--config.FIELD=VALUE` (`experiments/overrides.py`) and `override`, which sets fields from
Python values (`api.get_config(spec, seed=1, train=dict(num_epochs=5))`) as
`--config.FIELD=VALUE` sets them from a command line.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import ml_collections

from crossmodal_jax import errors


def _leaves(config, prefix: str = "") -> list[str]:
  out = []
  for key in config.keys():
    value = config[key]
    out += _leaves(value, f"{prefix}{key}.") if hasattr(value, "keys") else [f"{prefix}{key}"]
  return out


def closest_field(config: ml_collections.ConfigDict, field: str) -> str | None:
  """The field of `config` most like `field` ("train.num_epoch" -> "train.num_epochs"),
  else None: first among the fields of the same section, then among all."""
  section = field.rpartition(".")[0]
  leaves = _leaves(config)
  same = [f for f in leaves if f.rpartition(".")[0] == section]
  for pool in (same, leaves):
    found = difflib.get_close_matches(field, pool, n=1, cutoff=0.6)
    if found:
      return found[0]
  return None


def flat_overrides(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"section.field": value} of overrides given as top-level fields, dicts per section
  ({"data": {"manual_dir": ...}}) or dotted names ({"train.num_epochs": 5})."""
  flat = {}
  for key, value in overrides.items():
    if isinstance(value, Mapping):
      flat.update(flat_overrides(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def override(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets the fields `overrides` names (`flat_overrides`) in `config`, in place; a list
  given for a sequence field becomes a tuple (as the config files write them).

  Raises:
    UserError: an unknown field (one error, suggesting the closest field and listing the
      fields where the name stopped matching), or a value of the wrong type.
  """
  for field, value in flat_overrides(overrides).items():
    node, parts = config, field.split(".")
    for i, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        where = ".".join(parts[:i]) or "config"
        choices = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(a leaf)"
        guess = closest_field(config, field)
        hint = f"Did you mean `{guess}`? " if guess else ""
        raise errors.UserError(
            f"Unknown config field {field!r}: {where} has no {part!r}. {hint}"
            f"Fields of {where}: {choices}."
        )
      if i < len(parts) - 1:
        node = node[part]
    if isinstance(node[part], ml_collections.ConfigDict):
      raise errors.UserError(f"Config field {field!r} is a section: give it a dict of fields.")
    if isinstance(node[part], tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      node[part] = value
    except TypeError as e:
      raise errors.UserError(f"Config field {field!r}: {e}") from None
