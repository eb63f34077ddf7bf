"""The classical baselines (crossmodal_jax.baselines) and the table command
(experiments/reproduce.py) on small synthetic data."""

import dataclasses
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from crossmodal_jax import baselines
from crossmodal_jax import errors
from crossmodal_jax import metrics
from crossmodal_jax.data import synthetic
from experiments import reproduce

pytest.importorskip("sklearn", reason="the baselines need scikit-learn (setup.py)")

CHANCE = 0.1  # 10 balanced classes
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
  return synthetic.make_dataset(
      synthetic.SyntheticConfig(num_train=400, num_validation=100, num_test=150)
  )


def _map(scores, labels):
  return np.mean(
      [
          metrics.map_at_all(scores, labels, labels),
          metrics.map_at_all(scores.T, labels, labels),
      ]
  )


def test_cca_beats_chance_and_keeps_its_first_components(small):
  train, test = small.train, small.test
  model = baselines.fit_cca(train["image"], train["text"], 8)
  assert (
      _map(baselines.cca_scores(model, test["image"], test["text"]), test["label"]) > CHANCE + 0.1
  )
  # The first k directions do not depend on how many are fitted (the grid's shortcut).
  two = baselines.fit_cca(train["image"], train["text"], 2)
  np.testing.assert_allclose(
      np.abs(baselines.cca_project(model, test["image"], test["text"], 2)[0]),
      np.abs(two.transform(test["image"], test["text"])[0]),
      rtol=1e-6,
      atol=1e-8,
  )


def test_exact_cca_matches_the_textbook_eigenproblem():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(300, 2))
  x = np.c_[z, rng.normal(size=(300, 4))] @ rng.normal(size=(6, 6))
  y = np.c_[z + 0.5 * rng.normal(size=(300, 2)), rng.normal(size=(300, 3))]
  model = baselines.LinearCCA(3, reg=0.0).fit(x, y)
  # Slow reference: eigenvalues of Cxx^-1 Cxy Cyy^-1 Cyx are the squared correlations.
  xs = (x - x.mean(0)) / x.std(0, ddof=1)
  ys = (y - y.mean(0)) / y.std(0, ddof=1)
  c = np.cov(np.c_[xs, ys].T)
  cxx, cyy, cxy = c[:6, :6], c[6:, 6:], c[:6, 6:]
  eig = np.linalg.eigvals(np.linalg.solve(cxx, cxy) @ np.linalg.solve(cyy, cxy.T))
  expected = np.sqrt(np.sort(eig.real)[::-1][:3])
  np.testing.assert_allclose(model.correlations_, expected, rtol=1e-8)
  # The projections' correlations are the canonical ones, and uncorrelated across pairs.
  a, b = model.transform(x, y)
  cross = np.corrcoef(a.T, b.T)[:3, 3:]
  np.testing.assert_allclose(np.diag(cross), expected, rtol=1e-8)
  np.testing.assert_allclose(cross - np.diag(np.diag(cross)), 0, atol=1e-8)
  # scikit-learn's NIPALS pair correlates about as well, never better than the maximum.
  sk = baselines.fit_cca(x, y, 1, solver="sklearn")
  a1, b1 = sk.transform(x, y)
  assert 0.9 * expected[0] < abs(np.corrcoef(a1[:, 0], b1[:, 0])[0, 1]) <= expected[0] + 1e-9


def test_semantic_matching_posteriors_and_selection(small):
  train, val = small.train, small.validation
  (probs,) = baselines.class_posteriors(train["image"], train["label"], [val["image"]], 1.0)
  assert probs.shape == (len(val), small.num_classes)
  assert (probs >= 0).all() and np.allclose(probs.sum(1), 1.0)
  # Multi-hot labels: one binary regression per class, each a probability.
  multi = np.eye(small.num_classes)[train["label"]]
  multi[np.arange(len(multi)), (train["label"] + 1) % small.num_classes] = 1
  (mp,) = baselines.class_posteriors(train["text"], multi, [val["text"]], 1.0)
  assert mp.shape == probs.shape and ((mp >= 0) & (mp <= 1)).all()
  result = baselines.run("sm", small, c_grid=(0.1, 10.0))
  assert result["map_all"]["avg"] > CHANCE + 0.3
  assert set(result["chosen"]) == {"c_image", "c_text"}
  assert result["validation_map"] > CHANCE
  assert result["pr_curve"]["i2t"]["precision"] and result["num_params"] > 0
  with pytest.raises(errors.UserError, match="Unknown baseline"):
    baselines.run("pls", small)


