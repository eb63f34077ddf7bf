"""A real two-process training job on this machine against the same run in one process.

Two processes join with `jax.distributed.initialize` (a localhost coordinator on a free
port, gloo CPU collectives), each with 4 forced CPU devices: one 8-device mesh. Each feeds
its half of every global batch. The reference is one process with 8 forced devices. Both
train through `python -m experiments.train` (the workers through tests/multihost_worker.py,
which records the files each process writes).
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

from conftest import REPO

TESTS = REPO / "tests"
TIMEOUT_S = 240  # the whole job; a hung collective is killed, not waited on
TRAIN_ARGS = [
    "--config=configs/default.py:drsl,synthetic,ci",
    "--config.model.image_layers=(32,16)",
    "--config.model.text_layers=(32,16)",
    "--config.model.relation_layers=(16,)",
    "--config.data.synthetic_num_train=64",
    "--config.train.batch_size=32",  # 4 rows per device, 16 per process
    "--config.train.num_epochs=2",  # 2 steps per epoch
    "--config.train.log_every_steps=1",
    "--config.train.progress_bar=False",
]
PRIMARY_FILES = {
    "config.json",
    "metrics.jsonl",
    "results.json",
    "pr_curve.png",
    "precision_scope.png",
}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
  return dict(
      os.environ,
      PYTHONPATH=str(REPO),
      JAX_PLATFORMS="cpu",
      JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
      XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
  )


def _run_together(jobs: dict, logs) -> dict[str, int | None]:
  """Starts every job ({name: (argv, env)}) at once and waits for all of them; kills them
  all when one fails or TIMEOUT_S passes. Returns each one's exit status (None: killed)."""
  procs = {}
  try:
    for name, (argv, env) in jobs.items():
      with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        procs[name] = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=err)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
      codes = [p.poll() for p in procs.values()]
      # A failed process leaves its peer blocked in a collective: stop at once.
      if None not in codes or any(c not in (None, 0) for c in codes):
        break
      time.sleep(0.2)
  finally:
    codes = {name: p.poll() for name, p in procs.items()}
    for p in procs.values():
      if p.poll() is None:
        p.kill()
      p.wait()
  return codes


def _final_state(workdir):
  import jax  # pylint: disable=g-import-not-at-top
  from crossmodal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from crossmodal_jax import methods, runs  # pylint: disable=g-import-not-at-top

  config = runs.load(str(workdir))
  dataset = data_lib.load_dataset(config.data)
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables, step = runs.restore_variables(str(workdir), method, dataset.train, "latest")
  init = method.init(jax.random.key(config.seed), method.init_batch(dataset.train))
  return jax.device_get(variables), step, jax.device_get(init)


def _max_diff(a, b) -> float:
  import jax  # pylint: disable=g-import-not-at-top

  leaves = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b))
  return max(leaves)


def _records(workdir, kind):
  with open(workdir / "metrics.jsonl") as f:
    return [r for r in map(json.loads, f) if r["kind"] == kind]


def test_two_processes_train_as_one(tmp_path):
  two, one = tmp_path / "two_processes", tmp_path / "one_process"
  coordinator = f"127.0.0.1:{_free_port()}"
  jobs = {
      f"process_{i}": (
          [
              sys.executable, str(TESTS / "multihost_worker.py"),
              str(tmp_path / f"report_{i}.json"), str(two),
              *TRAIN_ARGS, f"--workdir={two}", "--config.train.multi_host=True",
              f"--coordinator_address={coordinator}", "--num_processes=2", f"--process_id={i}",
          ],
          _env(4),
      )  # fmt: skip
      for i in range(2)
  }
  jobs["reference"] = (
      [sys.executable, "-m", "experiments.train", *TRAIN_ARGS, f"--workdir={one}"],
      _env(8),
  )
  codes = _run_together(jobs, tmp_path)
  stderr = "\n".join(
      f"--- {name} ({'killed' if codes[name] is None else f'exit {codes[name]}'}):\n"
      + (tmp_path / f"{name}.err").read_text()[-3000:]
      for name in jobs
  )
  assert all(c == 0 for c in codes.values()), stderr

  reports = [json.loads((tmp_path / f"report_{i}.json").read_text()) for i in range(2)]
  for i, report in enumerate(reports):
    assert report["process_index"] == i and report["process_count"] == 2, report
    assert report["device_count"] == 8 and report["local_device_count"] == 4, report
  # Each process holds (and so feeds) its half of a global batch.
  assert [r["rows"] for r in reports] == [[[0, 16]], [[16, 32]]]

  # Only process 0 writes the run's files; process 1 writes nothing outside checkpoints/.
  assert reports[1]["written"] == [], reports[1]["written"]
  assert PRIMARY_FILES <= set(reports[0]["written"]), reports[0]["written"]
  assert any(p.startswith("tb" + os.sep) for p in reports[0]["written"]), reports[0]["written"]
  assert sorted(os.listdir(two)) == sorted(os.listdir(one))
  assert "test mAP@ALL" in (tmp_path / "process_0.out").read_text()
  assert "test mAP@ALL" not in (tmp_path / "process_1.out").read_text()

  # The checkpoints restore to the same parameters (and batch statistics) as one process.
  (a, step_a, init), (b, step_b, _) = _final_state(two), _final_state(one)
  assert step_a == step_b == 4
  assert _max_diff(a, init) > 1e-3  # the 4 steps did train
  assert _max_diff(a, b) < 1e-5
  for kind, key in (("train", "loss"), ("epoch", "validation_map")):
    got, want = _records(two, kind), _records(one, kind)
    assert [r["step"] for r in got] == [r["step"] for r in want] and got, (got, want)
    np.testing.assert_allclose([r[key] for r in got], [r[key] for r in want], rtol=1e-5)
  results = [json.loads((w / "results.json").read_text())["map_all"] for w in (two, one)]
  for d in ("i2t", "t2i", "avg"):
    assert abs(results[0][d] - results[1][d]) < 1e-4, results
