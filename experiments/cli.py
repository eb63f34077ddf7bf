"""What the entry points share: one-line errors, Ctrl-C, and the config fields in --help.

    if __name__ == "__main__":
      cli.before_flags(sys.argv[1:])  # before DEFINE_config_file applies the overrides
    ...
    if __name__ == "__main__":
      cli.run(main, interrupted=lambda: "...")

- A bad command line (an unknown field or flag, an override before --config=, a value
  of the wrong type) is one line `error: ...` on stderr, exit status 2.
- A `crossmodal_jax.errors.UserError` from main (a bad data file, a bad config value,
  a batch the devices do not divide, a missing checkpoint) is one line `error: ...`,
  exit status 1; `CROSSMODAL_TRACEBACK=1` shows its traceback. Any other exception keeps
  its traceback: it is a bug, not a bad input.
- Ctrl-C is one line `interrupted: ...` (what was kept, how to go on), exit status 130.
- `--help` lists the config's fields with their values and meanings (`config_help`),
  for the config that --config names.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

from absl import app
from absl import flags

from crossmodal_jax import errors
from . import config_help
from . import overrides

HELP_FLAGS = ("--help", "-help", "-?", "--helpshort", "-helpshort", "--helpfull", "-helpfull")
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C


def before_flags(argv: list[str], default: str | None = overrides.DEFAULT_CONFIG):
  """Resolves the --config argument of sys.argv (`overrides.resolve`), checks it and the
  overrides (one line and exit if bad); with --help, appends the config's fields to the
  __main__ docstring that absl prints. `argv` is sys.argv[1:] as the command saw it.

  Returns:
    The config --config names before overrides (None when there is none).
  """
  overrides.resolve_argv(sys.argv)  # --config=SPEC or WORKDIR, as absl will parse it
  argv = sys.argv[1:]
  config = overrides.check(argv, default)
  if config is not None and any(arg.split("=", 1)[0] in HELP_FLAGS for arg in argv):
    main = sys.modules["__main__"]
    listing = config_help.listing(config, overrides.config_arg(argv, default))
    main.__doc__ = (main.__doc__ or "") + listing
  return config


def config_help_text(lead: str) -> str:
  """The --config flag's help: `lead`, then the spec's parts and their choices."""
  from crossmodal_jax.configs import default  # pylint: disable=g-import-not-at-top

  return (
      f"{lead} METHOD,DATASET[,PRESET] (or configs/default.py:METHOD,DATASET[,PRESET], or "
      "a workdir, or its config.json), where METHOD is one of "
      f"{', '.join(default.method_names())}; DATASET one of {', '.join(default.DATASETS)}; "
      "PRESET full (the default: the method's recipe, chosen on validation), ci (small and "
      "fast, for tests) or paper (the paper's published hyperparameters). Any field can be "
      "overridden as --config.FIELD=VALUE after it; --help with a --config lists its fields."
  )


def one_line(error: BaseException) -> str:
  """The error's message on one line."""
  return " ".join(str(error).split()) or type(error).__name__


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    overrides.fail(one_line(e))


def _guarded(main: Callable[[list[str]], None], interrupted: Callable[[], str] | None, argv):
  try:
    return main(argv)
  except errors.UserError as e:
    if os.environ.get(errors.TRACEBACK_ENV):
      raise
    overrides.fail(one_line(e), 1)
  except KeyboardInterrupt:
    message = interrupted() if interrupted is not None else "nothing was written"
    print(f"interrupted: {message}", file=sys.stderr)
    sys.exit(INTERRUPTED_EXIT)


def run(main: Callable[[list[str]], None], interrupted: Callable[[], str] | None = None):
  """`app.run(main)` with one-line errors; `interrupted()` says what a Ctrl-C kept."""
  try:
    app.run(functools.partial(_guarded, main, interrupted), flags_parser=_parse_flags)
  except SystemExit as e:
    if e.code == 1 and any(arg.split("=", 1)[0] in HELP_FLAGS for arg in sys.argv[1:]):
      sys.exit(0)  # absl exits 1 after printing the help that was asked for
    if e.code != INTERRUPTED_EXIT:
      raise
    # Training has already waited for its checkpoint writes (its `finally`); a normal
    # interpreter exit would now tear down orbax's background event loop mid-flight and
    # print "RuntimeError: Event loop is closed" after the one line. Nothing is left to
    # save, so the process leaves at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)  # pylint: disable=protected-access


def unexpected_arguments(argv: list[str]) -> None:
  """Exits with one line if absl left positional arguments (argv[0] is the program)."""
  if len(argv) > 1:
    overrides.fail(f"unexpected arguments {argv[1:]} (flags are --name=value)")


def _placeholder(arg: str, names: dict[str, str]) -> str:
  """--FLAG=VALUE with a folder of this machine as a placeholder: --workdir always
  (<workdir>), and any absolute path in a value, named by `names` or its flag
  (--data_dir=<data_dir>), by the key before it (--manual_dir=wikipedia=<wikipedia_dir>)
  or by its field (--override=data.data_dir=<data_dir>)."""
  name, eq, value = arg.partition("=")
  flag = name.lstrip("-")
  if not eq or not name.startswith("-"):
    return arg
  if flag == "workdir":
    return f"{name}=<workdir>"
  key, eq2, path = value.rpartition("=")
  path = path if eq2 else value
  if not (os.path.isabs(path) or path.startswith("~")):
    return arg
  if not eq2:
    return f"{name}=<{names.get(flag, flag)}>"
  leaf = key.rpartition(":")[2].rpartition(".")[2]
  return f"{name}={key}=<{leaf if '_' in leaf else leaf + '_dir'}>"


def recorded_args(
    args: list[str], drop: tuple[str, ...] = (), names: dict[str, str] | None = None
) -> list[str]:
  """A command line as a committed result records it: "--flag value" joined as
  "--flag=value", the flags in `drop` left out, and the folders of this machine written as
  placeholders (`_placeholder`; `names` maps a flag to its placeholder's name)."""
  joined, rest = [], list(args)
  while rest:
    a = rest.pop(0)
    if a.startswith("-") and "=" not in a and rest and not rest[0].startswith("-"):
      a = f"{a}={rest.pop(0)}"
    joined.append(a)
  names = names or {}
  return [_placeholder(a, names) for a in joined if a.partition("=")[0].lstrip("-") not in drop]
