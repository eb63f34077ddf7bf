"""What a user of the entry points meets: one-line errors that name the problem, Ctrl-C,
nothing written before the config is good, and the config's fields in --help.

Most cases call the functions the entry points run, in this process; three run the real
entry point (each start imports JAX: seconds) for the exit status, the last stderr line
and what is left on disk.
"""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io

from conftest import REPO
from configs import default
from crossmodal_jax import errors
from crossmodal_jax import evaluation
from crossmodal_jax import training
from crossmodal_jax.data.sources import synthetic
from experiments import cli
from experiments import config_help
from experiments import overrides

ENV = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
ENV.pop(errors.TRACEBACK_ENV, None)
SMALL = [
    "--config.model.image_layers=(32,16)",
    "--config.model.text_layers=(32,16)",
    "--config.model.relation_layers=(32,)",
]


def _small_config(**train_fields):
  config = default.get_config("drsl,synthetic")
  config.model.image_layers, config.model.text_layers = (32, 16), (32, 16)
  config.model.relation_layers = (32,)
  config.train.progress_bar = False
  config.train.update(train_fields)
  return config


@pytest.fixture(scope="module")
def dataset():
  return synthetic.make_dataset(
      synthetic.SyntheticConfig(num_train=200, num_validation=40, num_test=40)
  )


def _entry(args, timeout=180):
  """Runs `python -m experiments.<args>`; returns (status, last stderr line, stderr)."""
  proc = subprocess.run(
      [sys.executable, "-m", *args],
      cwd=REPO,
      env=ENV,
      capture_output=True,
      text=True,
      timeout=timeout,
  )
  lines = proc.stderr.strip().splitlines()
  return proc.returncode, lines[-1] if lines else "", proc.stderr


# --------------------------------------------------------------------------------------
# Through the real entry point
# --------------------------------------------------------------------------------------


def test_bad_field_value_is_one_line_and_writes_nothing(tmp_path):
  workdir = tmp_path / "wd"
  status, last, stderr = _entry(
      ["experiments.train", f"--workdir={workdir}", "--config.model.fusion=foo"]
  )
  assert status == 1, stderr
  assert last.startswith("error: Unknown fusion 'foo'") and "'concat'" in last, stderr
  assert "Traceback" not in stderr
  assert not workdir.exists()


@pytest.mark.parametrize(
    "case",
    ["batch_not_divisible", "missing_workdir", "override_before_config"],
)
def test_more_bad_inputs_are_one_line_through_the_entry_points(tmp_path, case):
  workdir = tmp_path / "wd"
  env = None
  if case == "batch_not_divisible":
    args = ["experiments.train", f"--workdir={workdir}", "--config.train.batch_size=100"]
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    want, status_want = "error: train.batch_size=100 is not divisible by the 8 devices", 1
  elif case == "missing_workdir":
    args = ["experiments.evaluate", f"--workdir={workdir}"]
    want, status_want = f"error: {workdir / 'config.json'} not found", 1
  else:
    args = [
        "experiments.train",
        f"--workdir={workdir}",
        "--config.train.num_epochs=1",
        "--config=configs/default.py:drsl,synthetic",
    ]
    want, status_want = "error: --config.train.num_epochs=1 comes before --config=", 2
  proc = subprocess.run(
      [sys.executable, "-m", *args],
      cwd=REPO,
      env=env or ENV,
      capture_output=True,
      text=True,
      timeout=180,
  )
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == status_want, proc.stderr
  assert lines and lines[-1].startswith(want), proc.stderr
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()


