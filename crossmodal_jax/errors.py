"""The project's error for problems with what the user gave: config, data files, workdir.

A `UserError` means the input is wrong, not the code: a bad config value, a bad or
missing data file, a batch that does not divide among the devices, a workdir without
checkpoints. The entry points (`experiments/`) print its message as one line,
`error: ...`, and exit with status 1; any other exception keeps its traceback. Set
`CROSSMODAL_TRACEBACK=1` to see the traceback of a user error too.

`UserError` is a `ValueError` (and `MissingError` also a `FileNotFoundError`), so code
that catches those keeps working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# The environment variable that makes the entry points show a user error's traceback.
TRACEBACK_ENV = "CROSSMODAL_TRACEBACK"


class UserError(ValueError):
  """Bad input from the user; the message names the file, field or value at fault."""


class MissingError(UserError, FileNotFoundError):
  """A file, folder or checkpoint the user pointed at does not exist."""


@contextlib.contextmanager
def config_values(what: str = "") -> Iterator[None]:
  """Turns a ValueError raised inside into a UserError with the same message.

  For code that validates config values as it uses them (a method's constructor and
  initialisation, the optimizer from `train.*`): their ValueError ("Unknown fusion
  'foo'") is the config's fault. The original exception stays chained as `__cause__`.
  `what`, if given, prefixes the message ("model: Unknown fusion 'foo'; ...").
  """
  try:
    yield
  except UserError:
    raise
  except ValueError as e:
    raise UserError(f"{what}: {e}" if what else str(e)) from e
