"""A feature folder's raw texts: `train_text.jsonl`, `valid_text.jsonl`, `test_text.jsonl`.

Each holds one JSON object per line, in the split's row order (the order of the rows of
its feature files): ``"text"``, the item's raw text (a string; several captions of one
item joined by the user), an optional ``"id"`` (a string) and an optional ``"group"`` (a
string or an integer: rows of one group, e.g. one row per caption of an image, are each
other's pairs under ``eval.relevance="pair"``). Other keys are ignored; blank lines at the
end of a file are too. :func:`read` validates a file and returns its texts, ids and
groups; every problem is one
:class:`~crossmodal_jax.data.tfds_io.DatasetFileError` naming the file and, for a line,
its number. The builder (:mod:`crossmodal_jax.data.sources.feature_builder`) reads them
with the feature files, before anything is built; the loader
(:mod:`crossmodal_jax.data.sources.features`) makes the text features from them.
"""

from __future__ import annotations

import json
from pathlib import Path

from crossmodal_jax.data.tfds_io import DatasetFileError, DatasetFileNotFoundError

__all__ = ["FILES", "has_texts", "path", "read", "require"]

# The raw-text file of each split prefix of the feature files.
FILES = {"train": "train_text.jsonl", "valid": "valid_text.jsonl", "test": "test_text.jsonl"}


def path(root: Path, prefix: str) -> Path:
  """The raw-text file of split ``prefix`` ("train", "valid" or "test") in ``root``."""
  return Path(root) / FILES[prefix]


def has_texts(root: Path) -> bool:
  """Whether the folder holds raw texts (any of the three files)."""
  return any(path(root, p).is_file() for p in FILES)


def require(root: Path, prefix: str) -> Path:
  """The raw-text file of split ``prefix``; DatasetFileNotFoundError when it is missing."""
  file = path(root, prefix)
  _require_file(file)
  return file


def _require_file(file: Path) -> None:
  if not file.is_file():
    raise DatasetFileNotFoundError(
        f"{file}: required raw-text file is missing (a folder with raw texts has one for "
        "each split of its feature files)"
    )


def read(file: Path, rows: int, rows_of: str) -> tuple[list[str], list[str], list[str]]:
  """The texts, ids and groups (``""`` where a line has none; a group as a string) of a
  raw-text file.

  Args:
    file: the ``*_text.jsonl`` file.
    rows: the row count of its split's feature files, which the file must have.
    rows_of: the feature file those rows are counted in, for the message.

  Raises:
    DatasetFileNotFoundError: the file is missing.
    DatasetFileError: a line that is not UTF-8 or not a JSON object, lacks "text", has a
      "text" or "id" that is not a string or a "group" that is neither a string nor an
      integer, or a row count other than ``rows``.
  """
  _require_file(file)
  try:
    lines = file.read_bytes().split(b"\n")
  except OSError as e:
    raise DatasetFileError(f"{file}: cannot read ({e})") from None
  while lines and not lines[-1].strip():
    lines.pop()
  texts, ids, groups = [], [], []
  for number, line in enumerate(lines, 1):
    where = f"{file}, line {number}"
    try:
      item = json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"))
    except UnicodeDecodeError as e:
      raise DatasetFileError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
      raise DatasetFileError(
          f"{where}: not JSON ({e.msg} at column {e.colno}); each line is one JSON object "
          'such as {"text": "...", "id": "..."}'
      ) from None
    if not isinstance(item, dict):
      raise DatasetFileError(f"{where}: a JSON {_json_type(item)}, not an object")
    if "text" not in item:
      raise DatasetFileError(f'{where}: the object has no "text" (keys: {sorted(item)})')
    text = item["text"]
    if not isinstance(text, str):
      raise DatasetFileError(f'{where}: "text" is a JSON {_json_type(text)}, not a string')
    text_id = item.get("id", "")
    if not isinstance(text_id, str):
      raise DatasetFileError(f'{where}: "id" is a JSON {_json_type(text_id)}, not a string')
    group = item.get("group", "")
    if isinstance(group, bool) or not isinstance(group, (str, int)):
      raise DatasetFileError(
          f'{where}: "group" is a JSON {_json_type(group)}, not a string or an integer'
      )
    texts.append(text)
    ids.append(text_id)
    groups.append(str(group))
  if len(texts) != rows:
    raise DatasetFileError(
        f"{file}: {len(texts)} lines but {rows_of} has {rows} rows (one line per row, in "
        "the same order)"
    )
  return texts, ids, groups


def _json_type(value) -> str:
  names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
  names[dict] = "object"
  return "null" if value is None else names.get(type(value), type(value).__name__)
