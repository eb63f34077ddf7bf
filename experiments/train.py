r"""Trains a method and evaluates it on the test split.

  python -m experiments.train --config=configs/default.py:drsl,synthetic --workdir=/tmp/drsl

Real data: --config=configs/default.py:drsl,wikipedia
           --config.data.manual_dir=/path/to/wikipedia_dataset
Any config field can be overridden, e.g. --config.train.num_epochs=5. A workdir that
already holds checkpoints is resumed from its latest one.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from crossmodal_jax import logs
from crossmodal_jax import train
from experiments import overrides

if __name__ == "__main__":
  # Before DEFINE_config_file, which applies the overrides as it is defined.
  overrides.check(sys.argv[1:])

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "configs/default.py:drsl,synthetic",
    "Experiment config: configs/default.py:METHOD,DATASET (METHOD: a registered method, "
    "e.g. drsl, drsl_code; DATASET: synthetic, wikipedia, features). Fields are "
    "overridable as --config.FIELD=VALUE after it.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory for checkpoints, metrics, TensorBoard logs and results.json; "
    "resumed if it already holds checkpoints.",
    required=True,
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  m = results["map_all"]
  logging.info("Test mAP@ALL: i2t %.4f  t2i %.4f  avg %.4f", m["i2t"], m["t2i"], m["avg"])
  print(
      f"test mAP@ALL  i2t {m['i2t']:.4f}  t2i {m['t2i']:.4f}  avg {m['avg']:.4f}  "
      f"(results in {_WORKDIR.value}/results.json)"
  )


if __name__ == "__main__":
  app.run(main)
