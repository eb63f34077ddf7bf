"""Training batches: the default sampler and the seeding rule every sampler follows.

A sampler is a pure function of (split, batch size, seed, epoch) that yields the global
batches of one epoch as dicts of numpy arrays (every leaf with a leading batch axis that
the training step splits over the devices). Because it depends on nothing else, a run
resumed at an epoch boundary replays exactly the batches an unbroken run sees.
`epoch_rng(seed, epoch)` gives a sampler its own generator for that epoch.
"""

from __future__ import annotations

from typing import Iterator

import grain
import numpy as np

from crossmodal_jax.data import common


def epoch_seed(seed: int, epoch: int) -> int:
  """A 32-bit seed that is a function of (seed, epoch) alone."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
  """A numpy generator for epoch `epoch` of a run seeded `seed`."""
  return np.random.default_rng(np.random.SeedSequence([seed, epoch]))


class _SplitSource:
  """grain random-access source over a split's arrays (only the keys a method reads)."""

  def __init__(self, split: common.Split, keys: tuple[str, ...]):
    self._arrays = {k: split[k] for k in keys}
    self._n = len(split)

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in self._arrays.items()}


def permutation_batches(
    split: common.Split,
    keys: tuple[str, ...],
    batch_size: int,
    seed: int,
    epoch: int,
    drop_remainder: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
  """The rows of `split` in a seeded permutation, `batch_size` at a time.

  By default the last partial batch is dropped so every step has the same shape (the
  permutation changes every epoch, so each row is still seen); with `drop_remainder`
  False it is kept, as PyTorch's DataLoader does, and the step compiles once more for
  its shape. Evaluation never drops anything.
  """
  ds = grain.MapDataset.source(_SplitSource(split, keys))
  ds = ds.shuffle(seed=epoch_seed(seed, epoch))
  return iter(ds.batch(batch_size, drop_remainder=drop_remainder))


def num_permutation_batches(
    split: common.Split, batch_size: int, drop_remainder: bool = True
) -> int:
  if drop_remainder:
    return len(split) // batch_size
  return -(-len(split) // batch_size)
