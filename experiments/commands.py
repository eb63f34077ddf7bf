"""The installed commands (`crossmodal-train`, ...): each runs its module as `python -m`
would, so that they work from any directory.

    crossmodal-train --workdir=W --config=drsl,synthetic
    crossmodal-evaluate --workdir=W
    crossmodal-retrieve --workdir=W --queries=0,1
    crossmodal-reproduce --workdir=T --methods=drsl --datasets=synthetic --seeds=3
    crossmodal-benchmark --only=train_epoch --output=bench.json
"""

from __future__ import annotations

import runpy
import sys


def _run(module: str) -> None:
  """Runs `module` of this package as the main module (its flags, its one-line errors)."""
  name = f"{__package__}.{module}"
  sys.argv[0] = f"crossmodal-{module}"
  runpy.run_module(name, run_name="__main__", alter_sys=True)


def train() -> None:
  _run("train")


def evaluate() -> None:
  _run("evaluate")


def retrieve() -> None:
  _run("retrieve")


def reproduce() -> None:
  _run("reproduce")


def benchmark() -> None:
  _run("benchmark")
