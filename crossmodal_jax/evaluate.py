"""Evaluation: encode each item once, score blockwise, compute the literature's metrics.

`evaluate(workdir)` restores a trained checkpoint (the best by validation mAP by
default), evaluates the test split in both directions (image -> text, text -> image;
queries = test items of one modality, gallery = test items of the other) and writes
`results.json` plus PNG plots of the precision-recall and precision-scope curves.

Protocols (`PROTOCOLS`, `evaluate_protocol`): "default" is the above; "yu2018" takes the
test items as queries against the training items of the other modality, with mAP@100
(Yu et al.'s protocol, which SCANet's tables follow).

How a direction is ranked (`eval.ranking`):

- "full": the whole [n_query, n_gallery] score channels and ranking scores are held on
  the host and each query's row sorted once for every metric (mAP@ALL, mAP@R, P@K, the
  curves). This is what evaluation did always; "auto" picks it while those matrices
  (4 bytes x n_query x n_gallery x (channels + 2)) fit in `eval.full_matrix_mb`.
- "top_k": each query's top k gallery items are streamed through the blockwise scorer
  (`scoring.top_k`, or `scoring.top_k_of_rows` for a method that overrides
  `retrieval_scores`), holding O(n_query x k) on the host plus one tile within
  `eval.memory_budget_mb`, and mAP@R, P@K and the precision-scope curve are computed
  from them (`metrics.split_metrics_from_topk`); k is the largest of `eval.top_k`,
  `eval.map_r` and `eval.precision_ks` (at most the gallery size). mAP@ALL and the PR
  curve need every rank: they are reported only when k reaches the gallery size. The
  values equal the full ranking's (ties go to the lower gallery index in both), up to the
  rounding of scores computed in differently shaped tiles.

A method that overrides `retrieval_scores` (MCSM's fusion: a min-max normalisation of
each query's row over the whole gallery) is streamed by query rows: a few queries are
scored against the whole gallery, ranked by `retrieval_scores` and cut to their top k.
That is exact for a row-wise `retrieval_scores` (each query's row depends on that row
alone, as MCSM's does); one that is not, or whose single row exceeds the budget, is one
`errors.UserError` naming the method (rank it with eval.ranking="full").
"""

from __future__ import annotations

import dataclasses
import functools
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
from crossmodal_jax import metrics
from crossmodal_jax import optimizers
from crossmodal_jax import runs
from crossmodal_jax import scoring
from crossmodal_jax.data import common
from crossmodal_jax.methods import base

DIRECTIONS = base.DIRECTIONS
RANKINGS = ("auto", "full", "top_k")
# eval.select_by: the best checkpoint by validation mAP, or the latest.
SELECT_BY = ("validation_map", "latest")
# The eval fields of streamed ranking, at their defaults for a workdir whose config.json
# predates them (configs/default.py sets the same).


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Which items are queries and gallery, and the metric a table reports.

  Attributes:
    query_split: the split whose items are the queries (of either modality).
    gallery_split: the split whose items of the other modality are the gallery.
    map_r: R of mAP@R (None: `eval.map_r`).
    metric: the results key of the protocol's figure ("map_all", or "map_at_R" for R
      = map_r; a gallery smaller than R caps R).
    description: one line for tables.
  """

  query_split: str
  gallery_split: str
  map_r: int | None
  metric: str
  description: str


PROTOCOLS = {
    "default": Protocol(
        "test",
        "test",
        None,
        "map_all",
        "test queries against the test gallery of the other modality, mAP@ALL",
    ),
    "yu2018": Protocol(
        "test",
        "train",
        100,
        "map_at_100",
        "test queries against the training gallery of the other modality, mAP@100 (Yu et "
        "al.'s protocol, as in SCANet's tables)",
    ),
}


@functools.lru_cache(maxsize=16)
def _jitted_encoders(method: base.Method):
  # Cached per method so per-epoch validation does not retrace the encoders.
  return jax.jit(method.encode_image), jax.jit(method.encode_text)


def split_channels(method: base.Method, variables: Any, split: common.Split, eval_config) -> Any:
  """The score channels of every (image, text) pair of a split: `method.score`'s pytree,
  each channel [n_images, n_texts], every item encoded once (the encoders jitted once per
  method)."""
  return scoring.split_channels(
      method, variables, split.arrays, eval_config, _jitted_encoders(method)
  )


def _oriented(channels: Any) -> dict[str, Any]:
  """A split's [n_images, n_texts] channels laid out query x gallery for each direction."""
  return {"i2t": channels, "t2i": jax.tree.map(np.transpose, channels)}


