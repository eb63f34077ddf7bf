"""Training: data-parallel equivalence, resume after a kill, end to end runs."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.io

from conftest import REPO, WIKI_DIR, age_drsl_config_json

ENV = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
SMALL = [
    "--config.model.image_layers=(64,32)",
    "--config.model.text_layers=(64,32)",
    "--config.model.relation_layers=(64,)",
    "--config.train.progress_bar=False",
]


def _run(args, cwd=REPO, env=ENV, timeout=600):
  proc = subprocess.run(
      [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
  return proc


# The script runs in a fresh process: XLA_FLAGS must be set before jax starts.
_PARALLEL_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, "tests")
    import jax, numpy as np
    from configs.default import get_config
    from crossmodal_jax import methods, training
    from crossmodal_jax.data.sources import synthetic
    from sharded_steps import run_steps

    assert jax.device_count() == 8, jax.devices()
    cfg = get_config("drsl,synthetic")
    cfg.model.image_layers, cfg.model.text_layers = (48, 24), (48, 24)
    cfg.model.relation_layers = tuple(json.loads(sys.argv[1]))
    cfg.train.learning_rate = 1e-3
    ds = synthetic.make_dataset(synthetic.SyntheticConfig(
        num_train=192, num_validation=8, num_test=8, image_dim=32, vocab_size=80,
        word_dim=16))
    method = methods.get_method(cfg, ds.dims())
    opt = method.optimizer(cfg.train, 2)
    batches = list(method.batches(ds.train, 64, 0, 0))
    assert len(batches) == 3, len(batches)

    def run(devices):
      return run_steps(method, opt, ds, devices, batches)

    one, l1 = run(jax.devices()[:1])
    eight, l8 = run(jax.devices())
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), one.params, eight.params)
    stats = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), one.collections,
                         eight.collections)
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), one.params,
                         jax.device_get(training.initial_state(method, opt, ds, 0).params))
    print(json.dumps({"param_diff": max(jax.tree.leaves(diffs)),
                      "stats_diff": max(jax.tree.leaves(stats)),
                      "moved": min(jax.tree.leaves(moved)), "l1": l1, "l8": l8}))
""")


@pytest.mark.parametrize("relation_layers", [(32,), (32, 16)])
def test_sharded_step_equals_single_device(relation_layers):
  env = dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  out = _run(["-c", _PARALLEL_SCRIPT, json.dumps(relation_layers)], env=env)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["moved"] > 1e-4, result  # the steps did change every parameter
  assert result["param_diff"] < 1e-5, result
  assert result["stats_diff"] < 1e-5, result
  np.testing.assert_allclose(result["l1"], result["l8"], rtol=1e-5)


def test_batch_not_divisible_by_devices_is_a_clear_error():
  env = dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run(
      [
          sys.executable,
          "-m",
          "experiments.train",
          "--workdir=/tmp/unused_cmj",
          "--config.train.batch_size=100",
          *SMALL,
      ],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode != 0
  assert "not divisible by the 8 devices" in proc.stderr


def _final_params(workdir):
  import jax  # pylint: disable=g-import-not-at-top
  from crossmodal_jax import data as data_lib, methods, runs  # pylint: disable=g-import-not-at-top

  config = runs.load(str(workdir))
  dataset = data_lib.load_dataset(config.data)
  method = methods.get_method(config, dataset.dims())
  variables, step = runs.restore_variables(str(workdir), method, dataset.train, "latest")
  return jax.device_get(variables), step


def _finalized_steps(workdir):
  d = pathlib.Path(workdir) / "checkpoints" / "latest"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
  # 1200 pairs / batches of 100 = 12 steps per epoch, 72 in all.
  args = [
      "-m",
      "experiments.train",
      *SMALL,
      "--config.train.num_epochs=6",
      "--config.train.batch_size=100",
      "--config.model.dropout=0.1",
      "--config.data.synthetic_num_train=1200",
  ]
  unbroken = tmp_path / "unbroken"
  _run([*args, f"--workdir={unbroken}"])

  killed = tmp_path / "killed"
  proc = subprocess.Popen(
      [sys.executable, *args, f"--workdir={killed}"],
      cwd=REPO,
      env=ENV,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 300
  while not _finalized_steps(killed) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  steps_at_kill = _finalized_steps(killed)
  assert steps_at_kill and steps_at_kill[-1] < 72, steps_at_kill  # killed mid-run
  _run([*args, f"--workdir={killed}"])  # resumes from the latest checkpoint

  a, step_a = _final_params(unbroken)
  b, step_b = _final_params(killed)
  assert step_a == step_b == 72
  import jax  # pylint: disable=g-import-not-at-top

  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b))
  assert max(diffs) == 0.0
  # The resumed run's metrics history has no duplicated epochs.
  epochs = [json.loads(l)["epoch"] for l in open(killed / "metrics.jsonl") if '"epoch"' in l]
  assert epochs == list(range(1, 7))


