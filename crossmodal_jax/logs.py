"""Keeps our INFO logs readable: libraries' INFO chatter (orbax logs several lines per
checkpoint, TFDS one per builder) is dropped; their warnings and errors still show, but
for TFDS's warnings about what a fresh build is about to create (MESSAGES_DROPPED)."""

from __future__ import annotations

import logging as std_logging

_QUIET = ("orbax", "tensorflow_datasets", "etils", "grain", "absl/flags", "jax/_src")


# Warnings that say nothing to a user: TFDS's "Variant folder ... has no dataset_info.json"
# precedes every fresh build of a dataset, and "custom data configuration" every builder
# of this package (their configs are named by the source folder's fingerprint).
MESSAGES_DROPPED = ("custom data configuration", "has no dataset_info.json", "Variant folder")


class _LibraryInfoFilter(std_logging.Filter):

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING and not any(
        m in str(record.msg) for m in MESSAGES_DROPPED
    ):
      return True
    path = record.pathname.replace("\\", "/")
    return not any(f"/{name}/" in path for name in _QUIET)


_FILTER = _LibraryInfoFilter()


def quiet_library_logs() -> None:
  """Installs the filter on the absl and root handlers (idempotent)."""
  for logger in (std_logging.getLogger(), std_logging.getLogger("absl")):
    if _FILTER not in logger.filters:
      logger.addFilter(_FILTER)
    for handler in logger.handlers:
      if _FILTER not in handler.filters:
        handler.addFilter(_FILTER)
