"""The config file behind `--config=SPEC` and `--config=WORKDIR`, for any directory.

ml_collections' config flags load a Python file by its path; the commands point them at
this one when `--config` is not a path to a config file:

- "METHOD,DATASET[,PRESET]" (e.g. "drsl,wikipedia") is the installed configs' entry,
  `crossmodal_jax.configs.default.get_config`;
- a training workdir, or its config.json, is the config that run was trained with
  (`crossmodal_jax.runs.load`: completed with the fields added since).
"""

from __future__ import annotations

import os

from crossmodal_jax import runs
from crossmodal_jax.configs import default


def workdir_of(value: str) -> str | None:
  """The workdir `value` names (a folder, or a file named config.json), else None."""
  if os.path.basename(value) == runs.CONFIG:
    return os.path.dirname(value) or "."
  if os.path.isdir(value):
    return value
  return None


def get_config(value: str):
  """The config `value` names: a workdir's (see `workdir_of`), or a spec's."""
  workdir = workdir_of(value)
  if workdir is not None:
    return runs.load(workdir)
  return default.get_config(value)
