"""SCANet's training pairs: a fixed set of (image, text) pairs drawn once from a split,
and the batches of one epoch over them.

`sample_pairs` draws the pairs (every true pair, then distinct relevant and irrelevant
pairs, uniformly; int or multi-hot labels); `max_items_per_batch` and `pair_batches` cut
an epoch's reshuffle of them into batches that list each distinct image and text once,
padded to static shapes. Every epoch's batches are a function of (seed, epoch)
(`sampling.epoch_rng`), as every sampler's.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from crossmodal_jax import sampling

# How `pair_batches` orders an epoch's pairs (`model.pair_order`): each text's pairs
# together, or all of them shuffled uniformly.
PAIR_ORDERS = ("text", "shuffled")


@dataclasses.dataclass(frozen=True)
class PairSet:
  """A fixed set of training pairs: image row, text row (of one split) and whether they
  are a relevant pair (the true pair, or rows of the same label / sharing a label)."""

  image: np.ndarray  # int32 [P]
  text: np.ndarray  # int32 [P]
  positive: np.ndarray  # bool [P]

  def __len__(self) -> int:
    return len(self.image)


def _class_members(labels: np.ndarray) -> list[np.ndarray]:
  return [np.flatnonzero(labels == c) for c in np.unique(labels)]


# Most entries of one label-pattern x label-pattern block the multi-hot sampler holds.
_BLOCK_ENTRIES = 1 << 21


def sample_pairs(labels: np.ndarray, num_positive: int, num_negative: int, seed: int) -> PairSet:
  """Distinct training pairs drawn once from a split, deterministically from `seed`.

  Positives are every true (i, i) pair first, then distinct relevant pairs (i, j), i != j,
  drawn uniformly; negatives are distinct irrelevant pairs drawn uniformly (as SCANet's
  code does: all true pairs + random same-class + random different-class pairs). With int
  labels [n] a pair is relevant when its labels are equal; with 0/1 multi-hot labels
  [n, C] when the rows share at least one label, so a row with no label is in no relevant
  pair but its true one, and a negative of every other row. Pairs are returned positives
  first; samplers shuffle them each epoch. Multi-hot labels are handled per distinct label
  pattern, in blocks: memory stays bounded for any n (no n x n matrix).

  Raises:
    ValueError: for labels that are neither [n] nor [n, C], or if the split has fewer
      such pairs than asked.
  """
  labels = np.asarray(labels)
  if labels.ndim == 2:
    if not np.all((labels == 0) | (labels == 1)):
      raise ValueError(
          f"2-D labels must be 0/1 multi-hot rows [n, C]; shape {labels.shape} holds "
          f"{labels[(labels != 0) & (labels != 1)][0]!r} (int labels are a vector [n])."
      )
    return _sample_multi_hot_pairs(labels != 0, num_positive, num_negative, seed)
  if labels.ndim != 1:
    raise ValueError(
        f"Pair sampling needs int labels [n] or multi-hot labels [n, C], got shape "
        f"{labels.shape}."
    )
  n = len(labels)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9A125]))
  members = _class_members(labels)
  sizes = np.array([len(m) for m in members], dtype=np.int64)
  n_true = min(num_positive, n)
  n_same = num_positive - n_true
  same_space = sizes * (sizes - 1)
  diff_space = sizes * (n - sizes)
  _check_pair_counts(num_positive, num_negative, n, same_space.sum(), diff_space.sum())

  def draw(space, count, pick):
    flat = rng.choice(int(space.sum()), size=count, replace=False)
    starts = np.cumsum(space) - space
    cls = np.searchsorted(np.cumsum(space), flat, side="right")
    image, text = np.empty(count, np.int64), np.empty(count, np.int64)
    for c in np.unique(cls):
      rows = cls == c
      image[rows], text[rows] = pick(c, flat[rows] - starts[c])
    return image, text

  def same(c, r):
    m = members[c]
    a, b = np.divmod(r, len(m) - 1)
    return m[a], m[b + (b >= a)]

  others = [np.setdiff1d(np.arange(n), m) for m in members]

  def diff(c, r):
    a, b = np.divmod(r, n - len(members[c]))
    return members[c][a], others[c][b]

  true = np.sort(rng.choice(n, size=n_true, replace=False))
  si, st = draw(same_space, n_same, same)
  di, dt = draw(diff_space, num_negative, diff)
  return _pair_set(true, (si, st), (di, dt))


def _check_pair_counts(num_positive, num_negative, n, positive_space, negative_space):
  """Raises unless the split's n true pairs plus `positive_space` relevant pairs (i != j)
  and its `negative_space` irrelevant ones hold the pairs asked for."""
  if num_positive - min(num_positive, n) > positive_space:
    raise ValueError(
        f"Asked for {num_positive} positive pairs; the split's {n} rows have "
        f"{n + positive_space}."
    )
  if num_negative > negative_space:
    raise ValueError(
        f"Asked for {num_negative} negative pairs; the split's {n} rows have {negative_space}."
    )


def _pair_set(true: np.ndarray, positive, negative) -> PairSet:
  """The PairSet of the true pairs, then the (image, text) positives, then the negatives."""
  (pi, pt), (ni, nt) = positive, negative
  return PairSet(
      image=np.concatenate([true, pi, ni]).astype(np.int32),
      text=np.concatenate([true, pt, nt]).astype(np.int32),
      positive=np.concatenate([np.ones(len(true) + len(pi), bool), np.zeros(len(ni), bool)]),
  )


def _sample_multi_hot_pairs(
    hot: np.ndarray, num_positive: int, num_negative: int, seed: int
) -> PairSet:
  """`sample_pairs` for bool multi-hot labels [n, C].

  Rows are grouped by label pattern (the distinct rows of `hot`). The partners of a row
  of pattern a are the rows of the patterns related to a (sharing a label with it; for
  negatives, sharing none) but the row itself, listed by (pattern, row). A pair is a rank
  in the concatenation over patterns a of (rows of a) x (their partners), so uniform
  distinct ranks are uniform distinct pairs. Pattern relations are computed in blocks of
  at most `_BLOCK_ENTRIES` pattern pairs: two passes over the pattern pairs, one to count
  the partners, one to find those drawn.
  """
  n = hot.shape[0]
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9A125]))
  patterns, inverse, counts = np.unique(hot, axis=0, return_inverse=True, return_counts=True)
  counts = counts.astype(np.int64)
  num_patterns = len(patterns)
  members = np.argsort(inverse.reshape(-1), kind="stable")  # rows by (pattern, row)
  starts = np.cumsum(counts) - counts  # pattern a's rows: members[starts[a]:][:counts[a]]
  nonempty = patterns.any(axis=1)  # a row shares a label with itself iff it has one
  # Float sums of row counts are exact below 2**24 in float32.
  dtype = np.float32 if n < 2**24 else np.float64
  vectors = patterns.astype(dtype)
  weights = counts.astype(dtype)
  block = max(1, _BLOCK_ENTRIES // max(num_patterns, 1))

  def sharing_rows(rows: np.ndarray) -> np.ndarray:
    """[len(rows), num_patterns]: 1 where pattern `rows[r]` shares a label with pattern b,
    times b's row count."""
    x = vectors[rows] @ vectors.T  # labels in common
    np.minimum(x, 1.0, out=x)
    x *= weights
    return x

  sharing = np.zeros(num_patterns, np.int64)  # rows sharing a label with each pattern
  for s in range(0, num_patterns, block):
    rows = np.arange(s, min(s + block, num_patterns))
    sharing[rows] = np.rint(sharing_rows(rows).sum(axis=1, dtype=np.float64))
  partners = {True: sharing - nonempty, False: n - sharing - ~nonempty}
  space = {k: counts * v for k, v in partners.items()}
  _check_pair_counts(num_positive, num_negative, n, space[True].sum(), space[False].sum())

  def locate(positive: bool, count: int):
    """(pattern, member, offset) of `count` distinct uniform ranks: the image row is
    member `member` of the pattern, the text row its partner number `offset`."""
    ranks = rng.choice(int(space[positive].sum()), size=count, replace=False)
    ends = np.cumsum(space[positive])
    pattern = np.searchsorted(ends, ranks, side="right")
    member, offset = np.divmod(
        ranks - (ends - space[positive])[pattern], partners[positive][pattern]
    )
    return pattern, member, offset

  n_true = min(num_positive, n)
  true = np.sort(rng.choice(n, size=n_true, replace=False))
  drawn = {True: locate(True, num_positive - n_true), False: locate(False, num_negative)}
  text = {k: np.empty(len(v[0]), np.int64) for k, v in drawn.items()}
  picked = np.unique(np.concatenate([drawn[True][0], drawn[False][0]]))
  by_pattern = {}  # kind -> (draws sorted by pattern, start of each picked pattern's)
  for positive, (pattern, _, _) in drawn.items():
    order = np.argsort(pattern, kind="stable")
    by_pattern[positive] = order, np.searchsorted(pattern[order], np.append(picked, num_patterns))
  all_ends = np.cumsum(counts)
  for s in range(0, len(picked), block):
    chunk = picked[s : s + block]
    sharing_ends = np.cumsum(sharing_rows(chunk), axis=1)
    for r, a in enumerate(chunk):
      for positive, (pattern, member, offset) in drawn.items():
        order, bounds = by_pattern[positive]
        sel = order[bounds[s + r] : bounds[s + r + 1]]
        if not sel.size:
          continue
        # ends[b]: the end of pattern b's rows in the partner list of pattern a.
        ends = np.rint(sharing_ends[r]).astype(np.int64)
        if not positive:
          ends = all_ends - ends
        # Skip the image row itself where it is among its own partners.
        own = ends[a] - counts[a] + member[sel]
        pos = offset[sel] + ((nonempty[a] == positive) & (offset[sel] >= own))
        b = np.searchsorted(ends, pos, side="right")  # the partner's pattern
        text[positive][sel] = members[starts[b] + pos - (ends[b] - counts[b])]
  image = {k: members[starts[v[0]] + v[1]] for k, v in drawn.items()}
  return _pair_set(true, (image[True], text[True]), (image[False], text[False]))


