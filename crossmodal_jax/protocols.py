"""A split's figures under an evaluation protocol: what is ranked, how, what is reported.

Protocols (`PROTOCOLS`, `evaluate_protocol`): "default" takes the test items of one
modality as queries against the test items of the other, with mAP@ALL; "yu2018" takes the
test items as queries against the training items of the other modality, with mAP@100 (Yu
et al.'s protocol).

`evaluate_split` ranks a split's queries against a gallery in both directions
(`ranking`) and computes the literature's metrics (`metrics.split_metrics`, laid out by
`results_layout`). How a direction is ranked (`eval.ranking`):

- "full": the whole [n_query, n_gallery] score channels and ranking scores are held on
  the host and each query's row sorted once for every metric (mAP@ALL, mAP@R, P@K, the
  curves). This is what evaluation did always; "auto" picks it while those matrices
  (4 bytes x n_query x n_gallery x (channels + 2)) fit in `eval.full_matrix_mb`.
- "top_k": each query's top k gallery items are streamed through the blockwise scorer
  (`ranking.top_k`), holding O(n_query x k) on the host plus one tile within
  `eval.memory_budget_mb`, and mAP@R, P@K and the precision-scope curve are computed
  from them (`split_metrics_from_topk`); k is the largest of `eval.top_k`,
  `eval.map_r` and `eval.precision_ks` (at most the gallery size). mAP@ALL and the PR
  curve need every rank: they are reported only when k reaches the gallery size. The
  values equal the full ranking's (ties go to the lower gallery index in both), up to the
  rounding of scores computed in differently shaped tiles.

With `eval.shortlist` set, a split is ranked in two stages (`rerank`): a first stage
ranks the gallery cheaply and keeps each query's top `eval.rerank_k`, the method reranks
those alone, and the figures are computed from the final ranked lists (the reranked K,
then the rest of the first stage's ranking; `_evaluate_reranked`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from crossmodal_jax import errors
from crossmodal_jax import metrics
from crossmodal_jax import ranking
from crossmodal_jax import rerank
from crossmodal_jax import shortlists
from crossmodal_jax import results_layout
from crossmodal_jax.data import common
from crossmodal_jax.methods import base

DIRECTIONS = ranking.DIRECTIONS
# eval.relevance: an item is relevant to a query of its class, or of its pair (or group).
RELEVANCE = ("label", "pair")


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
    relevance: the `eval.relevance` the protocol scores with (None: the config's).
  """

  query_split: str
  gallery_split: str
  map_r: int | None
  metric: str
  description: str
  relevance: str | None = None


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
        results_layout.map_key(100),
        "test queries against the training gallery of the other modality, mAP@100 (Yu et "
        "al.'s protocol, as in SCANet's tables)",
    ),
    "pair": Protocol(
        "test",
        "test",
        None,
        "map_all",
        "test queries against the test gallery of the other modality, an item relevant only "
        "to its own pair (or group): mAP@ALL, with Recall@K and the median rank",
        relevance="pair",
    ),
}


def protocol_spec(protocol: str) -> Protocol:
  """The `Protocol` named `protocol`; a UserError listing the choices if none is."""
  if protocol not in PROTOCOLS:
    raise errors.UserError(f"Unknown protocol {protocol!r}; choose one of {tuple(PROTOCOLS)}.")
  return PROTOCOLS[protocol]


def protocol_metric(protocol: str, num_gallery: int, eval_config) -> str:
  """The results key of `protocol`'s figure for a gallery of `num_gallery` items: R of
  mAP@R capped at the gallery size, as `metrics.split_metrics` caps it."""
  spec = protocol_spec(protocol)
  if not spec.metric.startswith(results_layout.MAP_AT):
    return spec.metric
  return results_layout.map_key(min(spec.map_r or eval_config.map_r, num_gallery))


