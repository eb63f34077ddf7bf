"""The benchmark's retrieve-then-rerank case at gallery scale (`--only=rerank_large`):
SCANet reranking a separable first stage's shortlist of an n x n synthetic gallery
(40,000 x 40,000 by default), whose exhaustive SCANet ranking (every pair scored) is timed
on a sample of queries and scaled.

1. SCANet (and HCMSL, when it is a first stage) are trained inside the case on the
   synthetic benchmark with their synthetic configs (`--rerank_large_preset`), into a
   temporary folder, and loaded as trained models on raw inputs (`crossmodal_jax.load`).
2. The gallery: the test split of the same generator (`synthetic.make_dataset`, the
   training config's preset and seed) with n test pairs instead of the preset's 600. The
   generator draws its prototypes, word vectors, then the train, validation and test
   splits in that order from one seed, so the training and validation splits (checked)
   and the class structure are the trained runs' own; only the test split is longer.
   Each model applies its own saved preprocessing to the raw regions and word counts.
3. SCANet encodes the n images and n texts once (the second stage's, and "own"'s, input).
4. First stages (i2t), each streaming every image's top K texts (`ranking.top_k`), timed
   for each K (`--rerank_large_first`): "hcmsl", HCMSL's encodings and the cosine of its
   codes; "own", SCANet's own separable codes (`shortlists.OwnCodes`: its first
   co-attention layer's bilinear score) from the encodings of step 3 and their dot products.
5. Second stage: SCANet scores each image query's K shortlisted texts and reorders them
   (`rerank.two_stage`), timed for each K.
6. Recall: SCANet's exhaustive top 100 (`ranking.top_k`, all n texts scored) of a random
   sample of image queries, the fraction of it inside each K's shortlist; its measured
   rate gives the exhaustive n x n time. mAP@100 of every ranking on the same sample (and
   on all n queries for each first stage alone and each K).

Every timed call follows an untimed call on the first query block (or encoding batch),
which compiles the programs the timed call runs; a timed call whose shapes differ from
its warm-up's (the streamed top-k's query rows follow the query count) includes its
compilation. The K grow until one K's second stage exceeds `MAX_K_SECONDS`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Any, Sequence

import jax
import numpy as np

import crossmodal_jax
from crossmodal_jax import data as data_lib
from crossmodal_jax import metrics
from crossmodal_jax import ranking
from crossmodal_jax import rerank
from crossmodal_jax import scoring
from crossmodal_jax import shortlists
from crossmodal_jax import training
from crossmodal_jax.configs import default as default_configs
from crossmodal_jax.data.sources import synthetic
from crossmodal_jax.methods.scanet import flops as scanet_flops

RERANKED = "scanet"
FIRSTS = ("hcmsl", "own")  # the first stages: HCMSL's cosine, SCANet's own codes
KS = (50, 100, 200, 400, 800, 1600, 3200, 4000)
RECALL_R = 100  # the recall of SCANet's exhaustive top 100 inside each shortlist
MAP_R = 100
MAX_K_SECONDS = 8 * 60  # no larger K once one K's second stage takes longer


def _config(method: str, preset: str):
  config = default_configs.get_config(f"{method},synthetic,{preset}")
  config.train.progress_bar = False
  return config


def _train(config, workdir: str, dataset) -> float:
  start = time.perf_counter()
  training.train(config, workdir, dataset=dataset)
  return time.perf_counter() - start


def _gallery(config, n: int):
  """The test split of n pairs of the training config's generator, and a check that its
  training and validation splits are the training dataset's."""
  data = config.data
  preset = dataclasses.replace(
      synthetic.PRESETS[data.synthetic_preset],
      seed=data.synthetic_seed,
      multi_label=float(data.synthetic_multi_label),
      num_test=n,
  )
  if data.synthetic_num_train > 0:
    preset = dataclasses.replace(preset, num_train=data.synthetic_num_train)
  return synthetic.make_dataset(preset), preset


def _same_training_rows(big, dataset) -> bool:
  return all(
      np.array_equal(np.asarray(big.splits[s][key]), np.asarray(dataset.splits[s][key]))
      for s in ("train", "validation")
      for key in ("label", "image_regions", "bow")
  )


