"""The benchmark's feature-read case: a training split of XMediaNet's width (4,096-d
images, 300-d texts) read for one epoch of shuffled batches, loaded whole against read
lazily from the built array_record files (`data.lazy_mb`), with the peak host memory
each takes (tracemalloc)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import tracemalloc

import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import data as data_lib
from crossmodal_jax import sampling


def bench_feature_read(rows: int, batch_size: int = 100) -> list[dict]:
  """One epoch of shuffled batches of an XMediaNet-wide feature split: loaded whole, then
  read lazily (rows on demand from the built files); seconds and peak host memory."""
  d_img, d_txt, classes = 4096, 300, 200
  work = tempfile.mkdtemp(prefix="crossmodal_jax_lazy_")
  try:
    return _feature_read_rows(work, rows, batch_size, d_img, d_txt, classes)
  finally:
    shutil.rmtree(work, ignore_errors=True)


def _feature_read_rows(work, rows, batch_size, d_img, d_txt, classes) -> list[dict]:
  rng = np.random.default_rng(0)
  src = os.path.join(work, "features")
  os.makedirs(src)
  for prefix, n in (("train", rows), ("test", 64)):
    np.save(os.path.join(src, f"{prefix}_img.npy"), rng.random((n, d_img), np.float32))
    np.save(os.path.join(src, f"{prefix}_txt.npy"), rng.random((n, d_txt), np.float32))
    np.save(os.path.join(src, f"{prefix}_img_lab.npy"), np.arange(n) % classes)
  # The common data config of the features dataset (what every method's starts from).
  data_config = default_configs.data_config("features")
  data_config.manual_dir = src
  data_config.data_dir = os.path.join(work, "tfds")
  start = time.perf_counter()
  data_lib.load_dataset(data_config)  # the build, once
  build = time.perf_counter() - start
  feature_mb = rows * (d_img + d_txt) * 4 / 2**20
  out = []
  for mode, lazy_mb in (("loaded", -1.0), ("lazy", 0.0)):
    data_config.lazy_mb = lazy_mb
    tracemalloc.start()
    start = time.perf_counter()
    split = data_lib.load_dataset(data_config).train
    load = time.perf_counter() - start
    start = time.perf_counter()
    steps = 0
    for batch in sampling.permutation_batches(split, ("image", "text", "label"), batch_size, 0, 0):
      steps += 1
      del batch
    epoch = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out.append(
        {
            "name": f"feature_read/{mode}",
            "rows": rows,
            "image_dim": d_img,
            "text_dim": d_txt,
            "feature_mb": round(feature_mb, 1),
            "build_seconds": round(build, 2),
            "load_seconds": round(load, 3),
            "epoch_seconds": round(epoch, 3),
            "steps": steps,
            "rows_per_second": round(steps * batch_size / epoch, 1),
            "peak_host_mb": round(peak / 2**20, 1),
            "flops": 0,
            "note": "one epoch of shuffled batches of 100 rows (no training step)",
        }
    )
  return out
