"""Large feature-file splits read lazily from the built dataset (crossmodal_jax.data.lazy)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.io

from configs import default
from crossmodal_jax import baselines
from crossmodal_jax import data as data_lib
from crossmodal_jax import methods
from crossmodal_jax import metrics
from crossmodal_jax import ranking
from crossmodal_jax import training
from crossmodal_jax.data import lazy


def _write_features(root: Path, seed: int = 0, multi: bool = False) -> Path:
  """A DRSL-layout .mat folder: 4 classes, image and text features that show them (with
  `multi`, each row also gets each other class with probability 0.3: an n x 4 matrix)."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(4, 12))
  root.mkdir(parents=True)
  for prefix, n in (("train", 160), ("valid", 40), ("test", 60)):
    hot = np.eye(4)[rng.integers(0, 4, n)]
    if multi:
      hot = np.maximum(hot, rng.random((n, 4)) < 0.3)
    img = hot @ centers * 3 + rng.normal(size=(n, 12)) + 5.0  # off-centre: standardising
    txt = hot @ centers[:, :7] + 0.5 * rng.normal(size=(n, 7))
    lab = hot.astype(np.uint8) if multi else hot.argmax(1)[:, None]
    for name, x in (("img", img), ("txt", txt), ("img_lab", lab)):
      scipy.io.savemat(root / f"{prefix}_{name}.mat", {f"{prefix}_{name}": x})
  return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  base = tmp_path_factory.mktemp("lazy")
  return _write_features(base / "src"), base / "data"


def _config(folder, lazy_mb: float, standardize: bool = True):
  src, data_dir = folder
  config = default.get_config("drsl,features,ci")
  config.data.manual_dir = str(src)
  config.data.data_dir = str(data_dir)
  config.data.lazy_mb = lazy_mb
  config.data.standardize_image = standardize
  return config


def test_lazy_columns_read_what_the_loaded_arrays_hold(folder):
  whole = data_lib.load_dataset(_config(folder, -1.0).data)
  part = data_lib.load_dataset(_config(folder, 0.0).data)
  assert not lazy.is_lazy(whole.train["image"])
  for name in ("train", "validation", "test"):
    w, p = whole.splits[name], part.splits[name]
    assert lazy.is_lazy(p["image"]) and lazy.is_lazy(p["text"])
    assert isinstance(p["label"], np.ndarray)  # labels are small: loaded
    np.testing.assert_array_equal(p["label"], w["label"])
    np.testing.assert_array_equal(np.asarray(p["text"]), w["text"])
    # Standardised with statistics scanned a chunk at a time (float64): equal to 1e-5.
    np.testing.assert_allclose(np.asarray(p["image"]), w["image"], atol=1e-5)
    assert p["image"].shape == w["image"].shape and p["image"].dtype == np.float32
  x, y = part.train["text"], whole.train["text"]
  n = len(y)
  rows = np.array([5, 3, 3, n - 1, 0])
  mask = np.arange(n) % 3 == 0
  for index in (7, -2, slice(10, 40, 3), slice(None, None, -7), rows, rows.reshape(1, 5), mask):
    np.testing.assert_array_equal(x[index], y[index], err_msg=repr(index))
  sub = x.subset(mask)
  assert len(sub) == mask.sum()
  np.testing.assert_array_equal(sub[[2, 0]], y[mask][[2, 0]])
  np.testing.assert_array_equal(sub.map(lambda b: 2 * b)[1:4], 2 * y[mask][1:4])
  assert x[[]].shape == (0, 7) and x[np.zeros(0, int)].shape == (0, 7)
  for bad, first in ((n, n), (-n - 1, -n - 1), (np.arange(n - 2, n + 30), n)):
    with pytest.raises(IndexError, match=f"row {first} is out of range for the {n} rows"):
      x[bad]
  with pytest.raises(IndexError, match="rows only"):
    x[0, 1]


def test_lazy_image_power_equals_the_loaded_one(folder):
  configs = [_config(folder, lazy_mb) for lazy_mb in (-1.0, 0.0)]
  for config in configs:
    config.data.image_power = 0.5
  whole, part = (data_lib.load_dataset(c.data) for c in configs)
  assert lazy.is_lazy(part.test["image"])
  # Rooted, then standardised with statistics of the rooted training split.
  raw = data_lib.load_dataset(_config(folder, -1.0, standardize=False).data)
  expected = data_lib.standardize(data_lib.power_normalize(raw, "image", 0.5), "image")
  for name in ("train", "test"):
    np.testing.assert_allclose(
        np.asarray(part.splits[name]["image"]), expected.splits[name]["image"], atol=1e-5
    )
    np.testing.assert_allclose(
        whole.splits[name]["image"], expected.splits[name]["image"], atol=1e-5
    )