def _rank(method: base.Method, variables: Any, oriented: dict[str, Any]) -> dict[str, np.ndarray]:
  """Each direction's float32 ranking scores from its query x gallery channels."""
  return {
      d: np.asarray(method.retrieval_scores(variables, oriented[d], d), np.float32)
      for d in DIRECTIONS
  }


def ranking_scores(method: base.Method, variables: Any, channels: Any) -> dict[str, np.ndarray]:
  """Each direction's ranking scores from a split's score channels.

  Returns:
    {"i2t": [n_images, n_texts], "t2i": [n_texts, n_images]} float32 arrays.
  """
  return _rank(method, variables, _oriented(channels))


def score_split(
    method: base.Method, variables: Any, split: common.Split, eval_config
) -> dict[str, np.ndarray]:
  """The ranking scores of each direction for every (image, text) pair of a split.

  Returns:
    {"i2t": [n_images, n_texts], "t2i": [n_texts, n_images]} float32 arrays.
  """
  return ranking_scores(method, variables, split_channels(method, variables, split, eval_config))


def evaluate_split(
    method: base.Method,
    variables: Any,
    split: common.Split,
    eval_config,
    full: bool = True,
    channels: Any = None,
    gallery: common.Split | None = None,
    map_r: int | None = None,
) -> dict[str, Any]:
  """mAP@ALL (i2t, t2i, avg) and, if `full`, mAP@R, P@K and the curves.

  Queries are `split`'s items of one modality, the gallery the items of the other
  modality of `gallery` (None: of `split` itself). A method whose `score` gives several
  named channels (MCSM's two spaces) also gets each channel's mAP@ALL, ranked by that
  channel alone ("map_all_by_channel"; with `full=False` too, so training logs each
  channel's validation mAP). Each direction's scores are sorted once per query for all
  of its metrics. `channels`, if given, are the split's score channels already computed
  with `variables` (`split_channels`), so a split scored for calibration is not scored
  again.

  Galleries whose score matrices exceed `eval.full_matrix_mb` (or any, with
  eval.ranking="top_k") are ranked by streamed top-k instead (see the module docstring):
  the result then has "top_k" (the k kept per query), "map_all" and "pr_curve" only when
  k is the gallery size, and no "map_all_by_channel". `full=False` (mAP@ALL alone, what
  training validates with) always ranks the full matrices.

  Args:
    method, variables: the method and its variables.
    split: the queries' split; gallery: the gallery's split (None: `split`).
    eval_config: the config's eval section.
    full: False gives mAP@ALL alone.
    channels: `split`'s precomputed score channels (only without another `gallery`).
    map_r: R of mAP@R (None: eval_config.map_r).

  Returns:
    `metrics.split_metrics`' dict (see `metrics.split_metrics_from_topk` when streamed).

  Raises:
    UserError: a bad eval.ranking / eval.top_k / eval.full_matrix_mb, an empty split, or
      a method whose ranking cannot be streamed.
  """
  same = gallery is None or gallery is split
  gallery = split if gallery is None else gallery
  r = eval_config.map_r if map_r is None else int(map_r)
  _check_nonempty(split, "query")
  _check_nonempty(gallery, "gallery")
  if channels is not None and not same:
    raise ValueError("channels are one split's score channels: give no gallery with them.")
  mode = "full"
  if channels is None:
    mode = ranking_mode(method, variables, split, gallery, eval_config, full)
  labels, gallery_labels = split["label"], gallery["label"]
  if mode == "top_k":
    return _evaluate_top_k(method, variables, split, gallery, eval_config, r)
  if same:
    if channels is None:
      channels = split_channels(method, variables, split, eval_config)
    oriented = _oriented(channels)
  else:
    q_images, q_texts = encode_split(method, variables, split, eval_config)
    g_images, g_texts = encode_split(method, variables, gallery, eval_config)
    oriented = {
        "i2t": scoring.method_channels(method, variables, q_images, g_texts, eval_config),
        "t2i": jax.tree.map(
            np.transpose,
            scoring.method_channels(method, variables, g_images, q_texts, eval_config),
        ),
    }
  scores = _rank(method, variables, oriented)
  result = metrics.split_metrics(
      scores, labels, r, eval_config.precision_ks, full=full, gallery_labels=gallery_labels
  )
  if isinstance(oriented["i2t"], dict) and len(oriented["i2t"]) > 1:
    # Several named score channels (MCSM's two spaces): each one's mAP@ALL on its own,
    # next to the ranking that combines them.
    result["map_all_by_channel"] = {}
    for name in oriented["i2t"]:
      one = {d: np.asarray(oriented[d][name], np.float32) for d in DIRECTIONS}
      result["map_all_by_channel"][name] = metrics.split_metrics(
          one, labels, full=False, gallery_labels=gallery_labels
      )["map_all"]
  return result


