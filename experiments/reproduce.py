r"""Reproduces the comparison table: every method x dataset x seed, and the classical
baselines, trained, evaluated on test and summarised in one table; optionally ablations.

  python -m experiments.reproduce --workdir=/tmp/table \
    --methods=drsl,scanet,mcsm,hcmsl --datasets=wikipedia,synthetic --seeds=5 \
    --manual_dir=wikipedia=/path/to/wikipedia_dataset

  python -m experiments.reproduce --workdir=/tmp/ci --methods=drsl,hcmsl \
    --datasets=synthetic --seeds=2 --preset=ci          # a few minutes on 2 CPU cores

  python -m experiments.reproduce --workdir=/tmp/table --methods=drsl,scanet \
    --datasets=wikipedia --seeds=3 --ablations=scanet_layers,drsl_fusion,scanet_loss \
    --manual_dir=wikipedia=/path/to/wikipedia_dataset

  python -m experiments.reproduce --workdir=/tmp/table \
    --methods=drsl,scanet,mcsm,hcmsl --datasets=wikipedia,synthetic --seeds=5 \
    --manual_dir=wikipedia=/path/to/wikipedia_dataset --protocol=yu2018

Each run is `configs/default.py:METHOD,DATASET,PRESET` with `config.seed` = 0 .. N-1 (and
any --override), trained in WORKDIR/runs/DATASET/METHOD/seed_S and evaluated with its
best-by-validation checkpoint on the test split (test queries against the test gallery,
mAP@ALL), exactly as `experiments.train` does. A run whose results.json exists and whose
config.json equals its config is reused, not retrained; a half-finished one resumes from
its last checkpoint. The baselines (CCA, semantic matching, semantic correlation matching:
`crossmodal_jax.baselines`, scikit-learn) run once per dataset on the same features and
splits (they have no seed), their hyperparameters chosen on validation.

--protocol (`crossmodal_jax.protocols.PROTOCOLS`) sets how the table scores: "default" is
the above; "yu2018" ranks the test queries against the *training* items of the other
modality, with mAP@100 (Yu et al.'s protocol, as in SCANet's tables). It does not change
training: each run is trained (or reused) in the same workdir as under the default and
evaluated under the protocol from the same best-by-validation checkpoint
(`evaluate.evaluate(..., protocol=...)`: the run's results_PROTOCOL.json, reused while
its checkpoint step is results.json's), so a table of one protocol reuses every run of
the other without retraining. The baselines, fitted and chosen on validation as before,
score the same queries against the same gallery with the same metric code
(`metrics.split_metrics` with the gallery's labels). Ablations follow the protocol too.

--ablations names entries of ABLATIONS: scanet_layers (SCANet's co-attention layers 0..3,
the SCANet paper's table 3), drsl_fusion (DRSL's relation fusion concat / multiply / add /
subtract, the DRSL paper's tables 5-6), scanet_loss (SCANet's global loss m and lambda at
the five settings of the SCANet paper's table 4). Each variant sets a few fields of its
method's config (after the --override ones) and is a run per dataset and seed like the
others, in WORKDIR/ablations/DATASET/ABLATION/VARIANT/seed_S, reused and resumed the same
way. The
variant whose config is the method's own is marked "default" and shares the method's runs
(WORKDIR/runs/DATASET/METHOD/seed_S): it is trained once for the table and every ablation.

Written to WORKDIR: results.json (the protocol: its name, query and gallery splits and
metric; every run and row, mean and sample standard deviation over seeds; each ablation
under "ablations"), results.md (one table per dataset: the protocol's metric, mAP@ALL by
default, i2t / t2i / avg as mean ± std, training time per run, parameter count; then one
table per ablation and dataset, a row per variant), pr_DATASET.png (every row's
precision-recall curves, mean over seeds) and pr_ABLATION_DATASET.png (every variant's).
Under another protocol these are results_PROTOCOL.json, results_PROTOCOL.md,
pr_DATASET_PROTOCOL.png and pr_ABLATION_DATASET_PROTOCOL.png, beside the default's; a
PR-curve PNG is drawn only where the rows have PR curves (a streamed top-k ranking has
none).
--amend=DIR merges this command's rows into the table already in DIR (same protocol,
preset and seeds, checked before anything runs) instead of writing a new one in WORKDIR:
each row replaces the row of its name on its dataset (methods by name, baselines by
their tag), other rows, datasets and ablations stay, and DIR's results.json gains an
entry in its "amended" list (date, command, rows, --amend_note) that results.md prints
under the dataset's table; the PR plots are redrawn there. It re-runs one method's row
after its default changed, without re-running the rest:

  python -m experiments.reproduce --workdir=/tmp/table --methods=scanet \
    --datasets=wikipedia --seeds=5 --baselines= --amend=results/table_DATE \
    --amend_note="after the default took ..." --manual_dir=wikipedia=/path/to/wikipedia_dataset

A progress line says which run of how many is going and the time left. A bad input is
one line `error: ...`; Ctrl-C keeps every finished run and the running one's last
checkpoint, and re-running the same command goes on from there.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags

from configs import default as default_configs
from crossmodal_jax import baselines as baselines_lib
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluate as evaluate_lib
from crossmodal_jax import logs
from crossmodal_jax import methods as methods_lib
from crossmodal_jax import protocols
from crossmodal_jax import reporting
from crossmodal_jax import runs as runs_lib
from crossmodal_jax import train as train_lib
from crossmodal_jax.data import common
from experiments import cli

DIRECTIONS = ("i2t", "t2i")
FILE_DATASETS = ("wikipedia", "features")
NAMES = {"drsl": "DRSL", "drsl_code": "DRSL (authors' code)", "scanet": "SCANet"}
NAMES.update({"mcsm": "MCSM", "hcmsl": "HCMSL", "cca": "CCA", "sm": "SM", "scm": "SCM"})
# Per run workdir: what the table needs beyond results.json.
RUN_INFO = "reproduce_run.json"
# RUN_INFO's mark of a run this command trained (in the table's workdir, where it stays).
TRAINED_BY = "experiments.reproduce"
# The baselines' grids with --preset=ci (unless given): a quick selection.
CI_COMPONENTS = (4, 16)
CI_C_GRID = (0.1, 10.0)


@dataclasses.dataclass(frozen=True)
class Ablation:
  """One ablation: its method's runs with a few config fields set, per variant."""

  method: str
  title: str  # the heading of its tables in results.md
  variants: tuple[tuple[str, dict[str, Any]], ...]  # (label, {"section.field": value})