TINY = (
    "train.progress_bar=False",
    "train.num_epochs=2",
    "data.synthetic_num_train=400",
)
# The table the tests build, then rebuild to check reuse.
TABLE = dict(
    methods=["drsl", "hcmsl"],
    datasets=["synthetic"],
    seeds=2,
    preset="ci",
    overrides=TINY,
    baselines=["cca", "sm"],
    cca_components=(2, 8),
    sm_c=(1.0,),
)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("table"))
  out = io.StringIO()
  results = reproduce.reproduce(workdir, **TABLE, out=out)
  return workdir, results, out.getvalue()


def test_table_files_and_statistics(table):
  workdir, results, log = table
  assert "run 1/4" in log and "run 4/4" in log and "left" in log
  with open(os.path.join(workdir, "results.json")) as f:
    stored = json.load(f)
  rows = {r["name"]: r for r in stored["datasets"]["synthetic"]["rows"]}
  assert list(rows) == ["cca", "sm", "drsl", "hcmsl"]
  for method in ("drsl", "hcmsl"):
    runs = []
    for seed in (0, 1):
      with open(
          os.path.join(workdir, "runs", "synthetic", method, f"seed_{seed}", "results.json")
      ) as f:
        runs.append(json.load(f)["map_all"])
    for d in ("i2t", "t2i", "avg"):
      values = [r[d] for r in runs]
      assert rows[method]["map_all"][d]["mean"] == pytest.approx(np.mean(values))
      assert rows[method]["map_all"][d]["std"] == pytest.approx(np.std(values, ddof=1))
    assert rows[method]["num_params"] > 0 and rows[method]["train_seconds"]["mean"] > 0
    assert rows[method]["seeds"] == [0, 1] and rows[method]["epochs"] == 2
  assert rows["cca"]["kind"] == "baseline" and rows["cca"]["map_all"]["avg"]["std"] is None
  assert rows["cca"]["map_all"]["avg"]["mean"] > CHANCE
  md = open(os.path.join(workdir, "results.md")).read()
  drsl = rows["drsl"]["map_all"]["avg"]
  assert f"**{drsl['mean']:.3f} ± {drsl['std']:.3f}**" in md
  assert "| CCA |" in md and "| HCMSL |" in md and "pr_synthetic.png" in md
  with open(os.path.join(workdir, "pr_synthetic.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert results["datasets"]["synthetic"]["num_test"] == 600


def no_training(run, cache):
  raise AssertionError(f"retrained {run.workdir}")


def test_finished_runs_are_reused(table):
  workdir = table[0]
  path = os.path.join(workdir, "runs", "synthetic", "drsl", "seed_0", "metrics.jsonl")
  before = os.path.getmtime(path)
  out = io.StringIO()
  again = reproduce.reproduce(workdir, **TABLE, out=out, execute_fn=no_training)
  assert os.path.getmtime(path) == before
  assert out.getvalue().count("reused") == 6  # 4 runs and 2 baselines
  rows = again["datasets"]["synthetic"]["rows"]
  assert rows[2]["map_all"] == table[1]["datasets"]["synthetic"]["rows"][2]["map_all"]
  # Another config for a finished run's workdir is one error before anything runs.
  with pytest.raises(errors.UserError, match="different run"):
    reproduce.reproduce(
        workdir,
        methods=["drsl"],
        datasets=["synthetic"],
        seeds=1,
        preset="ci",
        overrides=TINY + ("drsl:model.dropout=0.25",),
        baselines=[],
        out=io.StringIO(),
        execute_fn=no_training,
    )


def test_bad_inputs_are_one_error(tmp_path):
  def call(**kw):
    args = dict(methods=["drsl"], datasets=["synthetic"], seeds=1, baselines=[])
    args.update(kw)
    reproduce.reproduce(str(tmp_path), out=io.StringIO(), **args)

  with pytest.raises(errors.UserError, match="Unknown method"):
    call(methods=["nope"])
  with pytest.raises(errors.UserError, match="manual_dir=wikipedia=DIR"):
    call(datasets=["wikipedia"])
  with pytest.raises(errors.UserError, match="has no 'nope'"):
    call(overrides=["train.nope=1"])
  with pytest.raises(errors.UserError, match="not among --methods"):
    call(overrides=["mcsm:train.num_epochs=1"])
  with pytest.raises(errors.UserError, match="Unknown baseline"):
    call(baselines=["pls"])
  with pytest.raises(errors.UserError, match="Unknown ablation 'nope'; choose from"):
    call(ablations=["drsl_fusion", "nope"])
  assert not os.listdir(tmp_path)
  assert reproduce.parse_manual_dirs(["wikipedia=/a", "/b"], ["features", "wikipedia"]) == {
      "wikipedia": "/a",
      "features": "/b",
  }


def test_progress_estimates_the_time_left():
  config = None
  runs = [reproduce.Run(m, "synthetic", s, config, "") for m in ("a", "b") for s in (0, 1)]
  progress = reproduce.Progress(runs, io.StringIO())
  assert "known after the first" in progress.line(1, runs[0], "training", runs)
  progress.record(runs[0], 10.0)
  assert progress.time_left(runs[1:]) == pytest.approx(30.0)
  progress.record(runs[2], 30.0)
  assert progress.time_left(runs[1:]) == pytest.approx(10.0 + 30.0 + 30.0)
  assert "run 2/4" in progress.line(2, runs[1], "training", runs[1:])


def test_ablation_table_sets_its_fields_in_distinct_runs(tmp_path):
  workdir = str(tmp_path)
  runs = reproduce.plan([], ["synthetic"], 1, workdir, "ci", ablations=list(reproduce.ABLATIONS))
  assert {r.ablation for r in runs} == set(reproduce.ABLATIONS)
  for name, ablation in reproduce.ABLATIONS.items():
    mine = [r for r in runs if r.ablation == name]
    assert [r.variant for r in mine] == [label for label, _ in ablation.variants]
    for run, (_, fields) in zip(mine, ablation.variants):
      assert run.method == ablation.method and run.config.preset == "ci"
      for field, value in fields.items():
        section, key = field.split(".")
        assert run.config[section][key] == value
    # Each ablation holds its method's own config once: that run is the method's.
    (default,) = [r for r in mine if r.default]
    assert default.workdir == os.path.join(workdir, "runs", "synthetic", ablation.method, "seed_0")
  variants = [r.workdir for r in runs if not r.default]
  assert len(set(variants)) == len(variants) == 4 + 4 + 5 - 3  # 13 variants, 3 defaults
  assert all(w.startswith(os.path.join(workdir, "ablations", "synthetic")) for w in variants)
  layers = [r.config.model.attention_layers for r in runs if r.ablation == "scanet_layers"]
  assert layers == [0, 1, 2, 3]
  fusions = [r.config.model.fusion for r in runs if r.ablation == "drsl_fusion"]
  assert fusions == ["concat", "multiply", "add", "subtract"]
  loss = [(r.config.model.margin, r.config.model.lam) for r in runs if r.ablation == "scanet_loss"]
  assert loss == [(0.5, 0.35), (0.6, 0.35), (0.7, 0.35), (0.6, 0.3), (0.6, 0.4)]
  # Variants set their fields after --override; the default follows the overridden config.
  runs = reproduce.plan(
      [], ["synthetic"], 1, workdir, "ci", ["scanet:model.margin=0.7"], ablations=["scanet_loss"]
  )
  assert [r.variant for r in runs if r.default] == ["m=0.7 lambda=0.35"]
  assert [r.config.model.margin for r in runs][:2] == [0.5, 0.6]
  assert not os.listdir(tmp_path)


def test_ablation_runs_tables_and_reuse(table, tmp_path, monkeypatch):
  # drsl_fusion cut to its default (concat) and one other variant; the default is the
  # table's finished drsl run, copied here.
  full = reproduce.ABLATIONS["drsl_fusion"]
  monkeypatch.setitem(
      reproduce.ABLATIONS, "drsl_fusion", dataclasses.replace(full, variants=full.variants[:2])
  )
  workdir = str(tmp_path)
  concat = os.path.join(workdir, "runs", "synthetic", "drsl", "seed_0")
  multiply = os.path.join(workdir, "ablations", "synthetic", "drsl_fusion", "multiply", "seed_0")
  shutil.copytree(os.path.join(table[0], "runs", "synthetic", "drsl", "seed_0"), concat)
  args = dict(
      methods=["drsl"],
      datasets=["synthetic"],
      seeds=1,
      preset="ci",
      overrides=TINY,
      baselines=[],
      ablations=["drsl_fusion"],
  )
  trained = []

  def counting(run, cache):
    trained.append(run.workdir)
    return reproduce.execute(run, cache)

  out = io.StringIO()
  results = reproduce.reproduce(workdir, **args, out=out, execute_fn=counting)
  log = out.getvalue()
  assert trained == [multiply]  # the default variant is the method's finished run
  assert "run 2/2: drsl [drsl_fusion: multiply] on synthetic, seed 0: training" in log
  for path, fusion in ((concat, "concat"), (multiply, "multiply")):
    with open(os.path.join(path, "config.json")) as f:
      assert json.load(f)["model"]["fusion"] == fusion
  with open(os.path.join(workdir, "results.json")) as f:
    stored = json.load(f)
  ablation = stored["ablations"]["drsl_fusion"]
  assert ablation["method"] == "drsl" and ablation["fields"] == ["model.fusion"]
  rows = ablation["datasets"]["synthetic"]["rows"]
  assert [(r["name"], r["default"], r["settings"]) for r in rows] == [
      ("concat", True, {"model.fusion": "concat"}),
      ("multiply", False, {"model.fusion": "multiply"}),
  ]
  assert rows[0]["map_all"] == stored["datasets"]["synthetic"]["rows"][0]["map_all"]
  with open(os.path.join(multiply, "results.json")) as f:
    assert rows[1]["map_all"]["avg"]["mean"] == pytest.approx(json.load(f)["map_all"]["avg"])
  assert rows[1]["num_params"] > 0 and rows[1]["wall_seconds"]["mean"] > 0
  assert rows[1]["seeds"] == [0] and rows[1]["epochs"] == 2
  with open(os.path.join(workdir, "results.md")) as f:
    md = f.read()
  section = md[md.index("## Ablation `drsl_fusion`") :]
  lines = [l for l in section.splitlines() if l.startswith("| ") and "| i2t |" not in l]
  assert [l.split(" | ")[0] for l in lines] == ["| concat (default)", "| multiply"]
  assert f"**{rows[1]['map_all']['avg']['mean']:.3f}**" in lines[1]
  assert results["ablations"]["drsl_fusion"]["datasets"]["synthetic"]["plot"] == (
      "pr_drsl_fusion_synthetic.png"
  )
  with open(os.path.join(workdir, "pr_drsl_fusion_synthetic.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # Again: both runs reused, nothing trained, the same table.
  out = io.StringIO()
  again = reproduce.reproduce(workdir, **args, out=out, execute_fn=no_training)
  assert out.getvalue().count("finished before, reused") == 2
  again_rows = again["ablations"]["drsl_fusion"]["datasets"]["synthetic"]["rows"]
  assert [r["map_all"] for r in again_rows] == [r["map_all"] for r in rows]
  # A variant whose fields changed under the same name is one error before anything runs.
  changed = (full.variants[0], ("multiply", {"model.fusion": "add"}))
  monkeypatch.setitem(
      reproduce.ABLATIONS, "drsl_fusion", dataclasses.replace(full, variants=changed)
  )
  with pytest.raises(errors.UserError, match="different run.*model.fusion: 'multiply' -> 'add'"):
    reproduce.reproduce(workdir, **args, out=io.StringIO(), execute_fn=no_training)


def test_unknown_ablation_is_one_line(tmp_path):
  workdir = tmp_path / "wd"
  proc = subprocess.run(
      [
          sys.executable, "-m", "experiments.reproduce", f"--workdir={workdir}",
          "--methods=drsl", "--datasets=synthetic", "--ablations=drsl_fusion,nope",
      ],
      cwd=REPO,
      env=dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "error: Unknown ablation 'nope'; choose from ('scanet_layers', 'drsl_fusion', "
      "'scanet_loss')."
  ]
  assert not workdir.exists()