def test_bad_labels_are_one_line_and_leave_no_data(tmp_path):
  src, data_dir, workdir = tmp_path / "src", tmp_path / "data", tmp_path / "wd"
  src.mkdir()
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 40), ("test", 10)):
    labels = (np.arange(n) % 5 + 1)[:, None]
    if prefix == "test":
      labels[3] = 999  # one label far outside the 5 classes
    for name, array in (("img", rng.normal(size=(n, 6))), ("txt", rng.normal(size=(n, 4)))):
      scipy.io.savemat(src / f"{prefix}_{name}.mat", {f"{prefix}_{name}": array})
    scipy.io.savemat(src / f"{prefix}_img_lab.mat", {f"{prefix}_img_lab": labels})
  status, last, stderr = _entry(
      [
          "experiments.train",
          f"--workdir={workdir}",
          "--config=configs/default.py:drsl,features",
          f"--config.data.manual_dir={src}",
          f"--config.data.data_dir={data_dir}",
      ]
  )
  assert status == 1, stderr
  assert last.startswith(f"error: {src / 'test_img_lab.mat'}: label 999"), last
  assert "classes seen: 1-5, 999" in last, last
  assert not workdir.exists()
  assert not data_dir.exists() or not [f for _, _, fs in os.walk(data_dir) for f in fs]


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path):
  workdir = tmp_path / "wd"
  proc = subprocess.Popen(
      [
          sys.executable,
          "-m",
          "experiments.train",
          f"--workdir={workdir}",
          *SMALL,
          "--config.train.num_epochs=200",
          "--config.data.synthetic_num_train=200",
      ],
      cwd=REPO,
      env=ENV,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
  )
  latest = workdir / "checkpoints" / "latest"
  deadline = time.time() + 120
  while proc.poll() is None and time.time() < deadline:
    if latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir()):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == cli.INTERRUPTED_EXIT, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("interrupted: the last checkpoint (step "), last
  assert "re-run the same command to resume" in last and str(workdir) in last
  assert "Traceback" not in stderr
  step = int(last.split("(step ")[1].split(")")[0])
  assert (latest / str(step)).is_dir()


def test_ctrl_c_in_training_is_taken_at_safe_points():
  before = signal.getsignal(signal.SIGINT)
  interrupts = training.SafeInterrupts.install()
  # A handler that raises while a gc callback runs (JAX registers one) has its exception
  # reported as unraisable and dropped; no collection may start while the signals land.
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    os.kill(os.getpid(), signal.SIGINT)  # the first is only noted ...
    time.sleep(0.01)
    assert interrupts.pending
    with pytest.raises(KeyboardInterrupt):
      interrupts.check()  # ... and raised where training checks
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)  # a second interrupts at once
      time.sleep(1)
  finally:
    interrupts.restore()
    if gc_was_enabled:
      gc.enable()
  assert signal.getsignal(signal.SIGINT) is before


# --------------------------------------------------------------------------------------
# The command line, before anything runs
# --------------------------------------------------------------------------------------


def _exit_line(capsys, fn, *args) -> tuple[int, str]:
  with pytest.raises(SystemExit) as exit_info:
    fn(*args)
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  return exit_info.value.code, err.strip()


def test_override_before_config_is_one_line(capsys, monkeypatch):
  monkeypatch.chdir(REPO)  # the relative configs/default.py, wherever pytest started
  status, line = _exit_line(
      capsys,
      overrides.check,
      ["--workdir=w", "--config.train.num_epochs=1", "--config=configs/default.py:drsl,synthetic"],
  )
  assert status == overrides.USAGE_EXIT
  assert line.startswith("error: --config.train.num_epochs=1 comes before --config="), line
  # After it, the same override is fine and the defaults come back.
  config = overrides.check(["--config=configs/default.py:mcsm,synthetic", "--config.seed=3"])
  assert config.method == "mcsm" and config.seed == 0


def test_unknown_field_and_config_are_one_line(capsys, monkeypatch):
  monkeypatch.chdir(REPO)  # the relative configs/default.py, wherever pytest started
  status, line = _exit_line(capsys, overrides.check, ["--config.model.nope=1"])
  assert status == overrides.USAGE_EXIT
  assert "'model.nope'" in line and "fusion" in line, line
  status, line = _exit_line(
      capsys, overrides.check, ["--config=configs/default.py:nosuch,synthetic"]
  )
  assert "Unknown method 'nosuch'" in line and "drsl" in line, line
  status, line = _exit_line(capsys, overrides.check, ["--config=nowhere.py"])
  assert "no config file 'nowhere.py'" in line, line