def test_train_then_evaluate_on_synthetic(tmp_path):
  workdir = tmp_path / "wd"
  out = _run(["-m", "experiments.train", f"--workdir={workdir}"])
  assert "test mAP@ALL" in out.stdout
  first = json.loads((workdir / "results.json").read_text())
  (workdir / "results.json").unlink()
  _run(["-m", "experiments.evaluate", f"--workdir={workdir}"])
  results = json.loads((workdir / "results.json").read_text())
  assert results["map_all"] == first["map_all"]
  # 10 balanced classes: chance mAP is about 0.1.
  assert results["map_all"]["avg"] > 0.4, results["map_all"]
  assert set(results["map_all"]) == {"i2t", "t2i", "avg"}
  assert results["num_queries"] == 600
  for name in ("pr_curve.png", "precision_scope.png", "metrics.jsonl", "config.json"):
    assert (workdir / name).stat().st_size > 0, name
  assert list((workdir / "tb").iterdir())
  # A workdir of an older version: its config.json lacks fields added since. Evaluating
  # it reads them at the values the run behaved as: the same results.
  assert len(age_drsl_config_json(workdir)) >= 3
  (workdir / "results.json").unlink()
  _run(["-m", "experiments.evaluate", f"--workdir={workdir}"])
  assert json.loads((workdir / "results.json").read_text())["map_all"] == first["map_all"]


