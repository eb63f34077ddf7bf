r"""Ranks a gallery with a trained model: the top-k gallery items of chosen queries.

  python -m experiments.retrieve --workdir=/tmp/drsl --split=test --direction=i2t \
      --queries=0,5,17 --k=10
  python -m experiments.retrieve --workdir=/tmp/drsl --features_dir=/path/to/features \
      --split=test --direction=t2i --queries=3 --k=5 --output=/tmp/top5.json

The model is the workdir's: its config (WORKDIR/config.json unless --config is given)
and checkpoint (--checkpoint; by default the one experiments.evaluate restores). The
queries are rows of --split, its images for i2t and its texts for t2i; the gallery is
the other modality's items of --gallery_split (default: the same split), from the
workdir's dataset or from --features_dir, a folder of feature files in any layout the
features builder reads (.mat / .npy / HDF5: crossmodal_jax/data/sources/feature_builder.py; features
made as the model's training features were, of the same sizes; its images are
standardised by its own training split when the config's data.standardize_image says
so). The ranking is streamed through the blockwise scorer (each query's top k within
eval.memory_budget_mb), so any gallery size works. With --config.eval.shortlist=sm (or
a trained run's workdir) the ranking has two stages (crossmodal_jax/rerank.py): that first
stage's top --config.eval.rerank_k items are reranked by the model, then the rest follow
in the first stage's order; the report says which first stage and K, and an item past
the K reranked ones has no model score.

For each query it prints, and writes as JSON (atomically) to --output or
WORKDIR/retrieval_SPLIT_DIRECTION.json, the k best gallery items in rank order: gallery
index, its identities where the dataset has them (Wikipedia: the text or image id and the
article's title; a feature folder: its raw texts' "id", else its row), label (with the
class name when the dataset has names), score, and whether it is relevant (shares a label
with the query; with eval.relevance="pair", is the query's own pair or of its group). A
bad input is one line `error: ...` (exit status 1; 2 for a bad command line;
CROSSMODAL_TRACEBACK=1 shows the traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation
from crossmodal_jax import logs
from crossmodal_jax import methods
from crossmodal_jax import metrics
from crossmodal_jax import protocols
from crossmodal_jax import ranking
from crossmodal_jax import rerank
from crossmodal_jax import shortlists
from crossmodal_jax import runs
from crossmodal_jax.data import common
from . import cli

DIRECTIONS = ranking.DIRECTIONS
SPLITS = ("test", "validation", "train")
MODALITY = {"i2t": ("images", "texts"), "t2i": ("texts", "images")}  # (queries, gallery)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """Defines the entry point's flags (called when it runs, so that importing this module
  defines none); returns their holders by name."""
  return {
      "config": config_flags.DEFINE_config_file(
          "config",
          None,
          cli.config_help_text(
              "Optional: a config used instead of WORKDIR/config.json (its "
              "eval.memory_budget_mb bounds the streamed ranking's tiles),"
          ),
          flag_values=flag_values,
          lock_config=True,
      ),
      "workdir": flags.DEFINE_string(
          "workdir",
          None,
          "A training workdir: its config.json and checkpoints give the model.",
          required=True,
          flag_values=flag_values,
      ),
      "checkpoint": flags.DEFINE_string(
          "checkpoint",
          None,
          "'best' (best validation mAP), 'latest', or a step number. Default: the config's "
          "eval.select_by.",
          flag_values=flag_values,
      ),
      "split": flags.DEFINE_enum(
          "split",
          "test",
          list(SPLITS),
          "The split whose items are the queries (its images for i2t, its texts for t2i).",
          flag_values=flag_values,
      ),
      "gallery_split": flags.DEFINE_enum(
          "gallery_split",
          None,
          list(SPLITS),
          "The split whose items of the other modality are the gallery. Default: --split.",
          flag_values=flag_values,
      ),
      "features_dir": flags.DEFINE_string(
          "features_dir",
          None,
          "A folder of feature files (the DRSL .mat layout: train_img.mat, train_txt.mat, "
          "train_img_lab.mat, test_*, optional valid_*; or the same as .npy; or one HDF5 "
          "file, see crossmodal_jax/data/sources/feature_builder.py) to rank instead of the workdir's "
          "dataset; its features must have the sizes the model was trained on.",
          flag_values=flag_values,
      ),
      "direction": flags.DEFINE_enum(
          "direction",
          "i2t",
          list(DIRECTIONS),
          "i2t: image queries against a gallery of texts; t2i: text queries against images.",
          flag_values=flag_values,
      ),
      "queries": flags.DEFINE_string(
          "queries",
          "0",
          "Comma-separated row indices of the queries in --split, e.g. 0,5,17.",
          flag_values=flag_values,
      ),
      "k": flags.DEFINE_integer(
          "k",
          10,
          "Gallery items listed per query (at most the gallery size).",
          lower_bound=1,
          flag_values=flag_values,
      ),
      "output": flags.DEFINE_string(
          "output",
          None,
          "Where to write the JSON. Default: WORKDIR/retrieval_SPLIT_DIRECTION.json "
          "(retrieval_SPLIT_vs_GALLERY_DIRECTION.json with another --gallery_split).",
          flag_values=flag_values,
      ),
  }


def parse_queries(text: str) -> list[int]:
  """ "0,5,17" -> [0, 5, 17]; one UserError naming the bad part otherwise."""
  parts = [p.strip() for p in (text or "").split(",") if p.strip()]
  if not parts:
    raise errors.UserError(f"--queries={text!r} names no query: give row indices, e.g. 0,5,17.")
  rows = []
  for part in parts:
    try:
      rows.append(int(part))
    except ValueError:
      raise errors.UserError(
          f"--queries={text!r}: {part!r} is not a row index (give comma-separated integers, "
          "e.g. 0,5,17)."
      ) from None
  return rows


def load_data(config: ml_collections.ConfigDict, features_dir: str | None) -> common.Dataset:
  """The workdir's dataset, or the DRSL-layout folder `features_dir` read as the config's
  data section would read a features folder (same data_dir, standardisation)."""
  data = config.data
  if features_dir:
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.num_validation = config.data.num_validation if config.data.name == "features" else 0
    data.name, data.manual_dir = "features", os.fspath(features_dir)
  with errors.config_values():
    return data_lib.load_dataset(data)


def default_output(workdir: str, split: str, gallery_split: str, direction: str) -> str:
  between = split if gallery_split == split else f"{split}_vs_{gallery_split}"
  return os.path.join(workdir, f"retrieval_{between}_{direction}.json")


def _label(label: np.ndarray, names: list[str] | None) -> dict[str, Any]:
  """{"label": class id (or the ids of a multi-hot row), "class": its name(s)}."""
  label = np.asarray(label)
  ids = np.flatnonzero(label).tolist() if label.ndim == 1 else int(label)
  out: dict[str, Any] = {"label": ids}
  if names is not None:
    out["class"] = [names[i] for i in ids] if isinstance(ids, list) else names[ids]
  return out


def retrieve(
    workdir: str,
    queries: list[int],
    k: int = 10,
    direction: str = "i2t",
    split: str = "test",
    gallery_split: str | None = None,
    features_dir: str | None = None,
    config: ml_collections.ConfigDict | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
  """The top-k gallery items of each query, with labels, scores and relevance.

  Args:
    workdir: a training workdir (config.json, checkpoints).
    queries: row indices of `split`.
    k: items per query, 1 <= k <= the gallery size.
    direction: "i2t" (image queries, text gallery) or "t2i".
    split: the queries' split; gallery_split: the gallery's (None: `split`).
    features_dir: a feature-file folder (`data/features.py`) to read the splits from
      instead of the workdir's dataset.
    config: overrides WORKDIR/config.json.
    checkpoint: "best", "latest" or a step (None: the config's eval.select_by).

  Returns:
    The report written as JSON: the run ("method", "dataset", "checkpoint": the one
    read, with a "checkpoint_note" when it is not the one asked for, ...), the
    ranking ("direction", "split", "gallery_split", "num_gallery", "k") and "queries",
    one {"query", "label"[, "class"], "results"} per query, "results" holding k
    {"rank", "gallery_index", "label"[, "class"], "score", "relevant"} best first; each
    query and result also names the item ("id" in its modality, "title", "source_row":
    its row in the dataset's list or files) where the dataset has identities. With
    eval.shortlist set, "rerank" names the first stage and K, and a result after the K
    reranked ones has "score" None.

  Raises:
    UserError: a bad query index, k, split, data folder or checkpoint.
  """
  if direction not in DIRECTIONS:
    raise errors.UserError(f"Unknown direction {direction!r}; choose one of {DIRECTIONS}.")
  config = config if config is not None else runs.load(workdir)
  dataset = load_data(config, features_dir)
  gallery_split = split if gallery_split is None else gallery_split
  for name in (split, gallery_split):
    if name not in dataset.splits:
      raise errors.UserError(f"Unknown split {name!r}; choose one of {tuple(dataset.splits)}.")
  source = features_dir or f"the {dataset.name} dataset"
  query_rows, gallery_rows = dataset.splits[split], dataset.splits[gallery_split]
  if len(gallery_rows) == 0:
    raise errors.UserError(f"The {gallery_split} split of {source} is empty: no gallery.")
  for q in queries:
    if not 0 <= q < len(query_rows):
      raise errors.UserError(
          f"--queries: row {q} is out of range: the {split} split of {source} has "
          f"{len(query_rows)} items (0..{len(query_rows) - 1})."
      )
  if not 1 <= k <= len(gallery_rows):
    raise errors.UserError(
        f"--k={k} must be in [1, {len(gallery_rows)}]: the {gallery_split} gallery has "
        f"{len(gallery_rows)} items."
    )
  ranking.streaming_settings(config.eval)
  shortlists.settings(config.eval)
  with errors.config_values():
    method = methods.get_method(config, dataset.dims(), dataset.meta)
  if checkpoint is None:
    checkpoint = evaluation.default_checkpoint(config.eval)
  try:
    variables, step, used = runs.restore_variables(
        workdir, method, dataset.train, checkpoint, with_checkpoint=True
    )
  except runs.CheckpointMismatchError as e:
    if not features_dir:
      raise
    dims = dataset.dims()
    raise errors.UserError(
        f"{features_dir}: its features (image {dims['image']}, text {dims['text']}) do not "
        f"fit the model in {workdir}: {e}"
    ) from e
  stage = shortlists.first_stage(config, dataset, workdir, method, variables)
  if stage is None:
    scores, indices = ranking.retrieve(
        method, variables, query_rows, gallery_rows, direction, k, config.eval, queries=queries
    )
  else:
    scores, indices = rerank.retrieve(
        method, variables, query_rows, gallery_rows, direction, k, config.eval, stage, queries
    )
  names = dataset.meta.get("class_names")
  names = list(names) if names is not None and len(names) == dataset.num_classes else None
  query_modality, gallery_modality = ("image", "text") if direction == "i2t" else ("text", "image")
  query_ids = _identities(dataset.meta, split, query_modality)
  gallery_ids = _identities(dataset.meta, gallery_split, gallery_modality)
  if config.eval.relevance == "pair" and gallery_rows is not query_rows:
    raise errors.UserError(
        'eval.relevance="pair" needs the queries\' own split as the gallery (--gallery_split).'
    )
  # What relevance reads: the class labels, or each row's pair (or group).
  keys, gallery_keys, _ = protocols.relevance_labels(query_rows, gallery_rows, config.eval)
  gallery_labels = gallery_rows["label"]
  entries = []
  for q, row_scores, row_indices in zip(queries, scores, indices):
    query_label = query_rows["label"][q]
    relevant = metrics.relevance(np.asarray(keys)[q][None], gallery_keys[row_indices])[0]
    entries.append(
        {
            "query": int(q),
            **query_ids(q),
            **_label(query_label, names),
            "results": [
                {
                    "rank": rank + 1,
                    "gallery_index": int(j),
                    **gallery_ids(j),
                    **_label(gallery_labels[j], names),
                    "score": None if np.isnan(s) else float(s),
                    "relevant": bool(rel),
                }
                for rank, (j, s, rel) in enumerate(zip(row_indices, row_scores, relevant))
            ],
        }
    )
  return {
      "workdir": os.fspath(workdir),
      "method": config.method,
      "dataset": dataset.name,
      "features_dir": None if not features_dir else os.fspath(features_dir),
      "checkpoint": used,
      **({} if used == checkpoint else {"checkpoint_note": evaluation.LATEST_NOTE}),
      "checkpoint_step": int(step),
      "direction": direction,
      "split": split,
      "gallery_split": gallery_split,
      "num_gallery": len(gallery_rows),
      "k": int(k),
      **(
          {}
          if stage is None
          else {"rerank": {**stage.info(), "k": min(config.eval.rerank_k, len(gallery_rows))}}
      ),
      "queries": entries,
  }


def _identities(meta, split: str, modality: str):
  """row -> the item's identities in the dataset's meta["ids"] (its "id" in `modality`,
  its "title" and its "row" in the source list or files, where the dataset has them);
  {} for every row of a dataset without ids (the synthetic one)."""
  ids = (meta.get("ids") or {}).get(split, {})

  def of(row: int) -> dict[str, Any]:
    out = {}
    if modality in ids:
      out["id"] = ids[modality][row]
    if "title" in ids:
      out["title"] = ids["title"][row]
    if "row" in ids:
      out["source_row"] = ids["row"][row]
    return out

  return of


def _named(item: dict[str, Any]) -> str:
  """An item's identities as the printed report shows them."""
  parts = []
  if "id" in item:
    parts.append(f"id {item['id']}")
  if item.get("title"):
    parts.append(repr(item["title"]))
  return ("  " + "  ".join(parts)) if parts else ""


def format_report(report: dict[str, Any]) -> str:
  """The report as the lines the entry point prints."""
  queries, gallery = MODALITY[report["direction"]]
  lines = [
      f"{report['method']} (checkpoint step {report['checkpoint_step']}, "
      f"{report['checkpoint']}): {report['split']} {queries} against the "
      f"{report['num_gallery']} {report['gallery_split']} {gallery}, top {report['k']}"
  ]
  if "checkpoint_note" in report:
    lines.append(f"  ({report['checkpoint_note']})")
  if "rerank" in report:
    first = report["rerank"]
    lines.append(
        f"  two stages: the top {first['k']} of {shortlists.described(first)} reranked by "
        "the model, then the rest in its order (eval.shortlist, eval.rerank_k)"
    )

  def label(item):
    if "class" not in item:
      return f"label {item['label']}"
    return f"label {item['label']} ({item['class']})"

  for entry in report["queries"]:
    lines.append(f"query {entry['query']}  {label(entry)}{_named(entry)}")
    for r in entry["results"]:
      mark = "  relevant" if r["relevant"] else ""
      score = "     -" if r["score"] is None else f"{r['score']:.4f}"
      lines.append(
          f"  {r['rank']:>3}  gallery {r['gallery_index']:<6} score {score}  "
          f"{label(r)}{mark}{_named(r)}"
      )
  return "\n".join(lines)


def write_report(report: dict[str, Any], path: str) -> str:
  """Writes the report as JSON to `path` atomically; returns the path."""
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise errors.MissingError(f"--output={path}: the folder {folder} does not exist.")
  evaluation.atomic_write_json(path, report)
  return path


_FLAGS: dict[str, Any] = {}


def main(argv):
  cli.unexpected_arguments(argv)
  logs.quiet_library_logs()
  f = {name: holder.value for name, holder in _FLAGS.items()}
  gallery_split = f["gallery_split"] or f["split"]
  output = f["output"] or default_output(f["workdir"], f["split"], gallery_split, f["direction"])
  if f["output"]:  # checked before the work, not after it
    write_folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(write_folder):
      raise errors.MissingError(f"--output={output}: the folder {write_folder} does not exist.")
  report = retrieve(
      f["workdir"],
      parse_queries(f["queries"]),
      k=f["k"],
      direction=f["direction"],
      split=f["split"],
      gallery_split=gallery_split,
      features_dir=f["features_dir"],
      config=f["config"],
      checkpoint=f["checkpoint"],
  )
  print(format_report(report))
  print(f"wrote {write_report(report, output)}")


if __name__ == "__main__":
  # Before DEFINE_config_file, which applies the overrides as it is defined.
  cli.before_flags(sys.argv[1:], None)
  _FLAGS.update(define_flags())
  cli.run(main, lambda: "nothing was written; re-run the same command.")
