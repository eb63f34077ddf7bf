"""The classical baselines (crossmodal_jax.baselines) and the table command
(experiments/reproduce/) on small synthetic data."""

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

import reference_metrics
from crossmodal_jax import baselines
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation
from crossmodal_jax import metrics
from crossmodal_jax import protocols
from configs import default as default_configs
from crossmodal_jax.data.sources import synthetic
from experiments import reproduce
from experiments.reproduce import __main__ as command
from experiments.reproduce import amend
from experiments.reproduce import plan
from experiments.reproduce import runner
from experiments.reproduce import table as table_lib

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
  # yu2018's gallery (the training items): the same choice on validation, mAP@100 of the
  # test queries against the 400 training items of the other modality.
  yu = baselines.run("sm", small, c_grid=(0.1, 10.0), gallery_split="train", map_r=100)
  assert yu["chosen"] == result["chosen"] and yu["validation_map"] == result["validation_map"]
  assert (yu["num_queries"], yu["gallery_split"], yu["num_gallery"]) == (150, "train", 400)
  assert yu["map_at_100"]["avg"] > CHANCE + 0.3 and "map_at_50" not in yu
  assert len(yu["pr_curve"]["t2i"]["precision"]) == len(result["pr_curve"]["t2i"]["precision"])
  with pytest.raises(errors.UserError, match="Unknown gallery split 'dev'"):
    baselines.run("sm", small, gallery_split="dev")


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
  # The table names no folder of this machine: runs are relative to its workdir.
  assert [r["workdir"] for r in rows["drsl"]["runs"]] == [
      os.path.join("runs", "synthetic", "drsl", f"seed_{s}") for s in (0, 1)
  ]
  assert workdir not in json.dumps(stored)


def test_recorded_command_has_placeholders_for_folders():
  recorded = command._recorded_args([
      "--workdir=/tmp/table", "--methods=drsl", "--manual_dir", "wikipedia=/data/wiki",
      "--override=data.data_dir=/tmp/tfds", "--override=scanet:model.dim=3",
      "--amend=/srv/tables/t", "--amend_note", "why", "--seeds=5",
  ])  # fmt: skip
  assert recorded == [
      "--workdir=<workdir>", "--methods=drsl", "--manual_dir=wikipedia=<wikipedia_dir>",
      "--override=data.data_dir=<data_dir>", "--override=scanet:model.dim=3",
      "--amend=<table_dir>", "--seeds=5",
  ]  # fmt: skip
  assert command._recorded_args(["--amend=results/t"]) == ["--amend=results/t"]


def no_training(run, cache):
  raise AssertionError(f"retrained {run.workdir}")


def test_a_field_newer_than_a_finished_run_counts_at_its_common_default(tmp_path):
  config = default_configs.get_config("drsl,wikipedia")
  assert config.data.image_power == 1.0
  now = json.loads(config.to_json_best_effort())
  old = json.loads(config.to_json_best_effort())
  del old["data"]["image_power"], old["model"]["dropout"]  # fields an older version lacked
  # The old run behaved as the common default (1.0) and the method file's base value of a
  # model field (drsl.model_config(): 0.0, which the Wikipedia recipe sets to 0.3).
  assert plan.config_differences(old, now) == ["model.dropout"]
  config.model.dropout = 0.0
  assert plan.config_differences(old, json.loads(config.to_json_best_effort())) == []
  config.data.image_power = 0.5  # the old run behaved as 1.0: another result
  config.model.dropout = 0.7
  assert plan.config_differences(old, json.loads(config.to_json_best_effort())) == [
      "data.image_power",
      "model.dropout",
  ]
  # Its checkpoints are not resumed as the new recipe's either (their config.json lacks
  # the field; the method file's value is not what they were trained with).
  workdir = tmp_path / "old_run"
  (workdir / "checkpoints" / "latest" / "12").mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps(old))
  config.model.dropout = 0.0
  run = plan.Run("drsl", "wikipedia", 0, config, str(workdir))
  with pytest.raises(errors.UserError, match=r"data.image_power: 1.0 -> 0.5"):
    plan.check_run(run)
  config.data.image_power = 1.0
  plan.check_run(run)


