r"""Evaluates a trained workdir: restores a checkpoint, writes results.json and plots.

  python -m experiments.evaluate --workdir=/tmp/drsl [--checkpoint=best|latest|STEP]
  python -m experiments.evaluate --workdir=/tmp/drsl --protocol=yu2018  # results_yu2018.json

Galleries whose score matrices exceed eval.full_matrix_mb are ranked by streamed top-k
(mAP@R and P@K; --config.eval.ranking=full|top_k|auto, --config.eval.top_k=K).

The config is read from WORKDIR/config.json unless --config is given (then its fields
are listed below; `python -m experiments.train --help` lists the default config's). A bad
input is one line `error: ...` (CROSSMODAL_TRACEBACK=1 shows its traceback).
"""

import sys

from absl import flags
from ml_collections import config_flags

from crossmodal_jax import errors
from crossmodal_jax import evaluation
from crossmodal_jax import logs
from crossmodal_jax import protocols
from crossmodal_jax import reporting
from crossmodal_jax import runs
from . import cli

if __name__ == "__main__":
  # Before DEFINE_config_file, which applies the overrides as it is defined.
  cli.before_flags(sys.argv[1:], None)

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    cli.config_help_text("Optional: a config used instead of WORKDIR/config.json,"),
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.", required=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "'best' (best validation mAP), 'latest', or a step number. Default: the config's "
    "eval.select_by.",
)
_SPLIT = flags.DEFINE_enum(
    "split",
    "test",
    ["test", "validation", "train"],
    "Which split to evaluate (queries and gallery both from it).",
)
_PROTOCOL = flags.DEFINE_enum(
    "protocol",
    None,
    list(protocols.PROTOCOLS),
    "An evaluation protocol instead of --split: "
    + "; ".join(f"{name}: {p.description}" for name, p in protocols.PROTOCOLS.items())
    + ". Writes results_PROTOCOL.json (default: results.json).",
)


def main(argv):
  cli.unexpected_arguments(argv)
  logs.quiet_library_logs()
  split = _SPLIT.value
  if _PROTOCOL.value is not None:
    if flags.FLAGS["split"].present:
      raise errors.UserError("Give --split or --protocol, not both (a protocol names its splits).")
    split = protocols.PROTOCOLS[_PROTOCOL.value].query_split
  config = _CONFIG.value or runs.load(_WORKDIR.value)
  results = evaluation.evaluate(
      _WORKDIR.value,
      config=config,
      checkpoint=_CHECKPOINT.value,
      split=split,
      protocol=_PROTOCOL.value,
  )
  print(f"{reporting.headline(results)}  (checkpoint step {results['checkpoint_step']})")
  lines = (
      reporting.recall_lines(results)
      + reporting.channel_lines(results)
      + reporting.checkpoint_lines(results)
  )
  for line in lines:
    print(line)


if __name__ == "__main__":
  cli.run(main, lambda: "no results were written; re-run the same command.")
