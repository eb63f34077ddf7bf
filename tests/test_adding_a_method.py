"""The "Adding a method" example of docs/adding_a_method.md is real code: it registers,
trains and scores, in process and as its two files in a copy of the repository, through
the real command line."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from configs import default
from crossmodal_jax import evaluation
from crossmodal_jax import methods
from crossmodal_jax import training
from crossmodal_jax.data.sources import synthetic

PAGE = REPO / "docs" / "adding_a_method.md"


def _block(page: str, title: str) -> str:
  match = re.search(re.escape(title) + r".*?```python\n(.*?)```", page, re.S)
  assert match, f"no code block after {title!r} in {PAGE.name}"
  return match.group(1)


@pytest.fixture(scope="module")
def example_method():
  page = PAGE.read_text()
  method_code = _block(page, "**`crossmodal_jax/methods/cosine.py`**")
  config_code = _block(page, "**`configs/cosine.py`**")
  if "cosine" not in methods.REGISTRY:
    exec(
        compile(method_code, "adding_a_method.md:cosine.py", "exec"), {"__name__": "example_cosine"}
    )
  config_module = {}
  exec(compile(config_code, "adding_a_method.md:configs/cosine.py", "exec"), config_module)
  return config_module["get_config"]


def test_the_example_method_trains_and_evaluates(tmp_path, example_method):
  config = example_method(default.common_config("cosine", "synthetic"), "synthetic")
  config.model.layers = (64, 32)
  config.train.num_epochs = 8
  config.train.progress_bar = False
  dataset = synthetic.make_dataset(
      synthetic.SyntheticConfig(num_train=800, num_validation=100, num_test=200)
  )
  training.train(config, str(tmp_path), dataset=dataset)
  results = evaluation.evaluate(str(tmp_path), config=config, dataset=dataset, plots=False)
  assert results["method"] == "cosine"
  assert results["map_all"]["avg"] > 0.25, results["map_all"]  # chance is about 0.1
  method = methods.get_method(config, dataset.dims())
  assert method.pair_bytes(None, None) == 4


def test_a_fifth_method_is_its_module_and_its_config_file(tmp_path):
  """The example's two files dropped into a copy of the repository, and nothing else
  edited, train and evaluate through `python -m experiments.train`."""
  page = PAGE.read_text()
  repo = tmp_path / "repo"
  for folder in ("crossmodal_jax", "configs", "experiments"):
    shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
  (repo / "crossmodal_jax" / "methods" / "cosine.py").write_text(
      _block(page, "**`crossmodal_jax/methods/cosine.py`**")
  )
  (repo / "configs" / "cosine.py").write_text(_block(page, "**`configs/cosine.py`**"))
  workdir = tmp_path / "wd"
  proc = subprocess.run(
      [
          sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
          "--config=configs/default.py:cosine,synthetic", "--config.model.layers=(64, 32)",
          "--config.train.num_epochs=3", "--config.train.progress_bar=False",
          "--config.data.synthetic_num_train=600",
      ],
      cwd=repo,
      env=dict(os.environ, PYTHONPATH=str(repo), JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == "cosine"
  assert results["map_all"]["avg"] > 0.2, results["map_all"]  # chance is about 0.1
