"""Checks --config=FILE[:ARG] and its --config.FIELD=VALUE overrides before absl parses them.

ml_collections reports a bad config argument or an unknown field as a traceback ending
in a bare `AttributeError: "'nope'"`, and an override given before `--config=` as a
"FATAL Flags parsing error"; this exits with one line naming the problem (and listing the
valid choices) instead. It works for any config file that defines `get_config(arg)` (as
ml_collections' config_flags expects). `find_field` is the walk to a dotted field that
both this check and experiments.reproduce's --override use; the closest field to suggest
is the library's (`crossmodal_jax.config_fields.closest_field`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import ml_collections

from crossmodal_jax import config_fields

# What config_flags loads for --config=SPEC or --config=WORKDIR (config_file.py, here).
CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_file.py")
DEFAULT_CONFIG = f"{CONFIG_FILE}:drsl,synthetic"
# The exit status of a bad command line (absl's flag errors exit with it too, via cli).
USAGE_EXIT = 2


def fail(message: str, status: int = USAGE_EXIT):
  """Exits with `error: message` as the one line on stderr."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def config_arg(argv: list[str], default: str | None = DEFAULT_CONFIG) -> str | None:
  """The value of --config in argv (`FILE[:ARG]`), or `default`."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return default


def resolve(value: str) -> str:
  """--config's value as the FILE[:ARG] config_flags loads: a path to a config file (with
  its argument) stays; "METHOD,DATASET[,PRESET]", a workdir or its config.json go to
  `config_file.py` (the installed configs, or the run's saved config)."""
  path = value.partition(":")[0]
  if path.endswith(".py") or os.path.isfile(path) and not path.endswith(".json"):
    return value
  return f"{CONFIG_FILE}:{value}"


def resolve_argv(argv: list[str]) -> None:
  """Rewrites argv's --config value in place (`resolve`)."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      argv[i] = "--config=" + resolve(arg.split("=", 1)[1])
    elif arg == "--config" and i + 1 < len(argv):
      argv[i + 1] = resolve(argv[i + 1])


def config_package(path: str) -> None:
  """Makes the folder of a config file importable as the package it is (`configs`, when
  it has an __init__.py), so that the file, loaded by its path, finds the method files
  beside it from any working directory. A package of that name already imported from
  another folder is left alone."""
  folder = os.path.dirname(os.path.abspath(path))
  name = os.path.basename(folder)
  init = os.path.join(folder, "__init__.py")
  if not os.path.exists(init) or not name.isidentifier():
    return
  found = sys.modules.get(name)
  if found is None:
    try:
      found = importlib.import_module(name)
    except ImportError:
      found = None
  if found is not None:
    return
  spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[folder])
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)


class FieldError(ValueError):
  """A field a config does not have: `where` the walk stopped ("model", or "config" at
  the top), the `part` missing there and `choices`, the fields it has there (or "(a
  leaf)" when `where` is a value, not a section)."""

  def __init__(self, field: str, where: str, part: str, choices: str):
    super().__init__(f"{field}: {where} has no {part!r}; its fields: {choices}.")
    self.field, self.where, self.part, self.choices = field, where, part, choices


def find_field(config: ml_collections.ConfigDict, field: str) -> tuple[Any, str]:
  """The section of `config` holding `field` ("section.name", any depth) and the field's
  last name, so that `section[name]` is its value.

  Raises:
    FieldError: `config` has no such field (a ValueError naming where the walk stopped
      and listing the fields there).
  """
  node = config
  parts = field.split(".")
  for i, part in enumerate(parts):
    if not hasattr(node, "keys") or part not in node:
      where = ".".join(parts[:i]) or "config"
      choices = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(a leaf)"
      raise FieldError(field, where, part, choices)
    if i < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def _load(path: str):
  config_package(path)
  spec = importlib.util.spec_from_file_location("_checked_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(value: str) -> ml_collections.ConfigDict:
  """The config that `--config=value` names, without overrides (its fields' defaults).

  Raises:
    ValueError: the file's get_config rejects the argument (an unknown method).
    FileNotFoundError: there is no such file.
  """
  path, _, arg = resolve(value).partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no config file {path!r}")
  module = _load(path)
  return module.get_config(arg) if arg else module.get_config()


def check(
    argv: list[str], default: str | None = DEFAULT_CONFIG
) -> ml_collections.ConfigDict | None:
  """Exits with one clear line if the config argument or an override is invalid.

  Returns:
    The config that --config (or `default`) names, before overrides; None without one.
  """
  value = config_arg(argv, default)
  if value is None:
    return None
  first = next((i for i, a in enumerate(argv) if a == "--config" or a.startswith("--config=")), 0)
  early = [a for a in argv[:first] if a.startswith(("--config.", "--noconfig."))]
  if early:
    fail(
        f"{early[0]} comes before --config={value}: put --config.FIELD=VALUE overrides "
        "after --config=..."
    )
  try:
    config = load(value)
  except FileNotFoundError as e:
    fail(f"Bad --config: {e}.")
  except ValueError as e:
    fail(f"Bad --config: {e}")
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    field = arg[len("--config.") :].split("=", 1)[0]
    try:
      find_field(config, field)
    except FieldError as e:
      guess = config_fields.closest_field(config, field)
      hint = f"Did you mean `{guess}`? " if guess else ""
      fail(
          f"Unknown config field {field!r}: {e.where} has no {e.part!r}. {hint}"
          f"Fields of {e.where}: {e.choices}. (--help lists them all.)"
      )
  return config
