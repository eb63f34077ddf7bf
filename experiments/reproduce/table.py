"""The table: a method's, a variant's and a baseline's rows (mean ± sample standard
deviation over seeds), results.md (one table per dataset and ablation, with the
amendments that touched it), the precision-recall plots, and writing them all."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import atomic
from crossmodal_jax import baselines as baselines_lib
from crossmodal_jax import evaluation as evaluate_lib
from crossmodal_jax import reporting
from . import plan as plan_lib

DIRECTIONS = ("i2t", "t2i")


def method_label(method: str) -> str:
  """A method's name in the table: its config file's LABEL (the name itself without
  one)."""
  try:
    module = default_configs.config_module(method)
  except ValueError:
    return method
  return getattr(module, "LABEL", method)


def protocol_caption(info: dict[str, Any], metric: str | None = None) -> str:
  """ "mAP@100, test queries vs train gallery" ("metric" defaults to the protocol's)."""
  return (
      f"{reporting.metric_name(metric or info['metric'])}, {info['query_split']} queries vs "
      f"{info['gallery_split']} gallery"
  )


def format_seconds(seconds: float | None) -> str:
  if seconds is None or not np.isfinite(seconds):
    return "?"
  if seconds < 60:
    return f"{seconds:.1f} s"
  if seconds < 3600:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


def mean_std(values: Sequence[float]) -> dict[str, Any]:
  """Mean and sample standard deviation (ddof=1; None for one value)."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  if not len(v):
    return {"mean": None, "std": None, "values": []}
  return {
      "mean": float(v.mean()),
      "std": float(v.std(ddof=1)) if len(v) > 1 else None,
      "values": v.tolist(),
  }


def _mean_curve(curves: Sequence[dict]) -> dict[str, Any] | None:
  curves = [c for c in curves if c]
  if not curves:
    return None
  out = {}
  for d in DIRECTIONS:
    out[d] = {
        "recall": curves[0][d]["recall"],
        "precision": np.mean([c[d]["precision"] for c in curves], axis=0).tolist(),
    }
  return out


def method_row(method: str, summaries: Sequence[dict]) -> dict[str, Any]:
  """A method's row: its figure (the protocol's metric, under that key and "metric")
  and its times as mean and standard deviation over its runs (`run_summary`s)."""
  metric = summaries[0]["metric"]
  return {
      "name": method,
      "label": method_label(method),
      "kind": "method",
      "seeds": [s["seed"] for s in summaries],
      "metric": metric,
      metric: {d: mean_std([s[metric][d] for s in summaries]) for d in ("i2t", "t2i", "avg")},
      "train_seconds": mean_std([s["train_seconds"] for s in summaries]),
      "wall_seconds": mean_std([s["wall_seconds"] for s in summaries]),
      "num_params": summaries[0]["num_params"],
      "epochs": summaries[0]["epochs"],
      "pr_curve": _mean_curve([s["pr_curve"] for s in summaries]),
      **_pair_figures(summaries),
      **({"rerank": summaries[0]["rerank"]} if "rerank" in summaries[0] else {}),
      "runs": list(summaries),
  }


def _pair_figures(results: Sequence[dict]) -> dict[str, Any]:
  """Recall@K (each direction and the average, per K) and the median rank as mean ± std
  over `results`, when they have them (pair-level relevance)."""
  if not all("recall_at_k" in r for r in results):
    return {}
  out = {
      "recall_at_k": {
          d: {
              k: mean_std([r["recall_at_k"][d][k] for r in results])
              for k in results[0]["recall_at_k"][d]
          }
          for d in ("i2t", "t2i", "avg")
      }
  }
  if all("median_rank" in r for r in results):
    out["median_rank"] = {
        d: mean_std([r["median_rank"][d] for r in results]) for d in ("i2t", "t2i", "avg")
    }
  return out


def variant_row(
    ablation: str, label: str, default: bool, summaries: Sequence[dict]
) -> dict[str, Any]:
  """An ablation variant's row: its method's row, named by the variant."""
  row = method_row(plan_lib.ABLATIONS[ablation].method, summaries)
  row.update(
      name=label,
      label=label + (" (default)" if default else ""),
      kind="variant",
      ablation=ablation,
      settings=dict(dict(plan_lib.ABLATIONS[ablation].variants)[label]),
      default=default,
  )
  return row


def baseline_row(result: dict[str, Any]) -> dict[str, Any]:
  """A baseline's row (`run_baseline`'s result): its figure under its "metric"."""
  name = result["baseline"]
  label = baselines_lib.LABELS.get(name, name)
  if result.get("text_feature"):
    label += f" ({result['text_feature']})"
  metric = result["metric"]
  return {
      "name": result.get("tag", name),
      "label": label,
      "kind": "baseline",
      "description": result["description"],
      "seeds": [],
      "metric": metric,
      metric: {d: mean_std([result[metric][d]]) for d in ("i2t", "t2i", "avg")},
      "fit_seconds": result["fit_seconds"],
      "num_params": result["num_params"],
      "chosen": result["chosen"],
      "validation_map": result["validation_map"],
      "pr_curve": result["pr_curve"],
      **_pair_figures([result]),
      "reused": result.get("reused", False),
  }


def _cell(stat: dict[str, Any]) -> str:
  if stat["mean"] is None:
    return "—"
  if stat["std"] is None:
    return f"{stat['mean']:.3f}"
  return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _params(n: int | None) -> str:
  if n is None:
    return "?"
  if n >= 1e6:
    return f"{n / 1e6:.2f} M"
  if n >= 1e3:
    return f"{n / 1e3:.1f} k"
  return str(n)


def _chosen(chosen: dict[str, Any]) -> str:
  names = {"components": "k", "c_image": "C_img", "c_text": "C_txt"}
  return ", ".join(f"{names.get(k, k)}={v:g}" for k, v in chosen.items())


def markdown(results: dict[str, Any]) -> str:
  """results.md: the header, then one table per dataset. Under a protocol other than the
  default, the title, the protocol line, each dataset's heading and the column titles
  name its metric and gallery."""
  machine = results["machine"]
  protocol = results["protocol"]
  default = protocol["name"] == "default"
  title = "# Comparison table" if default else f"# Comparison table ({protocol_caption(protocol)})"
  said = "Protocol" if default else f"Protocol `{protocol['name']}`"
  lines = [
      title,
      "",
      f"Produced by `{results['command']}` on {results['date']}, on {machine['summary']}.",
      "",
      f"{said}: {protocol['description']}. Preset `{results['preset']}`; methods: mean ± "
      "sample standard deviation over seeds "
      f"{', '.join(str(s) for s in results['seeds'])}, each the best-by-validation "
      "checkpoint. Baselines are deterministic (one run, hyperparameters chosen on "
      "validation). Training time: the sum of the epochs' training time per run, "
      "validation excluded.",
  ]
  lines += _amendments(results, None)
  for name, ds in results["datasets"].items():
    lines += [
        "",
        f"## {name} ({_pairs(ds, protocol)})",
        "",
    ] + _table("method", ds, default)
    lines += _amendments(results, name)
  for name, ablation in results.get("ablations", {}).items():
    lines += [
        "",
        f"## Ablation `{name}`: {ablation['title']}",
        "",
        f"Each row is `{ablation['method']}` with "
        f"{', '.join(f'`{f}`' for f in ablation['fields'])} set as named; (default) is "
        "the method's own config and shares the method's runs.",
    ]
    for dataset, ds in ablation["datasets"].items():
      lines += [
          "",
          f"### {dataset} ({_pairs(ds, protocol)})",
          "",
      ] + _table("variant", ds, default)
      lines += _amendments(results, dataset, name)
  return "\n".join(lines) + "\n"


def _pairs(ds: dict[str, Any], protocol: dict[str, Any]) -> str:
  """A dataset heading's test pairs, and the gallery's when it is another split's."""
  text = f"{ds['num_test']} test pairs"
  if protocol["gallery_split"] != protocol["query_split"]:
    text += f" against a gallery of {ds.get('num_gallery')} {protocol['gallery_split']} pairs"
  return text


