"""Shared test settings, and the methods' one training run on real data.

Real-data tests read the Wikipedia cross-modal dataset from $CROSSMODAL_DATA_DIR
(default: ../shared/data beside the repository, as CI lays it out) and skip, with that
path in the reason, when it is absent.
"""

import gc
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests run from a checkout without installing too
  sys.path.insert(0, str(REPO))

DATA_DIR = pathlib.Path(os.environ.get("CROSSMODAL_DATA_DIR", REPO.parent / "shared" / "data"))
WIKI_DIR = (DATA_DIR / "wikipedia_dataset").resolve()


def pytest_sessionstart(session):
  """Under CI (CI=true) the real data must be beside the checkout: its absence fails the
  run instead of skipping the real-data tests."""
  del session
  if os.environ.get("CI") == "true" and not WIKI_DIR.is_dir():
    pytest.exit(
        f"CI=true but the real Wikipedia data is not at {WIKI_DIR} "
        "(set CROSSMODAL_DATA_DIR, or lay ../shared/data beside the checkout)",
        returncode=1,
    )


def pytest_sessionfinish(session):
  """Freezes the heap the tests leave out of the collections that follow.

  pytest's cleanup then collects 5 times, each a full pass over that heap with JAX's gc
  callback (16 s in all on a loaded xdist worker, 2026-11-28). A worker told to stop gets
  a SIGINT from execnet if it has not finished 5 s later; landing in JAX's gc callback,
  it was reported as an unraisable KeyboardInterrupt at the end of the suite. Frozen, the
  passes take 0.2 s; the cost is that cycles left unreferenced at this point are not
  swept.
  """
  del session
  gc.freeze()


@pytest.fixture(scope="session")
def wiki_data_dir(tmp_path_factory) -> pathlib.Path:
  """The TFDS data_dir of the session's training runs on real Wikipedia: the first builds
  the dataset and the others read it (every text feature and method shares that build;
  the build itself is tested in test_datasets.py). Parallel workers (pytest-xdist) share
  one folder beside their own: the build's lock lets one worker build it while the others
  wait (`tfds_io.prepare`)."""
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = tmp_path_factory.getbasetemp().parent / "wikipedia_tfds"
    shared.mkdir(exist_ok=True)
    return shared
  return tmp_path_factory.mktemp("wikipedia_tfds")


def train_on_real_wikipedia(
    spec: str, tmp_path: pathlib.Path, data_dir: pathlib.Path, *overrides: str
) -> dict:
  """Trains `configs/default.py:SPEC` on the real Wikipedia folder through the train
  entry point (workdir under tmp_path, data under data_dir), asserts it succeeded and
  returns the test split's results.json."""
  workdir = tmp_path / "wd"
  proc = subprocess.run(
      [
          sys.executable, "-m", "experiments.train",
          f"--config=configs/default.py:{spec}",
          f"--config.data.manual_dir={WIKI_DIR}",
          f"--config.data.data_dir={data_dir}",
          "--config.train.progress_bar=False",
          *overrides,
          f"--workdir={workdir}",
      ],
      cwd=REPO,
      env=dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=900,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads((workdir / "results.json").read_text())


def age_drsl_config_json(workdir: pathlib.Path) -> list[str]:
  """Rewrites a DRSL workdir's config.json as an older version wrote it: without every
  model field at the method file's base value and without fields added to the common
  config since (data.image_power, train.ema_decay, train.ema_warmup). Returns the model
  fields dropped."""
  from configs import drsl  # pylint: disable=g-import-not-at-top

  saved = json.loads((workdir / "config.json").read_text())
  base = drsl.model_config().to_dict()
  dropped = [k for k, v in saved["model"].items() if json.loads(json.dumps(base[k])) == v]
  for k in dropped:
    del saved["model"][k]
  del saved["data"]["image_power"], saved["train"]["ema_decay"], saved["train"]["ema_warmup"]
  (workdir / "config.json").write_text(json.dumps(saved))
  return dropped
