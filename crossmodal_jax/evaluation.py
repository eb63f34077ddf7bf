"""Evaluation of a trained workdir: restore, rank, compute the metrics, write the results.

`evaluate(workdir)` restores a trained checkpoint (the best by validation mAP by
default), evaluates the test split in both directions (image -> text, text -> image;
queries = test items of one modality, gallery = test items of the other) and writes
`results.json` plus PNG plots of the precision-recall and precision-scope curves; with a
protocol (`protocols.PROTOCOLS`) its splits and metric instead. The work is done by:

- `ranking`: each item encoded once, its pairs scored blockwise within the memory budget
  (`scoring`), each direction ranked by the method (whole matrices, or streamed top-k);
- `protocols`: which items are queries and gallery, full or streamed ranking, the split's
  figures (`protocols.evaluate_split`, computed by `metrics`);
- `results_layout`: the layout of those figures in results.json;
- `reporting`: the printed lines and the plots.

With `eval.shortlist` set, the split is ranked in two stages (`rerank`): a first stage
("sm", semantic matching on the run's own features, or another trained run's ranking)
keeps each query's top `eval.rerank_k`, and the method reranks those alone; results.json
then has "rerank" (the first stage, K, and how much of the exhaustive top R the
shortlists hold).

A run without a best-by-validation checkpoint (no validation split) is evaluated at its
latest one: results.json then says "checkpoint": "latest", with a "checkpoint_note" saying
why.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from crossmodal_jax import atomic
from crossmodal_jax import checkpoint as ckpt
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import methods
from crossmodal_jax import protocols
from crossmodal_jax import ranking
from crossmodal_jax import reporting
from crossmodal_jax import shortlists
from crossmodal_jax import runs
from crossmodal_jax.data import common

# results.json's "checkpoint_note" when the best checkpoint was asked for and the run has none.
LATEST_NOTE = (
    "the best by validation mAP was asked for, but the run has no best-by-validation "
    "checkpoint (no validation split?): its latest checkpoint was used"
)


def evaluate(
    workdir: str,
    config: ml_collections.ConfigDict | None = None,
    dataset: common.Dataset | None = None,
    checkpoint: str | None = None,
    split: str = "test",
    plots: bool = True,
    protocol: str | None = None,
) -> dict[str, Any]:
  """Evaluates a trained workdir on `split`; writes results.json and plots there.

  With `protocol` (a key of `protocols.PROTOCOLS`), its query and gallery splits and R are
  used instead (`split` must then be its query split, the default "test"), and the files
  are results_PROTOCOL.json and PROTOCOL_*.png ("default" writes results.json, as
  without). What the method's `calibrate` chose and the checkpoint carries (its non-param
  collections besides "batch_stats", e.g. a fusion weight) is reported under
  "calibrated". "checkpoint" names the checkpoint evaluated: the one asked for, or
  "latest" with a "checkpoint_note" when the best was asked for and the run has none.
  With `eval.shortlist` set, the ranking has two stages (`shortlists.first_stage`; the
  result's "rerank" says which).
  """
  config = config if config is not None else runs.load(workdir)
  spec = None if protocol is None else protocols.protocol_spec(protocol)
  if spec is not None and split != spec.query_split:
    raise errors.UserError(
        f"Protocol {protocol!r} takes its queries from the {spec.query_split!r} split, "
        f"not {split!r}."
    )
  if dataset is None:
    with errors.config_values():
      dataset = data_lib.load_dataset(config.data)
  if split not in dataset.splits:
    raise errors.UserError(f"Unknown split {split!r}; choose one of {tuple(dataset.splits)}.")
  ranking.streaming_settings(config.eval)
  shortlists.settings(config.eval)
  with errors.config_values():
    method = methods.get_method(config, dataset.dims(), dataset.meta)
  if checkpoint is None:
    checkpoint = default_checkpoint(config.eval)
  variables, step, used = runs.restore_variables(
      workdir, method, dataset.train, checkpoint, with_checkpoint=True
  )
  stage = shortlists.first_stage(config, dataset, workdir, method, variables)
  if spec is None:
    result = protocols.evaluate_split(
        method, variables, dataset.splits[split], config.eval, first_stage=stage
    )
    name = "" if split == "test" else split
  else:
    result = protocols.evaluate_protocol(
        method, variables, dataset, config.eval, protocol, first_stage=stage
    )
    name = "" if protocol == "default" else protocol
  gallery = split if spec is None else spec.gallery_split
  # What `calibrate` chose on validation and the checkpoint carries (non-param
  # collections besides batch statistics: a fusion weight), so the report names it.
  chosen = {k: v for k, v in variables.items() if k not in ("params", "batch_stats")}
  if chosen:
    result["calibrated"] = jax.tree.map(lambda x: np.asarray(x).tolist(), chosen)
  result.update(
      {
          "split": split,
          "gallery_split": gallery,
          "checkpoint_step": int(step),
          "checkpoint": used,
      }
  )
  if used != checkpoint:
    result["checkpoint_note"] = LATEST_NOTE
  if config.eval.relevance != "label":  # the default: a results.json without the key
    result["relevance"] = config.eval.relevance
  result.update(
      {
          "method": config.method,
          "dataset": dataset.name,
          "num_queries": len(dataset.splits[split]),
          "num_gallery": len(dataset.splits[gallery]),
      }
  )
  if jax.process_index() == 0:
    path = os.path.join(workdir, results_file(name or "default"))
    atomic_write_json(path, result)
    if plots:
      reporting.plot_curves(result, workdir, prefix=f"{name}_" if name else "")
  logging.info("%s (checkpoint step %d)", reporting.headline(result), step)
  if "rerank" in result:
    logging.info(
        "Ranked in two stages: the top %d of %s reranked by the method.",
        result["rerank"]["k"],
        shortlists.described(result["rerank"]),
    )
  return result


def results_file(protocol: str = "default", ext: str = "json") -> str:
  """The name of a run's results under `protocol`: results.EXT for the default,
  results_PROTOCOL.EXT for another (also the name of a comparison table's files)."""
  return f"results.{ext}" if protocol == "default" else f"results_{protocol}.{ext}"


def default_checkpoint(eval_config) -> str:
  """The checkpoint evaluation restores unless told: the best by validation mAP, or the
  latest (`eval.select_by`)."""
  return ckpt.BEST if eval_config.select_by == "validation_map" else ckpt.LATEST


def atomic_write_json(path: str, obj: Any):
  """Writes `obj` as JSON to `path`, never half-written (`atomic.atomic_write`)."""
  atomic.atomic_write(path, lambda f: json.dump(obj, f, indent=2), binary=False)
