r"""Trains a method and evaluates it on the test split.

  python -m experiments.train --config=configs/default.py:drsl,synthetic --workdir=/tmp/drsl

Real data: --config=configs/default.py:drsl,wikipedia
           --config.data.manual_dir=/path/to/wikipedia_dataset
Any config field can be overridden after --config=..., e.g. --config.train.num_epochs=5
(the fields are listed below). A workdir that already holds checkpoints is resumed from
its latest one; Ctrl-C keeps the last checkpoint, and re-running the same command resumes.
A bad input is one line `error: ...` (CROSSMODAL_TRACEBACK=1 shows its traceback).

Several hosts: the same command on every host (process) with
--config.train.multi_host=True, plus where no cluster manager (SLURM, Open MPI, Cloud
TPU) tells JAX the job, --coordinator_address=HOST:PORT (process 0's; or
JAX_COORDINATOR_ADDRESS), --num_processes=N and --process_id=I. The workdir must be one
folder that every process sees; process 0 writes the logs and results.
"""

import sys

from absl import flags
from ml_collections import config_flags

from crossmodal_jax import checkpoint
from crossmodal_jax import errors
from crossmodal_jax import logs
from crossmodal_jax import parallel
from crossmodal_jax import reporting
from crossmodal_jax import training
from . import cli
from . import overrides

DEFAULT_CONFIG = overrides.DEFAULT_CONFIG  # drsl,synthetic

if __name__ == "__main__":
  # Before DEFINE_config_file, which applies the overrides as it is defined.
  cli.before_flags(sys.argv[1:], DEFAULT_CONFIG)

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    DEFAULT_CONFIG,
    cli.config_help_text("The experiment config:"),
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory for checkpoints, metrics, TensorBoard logs and results.json; "
    "resumed if it already holds checkpoints.",
    required=True,
)
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host (--config.train.multi_host=True): HOST:PORT of process 0, where the "
    "coordinator listens; default: $JAX_COORDINATOR_ADDRESS, or found by JAX on SLURM, "
    "Open MPI and Cloud TPU.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes",
    None,
    "Multi-host: the number of processes of the job; default: found by JAX on SLURM, Open "
    "MPI and Cloud TPU.",
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id",
    None,
    "Multi-host: this process's index, 0 to num_processes - 1 (0 writes the logs and "
    "results); default: found by JAX on SLURM, Open MPI and Cloud TPU.",
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
  cluster = {
      "coordinator_address": _COORDINATOR_ADDRESS.value,
      "num_processes": _NUM_PROCESSES.value,
      "process_id": _PROCESS_ID.value,
  }
  if config.train.multi_host:
    # First: nothing may start JAX's backend before the job is joined.
    parallel.initialize_distributed(**cluster)
  elif any(v is not None for v in cluster.values()):
    given = ", ".join(f"--{k}" for k, v in cluster.items() if v is not None)
    raise errors.UserError(f"{given} are for a multi-host run: add --config.train.multi_host=True.")
  results = training.train_and_evaluate(config, _WORKDIR.value)
  if not parallel.is_primary():
    return
  # evaluate logs the same headline; a streamed test ranking has mAP@R, not mAP@ALL.
  print(f"{reporting.headline(results)}  (results in {_WORKDIR.value}/results.json)")
  lines = (
      reporting.recall_lines(results)
      + reporting.channel_lines(results)
      + reporting.checkpoint_lines(results)
  )
  for line in lines:
    print(line)


if __name__ == "__main__":
  cli.run(main, interrupted)
