r"""Evaluates a trained workdir: restores a checkpoint, writes results.json and plots.

  python -m experiments.evaluate --workdir=/tmp/drsl [--checkpoint=best|latest|STEP]

The config is read from WORKDIR/config.json unless --config is given (then its fields
are listed below; `python -m experiments.train --help` lists the default config's). A bad
input is one line `error: ...` (CROSSMODAL_TRACEBACK=1 shows its traceback).
"""

import sys

from absl import flags
from ml_collections import config_flags

from crossmodal_jax import evaluate
from crossmodal_jax import logs
from experiments import cli

if __name__ == "__main__":
  # Before DEFINE_config_file, which applies the overrides as it is defined.
  cli.before_flags(sys.argv[1:], None)

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Optional config (configs/default.py:METHOD,DATASET) overriding WORKDIR/config.json; "
    "fields overridable as --config.FIELD=VALUE.",
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


def main(argv):
  cli.unexpected_arguments(argv)
  logs.quiet_library_logs()
  results = evaluate.evaluate(
      _WORKDIR.value, config=_CONFIG.value, checkpoint=_CHECKPOINT.value, split=_SPLIT.value
  )
  m = results["map_all"]
  print(
      f"{_SPLIT.value} mAP@ALL  i2t {m['i2t']:.4f}  t2i {m['t2i']:.4f}  avg {m['avg']:.4f}  "
      f"(checkpoint step {results['checkpoint_step']})"
  )
  for name, c in results.get("map_all_by_channel", {}).items():
    print(f"  {name} alone:  i2t {c['i2t']:.4f}  t2i {c['t2i']:.4f}  avg {c['avg']:.4f}")


if __name__ == "__main__":
  cli.run(main, lambda: "no results were written; re-run the same command.")
