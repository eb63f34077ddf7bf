r"""Speed benchmark: DRSL training epochs and all-pairs scoring throughput -> JSON.

  python -m experiments.benchmark --output=benchmark.json \
      [--wikipedia_dir=../shared/data/wikipedia_dataset]

Measures, on whatever devices JAX sees:
- seconds per DRSL training epoch on Wikipedia (train split, 2,173 pairs; training steps
  only) at the paper's sizes (300-d TF-IDF-SVD text), with the default Wikipedia config
  on raw 10,000-d TF-IDF text, fed dense and fed sparse (`model.sparse_text`: each text's
  non-zeros, padded), and at the authors' code sizes (drsl_code), each with its config's
  batch size; without --wikipedia_dir a random stand-in of the same shape (sparse rows
  of ~150 non-zeros where the text is TF-IDF);
- all-pairs scoring of a 4k x 4k synthetic gallery (paper sizes), with the separable
  first layer + fused kernel, and the naive formulation (concatenate each pair, run the
  600-1024-1 MLP) on a sub-block, so their ratio is measured in the same run;
- the pairwise kernel alone in both its forms (the CPU's row loop, the accelerators' row
  blocks) against the naive [P, Q, K] grid, forward + backward;
- SCANet's training steps with pairs grouped by text against shuffled pairs, the shuffled
  steps at each co-attention depth of the ablation, and its all-pairs scoring
  (`--only=scanet`);
- MCSM's training steps on Wikipedia at the code's LSTM width and the CPU one
  (`--only=mcsm`, with --wikipedia_dir);
- all-pairs scoring of a 40k x 40k synthetic gallery without its score matrix
  (`--only=score_large`, `--large_gallery`): DRSL's streamed top-100 of every image query,
  measured once with the process's peak memory, and SCANet's time implied by a measured
  `--scanet_block` x `--scanet_block` block (its cost is the same per pair);
- a feature-file training split of XMediaNet's width (4,096-d images, 300-d texts;
  `--lazy_rows` rows) read for one epoch of shuffled 100-row batches, loaded whole
  against read lazily from the built array_record files (`data.lazy_mb`), with the
  peak host memory each takes (tracemalloc; `--only=feature_read`).
Every entry carries its FLOP count (analytic, counting a multiply-add as 2 FLOPs) and the
achieved GFLOP/s.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import tracemalloc
from typing import Any

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from configs import default as default_configs
from crossmodal_jax import data as data_lib
from crossmodal_jax import logs
from crossmodal_jax import methods
from crossmodal_jax import parallel
from crossmodal_jax import ranking
from crossmodal_jax import sampling
from crossmodal_jax import train as train_lib
from crossmodal_jax.data import common
from crossmodal_jax.data.text import sparse_rows
from crossmodal_jax.layers import pairwise
from crossmodal_jax.layers import sparse_dense
from experiments import cli

_OUTPUT = flags.DEFINE_string("output", "benchmark.json", "Where to write the JSON results.")
_WIKI = flags.DEFINE_string(
    "wikipedia_dir",
    "",
    "Folder of the Wikipedia dataset; empty: a random stand-in of the "
    "same shape (2,173 train pairs, 128-d images, 300-d texts).",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "/tmp/crossmodal_jax_benchmark_tfds", "TFDS cache for the built Wikipedia dataset."
)
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs of the paper-size configurations.")
_CODE_EPOCHS = flags.DEFINE_integer(
    "code_epochs", 1, "Timed epochs of drsl_code (its per-pair 1024x1024 layer is slow)."
)
_ONLY = flags.DEFINE_list(
    "only",
    [],
    "Run only benchmarks whose name starts with one of "
    "these prefixes (train_epoch, score_all_pairs, pairwise_relu_dot, text_first_layer, "
    "scanet, mcsm, feature_read, score_large; mcsm needs --wikipedia_dir and runs only with "
    "it).",
)
_SCANET_STEPS = flags.DEFINE_integer(
    "scanet_steps", 20, "Timed SCANet training steps per case (pair order, co-attention depth)."
)
# MCSM's timed configs (spec, then model fields and data.max_words over it): the
# authors' code (the `paper` preset), its LSTM width over 400 words without the conv
# front-end, and the default chosen for the CPU.
MCSM_CONFIGS = {
    "code_recipe": ("mcsm,wikipedia,paper", {}),
    "hidden512_words400": ("mcsm,wikipedia", {"hidden": 512, "max_words": 400}),
    "default": ("mcsm,wikipedia", {}),
}
_GALLERY = flags.DEFINE_integer("gallery", 4096, "Items per modality in the scoring test.")
_LARGE = flags.DEFINE_integer(
    "large_gallery",
    40000,
    "Items per modality of the streamed top-k scoring (DRSL measured, SCANet timed on "
    "--scanet_block items and scaled by pairs); 0: skip.",
)
_SCANET_BLOCK = flags.DEFINE_integer(
    "scanet_block", 1024, "Items per modality of SCANet's measured block for --large_gallery."
)
_LAZY_ROWS = flags.DEFINE_integer(
    "lazy_rows", 8192, "Training rows of the XMediaNet-wide feature folder (32000: its size)."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repetitions of each scoring measurement.")


def _timeit(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile + warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _mlp_flops(dims) -> int:
  return sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))


def drsl_step_flops(
    model_cfg, d_img: int, d_txt: int, batch: int, text_nonzeros: int | None = None
) -> dict[str, int]:
  """Analytic forward FLOPs of one DRSL training step; training ~ 3x forward.

  With `text_nonzeros` (sparse text) the first text layer reads that many (padded)
  non-zeros per text instead of all d_txt features.
  """
  d_txt = d_txt if text_nonzeros is None else text_nonzeros
  towers = batch * (
      _mlp_flops((d_img, *model_cfg.image_layers)) + _mlp_flops((d_txt, *model_cfg.text_layers))
  )
  rel = tuple(model_cfg.relation_layers)
  proj = batch * 2 * (model_cfg.image_layers[-1] + model_cfg.text_layers[-1]) * rel[0]
  pairs = batch * batch
  # Per pair: add + ReLU on the first hidden layer, then the rest of the MLP and output.
  grid = pairs * (2 * rel[0] + _mlp_flops((*rel, 1)))
  forward = towers + proj + grid
  return {"forward": int(forward), "train_step": int(3 * forward)}


def _wikipedia_like(text_dim: int, sparse: bool = False, seed=0) -> common.Dataset:
  """Random arrays of Wikipedia's shapes; `sparse` text has 40-259 positive entries per
  row (raw TF-IDF has ~150 of 10,000)."""
  rng = np.random.default_rng(seed)

  def text(n):
    if not sparse:
      return rng.standard_normal((n, text_dim), dtype=np.float32)
    x = np.zeros((n, text_dim), np.float32)
    for row in x:
      count = rng.integers(40, 260)
      row[rng.choice(text_dim, count, replace=False)] = rng.random(count, dtype=np.float32)
    return x

  def split(n):
    return common.Split(
        {
            "image": rng.random((n, 128), dtype=np.float32),
            "text": text(n),
            "label": rng.integers(0, 10, n).astype(np.int32),
        }
    )

  return common.Dataset("wikipedia-shaped random", split(2173), split(231), split(462), 10)


def _load_wikipedia(method_name: str, text_feature: str, cache: dict):
  config = default_configs.get_config(f"{method_name},wikipedia")
  config.data.text_feature = text_feature
  if text_feature not in cache:
    if _WIKI.value:
      config.data.manual_dir = _WIKI.value
      config.data.data_dir = _DATA_DIR.value
      cache[text_feature] = data_lib.load_dataset(config.data)
    else:
      dim = {"tfidf_svd": config.data.svd_dim, "lda": 10}.get(text_feature, config.data.vocab_size)
      cache[text_feature] = _wikipedia_like(dim, sparse=text_feature in ("tfidf", "bow"))
  return config, cache[text_feature]


def _training_setup(config, dataset: common.Dataset):
  """(method, steps per epoch, mesh, replicated initial state, jitted step) of a config."""
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  steps = method.num_batches(dataset.train, config.train.batch_size)
  optimizer = method.optimizer(config.train, steps)
  mesh = parallel.create_mesh()
  state = jax.device_put(
      train_lib.initial_state(method, optimizer, dataset, 0),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
  )
  return method, steps, mesh, state, train_lib.make_train_step(method, optimizer, mesh)


def _seconds_per_step(step_fn, state, mesh, raw_batches) -> tuple[float, Any]:
  """Mean seconds of a training step over raw_batches[1:] (the first compiles); returns
  it with the final state."""
  batches = [parallel.shard_batch(b, mesh) for b in raw_batches]
  key = jax.random.key(0)
  with jax.set_mesh(mesh):
    state, _ = jax.block_until_ready(step_fn(state, batches[0], key))  # compile
    t0 = time.perf_counter()
    for b in batches[1:]:
      state, metrics = step_fn(state, b, key)
    jax.block_until_ready(metrics)
  return (time.perf_counter() - t0) / (len(batches) - 1), state


def bench_training(
    method_name: str, text_feature: str, cache: dict, sparse_text: bool = False
) -> dict:
  """Seconds per training epoch (training steps only; no validation pass); with
  `sparse_text` the text is fed as its padded non-zeros (`model.sparse_text`)."""
  config, dataset = _load_wikipedia(method_name, text_feature, cache)
  config.model.sparse_text = sparse_text
  tc = config.train
  method, steps, mesh, state, step_fn = _training_setup(config, dataset)
  key = jax.random.key(0)
  epoch_times = []
  epochs = _EPOCHS.value if method_name == "drsl" else _CODE_EPOCHS.value
  with jax.set_mesh(mesh):
    for epoch in range(epochs):
      batches = [
          parallel.shard_batch(b, mesh)
          for b in method.batches(dataset.train, tc.batch_size, 0, epoch)
      ]
      if epoch == 0:  # compile outside the timed region, once per batch shape (a kept
        # last partial batch has its own)
        for b in {jax.tree.leaves(b)[0].shape[0]: b for b in batches}.values():
          state, _ = jax.block_until_ready(step_fn(state, b, key))  # donates state
      t0 = time.perf_counter()
      for b in batches:
        state, metrics = step_fn(state, b, key)
      jax.block_until_ready(metrics)
      epoch_times.append(time.perf_counter() - t0)
  seconds = float(np.median(epoch_times))
  d_img, d_txt = dataset.dims()["image"][0], dataset.dims()["text"][0]
  # The padded length of the training batches' sparse rows (the method's, per split).
  padded = sparse_rows.max_nonzeros(dataset.train["text"]) if sparse_text else None
  flops = drsl_step_flops(config.model, d_img, d_txt, tc.batch_size, padded)
  epoch_flops = flops["train_step"] * steps
  row = {
      "name": (
          f"train_epoch/{method_name}/wikipedia/{text_feature}" + ("_sparse" if sparse_text else "")
      ),
      "data": dataset.name,
      "input_dims": {"image": d_img, "text": d_txt},
      "sparse_text": sparse_text,
      "model": {
          "image_layers": list(config.model.image_layers),
          "text_layers": list(config.model.text_layers),
          "relation_layers": list(config.model.relation_layers),
      },
      "batch_size": tc.batch_size,
      "steps_per_epoch": steps,
      "seconds_per_epoch": seconds,
      "seconds_20_epochs": 20 * seconds,
      "flops_per_epoch": epoch_flops,
      "gflops_per_s": epoch_flops / seconds / 1e9,
      "params": train_lib.num_params(state.params),
  }
  if sparse_text:
    row["text_padded_length"] = padded
  return row


def _drsl_gallery(n: int):
  """DRSL at the paper's sizes on an n x n synthetic gallery (random 128-d images, 300-d
  texts): (config, method, variables, images, texts, image and text encodings, FLOPs
  per scored pair), encoded 4,096 items at a time."""
  config = default_configs.get_config("drsl,synthetic")
  rng = np.random.default_rng(0)
  images = rng.standard_normal((n, 128), dtype=np.float32)
  texts = rng.standard_normal((n, 300), dtype=np.float32)
  method = methods.get_method(config, {"image": (128,), "text": (300,), "label": ()})
  variables = method.init(jax.random.key(0), {"image": images[:2], "text": texts[:2]})
  enc_i = ranking.encode(jax.jit(lambda x: method.encode_image(variables, x)), images, 4096)
  enc_t = ranking.encode(jax.jit(lambda x: method.encode_text(variables, x)), texts, 4096)
  k = config.model.relation_layers[0]
  pair_flops = 2 * k + 2 * k  # add + ReLU, then the K-long dot
  return config, method, variables, images, texts, enc_i, enc_t, pair_flops


def bench_scoring() -> list[dict]:
  n = _GALLERY.value
  config, method, variables, images, texts, enc_i, enc_t, pair_flops = _drsl_gallery(n)
  ce = config.eval
  k = config.model.relation_layers[0]
  seconds = _timeit(
      lambda: ranking.method_channels(method, variables, enc_i, enc_t, ce),
      _REPEATS.value,
  )
  results = [
      {
          "name": "score_all_pairs/drsl/separable",
          "pairs": n * n,
          "seconds": seconds,
          "pairs_per_s": n * n / seconds,
          "flops": n * n * pair_flops,
          "gflops_per_s": n * n * pair_flops / seconds / 1e9,
      }
  ]

  # Naive: build each pair's [z_i; z_t] and run the relation MLP, on a sub-block.
  sub = 256
  zi = jax.jit(
      lambda v, x: method.module.apply(v, x, method=lambda m, x: m.image_tower(x, train=False))
  )(variables, images[:sub])
  zt = jax.jit(
      lambda v, x: method.module.apply(v, x, method=lambda m, x: m.text_tower(x, train=False))
  )(variables, texts[:sub])
  p = variables["params"]
  w = jnp.concatenate([p["proj_image"]["kernel"], p["proj_text"]["kernel"]], axis=0)
  stats = variables["batch_stats"]
  scale = p["grid_scale"] * jax.lax.rsqrt(stats["grid_var"] + 1e-5)

  @jax.jit
  def naive(zi, zt):
    pairs = jnp.concatenate(
        [jnp.repeat(zi, zt.shape[0], axis=0), jnp.tile(zt, (zi.shape[0], 1))], axis=1
    )  # [P*Q, 600]
    h = jax.nn.relu((pairs @ w - stats["grid_mean"]) * scale + p["grid_bias"])
    return (h @ p["out_kernel"])[:, 0] + p["out_bias"][0]

  naive_seconds = _timeit(lambda: naive(zi, zt), _REPEATS.value)
  naive_flops = sub * sub * (2 * w.shape[0] * k + 2 * k + 2 * k)
  naive_rate = sub * sub / naive_seconds
  results.append(
      {
          "name": "score_all_pairs/drsl/naive_concat",
          "pairs": sub * sub,
          "seconds": naive_seconds,
          "pairs_per_s": naive_rate,
          "flops": naive_flops,
          "gflops_per_s": naive_flops / naive_seconds / 1e9,
          "separable_speedup": results[0]["pairs_per_s"] / naive_rate,
      }
  )
  return results


def _peak_memory_mb() -> dict:
  """The process's peak host memory so far (MB) and, where the backend reports it, the
  device's peak bytes in use (MB)."""
  import resource  # pylint: disable=g-import-not-at-top

  out = {"peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
  return out


def bench_large_scoring(n: int, k: int = 100) -> list[dict]:
  """All-pairs scoring of an n x n synthetic gallery (paper sizes) without its n x n
  matrix: every image query's top k texts streamed through the blockwise scorer within
  eval.memory_budget_mb, as evaluation does for galleries too big for full matrices."""
  config, method, variables, _, _, enc_i, enc_t, pair_flops = _drsl_gallery(n)
  ce = config.eval
  before = _peak_memory_mb()
  start = time.perf_counter()
  scores, _ = ranking.top_k(method, variables, enc_i, enc_t, "i2t", k, ce)
  seconds = time.perf_counter() - start
  assert scores.shape == (n, k)
  row = {
      "name": "score_all_pairs/drsl/streamed_top_k",
      "items": n,
      "pairs": n * n,
      "k": k,
      "seconds": seconds,
      "pairs_per_s": n * n / seconds,
      "flops": n * n * pair_flops,
      "gflops_per_s": n * n * pair_flops / seconds / 1e9,
      "memory_budget_mb": ce.memory_budget_mb,
      "full_matrix_mb": n * n * 4 / 2**20,
      "peak_host_mb_before": before["peak_host_mb"],
      **_peak_memory_mb(),
      "note": "one run (no repeats); peaks are the process's",
  }
  return [row]


def bench_scanet_large(cache: dict, n: int, block: int) -> list[dict]:
  """SCANet's all-pairs scoring (two co-attention layers) timed on a block x block
  gallery of Wikipedia-shaped items, and the n x n time it implies (the cost is the same
  per pair)."""
  config = default_configs.get_config("scanet,wikipedia")
  dataset = _scanet_data(config, cache)
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  split = dataset.train
  reps = -(-block // len(split))
  rows = np.tile(np.arange(len(split)), reps)[:block]
  arrays = {key: split[key][rows] for key in split.arrays}
  variables = method.init(jax.random.key(0), method.init_batch(dataset.train))
  part = common.Split(arrays)
  ranking.score_split(method, variables, part, config.eval)  # compile
  start = time.perf_counter()
  ranking.score_split(method, variables, part, config.eval)
  seconds = time.perf_counter() - start
  scale = (n / block) ** 2
  graph = dataset.meta["word_graph"]
  flops = scanet_step_flops(
      config.model, graph, dataset.dims()["image"][0], block, block, block * block
  )["forward"]
  return [
      {
          "name": "score_all_pairs/scanet/large_gallery_estimate",
          "measured_items": block,
          "measured_seconds": seconds,
          "measured_flops": flops,
          "gflops_per_s": flops / seconds / 1e9,
          "items": n,
          "pairs": n * n,
          "flops": flops * scale,
          "seconds_estimate": seconds * scale,
          "hours_estimate": seconds * scale / 3600,
          "note": "block x block measured (encoding included), scaled by the pairs",
      }
  ]


def bench_kernel() -> list[dict]:
  """DRSL's pairwise kernel, fwd + bwd of a squared loss: the row loop (the CPU's form),
  the row blocks (every other backend's form) and the naive [P, Q, K] grid."""
  p = q = 200
  k = 1024
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((p, k), dtype=np.float32))
  b = jnp.asarray(rng.standard_normal((q, k), dtype=np.float32))
  w = jnp.asarray(rng.standard_normal((k,), dtype=np.float32))
  s = jnp.asarray(rng.random((p, q), dtype=np.float32))
  out = []
  picked = pairwise.picked_form(jax.default_backend())
  for name, fn in (
      ("rows", pairwise.pairwise_relu_dot_rows),
      ("blocks", pairwise.pairwise_relu_dot_blocks),
      ("naive", pairwise.pairwise_relu_dot_reference),
  ):
    grad = jax.jit(
        jax.grad(lambda a, b, w, f=fn: jnp.sum((f(a, b, w) - s) ** 2), argnums=(0, 1, 2))
    )
    seconds = _timeit(lambda: grad(a, b, w), _REPEATS.value)
    flops = 3 * p * q * 4 * k
    out.append(
        {
            "name": f"pairwise_relu_dot/{name}/fwd+bwd",
            "shape": [p, q, k],
            "seconds": seconds,
            "flops": flops,
            "gflops_per_s": flops / seconds / 1e9,
            "picked_on_this_backend": name == picked,
        }
    )
  for row in out[:2]:
    row["speedup_vs_naive"] = out[2]["seconds"] / row["seconds"]
  return out


def bench_text_layer(cache: dict) -> list[dict]:
  """The default Wikipedia text tower's first layer (TF-IDF over V words -> 1024), forward
  + gradient w.r.t. its kernel, dense and fed sparse, and the Adam update of that kernel.

  Its input is sparse (an article has ~150 of 10,000 words), so the layer can be fed as
  (word id, weight) pairs: the gather-sum over each row's non-zeros that
  `model.sparse_text` trains with (`sparse_rows.to_padded` over the train split, so padded
  to its longest row as in training, and `sparse_dense.gather_sum`), or a
  jax.experimental.sparse BCOO matrix. Measured side by side with the dense matmul on the
  same batch.
  """
  from jax.experimental import sparse  # pylint: disable=g-import-not-at-top

  config, dataset = _load_wikipedia("drsl", "tfidf", cache)
  batch, width = config.train.batch_size, config.model.text_layers[0]
  x = np.asarray(dataset.train["text"][:batch], np.float32)
  vocab = x.shape[1]
  nnz = (x != 0).sum(axis=1)
  longest = int(nnz.max())
  # The training feed: the train split's padded rows (length: its longest row).
  ids, values = sparse_rows.to_padded(dataset.train["text"])
  ids, values = jnp.asarray(ids[:batch]), jnp.asarray(values[:batch])
  padded = ids.shape[1]
  rng = np.random.default_rng(0)
  kernel = jnp.asarray(rng.standard_normal((vocab, width)) / np.sqrt(vocab), jnp.float32)
  g = jnp.asarray(rng.standard_normal((batch, width)), jnp.float32)
  dense = jnp.asarray(x)
  bcoo = sparse.BCOO.fromdense(dense, nse=int(nnz.sum()))

  # Every input is an argument of the jitted function (closed-over arrays would be
  # constants that XLA folds at compile time, gradient included).
  forms = {
      "dense": (lambda w, a: a["x"] @ w, {"x": dense}, 2 * batch * vocab * width),
      "gather_sum": (
          lambda w, a: sparse_dense.gather_sum(w, a["ids"], a["values"]),
          {"ids": ids, "values": values},
          2 * batch * padded * width,
      ),
      "bcoo": (lambda w, a: a["x"] @ w, {"x": bcoo}, 2 * int(nnz.sum()) * width),
  }
  out = []
  for name, (fn, args, fwd_flops) in forms.items():
    grad = jax.jit(jax.grad(lambda w, a, g, fn=fn: jnp.sum(fn(w, a) * g)))
    seconds = _timeit(lambda: grad(kernel, args, g), _REPEATS.value)
    flops = 2 * fwd_flops  # forward + the kernel's gradient
    out.append(
        {
            "name": f"text_first_layer/{name}/fwd+grad",
            "shape": [batch, vocab, width],
            "nonzeros_per_row": {"mean": float(nnz.mean()), "max": longest},
            "seconds": seconds,
            "flops": flops,
            "gflops_per_s": flops / seconds / 1e9,
        }
    )
  for r in out[1:]:
    r["speedup_vs_dense"] = out[0]["seconds"] / r["seconds"]
  out[1]["padded_length"] = padded
  import optax  # pylint: disable=g-import-not-at-top

  adam = optax.adam(1e-3)
  update = jax.jit(adam.update)
  state = adam.init(kernel)
  seconds = _timeit(lambda: update(kernel, state, kernel), _REPEATS.value)
  out.append(
      {
          "name": "text_first_layer/adam_update",
          "params": vocab * width,
          "seconds": seconds,
          "bytes_moved": 7 * 4 * vocab * width,  # read p, g, m, v; write p, m, v
          "gbytes_per_s": 7 * 4 * vocab * width / seconds / 1e9,
      }
  )
  return out


def scanet_step_flops(model_cfg, graph, d_img: int, texts: int, images: int, pairs: int):
  """Analytic forward FLOPs of one SCANet step over `texts` / `images` distinct items and
  `pairs` pairs (a multiply-add = 2 FLOPs); training ~ 3x forward."""
  n, k = model_cfg.dim, model_cfg.cheb_order
  filters = (1, *model_cfg.gcn_filters)
  # Each layer propagates the narrower of its widths over the graph (`ChebConv` projects
  # first, by Clenshaw's recurrence, when F_out < F_in).
  gcn = sum(
      2 * graph.num_edges * (k - 1) * min(f_in, f_out) + 2 * graph.num_nodes * k * f_in * f_out
      for f_in, f_out in zip(filters[:-1], filters[1:])
  )
  att = model_cfg.attention_layers
  text = gcn + 2 * graph.num_nodes * filters[-1] * n + (2 * n * n if att else 0)
  image = _mlp_flops((d_img, *model_cfg.image_layers, n)) + (2 * n * n if att else 0)
  pair = 2 * 2 * n * n * max(att - 1, 0) + 2 * n
  forward = texts * text + images * image + pairs * pair
  return {"forward": int(forward), "train_step": int(3 * forward), "text": text, "pair": pair}


def _scanet_data(config, cache: dict) -> common.Dataset:
  """Wikipedia with its word graph (--wikipedia_dir), or a stand-in of the same shape: a
  random 10,055-word kNN graph and ~200-word random bags of words."""
  if "scanet" not in cache:
    if _WIKI.value:
      config.data.manual_dir = _WIKI.value
      config.data.data_dir = _DATA_DIR.value
      cache["scanet"] = data_lib.load_dataset(config.data)
    else:
      from crossmodal_jax.data.text import word_graph  # pylint: disable=g-import-not-at-top

      rng = np.random.default_rng(0)
      vocab = config.data.graph_vocab_size
      base = _wikipedia_like(10)

      def with_bow(split):
        bow = np.zeros((len(split), vocab), np.float32)
        for row in bow:
          np.add.at(row, rng.zipf(1.3, 200) % vocab, 1.0)
        return common.Split({**split.arrays, "bow": bow})

      cache["scanet"] = common.Dataset(
          base.name,
          with_bow(base.train),
          with_bow(base.validation),
          with_bow(base.test),
          10,
          meta={"word_graph": word_graph.build_word_graph(rng.standard_normal((vocab, 50)))},
      )
  return cache["scanet"]


def bench_scanet(cache: dict) -> list[dict]:
  """SCANet: training steps with pairs grouped by text (each text encoded once per batch)
  against uniformly shuffled pairs (about one text per pair), the shuffled steps again at
  each other co-attention depth of the ablation (0..3), and all-pairs scoring of the
  462 x 462 test split."""
  config = default_configs.get_config("scanet,wikipedia")
  dataset = _scanet_data(config, cache)
  graph = dataset.meta["word_graph"]
  tc = config.train
  depth = config.model.attention_layers
  cases = [("text", depth), ("shuffled", depth)]
  cases += [("shuffled", k) for k in range(4) if k != depth]
  out, scored = [], None
  for order, layers in cases:
    config.model.pair_order = order
    config.model.attention_layers = layers
    method, steps, mesh, state, step_fn = _training_setup(config, dataset)
    raw = list(
        itertools.islice(
            method.batches(dataset.train, tc.batch_size, 0, 0), _SCANET_STEPS.value + 1
        )
    )
    per_step, state = _seconds_per_step(step_fn, state, mesh, raw)
    if layers == depth:
      scored = state  # the default depth's model scores the test split below
    texts = float(np.mean([len(np.unique(b["pair_text"])) for b in raw]))
    images = float(np.mean([len(np.unique(b["pair_image"])) for b in raw]))
    flops = scanet_step_flops(
        config.model, graph, dataset.dims()["image"][0], texts, images, tc.batch_size
    )
    params = train_lib.num_params(state.params)
    out.append(
        {
            "name": (
                f"train_steps/scanet/wikipedia/pairs_by_{order}"
                + ("" if layers == depth else f"/attention_layers_{layers}")
            ),
            "data": dataset.name,
            "attention_layers": layers,
            "batch_pairs": tc.batch_size,
            "text_slots_per_batch": int(raw[0]["bow"].shape[0]),
            "distinct_texts_per_batch": texts,
            "distinct_images_per_batch": images,
            "seconds_per_step": per_step,
            "steps_per_epoch": steps,
            "seconds_per_epoch": per_step * steps,
            "minutes_full_schedule": per_step * steps * tc.num_epochs / 60,
            "flops_per_step": flops["train_step"],
            "gflops_per_s": flops["train_step"] / per_step / 1e9,
            "params": params,
            "adam_bytes_per_step": 7 * 4 * params,
        }
    )
  out[1]["slowdown_vs_pairs_by_text"] = out[1]["seconds_per_step"] / out[0]["seconds_per_step"]
  config.model.pair_order, config.model.attention_layers = "text", depth
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables = scored.variables
  test = dataset.test
  seconds = _timeit(
      lambda: ranking.score_split(method, variables, test, config.eval), _REPEATS.value
  )
  n = len(test)
  flops = scanet_step_flops(config.model, graph, dataset.dims()["image"][0], n, n, n * n)
  out.append(
      {
          "name": "score_all_pairs/scanet/wikipedia_test",
          "items": n,
          "pairs": n * n,
          "seconds": seconds,
          "flops": flops["forward"],
          "gflops_per_s": flops["forward"] / seconds / 1e9,
      }
  )
  return out


def _lstm_flops(d_in: int, hidden: int, layers: int, steps: int) -> int:
  """Forward FLOPs of a stacked LSTM over `steps` steps (4 gates: input and recurrent
  matmuls; elementwise work not counted)."""
  total, width = 0, d_in
  for _ in range(layers):
    total += 2 * 4 * hidden * (width + hidden) * steps
    width = hidden
  return total


def mcsm_item_flops(model_cfg, dims, word_dim: int, num_classes: int = 0) -> dict[str, int]:
  """Analytic forward FLOPs of encoding one image and one text in both MCSM spaces: the
  text's conv front-end (if on), the LSTMs over R regions / L (pooled) words, the per-step
  projection to D and the attention, and the two cross-modal Dense layers; with a label
  loss (`model.label_weight`), each item's two classifiers (D -> `num_classes`)."""
  h, d, layers = model_cfg.hidden, model_cfg.dim, model_cfg.num_layers
  regions, d_img = dims.get("image_regions", (1, dims["image"][0]))
  words = dims["word_ids"][0]
  d_att = model_cfg.attention_dim or d
  image = (
      _lstm_flops(d_img, h, layers, regions)
      + regions * (2 * h * d + 2 * d * d_att + 2 * d_att)
      + 2 * dims["image"][0] * d
  )
  front_end, width = 0, word_dim
  if model_cfg.front_end:
    for k, c, pool in zip(
        model_cfg.front_end_kernels, model_cfg.front_end_channels, model_cfg.front_end_pools
    ):
      front_end += 2 * words * k * width * c
      words, width = words // pool, c
  text_lstm = _lstm_flops(width, h, layers, words)
  text = front_end + text_lstm + words * (2 * h * d + 2 * d) + 2 * dims["text"][0] * d
  if model_cfg.get("label_weight", 0.0):
    image, text = image + 2 * 2 * d * num_classes, text + 2 * 2 * d * num_classes
  return {"image": image, "text": text, "text_lstm": text_lstm, "text_front_end": front_end}


def bench_mcsm(configs: dict[str, tuple[str, dict]]) -> list[dict]:
  """MCSM on Wikipedia (--wikipedia_dir; word sequences need the real texts): seconds per
  training step and epoch of each named config ((spec, model field overrides)),
  with the analytic FLOPs, of which the text space's LSTM is most."""
  if not _WIKI.value:
    raise app.UsageError("--only=mcsm needs --wikipedia_dir (MCSM reads the texts' words).")
  from crossmodal_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  out, datasets = [], {}
  for name, (spec, fields) in configs.items():
    config = default_configs.get_config(spec)
    config.data.manual_dir = _WIKI.value
    config.data.data_dir = _DATA_DIR.value
    config.data.max_words = fields.get("max_words", config.data.max_words)
    config.model.update({k: v for k, v in fields.items() if k != "max_words"})
    if config.data.max_words not in datasets:
      datasets[config.data.max_words] = data_lib.load_dataset(config.data)
    dataset = datasets[config.data.max_words]
    tc = config.train
    method, steps, mesh, state, step_fn = _training_setup(config, dataset)
    raw = list(itertools.islice(method.batches(dataset.train, tc.batch_size, 0, 0), 6))
    per_step, state = _seconds_per_step(step_fn, state, mesh, raw)
    dims = dataset.dims()
    flops = mcsm_item_flops(
        config.model, dims, dataset.meta["word_vectors"].shape[1], dataset.num_classes
    )
    step_flops = 3 * tc.batch_size * (flops["image"] + flops["text"])
    out.append(
        {
            "name": f"train_steps/mcsm/wikipedia/{name}",
            "data": dataset.name,
            "model": {
                k: config.model[k]
                for k in ("hidden", "dim", "num_layers", "front_end", "label_weight")
            },
            "text_feature": config.data.text_feature,
            "max_words": config.data.max_words,
            "batch_size": tc.batch_size,
            "seconds_per_step": per_step,
            "steps_per_epoch": steps,
            "seconds_per_epoch": per_step * steps,
            "flops_per_step": step_flops,
            "text_lstm_share_of_flops": flops["text_lstm"] / (flops["image"] + flops["text"]),
            "text_front_end_share_of_flops": (
                flops["text_front_end"] / (flops["image"] + flops["text"])
            ),
            "gflops_per_s": step_flops / per_step / 1e9,
            "params": train_lib.num_params(state.params),
        }
    )
  return out


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
  config = default_configs.get_config("drsl,features")
  config.data.manual_dir = src
  config.data.data_dir = os.path.join(work, "tfds")
  start = time.perf_counter()
  data_lib.load_dataset(config.data)  # the build, once
  build = time.perf_counter() - start
  feature_mb = rows * (d_img + d_txt) * 4 / 2**20
  out = []
  for mode, lazy_mb in (("loaded", -1.0), ("lazy", 0.0)):
    config.data.lazy_mb = lazy_mb
    tracemalloc.start()
    start = time.perf_counter()
    split = data_lib.load_dataset(config.data).train
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  cache: dict = {}
  results = []

  # The paper's sizes (128-d SIFT, 300-d text -> text FNN 300-1024-300), the default
  # Wikipedia config (10,000-d TF-IDF text), and the authors' code sizes.
  def wanted(prefix):
    return not _ONLY.value or any(prefix.startswith(p) for p in _ONLY.value)

  if wanted("train_epoch"):
    for method_name, text_feature, sparse_text in (
        ("drsl", "tfidf_svd", False),
        ("drsl", "tfidf", False),
        ("drsl", "tfidf", True),  # the same, its text fed as padded non-zeros
        ("drsl_code", "tfidf_svd", False),
    ):
      if (_EPOCHS.value if method_name == "drsl" else _CODE_EPOCHS.value) < 1:
        continue  # --epochs=0 / --code_epochs=0: no timed epoch, no row
      results.append(bench_training(method_name, text_feature, cache, sparse_text))
      print(json.dumps(results[-1]))
  more = (
      (bench_scoring() if wanted("score_all_pairs") else [])
      + (bench_kernel() if wanted("pairwise_relu_dot") else [])
      + (bench_text_layer(cache) if wanted("text_first_layer") else [])
      + (bench_scanet(cache) if wanted("scanet") else [])
      + (bench_mcsm(MCSM_CONFIGS) if wanted("mcsm") and (_WIKI.value or _ONLY.value) else [])
      + (bench_feature_read(_LAZY_ROWS.value) if wanted("feature_read") else [])
      + (
          bench_large_scoring(_LARGE.value)
          + bench_scanet_large(cache, _LARGE.value, _SCANET_BLOCK.value)
          if wanted("score_large") and _LARGE.value > 0
          else []
      )
  )
  for r in more:
    results.append(r)
    print(json.dumps(r))
  report = {
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "command": "python -m experiments.benchmark " + shlex.join(cli.recorded_args(sys.argv[1:])),
      "devices": [str(d) for d in jax.devices()],
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "jax": jax.__version__,
      "results": results,
  }
  tmp = _OUTPUT.value + ".tmp"
  with open(tmp, "w") as f:
    json.dump(report, f, indent=2)
  os.replace(tmp, _OUTPUT.value)
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
