"""Training batches: the default sampler and the seeding rule every sampler follows.

A sampler is a pure function of (split, batch size, seed, epoch) that yields the global
batches of one epoch as dicts of numpy arrays (every leaf with a leading batch axis that
the training step splits over the devices). Because it depends on nothing else, a run
resumed at an epoch boundary replays exactly the batches an unbroken run sees.
`epoch_rng(seed, epoch)` gives a sampler its own generator for that epoch (`epoch_seed`
its 32-bit seed), and `gather_batches` turns batches of row indices into batches of
arrays, reading a lazily read split ahead. The default sampler is `permutation_batches`;
a method with a sampler of its own keeps it in its folder, built on these two.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import grain
import numpy as np

from crossmodal_jax.data import common
from crossmodal_jax.data import lazy


def epoch_seed(seed: int, epoch: int) -> int:
  """A 32-bit seed that is a function of (seed, epoch) alone."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
  """A numpy generator for epoch `epoch` of a run seeded `seed`."""
  return np.random.default_rng(np.random.SeedSequence([seed, epoch]))


# Threads that read ahead the batches of a lazily read split (data.lazy_mb); 0: none.
READ_THREADS = min(8, os.cpu_count() or 1)


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
  its shape. Evaluation never drops anything. The permutation is grain's (a
  `MapDataset.range` shuffled by the epoch's seed); each batch gathers its rows with one
  index per array, so a lazily read split reads a batch in one go, and its next batches
  are read ahead by `READ_THREADS` threads (the same batches, in the same order).
  """
  arrays = {k: split[k] for k in keys}
  rows = grain.MapDataset.range(len(split)).shuffle(seed=epoch_seed(seed, epoch))
  batches = rows.batch(batch_size, drop_remainder=drop_remainder)
  yield from gather_batches(batches, arrays)


def gather_batches(
    batches: Sequence[np.ndarray] | grain.MapDataset, arrays: dict[str, Any]
) -> Iterator[dict[str, np.ndarray]]:
  """{key: array[rows]} for each batch of row indices, in order.

  When one of `arrays` is read lazily from files (`lazy.is_lazy`), grain's
  `READ_THREADS` threads gather the next batches while the steps run; the batches and
  their order are the same either way.
  """
  gather = lambda rows: {k: v[rows] for k, v in arrays.items()}
  if READ_THREADS < 1 or not any(lazy.is_lazy(v) for v in arrays.values()):
    for rows in batches:
      yield gather(rows)
    return
  if not isinstance(batches, grain.MapDataset):
    batches = grain.MapDataset.source(list(batches))
  yield from batches.map(gather).to_iter_dataset(
      grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=2 * READ_THREADS)
  )


def num_permutation_batches(
    split: common.Split, batch_size: int, drop_remainder: bool = True
) -> int:
  if drop_remainder:
    return len(split) // batch_size
  return -(-len(split) // batch_size)
