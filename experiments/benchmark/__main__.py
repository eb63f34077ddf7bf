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
  (`--only=score_large`, `--large_gallery`): DRSL's streamed top-100 of every image query
  with the process's peak memory and one call's device memory, alternating `--repeats`
  times with the same scores without the top-k (in its tiles), then the scores as the
  full-matrix path computes them, and SCANet's time implied by a measured
  `--scanet_block` x `--scanet_block` block (its cost is the same per pair);
- with either scoring case or rerank_large, the machine's measured vector peak
  ("machine/vector_peak": the scoring kernel's add, max and FMA on registers, `floor.py`),
  from which each DRSL scoring row gets its elementwise floor and how many times the
  floor it took, and which tells runs on different CPUs apart;
- a feature-file training split of XMediaNet's width (4,096-d images, 300-d texts;
  `--lazy_rows` rows) read for one epoch of shuffled 100-row batches, loaded whole
  against read lazily from the built array_record files (`data.lazy_mb`), with the
  peak host memory each takes (tracemalloc; `--only=feature_read`);
- trained Wikipedia runs of DRSL and SCANet reranking the shortlists of semantic matching
  and of HCMSL at several K, against their exhaustive ranking and each first stage alone
  (`--only=rerank`, with --rerank_runs and --wikipedia_dir; `rerank.py`);
- SCANet reranking HCMSL's shortlist of a 40k x 40k synthetic gallery at several K, both
  trained inside the case, with the recall of SCANet's exhaustive top 100 on a sample of
  queries (`--only=rerank_large`, run only when named; `rerank_large.py`).
Every entry carries its FLOP count (analytic, counting a multiply-add as 2 FLOPs; each
method's model is its `crossmodal_jax/methods/<method>/flops.py`) and the achieved
GFLOP/s. The cases are the modules beside this one, by what they time (training,
scoring, text_layer, large, feature_read; `floor`: the machine's measured peak and each
scoring row's floor); this one holds the flags and writes the report.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys

from absl import app
from absl import flags
import jax

from crossmodal_jax import atomic
from crossmodal_jax import logs
from .. import cli
from . import feature_read
from . import floor
from . import large
from . import rerank
from . import rerank_large
from . import scoring
from . import text_layer
from . import training
from . import wikipedia

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
    "scanet, mcsm, feature_read, score_large, rerank, rerank_large; mcsm needs "
    "--wikipedia_dir and runs only with it, rerank --rerank_runs, rerank_large runs only "
    "when named).",
)
_RERANK_RUNS = flags.DEFINE_string(
    "rerank_runs",
    "",
    "--only=rerank: a folder of trained runs, DIR/wikipedia/METHOD/seed_S (as "
    "experiments.reproduce lays them out), of drsl, scanet and hcmsl.",
)
_RERANK_SEEDS = flags.DEFINE_integer(
    "rerank_seeds", 3, "--only=rerank: the seeds 0 .. N-1 of each method measured.", lower_bound=1
)
_RERANK_LARGE_ITEMS = flags.DEFINE_integer(
    "rerank_large_items", 40000, "--only=rerank_large: items per modality of the gallery."
)
_RERANK_LARGE_KS = flags.DEFINE_list(
    "rerank_large_ks",
    ["50", "100", "200", "400", "800", "1600", "3200", "4000"],
    "--only=rerank_large: the K reranked (no larger K once one K's second stage takes over "
    "8 min).",
)
_RERANK_LARGE_SAMPLE = flags.DEFINE_integer(
    "rerank_large_sample",
    4000,
    "--only=rerank_large: image queries whose exhaustive SCANet top 100 gives the recall.",
)
_RERANK_LARGE_PRESET = flags.DEFINE_enum(
    "rerank_large_preset",
    "full",
    ["full", "ci"],
    "--only=rerank_large: the preset of the SCANet and HCMSL synthetic configs trained.",
)
_RERANK_LARGE_FIRST = flags.DEFINE_list(
    "rerank_large_first",
    list(rerank_large.FIRSTS),
    "--only=rerank_large: the first stages whose shortlists SCANet reranks: hcmsl (the "
    "cosine of HCMSL's codes), own (SCANet's own separable codes).",
)
_SCANET_STEPS = flags.DEFINE_integer(
    "scanet_steps", 20, "Timed SCANet training steps per case (pair order, co-attention depth)."
)
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  cache: dict = {}
  results = []
  source = wikipedia.Source(_WIKI.value, _DATA_DIR.value)
  repeats = _REPEATS.value

  def wanted(prefix):
    return not _ONLY.value or any(prefix.startswith(p) for p in _ONLY.value)

  if wanted("train_epoch"):
    for *case, epochs in training.epoch_cases(_EPOCHS.value, _CODE_EPOCHS.value):
      results.append(training.bench_training(*case, epochs, cache, source))
      print(json.dumps(results[-1]))
  if (
      wanted("score_all_pairs")
      or (wanted("score_large") and _LARGE.value > 0)
      or "rerank_large" in _ONLY.value
  ):
    results.append(floor.peak())  # the machine's peak, measured before the scoring cases
    print(json.dumps(results[-1]))
  more = (
      (scoring.bench_scoring(_GALLERY.value, repeats) if wanted("score_all_pairs") else [])
      + (scoring.bench_kernel(repeats) if wanted("pairwise_relu_dot") else [])
      + (text_layer.bench_text_layer(cache, source, repeats) if wanted("text_first_layer") else [])
      + (_scanet(cache, source, repeats) if wanted("scanet") else [])
      + (
          training.bench_mcsm(training.MCSM_CONFIGS, source)
          if wanted("mcsm") and (_WIKI.value or _ONLY.value)
          else []
      )
      + (feature_read.bench_feature_read(_LAZY_ROWS.value) if wanted("feature_read") else [])
      + (
          rerank.bench_rerank(_RERANK_RUNS.value, source, range(_RERANK_SEEDS.value))
          if wanted("rerank") and _RERANK_RUNS.value
          else []
      )
      + (
          rerank_large.bench_rerank_large(
              _RERANK_LARGE_ITEMS.value,
              [int(k) for k in _RERANK_LARGE_KS.value],
              _RERANK_LARGE_SAMPLE.value,
              _RERANK_LARGE_PRESET.value,
              _RERANK_LARGE_FIRST.value,
          )
          if "rerank_large" in _ONLY.value
          else []
      )
      + (
          large.bench_large_scoring(_LARGE.value, repeats=repeats)
          + large.bench_scanet_large(cache, source, _LARGE.value, _SCANET_BLOCK.value)
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
      "cpu": _cpu_model(),
      "jax": jax.__version__,
      "results": results,
  }
  atomic.atomic_write(_OUTPUT.value, lambda f: json.dump(report, f, indent=2), binary=False)
  print(f"wrote {_OUTPUT.value}")


def _cpu_model() -> str | None:
  """The CPU's model name as the OS reports it (Linux's /proc/cpuinfo), else the platform's
  processor string; None when neither says. Runs on different CPUs differ in more than
  their core count (vector width), so each JSON names its CPU."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def _scanet(cache: dict, source: wikipedia.Source, repeats: int) -> list[dict]:
  """SCANet's training steps, then its scoring of the test split by the model they left."""
  rows, trained = training.bench_scanet(cache, source, _SCANET_STEPS.value)
  return rows + scoring.bench_scanet_test(trained, repeats)


if __name__ == "__main__":
  cli.run(main)