# The ablations --ablations may name. Each variant's label also names its run folder.
ABLATIONS = {
    "scanet_layers": Ablation(
        "scanet",
        "SCANet co-attention layers (SCANet paper, table 3)",
        tuple((f"layers={k}", {"model.attention_layers": k}) for k in range(4)),
    ),
    "drsl_fusion": Ablation(
        "drsl",
        "DRSL relation fusion (DRSL paper, tables 5-6)",
        tuple((f, {"model.fusion": f}) for f in ("concat", "multiply", "add", "subtract")),
    ),
    "scanet_loss": Ablation(
        "scanet",
        "SCANet global loss margin m and weight lambda (SCANet paper, table 4)",
        tuple(
            (f"m={m:g} lambda={lam:g}", {"model.margin": m, "model.lam": lam})
            for m, lam in ((0.5, 0.35), (0.6, 0.35), (0.7, 0.35), (0.6, 0.3), (0.6, 0.4))
        ),
    ),
}

_METHODS = flags.DEFINE_list(
    "methods", ["drsl", "scanet", "mcsm", "hcmsl"], "Methods to train (registered names)."
)
_DATASETS = flags.DEFINE_list(
    "datasets",
    ["wikipedia", "synthetic"],
    "Datasets: synthetic (no files), wikipedia, features (both need --manual_dir).",
)
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per method and dataset: 0 .. N-1.", lower_bound=1)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory of the runs (runs/DATASET/METHOD/seed_S), results.json, results.md and the "
    "PR plots; finished runs in it are reused.",
    required=True,
)
_PRESET = flags.DEFINE_enum(
    "preset",
    "full",
    list(default_configs.PRESETS),
    "full: each method's schedule; ci: a small, quick version for CI; paper: the "
    "published hyperparameters (methods that have them).",
)
_MANUAL_DIR = flags.DEFINE_multi_string(
    "manual_dir",
    [],
    "The raw files of a file-backed dataset: DATASET=DIR (e.g. "
    "wikipedia=/data/wikipedia_dataset), or DIR for every file-backed dataset named.",
)
_OVERRIDE = flags.DEFINE_multi_string(
    "override",
    [],
    "A config field for every run, FIELD=VALUE (data.data_dir=/cache, "
    "train.num_epochs=3; data.* fields also reach the baselines), or for one method's "
    "runs, METHOD:FIELD=VALUE (drsl:model.dropout=0.4). Repeatable.",
)
_BASELINES = flags.DEFINE_list(
    "baselines",
    list(baselines_lib.BASELINES),
    f"Classical baselines per dataset, of {baselines_lib.BASELINES} (empty: none).",
)
_BASELINE_TEXT = flags.DEFINE_list(
    "baseline_text",
    [],
    "Wikipedia text features the baselines run on, each a row "
    f"({', '.join(data_lib.TEXT_FEATURES)}); empty: the config's data.text_feature.",
)
_CCA_COMPONENTS = flags.DEFINE_list(
    "cca_components",
    [],
    "Grid of CCA / SCM components k chosen on validation (one value fixes it); empty: "
    "powers of two up to the smaller feature size (at most 32; "
    f"{','.join(str(k) for k in CI_COMPONENTS)} with --preset=ci).",
)
_CCA_SOLVER = flags.DEFINE_enum(
    "cca_solver",
    "exact",
    list(baselines_lib.CCA_SOLVERS),
    "CCA of the cca / scm baselines: exact (closed form) or sklearn (NIPALS, slow).",
)
_SM_C = flags.DEFINE_list(
    "sm_c",
    [],
    "Grid of the logistic regressions' C (SM, SCM; each modality's chosen on validation); "
    f"empty: {','.join(f'{c:g}' for c in baselines_lib.DEFAULT_C_GRID)} "
    f"({','.join(f'{c:g}' for c in CI_C_GRID)} with --preset=ci).",
)
_PROTOCOL = flags.DEFINE_enum(
    "protocol",
    "default",
    list(protocols.PROTOCOLS),
    "How the runs and baselines are scored; training is the same under each, so the runs "
    "are shared. "
    + "; ".join(f"{name}: {p.description}" for name, p in protocols.PROTOCOLS.items())
    + ". default writes results.json / results.md, another PROTOCOL results_PROTOCOL.json "
    "/ results_PROTOCOL.md.",
)
_ABLATIONS = flags.DEFINE_list(
    "ablations",
    [],
    "Ablations to run too, on --datasets with --seeds (their method need not be in "
    "--methods): "
    + "; ".join(
        f"{name}: {a.method} with {', '.join(label for label, _ in a.variants)}"
        for name, a in ABLATIONS.items()
    )
    + ". Each variant is its own run per dataset and seed (the one equal to the method's "
    "config shares the method's runs), with its own table in results.md.",
)
_AMEND = flags.DEFINE_string(
    "amend",
    None,
    "A folder holding an earlier table of the same protocol, preset and seeds (its "
    "results.json): the rows this command produces replace that table's rows of the same "
    "name and dataset (added if absent), every other row, dataset and ablation stays, and "
    "its 'amended' list records the date, command, rows and --amend_note. results.json, "
    "results.md and the PR plots are rewritten there, not in --workdir (the runs stay "
    "under --workdir). Checked before anything runs.",
)
_AMEND_NOTE = flags.DEFINE_string(
    "amend_note",
    "",
    "With --amend: why the rows were re-run (the commit, the chosen change, what shared "
    "the machine), recorded with the amendment in results.json and results.md.",
)


@dataclasses.dataclass
class Run:
  """One training run of the table."""

  method: str
  dataset: str
  seed: int
  config: ml_collections.ConfigDict
  workdir: str
  ablation: str | None = None  # the ablation (ABLATIONS) and variant label it runs, if any
  variant: str | None = None
  default: bool = False  # the variant's config is the method's own (it shares its runs)

  def describe(self) -> str:
    variant = ""
    if self.ablation is not None:
      variant = f" [{self.ablation}: {self.variant}{', default' if self.default else ''}]"
    return f"{self.method}{variant} on {self.dataset}, seed {self.seed}"


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------


def _parse_value(text: str, current: Any) -> Any:
  if isinstance(current, bool):
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"expected True or False, got {text!r}")
  if isinstance(current, int):
    return int(text)
  if isinstance(current, float):
    return float(text)
  if isinstance(current, str):
    return text
  value = ast.literal_eval(text)
  return tuple(value) if isinstance(value, list) else value


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str | None, str, str]]:
  """ "[METHOD:]FIELD=VALUE" strings -> (method or None, field, value)."""
  parsed = []
  for item in overrides:
    spec, sep, value = item.partition("=")
    if not sep or not spec:
      raise errors.UserError(f"--override={item!r} is not [METHOD:]FIELD=VALUE.")
    method, _, field = spec.rpartition(":")
    parsed.append((method or None, field, value))
  return parsed


