"""What a result is shown as: the lines the commands print and the curves' plots.

`headline` is the one line of a result's figures (the train and evaluate commands print
it, and evaluation logs it), `channel_lines` and `checkpoint_lines` the lines under it,
`metric_name` a results key as tables name it, and `plot_curves` draws a result's
precision-recall and precision-scope curves as PNGs.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from crossmodal_jax import optimizers
from crossmodal_jax import results_layout

DIRECTIONS = results_layout.DIRECTIONS


def metric_name(key: str) -> str:
  """A results key as tables name it: "map_all" -> "mAP@ALL", "map_at_100" -> "mAP@100"."""
  return "mAP@ALL" if key == "map_all" else f"mAP@{key[len(results_layout.MAP_AT):]}"


def headline(result: dict[str, Any]) -> str:
  """One line of a result's figures: its protocol's metric, else mAP@ALL when it has it
  (a streamed ranking may not), else its mAP@R."""
  keys = ("map_all", *sorted(k for k in result if k.startswith(results_layout.MAP_AT)))
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


def recall_lines(result: dict[str, Any]) -> list[str]:
  """The Recall@K and median-rank line of a pair-level result ("recall_at_k"), if any."""
  if "recall_at_k" not in result:
    return []
  recall = result["recall_at_k"]
  ks = list(recall["i2t"])
  cells = "  ".join(
      f"{d} " + "/".join(f"{recall[d][k]:.3f}" for k in ks) for d in ("i2t", "t2i", "avg")
  )
  line = f"  Recall@{'/'.join(ks)}:  {cells}"
  if "median_rank" in result:
    m = result["median_rank"]
    line += f"  median rank  i2t {m['i2t']:g}  t2i {m['t2i']:g}"
  return [line]


def channel_lines(result: dict[str, Any]) -> list[str]:
  """One line per score channel ranked alone ("map_all_by_channel": a method's two
  spaces), then one naming what calibration chose ("calibrated": a fusion weight), if
  any."""
  lines = [
      f"  {name} alone:  i2t {c['i2t']:.4f}  t2i {c['t2i']:.4f}  avg {c['avg']:.4f}"
      for name, c in result.get("map_all_by_channel", {}).items()
  ]
  chosen = jax.tree_util.tree_leaves_with_path(result.get("calibrated", {}))
  if chosen:
    named = (f"{optimizers.param_path(path)} {value:g}" for path, value in chosen)
    lines.append("  chosen on validation:  " + ", ".join(named))
  return lines


def checkpoint_lines(result: dict[str, Any]) -> list[str]:
  """One line naming the checkpoint evaluated when it is not the one asked for (the latest
  of a run without a best-by-validation checkpoint: "checkpoint_note"), else none."""
  if "checkpoint_note" not in result:
    return []
  return [
      f"  checkpoint: {result['checkpoint']} (step {result['checkpoint_step']}): "
      f"{result['checkpoint_note']}"
  ]


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