def max_items_per_batch(pairs: PairSet, batch_size: int, order: str, multiple: int = 1):
  """(images, texts): the most distinct images and texts any batch of `pair_batches` can
  hold, rounded up to a multiple of `multiple` (the devices), so batches have static
  shapes. With `order="text"` a batch holds at most the m texts of smallest pair counts
  whose counts fit in it, plus the two texts cut at its ends."""
  check_pair_order(order)
  texts = batch_size
  if order == "text":
    counts = np.bincount(pairs.text)
    counts = np.sort(counts[counts > 0])
    texts = int(np.searchsorted(np.cumsum(counts), batch_size, side="right")) + 2
  texts = min(texts, batch_size, len(np.unique(pairs.text)))
  round_up = lambda x: -(-x // multiple) * multiple
  return round_up(min(batch_size, len(np.unique(pairs.image)))), round_up(texts)


def check_pair_order(order: str) -> str:
  if order not in PAIR_ORDERS:
    raise ValueError(f"Unknown pair order {order!r}; choose one of {PAIR_ORDERS}.")
  return order


def pair_batches(
    pairs: PairSet,
    batch_size: int,
    seed: int,
    epoch: int,
    order: str,
    max_images: int,
    max_texts: int,
) -> Iterator[dict[str, np.ndarray]]:
  """The pairs of one epoch, `batch_size` at a time, each item of a batch listed once.

  Every epoch reshuffles the pairs (a function of (seed, epoch)); with `order="text"` the
  shuffle keeps each text's pairs together (texts in a random order, their pairs in a
  random order), so a batch holds few distinct texts and a method encodes each once for
  all of its pairs. The last partial batch is dropped (the next epoch's shuffle differs).

  Yields:
    {"image_rows": int32 [max_images], "text_rows": int32 [max_texts]} (the split rows
    of the batch's distinct items, padded with row 0, which no pair uses), and per pair
    "pair_image" / "pair_text" (int32 [batch_size], positions in those lists) and
    "pair_positive" (float32 [batch_size]).
  """
  rng = sampling.epoch_rng(seed, epoch)
  check_pair_order(order)
  if order == "text":
    text_rank = rng.permutation(int(pairs.text.max()) + 1)[pairs.text]
    perm = np.lexsort((rng.random(len(pairs)), text_rank))
  else:
    perm = rng.permutation(len(pairs))
  for start in range(0, len(pairs) - batch_size + 1, batch_size):
    idx = perm[start : start + batch_size]
    images, pair_image = np.unique(pairs.image[idx], return_inverse=True)
    texts, pair_text = np.unique(pairs.text[idx], return_inverse=True)
    if len(images) > max_images or len(texts) > max_texts:
      raise ValueError(
          f"A batch holds {len(images)} images and {len(texts)} texts, more than the "
          f"{max_images} and {max_texts} planned (max_items_per_batch)."
      )
    yield {
        "image_rows": np.pad(images, (0, max_images - len(images))).astype(np.int32),
        "text_rows": np.pad(texts, (0, max_texts - len(texts))).astype(np.int32),
        "pair_image": pair_image.astype(np.int32),
        "pair_text": pair_text.astype(np.int32),
        "pair_positive": pairs.positive[idx].astype(np.float32),
    }