def _field(
    config: ml_collections.ConfigDict, field: str, what: str, owner: str
) -> tuple[ml_collections.ConfigDict, str]:
  """(the section holding `field` ("section.name"), its last name); a field `config` does
  not have is one error starting with `what`, listing the fields of `owner`'s config."""
  node = config
  parts = field.split(".")
  for i, part in enumerate(parts):
    if not hasattr(node, "keys") or part not in node:
      where = ".".join(parts[:i]) or "config"
      choices = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(a leaf)"
      raise errors.UserError(
          f"{what}: {where} of the {owner} config has no {part!r}; its fields: {choices}."
      )
    if i < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def apply_overrides(
    config: ml_collections.ConfigDict,
    overrides: Sequence[tuple[str | None, str, str]],
    method: str | None,
    prefix: str = "",
) -> None:
  """Sets, in place, the overrides whose field starts with `prefix` and that are unscoped
  or scoped to `method` (a config of no method, `method=None`, takes the unscoped ones)."""
  for scope, field, value in overrides:
    if scope is not None and scope != method:
      continue
    if not field.startswith(prefix):
      continue
    node, name = _field(config, field, f"--override {field}", method or "baselines")
    try:
      node[name] = _parse_value(value, node[name])
    except (ValueError, TypeError, SyntaxError) as e:
      raise errors.UserError(f"--override {field}={value}: {e}") from None


