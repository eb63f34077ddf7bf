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
modality, with mAP@100 (Yu et al.'s protocol). It does not change training: each run is
trained (or reused) in the same workdir as under the default and evaluated under the
protocol from the same best-by-validation checkpoint
(`evaluate.evaluate(..., protocol=...)`: the run's results_PROTOCOL.json, reused while
its checkpoint step is results.json's), so a table of one protocol reuses every run of
the other without retraining. The baselines, fitted and chosen on validation as before,
score the same queries against the same gallery with the same metric code
(`metrics.split_metrics` with the gallery's labels). Ablations follow the protocol too.

--ablations names ablations that the methods' config files declare (each file's
ABLATIONS, with where it comes from; the flag's help lists them and their variants).
Each variant sets a few fields of its method's config (after the --override ones) and is
a run per dataset and seed like the others, in
WORKDIR/ablations/DATASET/ABLATION/VARIANT/seed_S, reused and resumed the same way. The
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

This module holds the flags and `main`; the table is made by the package's modules
(`experiments/reproduce/__init__.py` lists them), `reproduce(...)` from Python.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from absl import flags

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import baselines as baselines_lib
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation as evaluate_lib
from crossmodal_jax import logs
from crossmodal_jax import protocols
from .. import cli
from . import pipeline
from . import plan as plan_lib
from . import runner
from . import table

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
    f"{','.join(str(k) for k in runner.CI_COMPONENTS)} with --preset=ci).",
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
    f"({','.join(f'{c:g}' for c in runner.CI_C_GRID)} with --preset=ci).",
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
        for name, a in plan_lib.ABLATIONS.items()
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


def main(argv):
  cli.unexpected_arguments(argv)
  logs.quiet_library_logs()
  results = pipeline.reproduce(
      workdir=_WORKDIR.value,
      methods=[m for m in _METHODS.value if m],
      datasets=[d for d in _DATASETS.value if d],
      seeds=_SEEDS.value,
      preset=_PRESET.value,
      overrides=_OVERRIDE.value,
      manual_dirs=plan_lib.parse_manual_dirs(_MANUAL_DIR.value, _DATASETS.value),
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
  print(table.markdown(results), end="")
  files = f"{evaluate_lib.results_file(protocol)}, {evaluate_lib.results_file(protocol, 'md')}"
  print(f"(results in {where}/{files}, {plots})")


if __name__ == "__main__":
  cli.run(main, lambda: pipeline.interrupted(_WORKDIR.value))
