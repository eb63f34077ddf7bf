r"""Trains a method and evaluates it on the test split.

  python -m experiments.train --config=configs/default.py:drsl,synthetic --workdir=/tmp/drsl

Real data: --config=configs/default.py:drsl,wikipedia
           --config.data.manual_dir=/path/to/wikipedia_dataset
Any config field can be overridden after --config=..., e.g. --config.train.num_epochs=5
(the fields are listed below). A workdir that already holds checkpoints is resumed from
its latest one; Ctrl-C keeps the last checkpoint, and re-running the same command resumes.
A bad input is one line `error: ...` (CROSSMODAL_TRACEBACK=1 shows its traceback).
"""

import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from crossmodal_jax import checkpoint
from crossmodal_jax import logs
from crossmodal_jax import train
from experiments import cli
from experiments import overrides

DEFAULT_CONFIG = "configs/default.py:drsl,synthetic"

if __name__ == "__main__":
  # Before DEFINE_config_file, which applies the overrides as it is defined.
  cli.before_flags(sys.argv[1:], DEFAULT_CONFIG)

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    DEFAULT_CONFIG,
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


def interrupted() -> str:
  """What a Ctrl-C kept: the last checkpoint, which the same command resumes from."""
  workdir = _WORKDIR.value
  try:
    _, step = checkpoint.locate(workdir, checkpoint.LATEST)
  except FileNotFoundError:
    return (
        f"stopped before the first checkpoint of {workdir}; re-running the same command "
        "starts the run again."
    )
  return (
      f"the last checkpoint (step {step}) in {workdir} is kept; re-run the same command "
      "to resume from it."
  )


def main(argv):
  cli.unexpected_arguments(argv)
  logs.quiet_library_logs()
  config = _CONFIG.value
  # Resuming: a field newer than the workdir's config.json counts as unchanged at its
  # default, the config file's value before the command line's overrides.
  defaults = overrides.load(config_flags.get_config_filename(flags.FLAGS["config"]))
  train.check_resumable(config, _WORKDIR.value, defaults)
  results = train.train_and_evaluate(config, _WORKDIR.value)
  m = results["map_all"]
  logging.info("Test mAP@ALL: i2t %.4f  t2i %.4f  avg %.4f", m["i2t"], m["t2i"], m["avg"])
  print(
      f"test mAP@ALL  i2t {m['i2t']:.4f}  t2i {m['t2i']:.4f}  avg {m['avg']:.4f}  "
      f"(results in {_WORKDIR.value}/results.json)"
  )
  for name, c in results.get("map_all_by_channel", {}).items():
    print(f"  {name} alone:  i2t {c['i2t']:.4f}  t2i {c['t2i']:.4f}  avg {c['avg']:.4f}")


if __name__ == "__main__":
  cli.run(main, interrupted)