def evaluate_split(
    method: base.Method,
    variables: Any,
    split: common.Split,
    eval_config,
    full: bool = True,
    channels: Any = None,
    gallery: common.Split | None = None,
    map_r: int | None = None,
    first_stage: shortlists.FirstStage | None = None,
) -> dict[str, Any]:
  """mAP@ALL (i2t, t2i, avg) and, if `full`, mAP@R, P@K and the curves.

  Queries are `split`'s items of one modality, the gallery the items of the other
  modality of `gallery` (None: of `split` itself). A method whose `score` gives several
  named channels (two spaces) also gets each channel's mAP@ALL, ranked by that channel
  alone ("map_all_by_channel"; with `full=False` too, so training logs each channel's
  validation mAP). Each direction's scores are sorted once per query for all of its
  metrics. `channels`, if given, are the split's score channels already computed with
  `variables` (`ranking.split_channels`), so a split scored for calibration is not scored
  again.

  Galleries whose score matrices exceed `eval.full_matrix_mb` (or any, with
  eval.ranking="top_k") are ranked by streamed top-k instead (see the module docstring):
  the result then has "top_k" (the k kept per query), "map_all" and "pr_curve" only when
  k is the gallery size, and no "map_all_by_channel". `full=False` (mAP@ALL alone, what
  training validates with) always ranks the full matrices.

  With a `first_stage` (`shortlists.first_stage` of eval.shortlist), the ranking is its
  shortlist of eval.rerank_k items reranked by the method, then the rest of its ranking
  (`_evaluate_reranked`): the result then has "rerank".

  Args:
    method, variables: the method and its variables.
    split: the queries' split; gallery: the gallery's split (None: `split`).
    eval_config: the config's eval section.
    full: False gives mAP@ALL alone.
    channels: `split`'s precomputed score channels (only without another `gallery`).
    map_r: R of mAP@R (None: eval_config.map_r).
    first_stage: the first stage of a two-stage ranking (None: exhaustive); only with
      `full`, and `split` and `gallery` must be its dataset's.

  Returns:
    `metrics.split_metrics`' dict (see `split_metrics_from_topk` when streamed).

  Raises:
    UserError: a bad eval.ranking / eval.top_k / eval.full_matrix_mb, an empty split, or
      a method whose ranking cannot be streamed.
  """
  same = gallery is None or gallery is split
  gallery = split if gallery is None else gallery
  r = eval_config.map_r if map_r is None else int(map_r)
  ranking.check_nonempty(split, "query")
  ranking.check_nonempty(gallery, "gallery")
  if channels is not None and not same:
    raise ValueError("channels are one split's score channels: give no gallery with them.")
  mode = "full"
  if channels is None:
    mode = ranking_mode(method, variables, split, gallery, eval_config, full)
  labels, gallery_labels, recall_ks = relevance_labels(split, gallery, eval_config)
  if first_stage is not None:
    if not full:
      raise ValueError("A two-stage ranking is evaluated in full (full=True).")
    return _evaluate_reranked(method, variables, split, gallery, eval_config, r, first_stage)
  if mode == "top_k":
    return _evaluate_top_k(method, variables, split, gallery, eval_config, r)
  if same:
    if channels is None:
      channels = ranking.split_channels(method, variables, split, eval_config)
    oriented = ranking.oriented(channels)
  else:
    encodings = _encodings(method, variables, split, gallery, eval_config)
    oriented = _oriented(method, variables, encodings, False, eval_config)
  scores = ranking.rank(method, variables, oriented)
  result = metrics.split_metrics(
      scores,
      labels,
      r,
      eval_config.precision_ks,
      full=full,
      gallery_labels=gallery_labels,
      recall_ks=recall_ks,
  )
  if isinstance(oriented["i2t"], dict) and len(oriented["i2t"]) > 1:
    # Several named score channels (two spaces): each one's mAP@ALL on its own, next to
    # the ranking that combines them.
    result["map_all_by_channel"] = {}
    for name in oriented["i2t"]:
      one = {d: np.asarray(oriented[d][name], np.float32) for d in DIRECTIONS}
      result["map_all_by_channel"][name] = metrics.split_metrics(
          one, labels, full=False, gallery_labels=gallery_labels
      )["map_all"]
  return result


def _encodings(method, variables, split, gallery, eval_config) -> dict[str, tuple]:
  """{"i2t": (query images, gallery texts), "t2i": (query texts, gallery images)}: each
  item of `split` and, when it is another split, of `gallery` encoded once."""
  q_images, q_texts = ranking.encode_split(method, variables, split, eval_config)
  if gallery is split:
    g_images, g_texts = q_images, q_texts
  else:
    g_images, g_texts = ranking.encode_split(method, variables, gallery, eval_config)
  return {"i2t": (q_images, g_texts), "t2i": (q_texts, g_images)}


def _oriented(method, variables, encodings, same: bool, eval_config) -> dict[str, Any]:
  """{"i2t", "t2i"}: the score channels of `_encodings`, each direction oriented queries x
  gallery; a split against itself (`same`) is scored once for both directions."""
  (q_images, g_texts), (q_texts, g_images) = encodings["i2t"], encodings["t2i"]
  if same:
    return ranking.oriented(
        ranking.method_channels(method, variables, q_images, q_texts, eval_config)
    )
  return {
      "i2t": ranking.method_channels(method, variables, q_images, g_texts, eval_config),
      "t2i": jax.tree.map(
          np.transpose,
          ranking.method_channels(method, variables, g_images, q_texts, eval_config),
      ),
  }