def _table(first: str, ds: dict[str, Any], default: bool = True) -> list[str]:
  """The markdown lines of one dataset's rows (methods, baselines or variants): the
  protocol's figure (mAP@ALL by default; other protocols name it in the column titles)
  as mean ± std, training time, parameters, notes; then its PR-curve link."""
  columns = ("i2t", "t2i", "avg")
  if not default:
    columns = tuple(f"{c} {reporting.metric_name(ds['metric'])}" for c in columns)
  recall_ks = next((list(r["recall_at_k"]["avg"]) for r in ds["rows"] if "recall_at_k" in r), [])
  extra = [f"R@{k} (avg)" for k in recall_ks] + (["median rank (avg)"] if recall_ks else [])
  lines = [
      f"| {first} | {' | '.join(columns)} | {''.join(c + ' | ' for c in extra)}training time "
      "per run | parameters | notes |",
      "|---|---|---|---|" + "---|" * len(extra) + "---|---|---|",
  ]
  for row in ds["rows"]:
    m = row[row["metric"]]
    cells = "".join(f"{_cell(row['recall_at_k']['avg'][k])} | " for k in recall_ks)
    if recall_ks:
      median = row.get("median_rank", {}).get("avg")
      cells += f"{_cell(median) if median else '—'} | "
    if row.get("kind") == "baseline":
      time_text = f"{format_seconds(row['fit_seconds'])} (fit + selection)"
      notes = f"baseline; {_chosen(row['chosen'])} on validation"
    else:
      time_text = _cell_time(row["train_seconds"])
      notes = f"{len(row['seeds'])} seeds, {row['epochs']} epochs"
      if row.get("rerank"):
        rerank = row["rerank"]
        notes += f"; first stage {rerank['first_stage']}, its top {rerank['k']} reranked"
    lines.append(
        f"| {row['label']} | {_cell(m['i2t'])} | {_cell(m['t2i'])} | **{_cell(m['avg'])}** "
        f"| {cells}{time_text} | {_params(row['num_params'])} | {notes} |"
    )
  if ds.get("plot"):
    lines += ["", f"Precision-recall curves: [{ds['plot']}]({ds['plot']})"]
  return lines