def test_an_unknown_field_suggests_the_closest(capsys):
  for field, guess in (
      ("train.num_epoch", "train.num_epochs"),
      ("model.droput", "model.dropout"),
      ("trian.num_epochs", "train.num_epochs"),
  ):
    _, line = _exit_line(
        capsys, overrides.check, ["--config=drsl,synthetic", f"--config.{field}=1"]
    )
    assert f"Did you mean `{guess}`?" in line, line
  _, line = _exit_line(capsys, overrides.check, ["--config=drsl,synthetic", "--config.zzz=1"])
  assert "Did you mean" not in line, line


def test_config_names_a_spec_a_file_or_a_workdir(tmp_path):
  """--config resolves to what config_flags loads: a spec or a workdir through the
  installed config_file.py, a path to a config file as it is."""
  assert (
      overrides.resolve("configs/default.py:drsl,synthetic") == "configs/default.py:drsl,synthetic"
  )
  assert overrides.resolve("drsl,wikipedia") == f"{overrides.CONFIG_FILE}:drsl,wikipedia"
  workdir = tmp_path / "wd"
  workdir.mkdir()
  assert overrides.resolve(str(workdir)) == f"{overrides.CONFIG_FILE}:{workdir}"
  saved = default.get_config("hcmsl,synthetic")
  saved.seed = 7
  (workdir / "config.json").write_text(saved.to_json())
  config = overrides.load(overrides.resolve(str(workdir / "config.json")))
  assert config.method == "hcmsl" and config.seed == 7
  assert overrides.load(overrides.resolve("mcsm,synthetic,ci")).preset == "ci"