def with_relevance(eval_config, relevance: str | None):
  """`eval_config`, or a copy of it with `eval.relevance` set (a protocol's)."""
  if relevance is None or eval_config.relevance == relevance:
    return eval_config
  out = ml_collections.ConfigDict(eval_config.to_dict())
  out.relevance = relevance
  return out


def relevance_labels(
    split: common.Split, gallery: common.Split, eval_config
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
  """(the queries' labels, the gallery's, the K of Recall@K) that relevance is read from
  under `eval.relevance`:

  - "label": the class labels (an item is relevant to a query that shares its class);
  - "pair": each row's group, its "group" array when the split has one (several rows of
    one item, e.g. one per caption of an image) else its own row, so that an item is
    relevant only to the items of its own pair (or group); Recall@K (eval.recall_ks) and
    the median rank are reported too. Queries and gallery must then be one split.

  Raises:
    UserError: an unknown eval.relevance, or "pair" across two splits.
  """
  relevance = eval_config.relevance
  if relevance not in RELEVANCE:
    raise errors.UserError(f"Unknown eval.relevance {relevance!r}; choose one of {RELEVANCE}.")
  if relevance == "label":
    return split["label"], gallery["label"], ()
  if gallery is not split:
    raise errors.UserError(
        'eval.relevance="pair" ranks a split against its own items: its pairs are not '
        "another split's (use the default protocol)."
    )
  groups = split.arrays.get("group")
  groups = np.arange(len(split)) if groups is None else np.asarray(groups)
  return groups, groups, tuple(int(k) for k in eval_config.recall_ks)


def evaluate_protocol(
    method: base.Method,
    variables: Any,
    dataset: common.Dataset,
    eval_config,
    protocol: str = "default",
    full: bool = True,
    first_stage: shortlists.FirstStage | None = None,
) -> dict[str, Any]:
  """`evaluate_split` under one of `PROTOCOLS`: its query and gallery splits and R
  (ranked in two stages with a `first_stage` of `dataset`).

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
  eval_config = with_relevance(eval_config, spec.relevance)
  result = evaluate_split(
      method,
      variables,
      query,
      eval_config,
      full=full,
      gallery=gallery,
      map_r=spec.map_r,
      first_stage=first_stage,
  )
  if spec.relevance is not None:
    result["relevance"] = spec.relevance
  metric = protocol_metric(protocol, len(gallery), eval_config)
  result["protocol"] = {
      "name": protocol,
      "query_split": spec.query_split,
      "gallery_split": spec.gallery_split,
      "metric": metric,
      "description": spec.description,
  }
  return result


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
  mode, limit_mb, _ = ranking.streaming_settings(eval_config)
  if not full:
    return "full"
  if mode != "auto":
    return mode
  needed = full_matrix_bytes(
      len(split), len(gallery), ranking.num_channels(method, variables, split), gallery is split
  )
  return "full" if needed <= limit_mb * 2**20 else "top_k"


def stream_k(eval_config, map_r: int, n_gallery: int) -> int:
  """The k of streamed evaluation: the largest of eval.top_k, R and the P@K cut-offs,
  at most the gallery size."""
  _, _, k = ranking.streaming_settings(eval_config)
  recall_ks = eval_config.recall_ks if eval_config.relevance == "pair" else ()
  return min(max([k, int(map_r), *map(int, eval_config.precision_ks), *recall_ks]), n_gallery)


def _evaluate_top_k(method, variables, split, gallery, eval_config, r: int) -> dict[str, Any]:
  k = stream_k(eval_config, r, len(gallery))
  queries = _encodings(method, variables, split, gallery, eval_config)
  indices = {
      d: ranking.top_k(method, variables, *queries[d], d, k, eval_config)[1] for d in DIRECTIONS
  }
  labels, gallery_labels, recall_ks = relevance_labels(split, gallery, eval_config)
  result = split_metrics_from_topk(
      indices,
      labels,
      r,
      eval_config.precision_ks,
      gallery_labels=gallery_labels,
      recall_ks=recall_ks,
  )
  result["top_k"] = k
  return result


def _evaluate_reranked(
    method, variables, split, gallery, eval_config, r: int, stage: shortlists.FirstStage
) -> dict[str, Any]:
  """A split's figures from two-stage rankings: `stage`'s top items of each query, its
  first K = min(eval.rerank_k, gallery size) reranked by the method (`rerank.two_stage`).

  The first stage ranks the whole gallery when the method's full matrices would be
  ranked (`ranking_mode`: "full"), so mAP@ALL and the PR curve are reported; else its top
  max(K, `stream_k`) items, and "top_k" says so. "rerank" holds the first stage, K, R
  and "recall_of_exhaustive_top_r" ({"i2t", "t2i", "avg"}): the mean fraction of each
  query's top R in the method's exhaustive ranking that its shortlist holds, computed
  only when the full matrices fit eval.full_matrix_mb (else None).
  """
  _, rerank_k = shortlists.settings(eval_config)
  n_gallery = len(gallery)
  k = min(rerank_k, n_gallery)
  whole = ranking_mode(method, variables, split, gallery, eval_config) == "full"
  depth = n_gallery if whole else max(k, stream_k(eval_config, r, n_gallery))
  encodings = _encodings(method, variables, split, gallery, eval_config)
  first = shortlists.shortlist(stage, split, gallery, depth)
  ranked = {
      d: rerank.two_stage(method, variables, *encodings[d], first[d], k, d, eval_config)[0]
      for d in DIRECTIONS
  }
  labels, gallery_labels, recall_ks = relevance_labels(split, gallery, eval_config)
  result = split_metrics_from_topk(
      ranked,
      labels,
      r,
      eval_config.precision_ks,
      gallery_labels=gallery_labels,
      recall_ks=recall_ks,
  )
  if not whole:
    result["top_k"] = depth
  recall = None
  _, limit_mb, _ = ranking.streaming_settings(eval_config)
  channels = ranking.num_channels(method, variables, split)
  if full_matrix_bytes(len(split), n_gallery, channels, gallery is split) <= limit_mb * 2**20:
    oriented = _oriented(method, variables, encodings, gallery is split, eval_config)
    scores = ranking.rank(method, variables, oriented)
    top_r = min(r, n_gallery)
    recall = {
        d: rerank.recall_of_top(
            np.argsort(-scores[d], axis=1, kind="stable")[:, :top_r], first[d][:, :k]
        )
        for d in DIRECTIONS
    }
    recall["avg"] = float(np.mean([recall[d] for d in DIRECTIONS]))
  result["rerank"] = {
      **stage.info(),
      "k": k,
      "r": min(r, n_gallery),
      "recall_of_exhaustive_top_r": recall,
  }
  return result


def split_metrics_from_topk(
    topk_indices: dict[str, np.ndarray],
    labels,
    map_r: int = 50,
    precision_ks: Sequence[int] = (1, 5, 10, 50, 100),
    gallery_labels=None,
    recall_ks: Sequence[int] = (),
) -> dict[str, Any]:
  """`metrics.split_metrics` (full) from each direction's streamed top-K gallery indices.

  The same dict and values as `metrics.split_metrics` on the full score matrices (ties
  broken by gallery index), for what K ranks give (see `metrics.topk_metrics`): mAP@R,
  P@K and the precision-scope curve at the scopes <= K; "map_all" and "pr_curve" only
  when K is the gallery size.

  Args:
    topk_indices: {"i2t", "t2i"}: int [n_query, K] gallery indices, best first; K must be
      at least min(map_r, n_gallery) and the largest precision_ks <= n_gallery.
    labels: the queries' labels; gallery_labels: the gallery's (None: `labels`).
    map_r, precision_ks: as for `metrics.split_metrics`.

  Returns:
    {"map_at_{R}", "precision_at_k", "precision_scope"} (with "avg" for mAP) and, when K
    = n_gallery, "map_all" and "pr_curve"; the keys in `metrics.split_metrics`' order.
  """
  gallery_labels = labels if gallery_labels is None else gallery_labels
  n = len(gallery_labels)
  top = min(np.shape(topk_indices[d])[1] for d in results_layout.DIRECTIONS)
  r, ks, scopes = results_layout.cutoffs(n, map_r, precision_ks, top)
  whole = top == n
  per_direction = {
      d: metrics.topk_metrics(
          topk_indices[d],
          labels,
          gallery_labels,
          r=r,
          ks=ks,
          scopes=scopes,
          pr_points=results_layout.PR_POINTS if whole else None,
          recall_ks=tuple(k for k in recall_ks if k <= min(n, top)),
      )
      for d in results_layout.DIRECTIONS
  }
  return results_layout.split_result(per_direction, r, scopes)