def _cell_time(stat: dict[str, Any]) -> str:
  if stat["mean"] is None:
    return "?"
  if stat["std"] is None:
    return format_seconds(stat["mean"])
  return f"{format_seconds(stat['mean'])} ± {format_seconds(stat['std'])}"


def has_pr_curves(rows: Sequence[dict[str, Any]]) -> bool:
  """Whether any row has a precision-recall curve (a streamed ranking has none)."""
  return any((row.get("pr_curve") or {}).get(d) for row in rows for d in DIRECTIONS)


def plot_pr(rows: Sequence[dict[str, Any]], title: str, path: str) -> str:
  """One PNG: each row's precision-recall curve, image->text and text->image side by side
  (baselines dashed), labelled with the row's figure (named unless it is mAP@ALL)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
  for ax, d, name in zip(axes, DIRECTIONS, ("Image → Text", "Text → Image")):
    for row in rows:
      curve = (row.get("pr_curve") or {}).get(d)
      if not curve:
        continue
      metric = row["metric"]
      name_ = "" if metric == "map_all" else f"{reporting.metric_name(metric)} "
      ax.plot(
          curve["recall"],
          curve["precision"],
          linestyle="--" if row["kind"] == "baseline" else "-",
          marker="o",
          ms=3,
          label=f"{row['label']} ({name_}{row[metric][d]['mean']:.3f})",
      )
    ax.set(xlabel="Recall", xlim=(0, 1), ylim=(0, 1), title=f"{name}: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0].set_ylabel("Precision")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def machine() -> dict[str, Any]:
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  summary = (
      f"{platform.node() or 'this machine'} ({platform.processor() or platform.machine()}, "
      f"{os.cpu_count()} CPU cores; JAX {jax.__version__} on {len(devices)} "
      f"{jax.default_backend()} device(s): {', '.join(kinds)})"
  )
  return {
      "summary": summary,
      "cpu_count": os.cpu_count(),
      "platform": platform.platform(),
      "backend": jax.default_backend(),
      "devices": [str(d) for d in devices],
      "jax": jax.__version__,
  }


def _amendments(results: dict[str, Any], where: str | None, ablation: str | None = None):
  """The markdown paragraphs of the amendments that touched dataset `where` (of
  `ablation` when given), rows named by their labels; `where` None: the ones recorded
  as free text (older tables)."""
  lines = []
  for a in results.get("amended", []):
    if isinstance(a, str):
      if where is None:
        lines += ["", f"Amended {a}"]
      continue
    if where is None:
      continue
    if ablation is None:
      names, rows = a["rows"].get(where, []), results["datasets"][where]["rows"]
    else:
      names = a.get("ablations", {}).get(ablation, {}).get(where, [])
      rows = results["ablations"][ablation]["datasets"][where]["rows"]
    if not names:
      continue
    labels = {r["name"]: r["label"] for r in rows}
    # Only an entry that records no reused run says its rows were re-run (older entries
    # and ablation variants do not record reuse).
    reused, verb = {}, "replaced"
    if ablation is None and "reused" in a:
      reused = a["reused"].get(where, {})
      verb = "replaced" if reused else "re-run"
    text = f"Amended {a['date']}: {', '.join(labels.get(n, n) for n in names)} {verb}"
    if a.get("command"):
      text += f" by `` {a['command']} ``"
    if a.get("machine"):
      text += f" on {a['machine']}"
    if reused:
      found = " and ".join(
          f"{labels.get(n, n)} seeds {', '.join(map(str, seeds))}" for n, seeds in reused.items()
      )
      text += f"; it found {found} finished and did not train them"
    text += "."
    if a.get("note"):
      text += f" {a['note']}"
    lines += ["", text]
  return lines


def write_outputs(results: dict[str, Any], workdir: str) -> dict[str, Any]:
  """results.json, results.md, one pr_DATASET.png per dataset and one
  pr_ABLATION_DATASET.png per ablation and dataset whose rows have PR curves; under a
  protocol other than the default, results_PROTOCOL.json / .md and PNG names ending in
  _PROTOCOL."""
  protocol = results["protocol"]["name"]
  suffix, where = ("", "") if protocol == "default" else (f"_{protocol}", f" ({protocol})")
  plots = []  # (rows, title, file)
  for name, ds in results["datasets"].items():
    ds.pop("plot", None)
    if has_pr_curves(ds["rows"]):
      ds["plot"] = f"pr_{name}{suffix}.png"
      plots.append((ds["rows"], name + where, ds["plot"]))
  for ablation, entry in results.get("ablations", {}).items():
    for name, ds in entry["datasets"].items():
      ds.pop("plot", None)
      if has_pr_curves(ds["rows"]):
        ds["plot"] = f"pr_{ablation}_{name}{suffix}.png"
        plots.append((ds["rows"], f"{ablation}, {name}{where}", ds["plot"]))
  # Both texts first: a table that cannot be rendered writes nothing.
  md, text = markdown(results), json.dumps(results, indent=2)
  os.makedirs(workdir, exist_ok=True)
  for rows, title, plot in plots:
    plot_pr(rows, title, os.path.join(workdir, plot))
  for name, content in (
      (evaluate_lib.results_file(protocol), text),
      (evaluate_lib.results_file(protocol, "md"), md),
  ):
    atomic.atomic_write(os.path.join(workdir, name), lambda f, c=content: f.write(c), binary=False)
  return results
