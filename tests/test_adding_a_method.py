"""The "Adding a method" example of docs/adding_a_method.md is real code: it registers,
trains and scores."""

import re

import pytest

from conftest import REPO
from configs import default
from crossmodal_jax import evaluate
from crossmodal_jax import methods
from crossmodal_jax import train
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
  train.train(config, str(tmp_path), dataset=dataset)
  results = evaluate.evaluate(str(tmp_path), config=config, dataset=dataset, plots=False)
  assert results["method"] == "cosine"
  assert results["map_all"]["avg"] > 0.25, results["map_all"]  # chance is about 0.1
  method = methods.get_method(config, dataset.dims())
  assert method.pair_bytes(None, None) == 4
