"""The benchmark's large-gallery cases: an n x n gallery scored without its score
matrix, DRSL's streamed top-k measured and SCANet's time implied by a measured block."""

from __future__ import annotations

import time

import jax
import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import methods
from crossmodal_jax import ranking
from crossmodal_jax.data import common
from crossmodal_jax.methods.scanet import flops as scanet_flops
from . import scoring
from . import timing
from . import wikipedia


def bench_large_scoring(n: int, k: int = 100) -> list[dict]:
  """DRSL's all-pairs scoring of an n x n synthetic gallery (paper sizes) without its
  n x n matrix: every image query's top k texts streamed through the blockwise scorer
  within eval.memory_budget_mb, as evaluation does for galleries too big for full
  matrices."""
  config, method, variables, _, _, enc_i, enc_t, pair_flops = scoring.drsl_gallery(n)
  ce = config.eval
  before = timing.peak_memory_mb()
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
      **timing.peak_memory_mb(),
      "note": "one run (no repeats); peaks are the process's",
  }
  return [row]


def bench_scanet_large(cache: dict, source: wikipedia.Source, n: int, block: int) -> list[dict]:
  """SCANet's all-pairs scoring (two co-attention layers) timed on a block x block
  gallery of Wikipedia-shaped items, and the n x n time it implies (the cost is the same
  per pair)."""
  config = default_configs.get_config("scanet,wikipedia")
  dataset = wikipedia.with_word_graph(config, cache, source)
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
  flops = scanet_flops.step_flops(
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
