"""The plan of a table: its runs (`Run`), each one's config (the method's, the seed,
the data folder, the --override fields, an ablation variant's fields) and workdir,
checked before anything runs; and the ablations the methods' config files declare."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import ml_collections

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation as evaluate_lib
from crossmodal_jax import methods as methods_lib
from crossmodal_jax import runs as runs_lib
from .. import overrides as overrides_lib

FILE_DATASETS = ("wikipedia", "features")


@dataclasses.dataclass(frozen=True)
class Ablation:
  """One ablation: its method's runs with a few config fields set, per variant."""

  method: str
  title: str  # the heading of its tables in results.md
  variants: tuple[tuple[str, dict[str, Any]], ...]  # (label, {"section.field": value})


def declared_ablations() -> dict[str, Ablation]:
  """The ablations of every method's config file (its ABLATIONS: name -> (title,
  variants)), in the order of the files; a name two files declare is an error."""
  found: dict[str, Ablation] = {}
  for method in default_configs.method_names():
    declared = getattr(default_configs.config_module(method), "ABLATIONS", {})
    for name, (title, variants) in declared.items():
      if name in found:
        raise ValueError(
            f"Ablation {name!r} is declared by configs/{found[name].method}.py and "
            f"configs/{method}.py."
        )
      found[name] = Ablation(method, title, tuple(variants))
  return found


# The ablations --ablations may name. Each variant's label also names its run folder.
ABLATIONS = declared_ablations()


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
  try:
    return overrides_lib.find_field(config, field)
  except overrides_lib.FieldError as e:
    raise errors.UserError(
        f"{what}: {e.where} of the {owner} config has no {e.part!r}; its fields: {e.choices}."
    ) from None


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


def json_roundtrip(config: ml_collections.ConfigDict) -> dict:
  """`config` as its config.json holds it."""
  return json.loads(config.to_json_best_effort())


def is_finished(run: Run) -> bool:
  """Its results.json exists and its config.json is this run's config."""
  if not os.path.exists(os.path.join(run.workdir, evaluate_lib.results_file())):
    return False
  path = os.path.join(run.workdir, "config.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    before = json.load(f)
  return not config_differences(before, json_roundtrip(run.config))


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
          default = not config_differences(json_roundtrip(base), json_roundtrip(config))
          path = (
              method_dir(m, d, s)
              if default
              else os.path.join(workdir, "ablations", d, a, folder, f"seed_{s}")
          )
          runs.append(Run(m, d, s, config, path, a, label, default))
  for run in runs:
    check_run(run)
  return runs
