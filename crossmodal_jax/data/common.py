"""The common form of a dataset that every method consumes.

A `Split` is a dict of aligned numpy arrays, one row per (image, text) pair. Every split
has at least:

- "image": float32 [n, d_img], the global image features;
- "text":  float32 [n, d_txt], fixed text features (what DRSL and HCMSL read);
- "label": int32 [n] class ids, or a 0/1 float32 [n, C] multi-hot matrix.

Datasets add the other forms a method may need under documented keys: "image_regions"
[n, R, d] (MCSM), "word_ids" int32 [n, L] and "word_mask" bool [n, L] (MCSM, text CNN),
"bow" float32 [n, V] (SCANet); "text_ids" int32 [n, L] and "text_values" float32 [n, L],
the padded non-zeros of "text" (`sparse_rows`; DRSL's `model.sparse_text` derives them when
a split lacks them). Metadata that is not per-row (the vocabulary, a word-vector table,
class names, the text-feature recipe) lives in `Dataset.meta`, which always holds
"num_classes" (methods see the metadata, not the dataset).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

REQUIRED_KEYS = ("image", "text", "label")


@dataclasses.dataclass
class Split:
  """Aligned per-pair arrays of one split."""

  arrays: dict[str, np.ndarray]

  def __post_init__(self):
    missing = [k for k in REQUIRED_KEYS if k not in self.arrays]
    if missing:
      raise ValueError(f"Split lacks required arrays {missing}; has {sorted(self.arrays)}.")
    sizes = {k: len(v) for k, v in self.arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"Split arrays have different row counts: {sizes}.")

  def __len__(self) -> int:
    return len(self.arrays["label"])

  def __getitem__(self, key: str) -> np.ndarray:
    return self.arrays[key]

  def __contains__(self, key: str) -> bool:
    return key in self.arrays

  @property
  def multi_label(self) -> bool:
    return self.arrays["label"].ndim == 2


@dataclasses.dataclass
class Dataset:
  """Train / validation / test splits plus shared metadata."""

  name: str
  train: Split
  validation: Split
  test: Split
  num_classes: int
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.meta.setdefault("num_classes", self.num_classes)

  @property
  def splits(self) -> Mapping[str, Split]:
    return {"train": self.train, "validation": self.validation, "test": self.test}

  def dims(self) -> dict[str, tuple[int, ...]]:
    """Per-row shapes of every array (from the training split)."""
    return {k: tuple(v.shape[1:]) for k, v in self.train.arrays.items()}

  def summary(self) -> str:
    dims = ", ".join(f"{k}{list(s)}" for k, s in sorted(self.dims().items()))
    return (
        f"{self.name}: train {len(self.train)}, validation {len(self.validation)}, "
        f"test {len(self.test)}, {self.num_classes} classes; {dims}"
    )