def evaluate_protocol(
    method: base.Method,
    variables: Any,
    dataset: common.Dataset,
    eval_config,
    protocol: str = "default",
    full: bool = True,
) -> dict[str, Any]:
  """`evaluate_split` under one of `PROTOCOLS`: its query and gallery splits and R.

  Returns:
    `evaluate_split`'s dict plus "protocol": {"name", "query_split", "gallery_split",
    "metric" (the key of the protocol's figure: result[metric]["avg"]), "description"}.

  Raises:
    UserError: an unknown protocol, or an empty split.
  """
  spec = protocol_spec(protocol)
  query, gallery = dataset.splits[spec.query_split], dataset.splits[spec.gallery_split]
  for name, role in ((spec.query_split, "queries"), (spec.gallery_split, "gallery")):
    if len(dataset.splits[name]) == 0:
      raise errors.UserError(
          f"Protocol {protocol!r} takes its {role} from the {name} split of {dataset.name}, "
          "which is empty."
      )
  result = evaluate_split(
      method, variables, query, eval_config, full=full, gallery=gallery, map_r=spec.map_r
  )
  metric = protocol_metric(protocol, len(gallery), eval_config)
  result["protocol"] = {
      "name": protocol,
      "query_split": spec.query_split,
      "gallery_split": spec.gallery_split,
      "metric": metric,
      "description": spec.description,
  }
  return result


def protocol_metric(protocol: str, num_gallery: int, eval_config) -> str:
  """The results key of `protocol`'s figure for a gallery of `num_gallery` items: R of
  mAP@R capped at the gallery size, as `metrics.split_metrics` caps it."""
  spec = protocol_spec(protocol)
  if not spec.metric.startswith("map_at_"):
    return spec.metric
  return f"map_at_{min(spec.map_r or eval_config.map_r, num_gallery)}"


def protocol_spec(protocol: str) -> Protocol:
  """The `Protocol` named `protocol`; a UserError listing the choices if none is."""
  if protocol not in PROTOCOLS:
    raise errors.UserError(f"Unknown protocol {protocol!r}; choose one of {tuple(PROTOCOLS)}.")
  return PROTOCOLS[protocol]


def _check_nonempty(split: common.Split, role: str):
  if len(split) == 0:
    raise errors.UserError(f"The {role} split is empty: nothing to rank.")


def streaming_settings(eval_config) -> tuple[str, float, int]:
  """(eval.ranking, eval.full_matrix_mb, eval.top_k), checked with the other eval fields
  a run reads (eval.select_by, eval.memory_budget_mb)."""
  if eval_config.select_by not in SELECT_BY:
    raise errors.UserError(
        f"Unknown eval.select_by {eval_config.select_by!r}; choose one of {SELECT_BY}."
    )
  ranking = eval_config.ranking
  if ranking not in RANKINGS:
    raise errors.UserError(f"Unknown eval.ranking {ranking!r}; choose one of {RANKINGS}.")
  limit = float(eval_config.full_matrix_mb)
  if not limit > 0:
    raise errors.UserError(f"eval.full_matrix_mb must be > 0, got {limit}.")
  k = eval_config.top_k
  if isinstance(k, bool) or not isinstance(k, int) or k < 0:
    raise errors.UserError(f"eval.top_k must be an integer >= 0, got {k!r}.")
  budget = eval_config.memory_budget_mb
  if not budget > 0:
    raise errors.UserError(f"eval.memory_budget_mb must be > 0, got {budget}.")
  return ranking, limit, k


def num_channels(method: base.Method, variables: Any, split: common.Split) -> int:
  """How many score channels `method.score` gives (traced on two rows; nothing runs)."""
  rows = {k: v[:2] for k, v in split.arrays.items()}

  def channels(v, image, text):
    return method.score(v, method.encode_image(v, image), method.encode_text(v, text))

  shapes = jax.eval_shape(channels, variables, method.image_input(rows), method.text_input(rows))
  return len(jax.tree.leaves(shapes))


