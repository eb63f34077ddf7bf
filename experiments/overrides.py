"""Checks --config.FIELD=VALUE overrides before absl parses them.

ml_collections reports an unknown field as a bare `AttributeError: "'nope'"` traceback;
this names the field and lists the valid ones instead.
"""

from __future__ import annotations

import os
import sys

from configs import default as default_configs

_DEFAULT_FILE = os.path.abspath(default_configs.__file__)


def _spec(argv: list[str], default: str) -> str | None:
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
    if value is not None:
      path, _, spec = value.partition(":")
      if os.path.abspath(path) != _DEFAULT_FILE:
        return None  # another config file: leave checking to ml_collections
      return spec or default_configs.DEFAULT
  return default


def check(argv: list[str], default: str | None = default_configs.DEFAULT) -> None:
  """Exits with a clear message if an override names a field the config lacks."""
  spec = _spec(argv, default)
  if spec is None:
    return
  try:
    config = default_configs.get_config(spec)
  except ValueError as e:
    sys.exit(f"Bad --config: {e}")
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    field = arg[len("--config."):].split("=", 1)[0]
    node, walked = config, []
    for part in field.split("."):
      if not hasattr(node, "keys") or part not in node:
        where = ".".join(walked) or "config"
        choices = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(a leaf)"
        sys.exit(f"Unknown config field {field!r}: {where} has no {part!r}. "
                 f"Fields of {where}: {choices}.")
      node = node[part]
      walked.append(part)