def variant_config(
    config: ml_collections.ConfigDict, ablation: str, label: str, fields: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with an ablation variant's fields set."""
  config = config.copy_and_resolve_references()
  for field, value in fields.items():
    what = f"ablation {ablation} ({label}): {field}"
    node, name = _field(config, field, what, config.method)
    try:
      node[name] = value
    except (ValueError, TypeError) as e:
      raise errors.UserError(f"{what}={value!r}: {e}") from None
  return config


def variant_dir(label: str) -> str:
  """A variant label as a folder name ("m=0.5 lambda=0.35" -> "m=0.5_lambda=0.35")."""
  return re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_") or "_"


def parse_manual_dirs(values: Sequence[str], datasets: Sequence[str]) -> dict[str, str]:
  """--manual_dir values ("DATASET=DIR", or "DIR" for every file-backed dataset of
  `datasets` not named explicitly) -> {dataset: dir}."""
  generic, named = {}, {}
  for value in values:
    name, sep, path = value.partition("=")
    if sep and name in data_lib.DATASETS:
      named[name] = path
    else:
      generic.update({d: value for d in datasets if d in FILE_DATASETS})
  return {**generic, **named}


def run_config(
    method: str,
    dataset: str,
    preset: str,
    seed: int,
    overrides: Sequence[tuple[str | None, str, str]],
    manual_dirs: dict[str, str],
) -> ml_collections.ConfigDict:
  """`configs/default.py:METHOD,DATASET,PRESET` with the seed, data folder and overrides."""
  with errors.config_values(f"{method},{dataset},{preset}"):
    config = default_configs.get_config(f"{method},{dataset},{preset}")
  config.seed = seed
  if dataset in manual_dirs:
    config.data.manual_dir = manual_dirs[dataset]
  apply_overrides(config, overrides, method)
  return config


def baseline_data_config(
    dataset: str,
    preset: str,
    overrides: Sequence[tuple[str | None, str, str]],
    manual_dirs: dict[str, str],
    text_feature: str | None = None,
) -> ml_collections.ConfigDict:
  """The common data config of `dataset` (what every method starts from), with the data
  folder, the unscoped data.* overrides and, if given, the text feature."""
  config = default_configs.common_config("baselines", dataset, preset)
  if dataset in manual_dirs:
    config.data.manual_dir = manual_dirs[dataset]
  apply_overrides(config, overrides, None, prefix="data.")
  if text_feature:
    config.data.text_feature = text_feature
  return config.data


def config_differences(before: dict, now: dict) -> list[str]:
  """The fields whose values differ between a finished run's config (completed with the
  fields added since, at the values it ran with) and `now`, but for those that do not
  change a run's result (`runs.same_result_with`)."""
  return runs_lib.differences(before, now)


def _json_roundtrip(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def is_finished(run: Run) -> bool:
  """Its results.json exists and its config.json is this run's config."""
  if not os.path.exists(os.path.join(run.workdir, results_file())):
    return False
  path = os.path.join(run.workdir, "config.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    before = json.load(f)
  return not config_differences(before, _json_roundtrip(run.config))


def check_run(run: Run) -> None:
  """Raises (before anything is trained) if the run's workdir holds another run."""
  runs_lib.check_resumable(run.config, run.workdir)
  path = os.path.join(run.workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      epochs = json.load(f).get("train", {}).get("num_epochs", 0)
    if epochs > run.config.train.num_epochs:
      raise errors.UserError(
          f"{run.workdir} holds a run of {epochs} epochs, longer than the "
          f"{run.config.train.num_epochs} asked for: use another --workdir."
      )


def plan(
    methods: Sequence[str],
    datasets: Sequence[str],
    seeds: int,
    workdir: str,
    preset: str = "full",
    overrides: Sequence[str] = (),
    manual_dirs: dict[str, str] | None = None,
    ablations: Sequence[str] = (),
) -> list[Run]:
  """Every run's config, checked: unknown names, bad overrides, missing data folders
  and workdirs holding other runs are one error before anything runs. The methods' runs
  come first, then each ablation's (a default variant's Run has its method's workdir)."""
  manual_dirs = manual_dirs or {}
  parsed = parse_overrides(overrides)
  known = methods_lib.names()
  for a in ablations:
    if a not in ABLATIONS:
      raise errors.UserError(f"Unknown ablation {a!r}; choose from {tuple(ABLATIONS)}.")
  ablation_methods = [ABLATIONS[a].method for a in ablations]
  for scope, field, _ in parsed:
    if scope is not None and scope not in methods and scope not in ablation_methods:
      raise errors.UserError(
          f"--override {scope}:{field}: {scope!r} is not among --methods {list(methods)}"
          + (f" or the ablations' methods {ablation_methods}." if ablations else ".")
      )
  for m in methods:
    if m not in known:
      raise errors.UserError(f"Unknown method {m!r}; choose from {known}.")
  for d in datasets:
    if d not in data_lib.DATASETS:
      raise errors.UserError(f"Unknown dataset {d!r}; choose from {data_lib.DATASETS}.")
  if not methods and not datasets:
    raise errors.UserError("Nothing to do: give --methods and --datasets.")

  def config_of(m: str, d: str, s: int) -> ml_collections.ConfigDict:
    config = run_config(m, d, preset, s, parsed, manual_dirs)
    if d in FILE_DATASETS and not config.data.manual_dir:
      raise errors.UserError(
          f"The {d} dataset needs its folder: --manual_dir={d}=DIR "
          f"(or --override=data.manual_dir=DIR)."
      )
    return config

  def method_dir(m: str, d: str, s: int) -> str:
    return os.path.join(workdir, "runs", d, m, f"seed_{s}")

  runs = []
  for d in datasets:
    for m in methods:
      for s in range(seeds):
        runs.append(Run(m, d, s, config_of(m, d, s), method_dir(m, d, s)))
  for a in dict.fromkeys(ablations):
    ablation = ABLATIONS[a]
    m = ablation.method
    folders = [variant_dir(label) for label, _ in ablation.variants]
    if len(set(folders)) < len(folders):
      raise ValueError(f"ABLATIONS[{a!r}]: two variants share a folder name: {folders}.")
    for d in datasets:
      for (label, fields), folder in zip(ablation.variants, folders):
        for s in range(seeds):
          base = config_of(m, d, s)
          config = variant_config(base, a, label, fields)
          default = not config_differences(_json_roundtrip(base), _json_roundtrip(config))
          path = (
              method_dir(m, d, s)
              if default
              else os.path.join(workdir, "ablations", d, a, folder, f"seed_{s}")
          )
          runs.append(Run(m, d, s, config, path, a, label, default))
  for run in runs:
    check_run(run)
  return runs


# --------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------


results_file = evaluate_lib.results_file


def protocol_info(protocol: str) -> dict[str, Any]:
  """What results.json records of a protocol (one error listing the choices for an
  unknown one)."""
  spec = protocols.protocol_spec(protocol)
  return {
      "name": protocol,
      "query_split": spec.query_split,
      "gallery_split": spec.gallery_split,
      "metric": spec.metric,
      "metric_name": reporting.metric_name(spec.metric),
      "description": spec.description,
  }


def protocol_caption(info: dict[str, Any], metric: str | None = None) -> str:
  """ "mAP@100, test queries vs train gallery" ("metric" defaults to the protocol's)."""
  return (
      f"{reporting.metric_name(metric or info['metric'])}, {info['query_split']} queries vs "
      f"{info['gallery_split']} gallery"
  )


def figure_key(result: dict[str, Any], protocol: str) -> str:
  """The key of a run's or baseline's figure under `protocol`: the one its results name
  (a results.json of the default protocol names none: mAP@ALL)."""
  return result.get("protocol", {}).get("metric") or protocols.PROTOCOLS[protocol].metric


def protocol_current(run: Run, protocol: str) -> bool:
  """Whether a finished run has results of `protocol` for its checkpoint: those of the
  default are its results.json; another's results_PROTOCOL.json must name the protocol
  and results.json's checkpoint (a run trained further since is evaluated again)."""
  if protocol == "default":
    return True
  path = os.path.join(run.workdir, results_file(protocol))
  if not os.path.exists(path):
    return False
  with open(path) as f:
    stored = json.load(f)
  with open(os.path.join(run.workdir, results_file())) as f:
    trained = json.load(f)
  return stored.get("protocol", {}).get("name") == protocol and all(
      stored.get(k) == trained[k] for k in ("checkpoint_step", "checkpoint") if k in trained
  )


def evaluate_run(run: Run, cache: DatasetCache, protocol: str) -> None:
  """Evaluates a trained run under `protocol` from the checkpoint results.json was
  computed with (the best by validation): writes its results_PROTOCOL.json."""
  evaluate_lib.evaluate(
      run.workdir, config=run.config, dataset=cache.get(run.config.data), protocol=protocol
  )


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


class DatasetCache:
  """Each (dataset, data config) loaded once."""

  def __init__(self):
    self._cache: dict[str, common.Dataset] = {}

  def get(self, data_config: ml_collections.ConfigDict) -> common.Dataset:
    key = json.dumps(runs_lib.flatten(data_config), sort_keys=True, default=str)
    if key not in self._cache:
      with errors.config_values():
        self._cache[key] = data_lib.load_dataset(data_config)
    return self._cache[key]


def _format_seconds(seconds: float | None) -> str:
  if seconds is None or not np.isfinite(seconds):
    return "?"
  if seconds < 60:
    return f"{seconds:.1f} s"
  if seconds < 3600:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


class Progress:
  """The progress line: run k of N, elapsed, and the time left estimated from the runs
  trained so far (the mean of the same method, variant and dataset, else of the same
  method and dataset, else of all)."""

  def __init__(self, runs: Sequence[Run], out=None):
    self.runs = list(runs)
    self.out = out or sys.stdout
    self.start = time.perf_counter()
    self.seconds: dict[tuple[str, str, str | None, str | None], list[float]] = {}

  @staticmethod
  def _key(run: Run) -> tuple[str, str, str | None, str | None]:
    return run.method, run.dataset, run.ablation, run.variant

  def estimate(self, run: Run) -> float | None:
    same = self.seconds.get(self._key(run))
    if same:
      return float(np.mean(same))
    method = [s for k, v in self.seconds.items() if k[:2] == self._key(run)[:2] for s in v]
    if method:
      return float(np.mean(method))
    every = [s for v in self.seconds.values() for s in v]
    return float(np.mean(every)) if every else None

  def time_left(self, remaining: Sequence[Run]) -> float | None:
    estimates = [self.estimate(r) for r in remaining]
    if any(e is None for e in estimates):
      return None
    return float(sum(estimates))

  def line(self, k: int, run: Run, status: str, remaining: Sequence[Run]) -> str:
    left = self.time_left(remaining)
    left_text = (
        f"about {_format_seconds(left)} left"
        if left is not None
        else "time left known after the first training"
    )
    text = (
        f"[reproduce] run {k}/{len(self.runs)}: {run.describe()}: {status} (elapsed "
        f"{_format_seconds(time.perf_counter() - self.start)}, {left_text})"
    )
    print(text, file=self.out, flush=True)
    return text

  def record(self, run: Run, seconds: float):
    self.seconds.setdefault(self._key(run), []).append(seconds)


def train_seconds(workdir: str) -> tuple[float | None, int]:
  """(sum of the epochs' training seconds, epochs) from metrics.jsonl (no validation)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None, 0
  total, epochs = 0.0, 0
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      if record.get("kind") == "epoch" and "epoch_seconds" in record:
        total += record["epoch_seconds"]
        epochs += 1
  return total, epochs


def count_params(config: ml_collections.ConfigDict, dataset: common.Dataset) -> int:
  """The method's trainable parameters (shapes only: nothing is computed)."""
  with errors.config_values():
    method = methods_lib.get_method(config, dataset.dims(), dataset.meta)
    variables = runs_lib.abstract_variables(method, dataset.train)
  return train_lib.num_params(variables["params"])


def execute(run: Run, cache: DatasetCache) -> dict[str, Any]:
  """Trains (or resumes) and evaluates one run; writes its RUN_INFO."""
  dataset = cache.get(run.config.data)
  t0 = time.perf_counter()
  train_lib.train(run.config, run.workdir, dataset=dataset)
  evaluate_lib.evaluate(run.workdir, config=run.config, dataset=dataset)
  info = {
      "num_params": count_params(run.config, dataset),
      "wall_seconds": time.perf_counter() - t0,
      "trained_by": TRAINED_BY,
  }
  with open(os.path.join(run.workdir, RUN_INFO), "w") as f:
    json.dump(info, f, indent=2)
  return info


def check_own_run(run: Run) -> None:
  """--amend merges only runs this command trained in its own workdir: a finished run
  there without RUN_INFO's mark (trained by experiments.train elsewhere and copied in)
  is one error."""
  path = os.path.join(run.workdir, RUN_INFO)
  info = {}
  if os.path.exists(path):
    with open(path) as f:
      info = json.load(f)
  if info.get("trained_by") != TRAINED_BY:
    raise errors.UserError(
        f"--amend: {run.workdir} holds a finished run that experiments.reproduce did not "
        "train there; an amendment merges only its own runs (remove that folder to train "
        "it here)."
    )


def run_info(run: Run, cache: DatasetCache) -> dict[str, Any]:
  """A finished run's RUN_INFO (computed, loading its dataset, if a run trained by
  experiments.train lacks it)."""
  path = os.path.join(run.workdir, RUN_INFO)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  info = {"num_params": count_params(run.config, cache.get(run.config.data)), "wall_seconds": None}
  with open(path, "w") as f:
    json.dump(info, f, indent=2)
  return info


def run_summary(
    run: Run, info: dict[str, Any], reused: bool, protocol: str = "default"
) -> dict[str, Any]:
  """A run's figures under `protocol` (from its results file of it), time and size."""
  with open(os.path.join(run.workdir, results_file(protocol))) as f:
    result = json.load(f)
  metric = figure_key(result, protocol)
  if metric not in result:
    raise errors.UserError(
        f"{run.workdir}/{results_file(protocol)} has no {reporting.metric_name(metric)}: "
        f"its gallery was ranked by streamed top-{result.get('top_k')} (larger than "
        "eval.full_matrix_mb); the table needs --override=eval.ranking=full or "
        "eval.top_k=<the gallery size>."
    )
  seconds, epochs = train_seconds(run.workdir)
  return {
      "method": run.method,
      "dataset": run.dataset,
      "seed": run.seed,
      "workdir": run.workdir,
      "reused": reused,
      "metric": metric,
      metric: result[metric],
      "pr_curve": result.get("pr_curve"),
      "checkpoint_step": result.get("checkpoint_step"),
      "num_queries": result.get("num_queries"),
      "num_gallery": result.get("num_gallery"),
      "train_seconds": seconds,
      "epochs": epochs,
      "num_params": info.get("num_params"),
      "wall_seconds": info.get("wall_seconds"),
  }


def _baseline_settings(data_config, components, c_grid, solver) -> dict[str, Any]:
  data = {
      k: v
      for k, v in runs_lib.flatten(_json_roundtrip(data_config)).items()
      if not k.startswith(("data_dir", "manual_dir"))
  }
  return {"data": data, "components": components, "c": list(c_grid), "solver": solver}


def _same_settings(stored: dict | None, settings: dict[str, Any]) -> bool:
  """A stored baseline's settings equal `settings`; a data field absent from `stored`
  (added to the code since) takes the value it ran with, as for the runs
  (`runs.data_defaults`)."""
  if not stored:
    return False
  before = runs_lib.data_defaults(settings["data"]["name"])
  data = {
      **{k: v for k, v in before.items() if k in settings["data"]},
      **(stored.get("data") or {}),
  }
  return {**stored, "data": data} == settings


def run_baseline(
    name: str,
    dataset_name: str,
    data_config,
    workdir: str,
    cache: DatasetCache,
    components: Sequence[int] | None,
    c_grid: Sequence[float],
    text_label: str | None,
    eval_config=None,
    out=None,
    solver: str = "exact",
    protocol: str = "default",
) -> dict[str, Any]:
  """One baseline on one dataset, scored under `protocol` (its queries, gallery and
  metric), reused from WORKDIR/baselines/DATASET/TAG.json (TAG_PROTOCOL.json under
  another protocol) when its settings match."""
  out = out or sys.stdout
  eval_config = eval_config if eval_config is not None else default_configs.eval_config()
  spec = protocols.protocol_spec(protocol)
  if spec.query_split != "test":
    raise errors.UserError(
        f"The baselines take their queries from the test split, not the {spec.query_split} "
        f"split of protocol {protocol!r}."
    )
  tag = name + (f"-{text_label}" if text_label else "")
  suffix = "" if protocol == "default" else f"_{protocol}"
  path = os.path.join(workdir, "baselines", dataset_name, f"{tag}{suffix}.json")
  settings = _baseline_settings(
      data_config, list(components) if components else None, c_grid, solver
  )
  if protocol != "default":
    settings["protocol"] = protocol
  settings = json.loads(json.dumps(settings, default=str))
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    if _same_settings(stored.get("settings"), settings):
      print(f"[reproduce] baseline {tag} on {dataset_name}: reused", file=out, flush=True)
      stored["reused"] = True
      stored.setdefault("metric", figure_key(stored, protocol))
      return stored
  print(f"[reproduce] baseline {tag} on {dataset_name}: fitting", file=out, flush=True)
  dataset = cache.get(data_config)
  result = baselines_lib.run(
      name,
      dataset,
      components,
      c_grid,
      eval_config,
      solver,
      gallery_split=spec.gallery_split,
      map_r=spec.map_r,
  )
  info = protocol_info(protocol)
  info["metric"] = protocols.protocol_metric(protocol, result["num_gallery"], eval_config)
  result.update(
      {
          "settings": settings,
          "text_feature": text_label,
          "tag": tag,
          "protocol": info,
          "metric": info["metric"],
      }
  )
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=2)
  os.replace(tmp, path)
  result["reused"] = False
  return result


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------


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
      "label": NAMES.get(method, method),
      "kind": "method",
      "seeds": [s["seed"] for s in summaries],
      "metric": metric,
      metric: {d: mean_std([s[metric][d] for s in summaries]) for d in ("i2t", "t2i", "avg")},
      "train_seconds": mean_std([s["train_seconds"] for s in summaries]),
      "wall_seconds": mean_std([s["wall_seconds"] for s in summaries]),
      "num_params": summaries[0]["num_params"],
      "epochs": summaries[0]["epochs"],
      "pr_curve": _mean_curve([s["pr_curve"] for s in summaries]),
      "runs": list(summaries),
  }


def variant_row(
    ablation: str, label: str, default: bool, summaries: Sequence[dict]
) -> dict[str, Any]:
  """An ablation variant's row: its method's row, named by the variant."""
  row = method_row(ABLATIONS[ablation].method, summaries)
  row.update(
      name=label,
      label=label + (" (default)" if default else ""),
      kind="variant",
      ablation=ablation,
      settings=dict(dict(ABLATIONS[ablation].variants)[label]),
      default=default,
  )
  return row


def baseline_row(result: dict[str, Any]) -> dict[str, Any]:
  """A baseline's row (`run_baseline`'s result): its figure under its "metric"."""
  name = result["baseline"]
  label = NAMES.get(name, name)
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
  lines = [
      f"| {first} | {' | '.join(columns)} | training time per run | parameters | notes |",
      "|---|---|---|---|---|---|---|",
  ]
  for row in ds["rows"]:
    m = row[row["metric"]]
    if row.get("kind") == "baseline":
      time_text = f"{_format_seconds(row['fit_seconds'])} (fit + selection)"
      notes = f"baseline; {_chosen(row['chosen'])} on validation"
    else:
      time_text = _cell_time(row["train_seconds"])
      notes = f"{len(row['seeds'])} seeds, {row['epochs']} epochs"
    lines.append(
        f"| {row['label']} | {_cell(m['i2t'])} | {_cell(m['t2i'])} | **{_cell(m['avg'])}** "
        f"| {time_text} | {_params(row['num_params'])} | {notes} |"
    )
  if ds.get("plot"):
    lines += ["", f"Precision-recall curves: [{ds['plot']}]({ds['plot']})"]
  return lines


def _cell_time(stat: dict[str, Any]) -> str:
  if stat["mean"] is None:
    return "?"
  if stat["std"] is None:
    return _format_seconds(stat["mean"])
  return f"{_format_seconds(stat['mean'])} ± {_format_seconds(stat['std'])}"


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


def load_table(folder: str, protocol: str) -> dict[str, Any]:
  """The table of `protocol` in `folder` (`results_file`), as written by `write_outputs`;
  one error naming the file when it is missing or is not such a table."""
  path = os.path.join(folder, results_file(protocol))
  try:
    with open(path) as f:
      table = json.load(f)
  except FileNotFoundError:
    raise errors.UserError(f"--amend: no table at {path}.") from None
  except (OSError, json.JSONDecodeError) as e:
    raise errors.UserError(f"--amend: cannot read {path}: {e}.") from None
  if not isinstance(table, dict) or not isinstance(table.get("datasets"), dict):
    raise errors.UserError(f"--amend: {path} is not a results table (no 'datasets').")
  return table


def check_amendable(
    table: dict[str, Any], path: str, protocol: str, preset: str, seeds: Sequence[int]
) -> None:
  """One error when `table` (read from `path`) was made under another protocol, preset or
  set of seeds than the rows that would amend it: its rows would not compare."""
  have = {
      "protocol": (table.get("protocol") or {}).get("name"),
      "preset": table.get("preset"),
      "seeds": table.get("seeds"),
  }
  want = {"protocol": protocol, "preset": preset, "seeds": list(seeds)}
  for key, value in want.items():
    if have[key] != value:
      raise errors.UserError(
          f"--amend: {path} has {key} {have[key]!r}, this command {value!r}; its rows would "
          "not compare."
      )


def _without_reuse(x):
  """`x` without its "reused" flags (at any depth): a reused run or baseline is the same
  result as the one stored."""
  if isinstance(x, dict):
    return {k: _without_reuse(v) for k, v in x.items() if k != "reused"}
  if isinstance(x, list):
    return [_without_reuse(v) for v in x]
  return x


def _replace_rows(old: list[dict], new: Sequence[dict]) -> tuple[list[dict], list[str]]:
  """(`old` with each row of `new` in place of the old row of its name, appended if none;
  the names of the rows that changed)."""
  rows, changed = list(old), []
  for row in new:
    at = [k for k, r in enumerate(rows) if r["name"] == row["name"]]
    if at and _without_reuse(rows[at[0]]) == _without_reuse(json.loads(json.dumps(row))):
      continue
    changed.append(row["name"])
    if at:
      rows[at[0]] = row
    else:
      rows.append(row)
  return rows, changed


def _same_sizes(old: dict[str, Any], new: dict[str, Any], where: str) -> None:
  for key in ("num_test", "num_gallery"):
    if None not in (old.get(key), new.get(key)) and old[key] != new[key]:
      raise errors.UserError(
          f"--amend: {where} has {key} {old[key]} in the table and {new[key]} in this "
          "command's data (other splits); the rows would not compare."
      )


def _merge_datasets(
    have: dict[str, Any], new: dict[str, Any], where: Callable[[str], str]
) -> dict[str, list[str]]:
  """Merges the dataset entries `new` into `have` in place: a dataset absent from `have`
  is added whole, else each of its rows replaces the row of its name (`_replace_rows`)
  once its splits are checked (`_same_sizes`, naming it by `where(dataset)`). Returns
  {dataset: names of the rows added or changed}, without datasets where none were."""
  done = {}
  for d, ds in new.items():
    if d not in have:
      have[d] = ds
      done[d] = [r["name"] for r in ds["rows"]]
      continue
    _same_sizes(have[d], ds, where(d))
    have[d]["rows"], changed = _replace_rows(have[d]["rows"], ds["rows"])
    if changed:
      done[d] = changed
  return done


def amend_table(
    table: dict[str, Any], new: dict[str, Any], command: str, note: str = ""
) -> dict[str, Any]:
  """`table` with the rows of `new` (a table of the same protocol, preset and seeds)
  replacing its rows of the same name and dataset, and the same for each ablation of
  `new`; a dataset or ablation absent from `table` is added whole. Every other row stays.
  When a row changed (a row equal to the stored one but for "reused" flags does not), an
  entry {"date", "command", "machine", "rows": {dataset: [row names]}, "ablations":
  {ablation: {dataset: [variant names]}}, "reused": {dataset: {row name: [seeds]}}, "note"}
  is appended to table["amended"]; "reused" names the changed rows' runs that the command
  found finished (trained before it) rather than trained."""
  out = json.loads(json.dumps(table))
  rows_done = _merge_datasets(out["datasets"], new["datasets"], lambda d: f"dataset {d!r}")
  ablations_done: dict[str, dict[str, list[str]]] = {}
  for name, entry in new.get("ablations", {}).items():
    have = out.setdefault("ablations", {}).setdefault(name, {**entry, "datasets": {}})
    done = _merge_datasets(
        have["datasets"], entry["datasets"], lambda d, name=name: f"ablation {name!r} on {d!r}"
    )
    if done:
      ablations_done[name] = done
  if rows_done or ablations_done:
    out.setdefault("amended", []).append(
        {
            "date": new["date"],
            "command": command,
            "machine": new["machine"]["summary"],
            "rows": rows_done,
            "ablations": ablations_done,
            "reused": _reused_runs(new["datasets"], rows_done),
            "note": note,
        }
    )
  return out


def _reused_runs(datasets: dict[str, Any], names: dict[str, list[str]]) -> dict[str, Any]:
  """{dataset: {row name: [seeds]}}: the runs of the rows `names` that were reused (found
  finished), leaving out rows with none."""
  out: dict[str, Any] = {}
  for d, rows in names.items():
    for r in datasets[d]["rows"]:
      seeds = [run["seed"] for run in r.get("runs", []) if run.get("reused")]
      if r["name"] in rows and seeds:
        out.setdefault(d, {})[r["name"]] = seeds
  return out


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


def _write_atomic(path: str, text: str):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


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
  _write_atomic(os.path.join(workdir, results_file(protocol)), text)
  _write_atomic(os.path.join(workdir, results_file(protocol, "md")), md)
  return results


# --------------------------------------------------------------------------------------
# The whole command
# --------------------------------------------------------------------------------------

_CURRENT: dict[str, Any] = {}


def reproduce(
    workdir: str,
    methods: Sequence[str],
    datasets: Sequence[str],
    seeds: int,
    preset: str = "full",
    overrides: Sequence[str] = (),
    manual_dirs: dict[str, str] | None = None,
    baselines: Sequence[str] = baselines_lib.BASELINES,
    baseline_text: Sequence[str] = (),
    cca_components: Sequence[int] | None = None,
    sm_c: Sequence[float] | None = None,
    cca_solver: str = "exact",
    command: str = "",
    out=None,
    execute_fn: Callable[[Run, DatasetCache], dict[str, Any]] = execute,
    ablations: Sequence[str] = (),
    protocol: str = "default",
    amend: str | None = None,
    amend_note: str = "",
) -> dict[str, Any]:
  """Runs (or reuses) every run, baseline and ablation variant (names of ABLATIONS),
  scored under `protocol` (a key of `protocols.PROTOCOLS`); writes and returns the
  results: in `workdir`, or with `amend` (a folder) merged into the table there
  (`amend_table`, noting `amend_note`)."""
  out = out or sys.stdout
  manual_dirs = manual_dirs or {}
  info = protocol_info(protocol)
  if amend_note and not amend:
    raise errors.UserError("--amend_note says why rows of a table were re-run: give --amend=DIR.")
  if amend:
    amended = load_table(amend, protocol)
    check_amendable(
        amended, os.path.join(amend, results_file(protocol)), protocol, preset, range(seeds)
    )
  for b in baselines:
    if b not in baselines_lib.BASELINES:
      raise errors.UserError(f"Unknown baseline {b!r}; choose from {baselines_lib.BASELINES}.")
  for t in baseline_text:
    if t not in data_lib.TEXT_FEATURES:
      raise errors.UserError(
          f"Unknown --baseline_text {t!r}; choose from {data_lib.TEXT_FEATURES}."
      )
  planned = plan(methods, datasets, seeds, workdir, preset, overrides, manual_dirs, ablations)
  # A default variant's run is its method's: trained (or reused) once.
  first: dict[str, Run] = {}
  for run in planned:
    first.setdefault(run.workdir, run)
  runs = list(first.values())
  if not sm_c:
    sm_c = CI_C_GRID if preset == "ci" else baselines_lib.DEFAULT_C_GRID
  if not cca_components and preset == "ci":
    cca_components = CI_COMPONENTS
  parsed = parse_overrides(overrides)
  baseline_configs = {}  # dataset -> [(text label, data config)]
  for d in datasets:
    texts = list(baseline_text) if (d == "wikipedia" and baseline_text) else [None]
    baseline_configs[d] = [
        (t, baseline_data_config(d, preset, parsed, manual_dirs, t)) for t in texts
    ]
    if d in FILE_DATASETS and baselines and not baseline_configs[d][0][1].manual_dir:
      raise errors.UserError(f"The {d} dataset needs its folder: --manual_dir={d}=DIR.")
  _CURRENT.update(workdir=workdir, run=None)
  cache = DatasetCache()
  if amend:
    for run in runs:
      if is_finished(run):
        check_own_run(run)
    # The table's splits against this command's, before anything trains.
    for d in datasets:
      if d not in amended["datasets"]:
        continue
      data_config = next((r.config.data for r in runs if r.dataset == d), None)
      data = cache.get(data_config if data_config is not None else baseline_configs[d][0][1])
      sizes = {"num_test": len(data.splits[info["query_split"]])}
      sizes["num_gallery"] = len(data.splits[info["gallery_split"]])
      _same_sizes(amended["datasets"][d], sizes, f"dataset {d!r}")
  eval_config = default_configs.eval_config()
  baseline_results: dict[str, list[dict[str, Any]]] = {d: [] for d in datasets}
  for d in datasets:
    for text_label, data_config in baseline_configs[d]:
      for b in baselines:
        baseline_results[d].append(
            run_baseline(
                b,
                d,
                data_config,
                workdir,
                cache,
                cca_components,
                sm_c,
                text_label,
                eval_config,
                out,
                cca_solver,
                protocol,
            )
        )
  progress = Progress(runs, out)
  summaries: list[dict[str, Any]] = []  # of `runs`, in order
  for k, run in enumerate(runs, start=1):
    _CURRENT["run"] = run
    if is_finished(run):
      # Trained before (under any protocol): evaluated under this one unless it was.
      current = protocol_current(run, protocol)
      status = "finished before, reused"
      if protocol != "default":
        status += f"; {protocol} results reused" if current else f"; evaluating under {protocol}"
      progress.line(k, run, status, runs[k:])
      if not current:
        evaluate_run(run, cache, protocol)
      summaries.append(run_summary(run, run_info(run, cache), True, protocol))
      continue
    progress.line(k, run, "training", runs[k - 1 :])
    t0 = time.perf_counter()
    trained = execute_fn(run, cache)
    if protocol != "default":
      evaluate_run(run, cache, protocol)
    progress.record(run, time.perf_counter() - t0)
    summaries.append(run_summary(run, trained, False, protocol))
    metric = summaries[-1]["metric"]
    m = summaries[-1][metric]
    where = info["query_split"]
    if info["gallery_split"] != where:
      where += f" vs {info['gallery_split']} gallery"
    print(
        f"[reproduce] run {k}/{len(runs)} done: {where} {reporting.metric_name(metric)} i2t "
        f"{m['i2t']:.4f} t2i {m['t2i']:.4f} avg {m['avg']:.4f}",
        file=out,
        flush=True,
    )
  _CURRENT["run"] = None
  results = {
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "machine": machine(),
      "command": command or "experiments.reproduce.reproduce(...)",
      "preset": preset,
      "seeds": list(range(seeds)),
      "protocol": info,
      "std": "sample standard deviation over seeds (ddof=1)",
      "datasets": {},
  }
  by_workdir = {s["workdir"]: s for s in summaries}

  def summaries_of(dataset: str, method: str, ablation=None, variant=None) -> list[dict]:
    return [
        by_workdir[r.workdir]
        for r in planned
        if (r.dataset, r.method, r.ablation, r.variant) == (dataset, method, ablation, variant)
    ]

  def sizes(dataset: str, rows: Sequence[dict]) -> dict[str, Any]:
    """A dataset entry's test pairs, gallery pairs and figure's key, from its runs (any
    of the table's) or else its baselines."""
    found = [s for s in summaries if s["dataset"] == dataset] + baseline_results[dataset]
    num_test = next((s["num_queries"] for s in found if s.get("num_queries")), None)
    num_gallery = next((s["num_gallery"] for s in found if s.get("num_gallery")), None)
    metric = rows[0]["metric"] if rows else info["metric"]
    return {"num_test": num_test, "num_gallery": num_gallery, "metric": metric}

  for d in datasets:
    rows = [baseline_row(r) for r in baseline_results[d]]
    for m in methods:
      mine = summaries_of(d, m)
      if mine:
        rows.append(method_row(m, mine))
    results["datasets"][d] = {**sizes(d, rows), "rows": rows}
  if ablations:
    results["ablations"] = {}
  for a in dict.fromkeys(ablations):
    ablation = ABLATIONS[a]
    defaults = {(r.dataset, r.variant) for r in planned if r.ablation == a and r.default}
    entry = {
        "method": ablation.method,
        "title": ablation.title,
        "fields": sorted({f for _, fields in ablation.variants for f in fields}),
        "datasets": {},
    }
    for d in datasets:
      rows = [
          variant_row(a, label, (d, label) in defaults, summaries_of(d, ablation.method, a, label))
          for label, _ in ablation.variants
      ]
      entry["datasets"][d] = {**sizes(d, rows), "rows": rows}
    results["ablations"][a] = entry
  results = _relative_runs(results, workdir)
  if amend:
    merged = amend_table(amended, results, results["command"], amend_note)
    if len(merged.get("amended", [])) == len(amended.get("amended", [])):
      print(f"[reproduce] --amend: every row equals {amend}'s; nothing recorded.", file=out)
    return write_outputs(merged, amend)
  return write_outputs(results, workdir)


def interrupted() -> str:
  workdir = _CURRENT.get("workdir") or _WORKDIR.value
  run = _CURRENT.get("run")
  now = f"; {run.workdir} keeps its last checkpoint" if run is not None else ""
  return (
      f"finished runs are kept under {workdir} (runs/, ablations/){now}; re-run the same "
      "command to go on (finished runs are reused)."
  )


def _numbers(values: Sequence[str], kind, flag: str) -> list:
  try:
    return [kind(v) for v in values]
  except ValueError:
    raise errors.UserError(f"--{flag} takes numbers, got {list(values)}.") from None


def _recorded_args(args: Sequence[str]) -> list[str]:
  """The command line as recorded in the table: without --amend_note, which the
  amendment keeps on its own, and with this machine's folders as placeholders
  (`cli.recorded_args`), so that the committed table names none."""
  return cli.recorded_args(list(args), drop=("amend_note",), names={"amend": "table_dir"})


def _relative_runs(results: dict[str, Any], workdir: str) -> dict[str, Any]:
  """`results` with each run's "workdir" relative to the table's workdir (runs/...)."""

  def visit(x):
    if isinstance(x, dict):
      return {
          k: (
              os.path.relpath(v, workdir)
              if k == "workdir" and isinstance(v, str) and os.path.isabs(v)
              else visit(v)
          )
          for k, v in x.items()
      }
    if isinstance(x, list):
      return [visit(v) for v in x]
    return x

  return visit(results)


def main(argv):
  cli.unexpected_arguments(argv)
  logs.quiet_library_logs()
  results = reproduce(
      workdir=_WORKDIR.value,
      methods=[m for m in _METHODS.value if m],
      datasets=[d for d in _DATASETS.value if d],
      seeds=_SEEDS.value,
      preset=_PRESET.value,
      overrides=_OVERRIDE.value,
      manual_dirs=parse_manual_dirs(_MANUAL_DIR.value, _DATASETS.value),
      baselines=[b for b in _BASELINES.value if b],
      baseline_text=[t for t in _BASELINE_TEXT.value if t],
      cca_components=_numbers(_CCA_COMPONENTS.value, int, "cca_components") or None,
      sm_c=_numbers(_SM_C.value, float, "sm_c") or None,
      cca_solver=_CCA_SOLVER.value,
      ablations=[a for a in _ABLATIONS.value if a],
      protocol=_PROTOCOL.value,
      amend=_AMEND.value,
      amend_note=_AMEND_NOTE.value,
      command="python -m experiments.reproduce " + shlex.join(_recorded_args(sys.argv[1:])),
  )
  protocol = _PROTOCOL.value
  where = _AMEND.value or _WORKDIR.value
  plots = "pr_*.png" if protocol == "default" else f"pr_*_{protocol}.png"
  print()
  print(markdown(results), end="")
  print(f"(results in {where}/{results_file(protocol)}, {results_file(protocol, 'md')}, {plots})")


if __name__ == "__main__":
  cli.run(main, interrupted)
