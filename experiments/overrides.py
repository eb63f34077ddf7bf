"""Checks --config=FILE[:ARG] and its --config.FIELD=VALUE overrides before absl parses them.

ml_collections reports a bad config argument or an unknown field as a traceback ending
in a bare `AttributeError: "'nope'"`; this exits with one line naming the problem and
listing the valid choices instead. It works for any config file that defines
`get_config(arg)` (as ml_collections' config_flags expects).
"""

from __future__ import annotations

import importlib.util
import os
import sys

DEFAULT_CONFIG = "configs/default.py"


def _config_arg(argv: list[str], default: str | None) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return default


def _load(path: str):
  spec = importlib.util.spec_from_file_location("_checked_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def check(argv: list[str], default: str | None = DEFAULT_CONFIG) -> None:
  """Exits with a clear message if the config argument or an override is invalid."""
  value = _config_arg(argv, default)
  if value is None:
    return
  path, _, arg = value.partition(":")
  if not os.path.isfile(path):
    sys.exit(f"Bad --config: no config file {path!r}.")
  try:
    module = _load(path)
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    sys.exit(f"Bad --config: {e}")
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    field = arg[len("--config.") :].split("=", 1)[0]
    node, walked = config, []
    for part in field.split("."):
      if not hasattr(node, "keys") or part not in node:
        where = ".".join(walked) or "config"
        choices = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(a leaf)"
        sys.exit(
            f"Unknown config field {field!r}: {where} has no {part!r}. "
            f"Fields of {where}: {choices}."
        )
      node = node[part]
      walked.append(part)
