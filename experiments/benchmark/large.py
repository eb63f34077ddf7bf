"""The benchmark's large-gallery cases: an n x n gallery scored without its score
matrix, DRSL's streamed top-k measured (against the same scores without the top-k, and
the machine's elementwise floor) and SCANet's time implied by a measured block."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import methods
from crossmodal_jax import ranking
from crossmodal_jax import scoring as scoring_lib
from crossmodal_jax.data import common
from crossmodal_jax.layers import pairwise
from crossmodal_jax.methods.scanet import flops as scanet_flops
from . import floor
from . import scoring
from . import timing
from . import wikipedia


def bench_large_scoring(n: int, k: int = 100, repeats: int = 1) -> list[dict]:
  """DRSL's all-pairs scoring of an n x n synthetic gallery (paper sizes) without its
  n x n matrix: every image query's top k texts streamed through the blockwise scorer
  within eval.memory_budget_mb, as evaluation does for galleries too big for full
  matrices; then, for the streaming's cost, the same scores in the same tiles and jitted
  loop with each tile only reduced to its rows' maxima, and the same scores as the
  full-matrix path computes them (query blocks of whole rows to the host). The streamed
  and scores-only runs alternate `repeats` times (a pair each time): their seconds are
  the medians, the streaming's overhead the median of the pairs' ratios, so that a
  neighbour's load on a shared machine moves both runs of a pair. Each row carries its
  elementwise floor at the machine's measured peak (`floor`)."""
  config, method, variables, _, _, enc_i, enc_t, pair_flops = scoring.drsl_gallery(n)
  ce = config.eval
  width = config.model.relation_layers[0]
  budget = ranking.memory_budget(ce)
  call = scoring_lib.top_k_memory(
      method.score, variables, enc_i, enc_t, k, query_block=ce.query_block,
      gallery_block=ce.gallery_block, pair_bytes=method.pair_bytes(enc_i, enc_t), memory_budget=budget,
  )  # fmt: skip
  rows = call["query_rows"]
  # Compile the one program every call runs (the first query block has their shapes).
  start = time.perf_counter()
  ranking.top_k(method, variables, enc_i[:rows], enc_t, "i2t", k, ce)
  first_block = time.perf_counter() - start
  before = timing.peak_memory_mb()
  chunk = call["gallery_chunk"]
  _scores_only(method, variables, enc_i[:rows], enc_t, rows, chunk)  # compile
  streamed_runs, only_runs = [], []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    top, _ = ranking.top_k(method, variables, enc_i, enc_t, "i2t", k, ce)
    streamed_runs.append(time.perf_counter() - start)
    assert top.shape == (n, k)
    only_runs.append(_scores_only(method, variables, enc_i, enc_t, rows, chunk))
  seconds = float(np.median(streamed_runs))
  shares = [a / b - 1 for a, b in zip(streamed_runs, only_runs)]
  streamed = {
      "name": "score_all_pairs/drsl/streamed_top_k",
      "items": n,
      "pairs": n * n,
      "k": k,
      "seconds": seconds,
      "pairs_per_s": n * n / seconds,
      "flops": n * n * pair_flops,
      "gflops_per_s": n * n * pair_flops / seconds / 1e9,
      **floor.floor_fields(n * n, width, seconds),
      "form": pairwise.scoring_form(jax.default_backend()),
      "native_merge": call["native"],
      "query_rows": rows,
      "gallery_chunk": call["gallery_chunk"],
      "first_block_seconds": first_block,
      "memory_budget_mb": ce.memory_budget_mb,
      "call_temp_mb": _mb(call["temp_bytes"]),
      "call_arguments_mb": _mb(call["argument_bytes"]),
      "full_matrix_mb": n * n * 4 / 2**20,
      "peak_host_mb_before": before["peak_host_mb"],
      **timing.peak_memory_mb(),
      "runs_seconds": streamed_runs,
      "note": (
          f"the median of {len(streamed_runs)} timed runs, each followed by a scores-only "
          "run, after a first query block that compiles; call_temp_mb: XLA's "
          "intermediates of one call (what memory_budget_mb bounds), call_arguments_mb: "
          "its inputs (a query block, the whole padded gallery); peaks are the process's"
      ),
  }
  only = {
      "name": "score_all_pairs/drsl/scores_only",
      "pairs": n * n,
      "seconds": float(np.median(only_runs)),
      "pairs_per_s": n * n / float(np.median(only_runs)),
      "runs_seconds": only_runs,
      "note": (
          "the streamed top-k's tiles and loop, each tile reduced to its rows' maxima; the "
          "median of the runs that alternate with the streamed ones"
      ),
  }
  only.update(floor.floor_fields(n * n, width, only["seconds"]))
  matrix = _score_matrix_rows(method, variables, enc_i, enc_t, ce)
  matrix.update(floor.floor_fields(n * n, width, matrix["seconds"]))
  streamed["overhead_share_vs_scores_only"] = float(np.median(shares))
  streamed["overhead_shares_by_pair"] = shares
  streamed["overhead_share_vs_score_matrix"] = seconds / matrix["seconds"] - 1
  streamed["peak_after_elements_per_s"] = floor.measure_peak()["elements_per_s"]
  return [streamed, only, matrix]


def _mb(nbytes: int | None) -> float | None:
  return None if nbytes is None else nbytes / 2**20


@functools.partial(jax.jit, static_argnums=0)
def _row_maxima(score, variables, query_rows, gallery_chunks):
  def step(best, g):
    return jnp.maximum(best, jnp.max(score(variables, query_rows, g), axis=1)), None

  start = jnp.full((query_rows.shape[0],), -jnp.inf, jnp.float32)
  return jax.lax.scan(step, start, gallery_chunks)[0]


def _scores_only(method, variables, enc_i, enc_t, rows: int, chunk: int) -> float:
  """Seconds of every query's scores against the whole gallery in the streamed top-k's
  tiles and jitted loop (query_rows x gallery_chunk), each tile only reduced to its rows'
  maxima: the scoring the streaming adds its merges to."""
  n_q, n_g = enc_i.shape[0], enc_t.shape[0]
  queries = scoring_lib.pad_to(enc_i, -(-n_q // rows) * rows)
  gallery = scoring_lib.pad_to(enc_t, -(-n_g // chunk) * chunk).reshape(-1, chunk, enc_t.shape[1])
  start = time.perf_counter()
  for first in range(0, n_q, rows):
    jax.device_get(_row_maxima(method.score, variables, queries[first : first + rows], gallery))
  return time.perf_counter() - start


def _score_matrix_rows(method, variables, enc_i, enc_t, ce, rows: int = 2048) -> dict:
  """The same scores as the full-matrix path computes them (`ranking.method_channels`,
  eval's chunks), `rows` query rows at a time to the host, each block then dropped."""
  n_q, n_g = enc_i.shape[0], enc_t.shape[0]
  ranking.method_channels(method, variables, enc_i[:rows], enc_t, ce)  # compile
  start = time.perf_counter()
  for first in range(0, n_q, rows):
    ranking.method_channels(method, variables, enc_i[first : first + rows], enc_t, ce)
  seconds = time.perf_counter() - start
  return {
      "name": "score_all_pairs/drsl/score_matrix_rows",
      "pairs": n_q * n_g,
      "seconds": seconds,
      "pairs_per_s": n_q * n_g / seconds,
      "note": f"score_matrix of {rows} query rows at a time, each block dropped",
  }


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