def full_matrix_bytes(n_query: int, n_gallery: int, channels: int, same: bool = True) -> int:
  """Host bytes of full-matrix evaluation: every channel (scored once for a split against
  itself, once per direction against another split's gallery) and both directions'
  rankings."""
  return 4 * n_query * n_gallery * (channels * (1 if same else 2) + 2)


def ranking_mode(
    method: base.Method,
    variables: Any,
    split: common.Split,
    gallery: common.Split,
    eval_config,
    full: bool = True,
) -> str:
  """ "full" or "top_k": how `evaluate_split` ranks `split`'s queries against `gallery`."""
  ranking, limit_mb, _ = streaming_settings(eval_config)
  if not full:
    return "full"
  if ranking != "auto":
    return ranking
  needed = full_matrix_bytes(
      len(split), len(gallery), num_channels(method, variables, split), gallery is split
  )
  return "full" if needed <= limit_mb * 2**20 else "top_k"


def stream_k(eval_config, map_r: int, n_gallery: int) -> int:
  """The k of streamed evaluation: the largest of eval.top_k, R and the P@K cut-offs,
  at most the gallery size."""
  _, _, k = streaming_settings(eval_config)
  return min(max([k, int(map_r), *map(int, eval_config.precision_ks)]), n_gallery)


def _evaluate_top_k(method, variables, split, gallery, eval_config, r: int) -> dict[str, Any]:
  k = stream_k(eval_config, r, len(gallery))
  q_images, q_texts = encode_split(method, variables, split, eval_config)
  if gallery is split:
    g_images, g_texts = q_images, q_texts
  else:
    g_images, g_texts = encode_split(method, variables, gallery, eval_config)
  queries = {"i2t": (q_images, g_texts), "t2i": (q_texts, g_images)}
  indices = {d: top_k(method, variables, *queries[d], d, k, eval_config)[1] for d in DIRECTIONS}
  result = metrics.split_metrics_from_topk(
      indices, split["label"], r, eval_config.precision_ks, gallery_labels=gallery["label"]
  )
  result["top_k"] = k
  return result


def encode_split(
    method: base.Method,
    variables: Any,
    split: common.Split,
    eval_config,
    images: bool = True,
    texts: bool = True,
) -> tuple:
  """(image encodings, text encodings) of every item of `split`, each encoded once (None
  for a modality not asked for)."""
  return scoring.encode_split(
      method, variables, split.arrays, eval_config, _jitted_encoders(method), images, texts
  )


def ranks_by_score(method: base.Method) -> bool:
  """Whether `method` ranks by its one score channel (the face's `retrieval_scores`)."""
  return type(method).retrieval_scores is base.Method.retrieval_scores


