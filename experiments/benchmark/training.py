"""The benchmark's training cases: DRSL's epochs on Wikipedia, SCANet's and MCSM's
training steps (each method's configs, timed with `timing`)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

from absl import app
import jax
import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import parallel
from crossmodal_jax import training as train_lib
from crossmodal_jax.data import common
from crossmodal_jax.data.text import sparse_rows
from crossmodal_jax.methods.drsl import flops as drsl_flops
from crossmodal_jax.methods.mcsm import flops as mcsm_flops
from crossmodal_jax.methods.scanet import flops as scanet_flops
from . import timing
from . import wikipedia

# MCSM's timed configs (spec, then model fields and data.max_words over it): the
# authors' code (the `paper` preset), its LSTM width over 400 words without the conv
# front-end, and the default chosen for the CPU.
MCSM_CONFIGS = {
    "code_recipe": ("mcsm,wikipedia,paper", {}),
    "hidden512_words400": ("mcsm,wikipedia", {"hidden": 512, "max_words": 400}),
    "default": ("mcsm,wikipedia", {}),
}


def epoch_cases(epochs: int, code_epochs: int) -> list[tuple[str, str, bool, int]]:
  """DRSL's timed epochs, (config, text feature, sparse text, timed epochs): the paper's
  sizes (128-d SIFT, 300-d text -> text FNN 300-1024-300), the default Wikipedia config
  (10,000-d TF-IDF text) fed dense and sparse, and the authors' code sizes; a case of no
  timed epoch (--epochs=0 / --code_epochs=0) has no row."""
  cases = (
      ("drsl", "tfidf_svd", False, epochs),
      ("drsl", "tfidf", False, epochs),
      ("drsl", "tfidf", True, epochs),  # the same, its text fed as padded non-zeros
      ("drsl_code", "tfidf_svd", False, code_epochs),
  )
  return [case for case in cases if case[-1] >= 1]


def bench_training(
    method_name: str,
    text_feature: str,
    sparse_text: bool,
    epochs: int,
    cache: dict,
    source: wikipedia.Source,
) -> dict:
  """Seconds per DRSL training epoch (training steps only; no validation pass), the
  median of `epochs`; with `sparse_text` the text is fed as its padded non-zeros
  (`model.sparse_text`)."""
  config, dataset = wikipedia.load(method_name, text_feature, cache, source)
  config.model.sparse_text = sparse_text
  tc = config.train
  method, steps, mesh, state, step_fn = timing.training_setup(config, dataset)
  key = jax.random.key(0)
  epoch_times = []
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
  flops = drsl_flops.step_flops(config.model, d_img, d_txt, tc.batch_size, padded)
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


@dataclasses.dataclass
class Trained:
  """A model the training steps left, for scoring: its config, data and state."""

  config: Any
  dataset: common.Dataset
  state: Any


def bench_scanet(cache: dict, source: wikipedia.Source, num_steps: int) -> tuple[list, Trained]:
  """SCANet: `num_steps` training steps with pairs grouped by text (each text encoded
  once per batch) against uniformly shuffled pairs (about one text per pair), and the
  shuffled steps again at each other co-attention depth of the ablation (0..3). Returns
  the rows and the default depth's model (`scoring.bench_scanet_test` scores it)."""
  config = default_configs.get_config("scanet,wikipedia")
  dataset = wikipedia.with_word_graph(config, cache, source)
  graph = dataset.meta["word_graph"]
  tc = config.train
  depth = config.model.attention_layers
  cases = [("text", depth), ("shuffled", depth)]
  cases += [("shuffled", k) for k in range(4) if k != depth]
  out, scored = [], None
  for order, layers in cases:
    config.model.pair_order = order
    config.model.attention_layers = layers
    method, steps, mesh, state, step_fn = timing.training_setup(config, dataset)
    raw = list(itertools.islice(method.batches(dataset.train, tc.batch_size, 0, 0), num_steps + 1))
    per_step, state = timing.seconds_per_step(step_fn, state, mesh, raw)
    if layers == depth:
      scored = state  # the default depth's model scores the test split
    texts = float(np.mean([len(np.unique(b["pair_text"])) for b in raw]))
    images = float(np.mean([len(np.unique(b["pair_image"])) for b in raw]))
    flops = scanet_flops.step_flops(
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
  return out, Trained(config, dataset, scored)


def bench_mcsm(configs: dict[str, tuple[str, dict]], source: wikipedia.Source) -> list[dict]:
  """MCSM on Wikipedia (--wikipedia_dir; word sequences need the real texts): seconds per
  training step and epoch of each named config ((spec, model field overrides)),
  with the analytic FLOPs, of which the text space's LSTM is most."""
  if not source.wikipedia_dir:
    raise app.UsageError("--only=mcsm needs --wikipedia_dir (MCSM reads the texts' words).")
  from crossmodal_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  out, datasets = [], {}
  for name, (spec, fields) in configs.items():
    config = default_configs.get_config(spec)
    source.apply(config.data)
    config.data.max_words = fields.get("max_words", config.data.max_words)
    config.model.update({k: v for k, v in fields.items() if k != "max_words"})
    if config.data.max_words not in datasets:
      datasets[config.data.max_words] = data_lib.load_dataset(config.data)
    dataset = datasets[config.data.max_words]
    tc = config.train
    method, steps, mesh, state, step_fn = timing.training_setup(config, dataset)
    raw = list(itertools.islice(method.batches(dataset.train, tc.batch_size, 0, 0), 6))
    per_step, state = timing.seconds_per_step(step_fn, state, mesh, raw)
    dims = dataset.dims()
    flops = mcsm_flops.item_flops(
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