def test_a_stored_baseline_without_a_newer_data_field_is_reused_at_its_default():
  data_config = default_configs.data_config("wikipedia")
  settings = lambda: json.loads(
      json.dumps(runner._baseline_settings(data_config, [4], [0.1], "exact"), default=str)
  )
  stored = settings()
  del stored["data"]["image_power"]  # stored by a version without the field
  assert runner._same_settings(stored, settings())
  data_config.image_power = 0.5
  assert not runner._same_settings(stored, settings())
  assert not runner._same_settings(None, settings())


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


def test_amend_replaces_one_row_of_a_table_and_records_why(table, tmp_path):
  # The table, copied to its own folder, with a free-text amendment of an older version.
  folder = tmp_path / "table"
  folder.mkdir()
  for name in ("results.json", "results.md", "pr_synthetic.png"):
    shutil.copy(os.path.join(table[0], name), folder)
  stored = json.loads((folder / "results.json").read_text())
  stored["amended"] = ["2026-01-01: an older amendment, in words."]
  (folder / "results.json").write_text(json.dumps(stored))
  before = {r["name"]: r for r in stored["datasets"]["synthetic"]["rows"]}
  args = dict(
      methods=["drsl"],
      datasets=["synthetic"],
      seeds=2,
      preset="ci",
      overrides=TINY + ("drsl:model.dropout=0.25",),
      baselines=[],
  )
  rerun = str(tmp_path / "rerun")
  # A table of other seeds, a missing table and a note without a table are one error
  # each, before anything runs.
  other_splits = tmp_path / "other_splits"
  other_splits.mkdir()
  resized = json.loads(json.dumps(stored))
  resized["datasets"]["synthetic"]["num_test"] = 999
  (other_splits / "results.json").write_text(json.dumps(resized))
  for kw, match in (
      (dict(seeds=1), r"has seeds \[0, 1\], this command \[0\]"),
      (dict(amend=str(tmp_path / "none")), "no table at"),
      (dict(amend=None, amend_note="why"), "give --amend=DIR"),
      (dict(amend=str(other_splits)), "num_test 999 in the table and 600 in this command's"),
  ):
    call = {**args, "amend": str(folder), **kw}
    with pytest.raises(errors.UserError, match=match):
      reproduce.reproduce(rerun, **call, out=io.StringIO(), execute_fn=no_training)
  assert not os.path.exists(rerun)
  assert json.loads((other_splits / "results.json").read_text()) == resized
  note = "The default's dropout became 0.25."
  results = reproduce.reproduce(
      rerun, **args, amend=str(folder), amend_note=note, out=io.StringIO(), command="CMD"
  )
  assert not os.path.exists(os.path.join(rerun, "results.json"))  # written to the table
  again = json.loads((folder / "results.json").read_text())
  assert again == json.loads(json.dumps(results))
  rows = {r["name"]: r for r in again["datasets"]["synthetic"]["rows"]}
  assert list(rows) == ["cca", "sm", "drsl", "hcmsl"]  # in place, the others kept
  for name in ("cca", "sm", "hcmsl"):
    assert rows[name] == before[name]
  new = []
  for seed in (0, 1):
    run = os.path.join(rerun, "runs", "synthetic", "drsl", f"seed_{seed}")
    assert json.loads(pathlib.Path(run, "config.json").read_text())["model"]["dropout"] == 0.25
    new.append(json.loads(pathlib.Path(run, "results.json").read_text())["map_all"]["avg"])
  assert rows["drsl"]["map_all"]["avg"]["mean"] == pytest.approx(np.mean(new))
  assert rows["drsl"]["map_all"] != before["drsl"]["map_all"]
  assert (again["command"], again["date"]) == (stored["command"], stored["date"])
  entry = again["amended"][-1]
  assert (entry["command"], entry["rows"], entry["note"]) == ("CMD", {"synthetic": ["drsl"]}, note)
  assert entry["machine"] == again["machine"]["summary"]  # the same machine here
  md = (folder / "results.md").read_text()
  assert "Amended 2026-01-01: an older amendment, in words." in md
  drsl_line = next(l for l in md.splitlines() if l.startswith("| DRSL |"))
  assert f"**{rows['drsl']['map_all']['avg']['mean']:.3f}" in drsl_line
  # The amendment sits under the synthetic table (after its plot link), the row by its
  # label.
  synthetic = md[md.index("## synthetic") :]
  said = f"Amended {entry['date']}: DRSL re-run by `` CMD `` on {entry['machine']}. {note}"
  assert synthetic.index("pr_synthetic.png") < synthetic.index(said)
  assert (folder / "pr_synthetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # An amendment whose changed row came from finished runs says so, not "re-run".
  found = json.loads(json.dumps(again))
  row = next(r for r in found["datasets"]["synthetic"]["rows"] if r["name"] == "drsl")
  row["map_all"]["avg"]["mean"] += 0.01
  for run in row["runs"]:
    run["reused"] = True
  third = amend.amend_table(again, found, "CMD2")["amended"][-1]
  assert third["reused"] == {"synthetic": {"drsl": [0, 1]}}
  text = " ".join(table_lib._amendments({**again, "amended": [third]}, "synthetic"))
  assert "DRSL replaced by `` CMD2 ``" in text and "re-run" not in text, text
  assert "; it found DRSL seeds 0, 1 finished and did not train them." in text, text
  # The same command again reuses the runs: no row changed, so nothing is recorded.
  out = io.StringIO()
  reproduce.reproduce(
      rerun, **args, amend=str(folder), amend_note=note, out=out, execute_fn=no_training
  )
  assert "every row equals" in out.getvalue() and "nothing recorded" in out.getvalue()
  assert json.loads((folder / "results.json").read_text())["amended"] == again["amended"]
  # A finished run it did not train there (trained elsewhere, copied in) is refused.
  seed_1 = pathlib.Path(rerun, "runs", "synthetic", "drsl", "seed_1", runner.RUN_INFO)
  info = json.loads(seed_1.read_text())
  seed_1.write_text(json.dumps({k: v for k, v in info.items() if k != "trained_by"}))
  with pytest.raises(errors.UserError, match=r"seed_1 holds a finished run that .* did not"):
    reproduce.reproduce(
        rerun, **args, amend=str(folder), amend_note=note, out=io.StringIO(), execute_fn=no_training
    )
  assert json.loads((folder / "results.json").read_text())["amended"] == again["amended"]
  # The recorded command line leaves the note out (the amendment keeps it).
  assert command._recorded_args(["--a=1", "--amend_note=x `y`", "--amend_note", "z", "--b"]) == [
      "--a=1",
      "--b",
  ]


def _mtimes(paths):
  return {p: (os.path.getmtime(p), pathlib.Path(p).read_bytes()) for p in paths}


def test_yu2018_protocol_evaluates_the_trained_runs(table, tmp_path):
  workdir = table[0]
  runs = {
      (m, s): os.path.join(workdir, "runs", "synthetic", m, f"seed_{s}")
      for m in ("drsl", "hcmsl")
      for s in (0, 1)
  }
  names = ("metrics.jsonl", "config.json", "results.json", runner.RUN_INFO)
  trained = _mtimes([os.path.join(d, n) for d in runs.values() for n in names])
  default_table = _mtimes(
      [os.path.join(workdir, n) for n in ("results.json", "results.md", "pr_synthetic.png")]
  )
  out = io.StringIO()
  results = reproduce.reproduce(
      workdir, **TABLE, out=out, execute_fn=no_training, protocol="yu2018"
  )
  log = out.getvalue()
  assert log.count("finished before, reused; evaluating under yu2018") == 4
  assert log.count(": fitting") == 2  # the baselines, scored against the training gallery
  # Nothing retrained, the default table as it was.
  assert _mtimes(trained) == trained and _mtimes(default_table) == default_table
  with open(os.path.join(workdir, "results_yu2018.json")) as f:
    stored = json.load(f)
  assert stored["protocol"] == {
      "name": "yu2018",
      "query_split": "test",
      "gallery_split": "train",
      "metric": "map_at_100",
      "metric_name": "mAP@100",
      "description": protocols.PROTOCOLS["yu2018"].description,
  }
  ds = stored["datasets"]["synthetic"]
  assert (ds["num_test"], ds["num_gallery"], ds["metric"]) == (600, 400, "map_at_100")
  rows = {r["name"]: r for r in ds["rows"]}
  assert list(rows) == ["cca", "sm", "drsl", "hcmsl"]
  default_rows = {r["name"]: r for r in table[1]["datasets"]["synthetic"]["rows"]}
  for name, row in rows.items():
    assert row["metric"] == "map_at_100" and "map_all" not in row
    assert row["map_at_100"]["avg"]["mean"] != default_rows[name]["map_all"]["avg"]["mean"]
  # The baselines keep their choice on validation; CCA's figure is its test projections
  # ranked against its training projections.
  assert rows["cca"]["chosen"] == default_rows["cca"]["chosen"]
  data = data_lib.load_dataset(
      plan.baseline_data_config("synthetic", "ci", plan.parse_overrides(TINY), {})
  )
  k = rows["cca"]["chosen"]["components"]
  model = baselines.fit_cca(data.train["image"], data.train["text"], k)
  test_i, test_t = baselines.cca_project(model, data.test["image"], data.test["text"])
  train_i, train_t = baselines.cca_project(model, data.train["image"], data.train["text"])
  for d, (query, gallery) in (("i2t", (test_i, train_t)), ("t2i", (test_t, train_i))):
    scores = baselines.cosine(query, gallery)
    expected = reference_metrics.map_at_r(scores, data.test["label"], data.train["label"], 100)
    assert rows["cca"]["map_at_100"][d]["mean"] == pytest.approx(expected, abs=1e-6)
  with open(os.path.join(workdir, "results_yu2018.md")) as f:
    md = f.read()
  assert md.startswith("# Comparison table (mAP@100, test queries vs train gallery)\n")
  assert "Protocol `yu2018`: test queries against the training gallery" in md
  assert "## synthetic (600 test pairs against a gallery of 400 train pairs)" in md
  assert "| method | i2t mAP@100 | t2i mAP@100 | avg mAP@100 |" in md and "mAP@ALL" not in md
  drsl = rows["drsl"]["map_at_100"]["avg"]
  assert "| DRSL | " in md and f"**{drsl['mean']:.3f} ± {drsl['std']:.3f}**" in md
  assert "| CCA |" in md and "pr_synthetic_yu2018.png" in md
  with open(os.path.join(workdir, "pr_synthetic_yu2018.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert results["datasets"]["synthetic"]["plot"] == "pr_synthetic_yu2018.png"
  # Again: the runs' yu2018 results and the baselines are reused, nothing evaluated.
  evaluated = _mtimes([os.path.join(d, "results_yu2018.json") for d in runs.values()])
  out = io.StringIO()
  again = reproduce.reproduce(workdir, **TABLE, out=out, execute_fn=no_training, protocol="yu2018")
  assert out.getvalue().count("finished before, reused; yu2018 results reused") == 4
  assert out.getvalue().count(": reused") == 2 and _mtimes(evaluated) == evaluated
  figures = [r["map_at_100"] for r in results["datasets"]["synthetic"]["rows"]]
  assert [r["map_at_100"] for r in again["datasets"]["synthetic"]["rows"]] == figures
  # Results of another checkpoint than results.json's are evaluated again.
  stale = os.path.join(runs["drsl", 1], "results_yu2018.json")
  with open(stale) as f:
    result = json.load(f)
  with open(stale, "w") as f:
    json.dump({**result, "checkpoint_step": -1, "map_at_100": {"i2t": 0, "t2i": 0, "avg": 0}}, f)
  out = io.StringIO()
  again = reproduce.reproduce(workdir, **TABLE, out=out, execute_fn=no_training, protocol="yu2018")
  assert out.getvalue().count("evaluating under yu2018") == 1
  assert again["datasets"]["synthetic"]["rows"][2]["map_at_100"] == rows["drsl"]["map_at_100"]
  # A method's figure is the mean of evaluation.evaluate(workdir, protocol="yu2018").
  direct = [
      evaluation.evaluate(runs["drsl", s], protocol="yu2018", plots=False)["map_at_100"]
      for s in (0, 1)
  ]
  for d in ("i2t", "t2i", "avg"):
    assert rows["drsl"]["map_at_100"][d]["mean"] == pytest.approx(
        np.mean([x[d] for x in direct]), abs=1e-6
    )
  # Rows without PR curves (a streamed ranking's) draw no PNG and link none.
  for row in stored["datasets"]["synthetic"]["rows"]:
    row["pr_curve"] = None
  bare = table_lib.write_outputs(stored, str(tmp_path))
  assert "plot" not in bare["datasets"]["synthetic"]
  assert sorted(os.listdir(tmp_path)) == ["results_yu2018.json", "results_yu2018.md"]
  assert "Precision-recall" not in (tmp_path / "results_yu2018.md").read_text()


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
  with pytest.raises(errors.UserError, match="Unknown protocol 'nope'; choose one of"):
    call(protocol="nope")
  assert not os.listdir(tmp_path)
  help_text = command.flags.FLAGS["protocol"].help
  for name, spec in protocols.PROTOCOLS.items():
    assert f"{name}: {spec.description}" in help_text
  assert plan.parse_manual_dirs(["wikipedia=/a", "/b"], ["features", "wikipedia"]) == {
      "wikipedia": "/a",
      "features": "/b",
  }


def test_progress_estimates_the_time_left():
  config = None
  runs = [plan.Run(m, "synthetic", s, config, "") for m in ("a", "b") for s in (0, 1)]
  progress = runner.Progress(runs, io.StringIO())
  assert "known after the first" in progress.line(1, runs[0], "training", runs)
  progress.record(runs[0], 10.0)
  assert progress.time_left(runs[1:]) == pytest.approx(30.0)
  progress.record(runs[2], 30.0)
  assert progress.time_left(runs[1:]) == pytest.approx(10.0 + 30.0 + 30.0)
  assert "run 2/4" in progress.line(2, runs[1], "training", runs[1:])


def test_labels_and_ablations_are_the_config_files():
  # Each method's label is its config file's LABEL, each baseline's from baselines.LABELS.
  names = ("drsl", "drsl_code", "scanet", "mcsm", "hcmsl", "nope")
  assert [table_lib.method_label(m) for m in names] == [
      "DRSL", "DRSL (authors' code)", "SCANet", "MCSM", "HCMSL", "nope",
  ]  # fmt: skip
  assert baselines.LABELS == {"cca": "CCA", "sm": "SM", "scm": "SCM"}
  # The ablations are those the config files declare, in the files' order, each of the
  # method whose file declares it.
  assert [(name, a.method) for name, a in plan.ABLATIONS.items()] == [
      ("drsl_fusion", "drsl"), ("scanet_layers", "scanet"), ("scanet_loss", "scanet"),
  ]  # fmt: skip
  assert plan.ABLATIONS["scanet_layers"].title == (
      "SCANet co-attention layers (SCANet paper, table 3)"
  )


def test_ablation_table_sets_its_fields_in_distinct_runs(tmp_path):
  workdir = str(tmp_path)
  runs = plan.plan([], ["synthetic"], 1, workdir, "ci", ablations=list(plan.ABLATIONS))
  assert {r.ablation for r in runs} == set(plan.ABLATIONS)
  for name, ablation in plan.ABLATIONS.items():
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
  runs = plan.plan(
      [], ["synthetic"], 1, workdir, "ci", ["scanet:model.margin=0.7"], ablations=["scanet_loss"]
  )
  assert [r.variant for r in runs if r.default] == ["m=0.7 lambda=0.35"]
  assert [r.config.model.margin for r in runs][:2] == [0.5, 0.6]
  assert not os.listdir(tmp_path)


def test_ablation_runs_tables_and_reuse(table, tmp_path, monkeypatch):
  # drsl_fusion cut to its default (concat) and one other variant; the default is the
  # table's finished drsl run, copied here.
  full = plan.ABLATIONS["drsl_fusion"]
  monkeypatch.setitem(
      plan.ABLATIONS, "drsl_fusion", dataclasses.replace(full, variants=full.variants[:2])
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
    return runner.execute(run, cache)

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
  # The ablation under yu2018: the same runs, evaluated, in results_yu2018.*.
  out = io.StringIO()
  yu = reproduce.reproduce(workdir, **args, out=out, execute_fn=no_training, protocol="yu2018")
  assert out.getvalue().count("finished before, reused; ") == 2
  yu_rows = yu["ablations"]["drsl_fusion"]["datasets"]["synthetic"]["rows"]
  assert [(r["label"], r["metric"]) for r in yu_rows] == [
      ("concat (default)", "map_at_100"),
      ("multiply", "map_at_100"),
  ]
  assert yu_rows[0]["map_at_100"] == yu["datasets"]["synthetic"]["rows"][0]["map_at_100"]
  with open(os.path.join(multiply, "results_yu2018.json")) as f:
    assert yu_rows[1]["map_at_100"]["avg"]["mean"] == json.load(f)["map_at_100"]["avg"]
  with open(os.path.join(workdir, "results_yu2018.md")) as f:
    section = f.read().split("## Ablation `drsl_fusion`")[1]
  assert "| variant | i2t mAP@100 | t2i mAP@100 | avg mAP@100 |" in section
  assert "pr_drsl_fusion_synthetic_yu2018.png" in section
  assert os.path.exists(os.path.join(workdir, "pr_drsl_fusion_synthetic_yu2018.png"))
  # A variant whose fields changed under the same name is one error before anything runs.
  changed = (full.variants[0], ("multiply", {"model.fusion": "add"}))
  monkeypatch.setitem(plan.ABLATIONS, "drsl_fusion", dataclasses.replace(full, variants=changed))
  with pytest.raises(errors.UserError, match="different run.*model.fusion: 'multiply' -> 'add'"):
    reproduce.reproduce(workdir, **args, out=io.StringIO(), execute_fn=no_training)
  # Trained elsewhere, the changed variant amends this table's ablation in place.
  reproduce.reproduce(
      str(tmp_path / "rerun"), **args, amend=workdir, amend_note="why", out=io.StringIO()
  )
  with open(os.path.join(workdir, "results.json")) as f:
    amended = json.load(f)
  rows = amended["ablations"]["drsl_fusion"]["datasets"]["synthetic"]["rows"]
  assert [(r["name"], r["settings"]) for r in rows] == [
      ("concat", {"model.fusion": "concat"}),
      ("multiply", {"model.fusion": "add"}),
  ]
  entry = amended["amended"][-1]
  assert "multiply" in entry["ablations"]["drsl_fusion"]["synthetic"]
  with open(os.path.join(workdir, "results.md")) as f:
    section = f.read().split("## Ablation `drsl_fusion`")[1]
  assert f"Amended {entry['date']}: " in section and section.rstrip().endswith("why")


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
      "error: Unknown ablation 'nope'; choose from ('drsl_fusion', 'scanet_layers', "
      "'scanet_loss')."
  ]
  assert not workdir.exists()


def test_pair_protocol_reports_recall_and_median_rank(table):
  """--protocol=pair evaluates the trained runs (and fits the baselines) with each item
  relevant only to its own pair: the table gets Recall@K and median-rank columns, each a
  mean over the runs' results_pair.json."""
  workdir = table[0]
  out = io.StringIO()
  results = reproduce.reproduce(workdir, **TABLE, out=out, execute_fn=no_training, protocol="pair")
  rows = {r["name"]: r for r in results["datasets"]["synthetic"]["rows"]}
  recalls = []
  for seed in (0, 1):
    with open(
        os.path.join(workdir, "runs", "synthetic", "drsl", f"seed_{seed}", "results_pair.json")
    ) as f:
      stored = json.load(f)
    assert stored["relevance"] == "pair" and stored["protocol"]["name"] == "pair"
    recalls.append(stored["recall_at_k"]["avg"]["1"])
  assert rows["drsl"]["recall_at_k"]["avg"]["1"]["mean"] == pytest.approx(np.mean(recalls))
  assert rows["sm"]["recall_at_k"]["avg"]["1"]["std"] is None  # a baseline: one fit
  with open(os.path.join(workdir, "results_pair.md")) as f:
    md = f.read()
  assert "| R@1 (avg) | R@5 (avg) | R@10 (avg) | median rank (avg) |" in md