def top_k(
    method: base.Method,
    variables: Any,
    query_enc: Any,
    gallery_enc: Any,
    direction: str,
    k: int,
    eval_config,
) -> tuple[np.ndarray, np.ndarray]:
  """Each query's k best gallery items by `direction`'s ranking scores, streamed.

  A method that ranks by its one score channel streams the gallery on the device
  (`scoring.top_k`); one that overrides `retrieval_scores` streams blocks of whole query
  rows through it (`scoring.top_k_of_rows`, exact for a row-wise ranking). Either holds
  the result (n_query x k x 8 bytes) and one tile within `eval.memory_budget_mb`.

  Args:
    method, variables: the method and its variables.
    query_enc, gallery_enc: encodings of the queries (images for "i2t", texts for "t2i")
      and of the gallery (the other modality).
    direction: "i2t" or "t2i".
    k: items kept per query, 1 <= k <= n_gallery.
    eval_config: the eval section (block sizes, memory budget).

  Returns:
    (ranking scores float32 [n_query, k], gallery indices int32 [n_query, k]), best
    first; ties keep the lower gallery index first.

  Raises:
    UserError: a ranking that cannot be streamed within the budget or is not row-wise,
      naming the method.
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"Unknown direction {direction!r}; choose one of {DIRECTIONS}.")
  streaming_settings(eval_config)
  images_query = direction == "i2t"
  image_enc, text_enc = (query_enc, gallery_enc) if images_query else (gallery_enc, query_enc)
  kwargs = dict(
      query_block=eval_config.query_block,
      gallery_block=eval_config.gallery_block,
      queries_are_images=images_query,
      pair_bytes=method.pair_bytes(image_enc, text_enc),
      memory_budget=int(eval_config.memory_budget_mb * 2**20),
  )
  try:
    if ranks_by_score(method):
      return scoring.top_k(method.score, variables, query_enc, gallery_enc, k, **kwargs)
    # `retrieval_scores` of this direction, on blocks of whole query rows.
    ranking = functools.partial(method.retrieval_scores, variables, direction=direction)
    return scoring.top_k_of_rows(
        method.score, ranking, variables, query_enc, gallery_enc, k, **kwargs
    )
  except scoring.StreamingError as e:
    name = method.config.get("method", type(method).__name__)
    raise errors.UserError(
        f"Cannot stream the {direction} ranking of method {name!r}: {e}. Raise "
        "eval.memory_budget_mb, or rank the full matrices (eval.ranking='full')."
    ) from e


def retrieve(
    method: base.Method,
    variables: Any,
    query_split: common.Split,
    gallery_split: common.Split,
    direction: str,
    k: int,
    eval_config,
    queries: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
  """The top-k gallery items of chosen queries, streamed (any gallery size).

  Args:
    method, variables: the method and its variables.
    query_split: the queries' split (its images for "i2t", its texts for "t2i").
    gallery_split: the gallery's split (the other modality's items).
    direction: "i2t" or "t2i".
    k: items per query, 1 <= k <= len(gallery_split).
    eval_config: the eval section.
    queries: row indices of query_split (None: every row); only these are encoded.

  Returns:
    (ranking scores float32 [n, k], gallery indices int32 [n, k]) for the n queries.
  """
  _check_nonempty(gallery_split, "gallery")
  if queries is not None:
    rows = np.asarray(queries, dtype=np.int64).reshape(-1)
    bad = rows[(rows < 0) | (rows >= len(query_split))]
    if bad.size:
      raise errors.UserError(
          f"Query row {int(bad[0])} is out of range: the query split has {len(query_split)} "
          "items."
      )
    query_split = common.Split({key: v[rows] for key, v in query_split.arrays.items()})
  _check_nonempty(query_split, "query")
  if not 1 <= k <= len(gallery_split):
    raise errors.UserError(f"k={k} must be in [1, {len(gallery_split)}] (the gallery size).")
  images = direction == "i2t"  # the queries' modality; the gallery is the other
  q_images, q_texts = encode_split(method, variables, query_split, eval_config, images, not images)
  g_images, g_texts = encode_split(
      method, variables, gallery_split, eval_config, not images, images
  )
  if images:
    return top_k(method, variables, q_images, g_texts, direction, k, eval_config)
  return top_k(method, variables, q_texts, g_images, direction, k, eval_config)


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

  With `protocol` (a key of `PROTOCOLS`), its query and gallery splits and R are used
  instead (`split` must then be its query split, the default "test"), and the files are
  results_PROTOCOL.json and PROTOCOL_*.png ("default" writes results.json, as without).
  What the method's `calibrate` chose and the checkpoint carries (its non-param
  collections besides "batch_stats", e.g. MCSM's fusion weight) is reported under
  "calibrated".
  """
  config = config if config is not None else runs.load(workdir)
  spec = None if protocol is None else protocol_spec(protocol)
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
  streaming_settings(config.eval)
  with errors.config_values():
    method = methods.get_method(config, dataset.dims(), dataset.meta)
  if checkpoint is None:
    checkpoint = default_checkpoint(config.eval)
  variables, step = runs.restore_variables(workdir, method, dataset.train, checkpoint)
  if spec is None:
    result = evaluate_split(method, variables, dataset.splits[split], config.eval)
    name = "" if split == "test" else split
  else:
    result = evaluate_protocol(method, variables, dataset, config.eval, protocol)
    name = "" if protocol == "default" else protocol
  gallery = split if spec is None else spec.gallery_split
  # What `calibrate` chose on validation and the checkpoint carries (non-param
  # collections besides batch statistics: MCSM's fusion weight), so the report names it.
  chosen = {k: v for k, v in variables.items() if k not in ("params", "batch_stats")}
  if chosen:
    result["calibrated"] = jax.tree.map(lambda x: np.asarray(x).tolist(), chosen)
  result.update(
      {
          "split": split,
          "gallery_split": gallery,
          "checkpoint_step": int(step),
          "checkpoint": checkpoint,
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
      plot_curves(result, workdir, prefix=f"{name}_" if name else "")
  logging.info("%s (checkpoint step %d)", headline(result), step)
  return result


def results_file(protocol: str = "default", ext: str = "json") -> str:
  """The name of a run's results under `protocol`: results.EXT for the default,
  results_PROTOCOL.EXT for another (also the name of a comparison table's files)."""
  return f"results.{ext}" if protocol == "default" else f"results_{protocol}.{ext}"


def default_checkpoint(eval_config) -> str:
  """The checkpoint evaluation restores unless told: the best by validation mAP, or the
  latest (`eval.select_by`)."""
  return ckpt.BEST if eval_config.select_by == "validation_map" else ckpt.LATEST


def metric_name(key: str) -> str:
  """A results key as tables name it: "map_all" -> "mAP@ALL", "map_at_100" -> "mAP@100"."""
  return "mAP@ALL" if key == "map_all" else f"mAP@{key[len('map_at_'):]}"


def channel_lines(result: dict[str, Any]) -> list[str]:
  """One line per score channel ranked alone ("map_all_by_channel": MCSM's two spaces),
  then one naming what calibration chose ("calibrated": MCSM's fusion weight), if any."""
  lines = [
      f"  {name} alone:  i2t {c['i2t']:.4f}  t2i {c['t2i']:.4f}  avg {c['avg']:.4f}"
      for name, c in result.get("map_all_by_channel", {}).items()
  ]
  chosen = jax.tree_util.tree_leaves_with_path(result.get("calibrated", {}))
  if chosen:
    named = (f"{optimizers.param_path(path)} {value:g}" for path, value in chosen)
    lines.append("  chosen on validation:  " + ", ".join(named))
  return lines


def headline(result: dict[str, Any]) -> str:
  """One line of a result's figures: its protocol's metric, else mAP@ALL when it has it
  (a streamed ranking may not), else its mAP@R."""
  keys = ("map_all", *sorted(k for k in result if k.startswith("map_at_")))
  key = result.get("protocol", {}).get("metric") or next(k for k in keys if k in result)
  m = result[key]
  name = metric_name(key)
  where = result.get("split", "")
  if result.get("gallery_split", where) != where:
    where = f"{where} vs {result['gallery_split']} gallery"
  streamed = f" (streamed top-{result['top_k']})" if "top_k" in result else ""
  return (
      f"{where} {name}{streamed}  i2t {m['i2t']:.4f}  t2i {m['t2i']:.4f}  avg {m['avg']:.4f}"
  ).strip()


def atomic_write_json(path: str, obj: Any):
  """Writes `obj` as JSON to `path`, never half-written (`atomic.atomic_write`)."""
  atomic.atomic_write(path, lambda f: json.dump(obj, f, indent=2), binary=False)


def plot_curves(result: dict[str, Any], workdir: str, prefix: str = "") -> list[str]:
  """PR and precision-scope curves (both directions) as PNGs; returns their paths.

  A streamed result without every rank has no PR curve; a gallery under the smallest
  scope has no precision-scope curve: what is missing is not drawn."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  title = f"{result.get('method', '')} on {result.get('dataset', '')} ({result.get('split', '')})"
  names = {"i2t": "Image → Text", "t2i": "Text → Image"}
  paths = []

  def save(fig, ax, name):
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(os.path.join(workdir, f"{prefix}{name}.png"))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

  if "pr_curve" in result:
    fig, ax = plt.subplots(figsize=(5, 4))
    for d in DIRECTIONS:
      c = result["pr_curve"][d]
      ax.plot(
          c["recall"],
          c["precision"],
          marker="o",
          ms=3,
          label=f"{names[d]} (mAP {result['map_all'][d]:.3f})",
      )
    ax.set(
        xlabel="Recall",
        ylabel="Precision",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Precision-recall: {title}",
    )
    save(fig, ax, "pr_curve")
  scopes = result.get("precision_scope", {}).get("scopes", [])
  if scopes:
    fig, ax = plt.subplots(figsize=(5, 4))
    for d in DIRECTIONS:
      ax.plot(scopes, result["precision_scope"][d], marker="o", ms=3, label=names[d])
    ax.set(
        xlabel="Scope K (top-K retrieved)",
        ylabel="Precision@K",
        ylim=(0, 1),
        title=f"Precision-scope: {title}",
    )
    save(fig, ax, "precision_scope")
  return paths