def test_unknown_method_is_a_clear_error(tmp_path):
  proc = subprocess.run(
      [
          sys.executable,
          "-m",
          "experiments.train",
          f"--workdir={tmp_path}",
          "--config=configs/default.py:nosuch,synthetic",
      ],
      cwd=REPO,
      env=ENV,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert proc.returncode != 0
  assert "Unknown method 'nosuch'" in proc.stderr and "drsl" in proc.stderr


def test_unknown_config_field_lists_the_choices(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path}", "--config.train.nope=3"],
      cwd=REPO,
      env=ENV,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert proc.returncode != 0
  assert "Unknown config field 'train.nope'" in proc.stderr
  assert "num_epochs" in proc.stderr and "Traceback" not in proc.stderr


def _write_feature_folder(root: pathlib.Path, rng):
  """A DRSL-layout folder: 3 classes, 12-d images, 9-d texts, labels as n x 1 (1-based)."""
  root.mkdir()
  centers_i, centers_t = rng.normal(size=(3, 12)) * 2, rng.normal(size=(3, 9)) * 2
  for split, n in (("train", 240), ("test", 60)):
    y = rng.integers(0, 3, size=n)
    scipy.io.savemat(
        root / f"{split}_img.mat", {f"{split}_img": centers_i[y] + rng.normal(size=(n, 12))}
    )
    scipy.io.savemat(
        root / f"{split}_txt.mat", {f"{split}_txt": centers_t[y] + rng.normal(size=(n, 9))}
    )
    scipy.io.savemat(root / f"{split}_img_lab.mat", {f"{split}_img_lab": (y + 1)[:, None]})


def test_drsl_trains_on_a_feature_file_folder(tmp_path):
  _write_feature_folder(tmp_path / "feats", np.random.default_rng(0))
  workdir = tmp_path / "wd"
  _run(
      [
          "-m",
          "experiments.train",
          "--config=configs/default.py:drsl,features",
          f"--config.data.manual_dir={tmp_path / 'feats'}",
          f"--config.data.data_dir={tmp_path / 'tfds'}",
          "--config.data.num_validation=40",
          "--config.train.batch_size=40",
          "--config.train.num_epochs=8",
          "--config.train.learning_rate=1e-3",
          f"--workdir={workdir}",
          *SMALL,
      ]
  )
  results = json.loads((workdir / "results.json").read_text())
  assert results["num_queries"] == 60
  assert results["map_all"]["avg"] > 0.6, results["map_all"]  # chance is about 0.35
  assert results["checkpoint"] == "best" and "checkpoint_note" not in results


def test_a_run_without_validation_says_it_evaluated_its_latest_checkpoint(tmp_path):
  """No validation split, so no best-by-validation checkpoint: evaluation falls back to
  the latest, and results.json and the printed lines say so (not "best")."""
  _write_feature_folder(tmp_path / "feats", np.random.default_rng(1))
  workdir = tmp_path / "wd"
  data = [
      "--config=configs/default.py:drsl,features",
      f"--config.data.manual_dir={tmp_path / 'feats'}",
      f"--config.data.data_dir={tmp_path / 'tfds'}",
  ]
  out = _run(
      [
          "-m",
          "experiments.train",
          *data,
          "--config.train.batch_size=40",
          "--config.train.num_epochs=2",
          f"--workdir={workdir}",
          *SMALL,
      ]
  )
  assert not list((workdir / "checkpoints" / "best").glob("[0-9]*"))
  results = json.loads((workdir / "results.json").read_text())
  assert results["checkpoint"] == "latest"
  assert "no best-by-validation checkpoint" in results["checkpoint_note"]
  line = f"  checkpoint: latest (step {results['checkpoint_step']}): {results['checkpoint_note']}"
  assert line in out.stdout.splitlines()
  (workdir / "results.json").unlink()
  out = _run(["-m", "experiments.evaluate", f"--workdir={workdir}"])
  again = json.loads((workdir / "results.json").read_text())
  assert again == results
  assert line in out.stdout.splitlines()
  # Asked for the latest, it is what was asked for: no note.
  out = _run(["-m", "experiments.evaluate", f"--workdir={workdir}", "--checkpoint=latest"])
  latest = json.loads((workdir / "results.json").read_text())
  assert latest["checkpoint"] == "latest" and "checkpoint_note" not in latest
  assert latest["map_all"] == results["map_all"]
  assert "checkpoint:" not in out.stdout


@pytest.mark.skipif(not WIKI_DIR.is_dir(), reason=f"Wikipedia dataset not found at {WIKI_DIR}")
def test_drsl_default_config_on_wikipedia(tmp_path, wiki_data_dir):
  workdir = tmp_path / "wiki"
  _run(
      [
          "-m",
          "experiments.train",
          "--config=configs/default.py:drsl,wikipedia",
          f"--config.data.manual_dir={WIKI_DIR}",
          f"--config.data.data_dir={wiki_data_dir}",
          "--config.train.progress_bar=False",
          # The default recipe, its first 20 of 60 epochs (validation mAP about 0.25 by
          # then, against 0.30 at the end): the whole schedule cost 85 s of the suite.
          "--config.train.num_epochs=20",
          f"--workdir={workdir}",
      ],
      timeout=900,
  )
  results = json.loads((workdir / "results.json").read_text())
  assert results["num_queries"] == 462
  assert results["checkpoint"] == "best"
  # Chance is about 0.11; the floor proves the path learns on real data.
  assert results["map_all"]["avg"] >= 0.2, results["map_all"]