def test_row_reader_follows_the_index_feature():
  """Records stored out of row order are read in the order of their `index`."""

  class Source:

    def __init__(self):
      self.examples = [{"index": i, "x": np.full(3, float(i))} for i in (2, 0, 3, 1)]
      self.calls = []

    def __len__(self):
      return len(self.examples)

    def __getitems__(self, records):
      self.calls.append(list(records))
      return [self.examples[r] for r in records]

  source = Source()
  reader = lazy.RowReader(source, ("x",), eager=("index",))
  np.testing.assert_array_equal(reader.eager["index"], [0, 1, 2, 3])
  column = lazy.LazyColumn(reader, "x", (3,), np.float32)
  np.testing.assert_array_equal(column[[3, 0]][:, 0], [3.0, 0.0])
  np.testing.assert_array_equal(np.asarray(column)[:, 0], [0.0, 1.0, 2.0, 3.0])
  calls = len(source.calls)
  column[[2, 1]], column[[2, 1]]  # the same rows again: this thread's last read
  assert len(source.calls) == calls + 1
  batch = column[[2, 1]]
  batch[:] = 99.0  # what is handed out is a copy: the next read is not changed
  np.testing.assert_array_equal(column[[2, 1]][:, 0], [2.0, 1.0])


def test_batches_and_encodings_of_a_lazy_split_equal_the_loaded_ones(folder):
  config = _config(folder, 0.0)
  part = data_lib.load_dataset(config.data)
  whole = data_lib.load_dataset(_config(folder, -1.0).data)
  method = methods.get_method(config, part.dims(), part.meta)
  for epoch in (0, 1):
    got = list(method.batches(part.train, 32, 7, epoch))
    want = list(method.batches(whole.train, 32, 7, epoch))
    assert len(got) == len(want) == 160 // 32
    for g, w in zip(got, want):
      assert set(g) == set(w)
      for k in w:
        np.testing.assert_allclose(g[k], w[k], atol=1e-5, err_msg=k)
  # The classical baselines fit on whole arrays: a lazy split is read for them.
  for gallery in ("test", "train"):
    got = baselines.run("cca", part, components=(4,), gallery_split=gallery)["map_all"]
    want = baselines.run("cca", whole, components=(4,), gallery_split=gallery)["map_all"]
    np.testing.assert_allclose(got["avg"], want["avg"], atol=1e-4)
  double = jax.jit(lambda x: 2 * x)
  np.testing.assert_allclose(
      ranking.encode(double, part.test["image"], 25),
      ranking.encode(double, whole.test["image"], 25),
      atol=2e-5,
  )


@pytest.mark.parametrize("method_name", ["drsl", "hcmsl"])
def test_samplers_read_a_lazy_split_ahead_on_threads(tmp_path, monkeypatch, method_name):
  """DRSL's permutation batches and HCMSL's semi-supervised batches read lazy columns on
  grain's threads, and give the batches of the loaded split."""
  readers = []
  real_read = lazy.RowReader.read

  def read(self, rows):
    readers.append(threading.current_thread() is threading.main_thread())
    return real_read(self, rows)

  src = _write_features(tmp_path / "src", seed=2)
  configs = []
  for lazy_mb in (0.0, -1.0):
    config = default.get_config(f"{method_name},features,ci")
    config.data.update(manual_dir=str(src), data_dir=str(tmp_path / "data"), lazy_mb=lazy_mb)
    configs.append(config)
  part, whole = (data_lib.load_dataset(c.data) for c in configs)
  method = methods.get_method(configs[0], part.dims(), part.meta)
  want = list(method.batches(whole.train, 40, 3, 1))
  monkeypatch.setattr(lazy.RowReader, "read", read)
  got = list(method.batches(part.train, 40, 3, 1))
  assert readers and not any(readers)  # every read on a worker thread
  assert len(got) == len(want) > 1
  for g, w in zip(got, want):
    assert set(g) == set(w)
    for k in w:
      np.testing.assert_allclose(g[k], w[k], atol=1e-5, err_msg=k)


def test_training_on_a_lazy_split_reads_batches_not_the_split(tmp_path, monkeypatch):
  """Training and its validation read a batch of rows at a time, never the whole split
  (the test split's evaluation encodes the same way: the test above). HCMSL on multi-hot
  labels: its semi-supervised sampler gathers from the lazy columns too."""
  reads = []
  real_read = lazy.RowReader.read

  def read(self, rows):
    reads.append(len(rows))
    return real_read(self, rows)

  monkeypatch.setattr(lazy.RowReader, "read", read)
  monkeypatch.setattr(lazy, "CHUNK", 30)  # the standardisation's scan, 30 rows at a time
  src = _write_features(tmp_path / "src", seed=1, multi=True)
  config = default.get_config("hcmsl,features,ci")
  config.data.update(manual_dir=str(src), data_dir=str(tmp_path / "data"), lazy_mb=0.0)
  config.model.update(image_layers=(32,), text_layers=(32,), shared_layers=(32,), dim=16)
  config.train.update(num_epochs=3, batch_size=20, progress_bar=False)
  config.eval.batch_size = 20  # validation: 40 rows, read 20 at a time
  training.train(config, str(tmp_path / "run"))
  assert reads and max(reads) <= 30
  assert sum(reads) >= 3 * 160  # every training row, every epoch
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
  # Multi-hot relevance ("shares a label"), about 1.9 labels of 4 per row.
  labels = data_lib.load_dataset(config.data).validation["label"]
  chance = float(metrics.relevance(labels, labels).mean())  # a random ranking's mAP, ~0.7
  assert epochs[-1]["validation_map"] > chance + 0.08, (epochs[-1], chance)