def _timed(fn) -> tuple[Any, float]:
  start = time.perf_counter()
  value = jax.block_until_ready(fn())
  return value, time.perf_counter() - start


def _encode(model, test, eval_config) -> tuple[Any, Any, float]:
  """(image encodings, text encodings, seconds) of every raw test item (its regions and
  the text arrays the model's method reads) by a loaded model, after an untimed batch
  that compiles its encoders."""
  text_keys = [k for k in model.method.text_keys if k in model.preprocessing.dims]
  images = test["image_regions"]
  texts = {k: test[k] for k in text_keys}
  b = min(eval_config.batch_size, len(images))
  model.embed_images(images[:b])
  model.embed_texts({k: v[:b] for k, v in texts.items()})
  (image_enc, text_enc), seconds = _timed(
      lambda: (model.embed_images(images), model.embed_texts(texts))
  )
  return image_enc, text_enc, seconds


def _map(ranked: np.ndarray, query_labels, gallery_labels) -> float:
  return float(
      metrics.topk_metrics(ranked[:, :MAP_R], query_labels, gallery_labels, r=MAP_R, ks=())["map_r"]
  )


def _first_stage_top(name, models, test, scanet_codes, rows, ks, deepest):
  """A first stage's i2t rankings: ({"encode_seconds", "top_seconds": {k: s}}, each K's
  sampled rows {k: [sample, k]}, the deepest ranking [n, deepest]). `scanet_codes`:
  (the OwnCodes stage, SCANet's (image, text) codes, the seconds they took)."""
  if name == "own":
    stage, (images, texts), encode_seconds = scanet_codes
    query_block = stage.eval_config.query_block

    def top(queries, k):
      return stage.top_of_codes(queries, texts, "i2t", k)

  else:
    model = models[name]
    images, texts, encode_seconds = _encode(model, test, model.config.eval)
    query_block = model.config.eval.query_block

    def top(queries, k):
      return ranking.top_k(
          model.method, model.variables, queries, texts, "i2t", k, model.config.eval
      )[1]

  qb = min(query_block, scoring.num_items(images))
  sampled, top_seconds, deepest_ranking = {}, {}, None
  for k in sorted(set(ks) | {deepest}):
    top(jax.tree.map(lambda x: x[:qb], images), k)
    ranked, seconds = _timed(lambda k=k: top(images, k))
    ranked = np.asarray(ranked, np.int32)
    sampled[k] = ranked[rows]
    if k in ks:
      top_seconds[k] = seconds
    if k == deepest:
      deepest_ranking = ranked
    del ranked
  print(f"[rerank_large] first stage {name}: {top_seconds}", flush=True)
  return {"encode_seconds": encode_seconds, "top_seconds": top_seconds}, sampled, deepest_ranking