@pytest.mark.parametrize("module", ["train", "evaluate", "retrieve", "reproduce", "benchmark"])
def test_each_command_answers_help_with_status_0_from_any_directory(tmp_path, module):
  proc = subprocess.run(
      [sys.executable, "-m", f"crossmodal_jax.experiments.{module}", "--help"],
      cwd=tmp_path, env=dict(ENV, PYTHONPATH=""), capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "--workdir" in proc.stdout or "--output" in proc.stdout, proc.stdout[:500]


def test_the_installed_commands_train_and_resume_from_another_directory(tmp_path):
  """`crossmodal-train` is the module run as `python -m`: from a folder outside the
  checkout, a spec trains; the workdir's config.json is a config (another run of it gives
  the same result)."""
  env = dict(ENV, PYTHONPATH="")
  script = shutil.which("crossmodal-train")
  command = [script] if script else [sys.executable, "-m", "crossmodal_jax.experiments.train"]
  common = ["--config.train.num_epochs=1", "--config.train.progress_bar=False"]
  first = subprocess.run(
      [*command, "--workdir=a", "--config=drsl,synthetic,ci", *common],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert first.returncode == 0, first.stderr[-2000:]
  again = subprocess.run(
      [*command, "--workdir=b", "--config=a/config.json", *common],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert again.returncode == 0, again.stderr[-2000:]
  a, b = (json.loads((tmp_path / w / "results.json").read_text()) for w in ("a", "b"))
  assert a["map_all"] == b["map_all"] and b["method"] == "drsl"


@pytest.mark.parametrize("method", default.method_names())
def test_every_config_field_has_a_meaning(method):
  meanings = config_help.meanings(method)
  for dataset in default.DATASETS:
    fields = config_help.leaves(default.get_config(f"{method},{dataset}"))
    missing = sorted(set(fields) - set(meanings))
    assert not missing, f"no comment gives these {method} fields a meaning: {missing}"


@pytest.mark.parametrize("method", default.method_names())
def test_help_gives_meanings_not_measurements(method):
  """A field's help says what it is; measurements live in docs/experiments."""
  for field, meaning in config_help.meanings(method).items():
    assert not re.search(r"\b0\.\d{3,}|\b20\d\d-\d\d|validation [^.]*\d\.\d", meaning), (
        field,
        meaning,
    )


def test_help_lists_fields_with_values_and_meanings():
  config = default.get_config("drsl,wikipedia")
  text = config_help.listing(config, "configs/default.py:drsl,wikipedia")
  lines = text.splitlines()
  assert "--config=configs/default.py:drsl,wikipedia" in text
  fusion = next(l for l in lines if l.strip().startswith("model.fusion="))
  assert "'concat'" in fusion and '"multiply"' in fusion  # value and its trailing comment
  assert any(l.strip().startswith("train.learning_rate=0.0005") for l in lines)
  data_dir = next(i for i, l in enumerate(lines) if "data.data_dir=" in l)
  assert "Where built TFDS datasets and fitted text features are cached" in " ".join(
      lines[data_dir : data_dir + 2]
  )
  assert max(len(l) for l in lines[:5]) <= config_help.WIDTH
  # A field without its own comment shares its group's comment lines, until a field with
  # its own comment or a gap.
  source = (
      "def model_config():\n"
      "  model = ml_collections.ConfigDict()\n"
      "  # The front-end's sizes.\n"
      "  model.widths = (1, 2)\n"
      "  model.pools = (3, 4)\n"
      "  model.own = 1  # its own\n"
      "  model.next = 2\n"
      "\n"
      "  model.apart = 3\n"
  )
  meanings = config_help._file_help(source)
  assert meanings["model.widths"] == meanings["model.pools"] == "The front-end's sizes."
  assert meanings["model.own"] == "its own" and "model.next" not in meanings
  assert "model.apart" not in meanings


# --------------------------------------------------------------------------------------
# The library under the entry points: user errors, and nothing written before the checks
# --------------------------------------------------------------------------------------


def test_user_errors_are_one_line_other_errors_keep_their_traceback(capsys, monkeypatch):
  def raising(error):
    def main(argv):
      raise error

    return main

  status, line = _exit_line(
      capsys, cli._guarded, raising(errors.UserError("bad\nvalue")), None, ["prog"]
  )
  assert (status, line) == (1, "error: bad value")
  status, line = _exit_line(capsys, cli._guarded, raising(KeyboardInterrupt()), lambda: "kept", [])
  assert (status, line) == (cli.INTERRUPTED_EXIT, "interrupted: kept")
  with pytest.raises(RuntimeError):
    cli._guarded(raising(RuntimeError("a bug")), None, [])
  monkeypatch.setenv(errors.TRACEBACK_ENV, "1")
  with pytest.raises(errors.UserError):
    cli._guarded(raising(errors.UserError("shown with its traceback")), None, [])


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("model.fusion", "foo", "Unknown fusion 'foo'"),
        ("train.optimizer", "adagrad", "Unknown train.optimizer 'adagrad'"),
        ("train.batch_size", 5000, "gives no training batch"),
        ("train.num_epochs", 0, "num_epochs must be >= 1"),
        ("eval.ranking", "partial", "Unknown eval.ranking 'partial'"),
        ("eval.top_k", -1, "eval.top_k must be an integer >= 0"),
    ],
)
def test_bad_config_is_a_user_error_before_anything_is_written(
    tmp_path, dataset, field, value, match
):
  config = _small_config()
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(errors.UserError, match=match):
    training.train(config, str(tmp_path / "wd"), dataset=dataset)
  assert not (tmp_path / "wd").exists()


def test_batch_not_divisible_by_devices_is_a_user_error():
  with pytest.raises(errors.UserError, match="not divisible by the 8 devices"):
    training._check_batch(100, 8)


def test_missing_workdir_and_checkpoint_are_user_errors(tmp_path, dataset):
  with pytest.raises(errors.MissingError, match="config.json not found") as e:
    evaluation.evaluate(str(tmp_path / "nowhere"))
  assert isinstance(e.value, FileNotFoundError)
  config = _small_config()
  with pytest.raises(errors.MissingError, match="No checkpoint under"):
    evaluation.evaluate(str(tmp_path / "empty"), config=config, dataset=dataset)
  with pytest.raises(errors.UserError, match="Unknown checkpoint 'foo'"):
    evaluation.evaluate(str(tmp_path / "empty"), config=config, dataset=dataset, checkpoint="foo")