def bench_rerank_large(
    n: int = 40000,
    ks: Sequence[int] = KS,
    sample: int = 4000,
    preset: str = "full",
    firsts: Sequence[str] = FIRSTS,
) -> list[dict[str, Any]]:
  """The entries: the trainings, SCANet's exhaustive top 100 of the sampled queries, each
  first stage alone, and each first stage's and K's two-stage ranking (see the module
  docstring)."""
  ks = sorted(set(int(k) for k in ks))
  unknown = [f for f in firsts if f not in FIRSTS]
  if unknown:
    raise ValueError(f"Unknown first stages {unknown}; choose from {FIRSTS}.")
  trained = [RERANKED] + [f for f in firsts if f != "own"]
  configs = {m: _config(m, preset) for m in trained}
  models, train_seconds, datasets = {}, {}, {}
  with tempfile.TemporaryDirectory() as root:
    for name, config in configs.items():
      datasets[name] = data_lib.load_dataset(config.data)
      train_seconds[name] = _train(config, f"{root}/{name}", datasets[name])
      models[name] = crossmodal_jax.load(f"{root}/{name}")
      print(f"[rerank_large] {name} trained in {train_seconds[name]:.0f} s", flush=True)
  big, generator = _gallery(configs[RERANKED], n)
  same = all(_same_training_rows(big, d) for d in datasets.values()) and all(
      c.data.synthetic_preset == configs[RERANKED].data.synthetic_preset
      and c.data.synthetic_seed == configs[RERANKED].data.synthetic_seed
      for c in configs.values()
  )
  if not same:
    raise RuntimeError("The large gallery's generator is not the trained runs'.")
  test = big.test
  labels = np.asarray(test["label"])
  scanet = models[RERANKED]
  ce_s = scanet.config.eval
  rng = np.random.default_rng(0)
  sample = min(sample, n)
  rows = np.sort(rng.choice(n, size=sample, replace=False))

  # SCANet's encodings, once; its own separable codes from them.
  s_images, s_texts, s_encode_seconds = _encode(scanet, test, ce_s)
  own = shortlists.OwnCodes(big, ce_s, scanet.method, scanet.variables)
  own.code(jax.tree.map(lambda x: x[: ce_s.batch_size], s_images), "image")
  own.code(jax.tree.map(lambda x: x[: ce_s.batch_size], s_texts), "text")
  codes, code_seconds = _timed(lambda: (own.code(s_images, "image"), own.code(s_texts, "text")))

  # SCANet's exhaustive top 100 of the sampled image queries.
  sq = jax.tree.map(lambda x: x[rows], s_images)
  warm = min(ce_s.query_block, 64, sample)
  ranking.top_k(
      scanet.method, scanet.variables, jax.tree.map(lambda x: x[:warm], sq), s_texts, "i2t",
      RECALL_R, ce_s,
  )  # fmt: skip
  (_, exhaustive), exhaustive_seconds = _timed(
      lambda: ranking.top_k(scanet.method, scanet.variables, sq, s_texts, "i2t", RECALL_R, ce_s)
  )
  exhaustive = np.asarray(exhaustive, np.int32)
  pairs_sampled = sample * n
  pair_seconds = exhaustive_seconds / pairs_sampled
  exhaustive_estimate = pair_seconds * n * n + s_encode_seconds
  graph = scanet.method.meta["word_graph"]
  pair_flops = scanet_flops.step_flops(scanet.config.model, graph, 1, 0, 0, 1)["pair"]
  exhaustive_map = _map(exhaustive, labels[rows], labels)
  print(f"[rerank_large] exhaustive sample: {exhaustive_seconds:.1f} s", flush=True)

  common_fields = {
      "items": n,
      "queries": n,
      "direction": "i2t",
      "preset": preset,
      "synthetic_preset": configs[RERANKED].data.synthetic_preset,
      "synthetic_seed": configs[RERANKED].data.synthetic_seed,
      "recall_sample_queries": sample,
  }
  exhaustive_entry = {
      "name": f"rerank_large/{RERANKED}/exhaustive_sample",
      **common_fields,
      "pairs_scored": pairs_sampled,
      "seconds": exhaustive_seconds,
      "pairs_per_s": pairs_sampled / exhaustive_seconds,
      "flops_per_pair": pair_flops,
      "flops": pair_flops * pairs_sampled,
      "gflops_per_s": pair_flops * pairs_sampled / exhaustive_seconds / 1e9,
      "encode_seconds": s_encode_seconds,
      "exhaustive_estimate_seconds": exhaustive_estimate,
      "exhaustive_estimate_hours": exhaustive_estimate / 3600,
      f"map_at_{MAP_R}_of_sample": exhaustive_map,
      "note": (
          f"SCANet's top {RECALL_R} of {sample} random image queries (numpy seed 0) over "
          f"all {n} texts; exhaustive_estimate_seconds: this rate over all n x n pairs "
          "plus encoding the n images and n texts"
      ),
  }
  trainings = [
      {
          "name": f"rerank_large/train/{m}",
          "config": f"{m},synthetic,{preset}",
          "seconds": train_seconds[m],
          "epochs": configs[m].train.num_epochs,
          "train_pairs": generator.num_train,
      }
      for m in trained
  ]

  entries = []
  qs = min(ce_s.query_block, n)
  deepest = max(max(ks), MAP_R)  # each first stage alone is also ranked to 100, for its mAP
  for first_name in firsts:
    timing, sampled, first_ranking = _first_stage_top(
        first_name, models, test, (own, codes, code_seconds), rows, ks, deepest
    )
    entries.append(
        {
            "name": f"rerank_large/{first_name}/alone",
            **common_fields,
            "encode_seconds": timing["encode_seconds"],
            **{f"top_{k}_seconds": timing["top_seconds"][k] for k in ks},
            f"map_at_{MAP_R}": _map(first_ranking, labels, labels),
            f"map_at_{MAP_R}_of_sample": _map(first_ranking[rows], labels[rows], labels),
        }
    )
    for k in ks:
      first = first_ranking[:, : max(k, MAP_R)]
      rerank.two_stage(
          scanet.method, scanet.variables, jax.tree.map(lambda x: x[:qs], s_images), s_texts,
          first[:qs], k, "i2t", ce_s,
      )  # fmt: skip
      (ranked, _), score_seconds = _timed(
          lambda k=k, first=first: rerank.two_stage(
              scanet.method, scanet.variables, s_images, s_texts, first, k, "i2t", ce_s
          )
      )
      first_seconds = timing["encode_seconds"] + timing["top_seconds"][k]
      second_seconds = s_encode_seconds + score_seconds
      entry = {
          "name": f"rerank_large/{RERANKED}/{first_name}/k{k}",
          **common_fields,
          "k": k,
          "first_stage": first_name,
          "first_stage_seconds": first_seconds,
          "first_stage_encode_seconds": timing["encode_seconds"],
          "first_stage_top_k_seconds": timing["top_seconds"][k],
          "second_stage_seconds": second_seconds,
          "second_stage_encode_seconds": s_encode_seconds,
          "second_stage_score_seconds": score_seconds,
          "seconds": first_seconds + second_seconds,
          "pairs_scored": n * k,
          "pairs_per_s": n * k / score_seconds,
          "flops": pair_flops * n * k,
          "gflops_per_s": pair_flops * n * k / score_seconds / 1e9,
          f"recall_of_exhaustive_top_{RECALL_R}": rerank.recall_of_top(exhaustive, sampled[k]),
          "exhaustive_estimate_seconds": exhaustive_estimate,
          f"map_at_{MAP_R}": _map(np.asarray(ranked), labels, labels),
          f"map_at_{MAP_R}_of_sample": _map(np.asarray(ranked)[rows], labels[rows], labels),
          f"exhaustive_map_at_{MAP_R}_of_sample": exhaustive_map,
      }
      entries.append(entry)
      print(f"[rerank_large] {first_name} k={k}: {entry['seconds']:.1f} s", flush=True)
      if score_seconds > MAX_K_SECONDS:
        break
    del first_ranking, sampled
  note = (
      f"{n} x {n}: the test split of the training runs' own generator ("
      f"synthetic_preset={configs[RERANKED].data.synthetic_preset!r}, synthetic_seed="
      f"{configs[RERANKED].data.synthetic_seed}; {generator.num_classes} classes, "
      f"{generator.image_dim}-d regions, {generator.vocab_size} words) drawn with "
      f"num_test={n} instead of {synthetic.PRESETS[configs[RERANKED].data.synthetic_preset].num_test}"
      ": its prototypes, word vectors and training and validation splits are the "
      f"trained runs' (checked), only the test split is longer. {' and '.join(trained)} "
      f"trained inside the case with their '{preset}' synthetic configs; i2t only. First "
      "stages: 'hcmsl', the cosine of HCMSL's codes (its encode_seconds: HCMSL encoding "
      "the n images and n texts); 'own', SCANet's own separable codes (its "
      "encode_seconds: the codes from SCANet's encodings, which the second stage's "
      f"seconds count). Recall: of SCANet's exhaustive top {RECALL_R} of {sample} random "
      "image queries. Times: seconds of each stage after an untimed call on the first "
      "query block; the second stage's seconds include SCANet's encoding of the n images "
      "and n texts."
  )
  for e in entries + [exhaustive_entry]:
    e["note"] = note if "note" not in e else f"{e['note']}. {note}"
  return trainings + [exhaustive_entry] + entries
