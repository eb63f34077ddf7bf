"""The method face as a contract: methods defined only in tests/ train, resume, score and
evaluate through the library's shared code, with no edit to it."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import sharded_steps
import toy_methods
from conftest import REPO
from configs.default import get_config
from crossmodal_jax import checkpoint as ckpt
from crossmodal_jax import evaluation
from crossmodal_jax import methods
from crossmodal_jax import optimizers
from crossmodal_jax import ranking
from crossmodal_jax import runs
from crossmodal_jax import scoring
from crossmodal_jax import training
from crossmodal_jax.data.sources import synthetic

TESTS = pathlib.Path(__file__).resolve().parent
ENV = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}", JAX_PLATFORMS="cpu")


def toy_config(name: str, epochs: int = 3, batch_size: int = 40):
  config = get_config("drsl,synthetic")
  config.method = name
  config.model = toy_methods.model_config()
  config.train.num_epochs = epochs
  config.train.batch_size = batch_size
  config.train.learning_rate = 3e-2 if name == "toy_sampler" else 1e-2
  config.train.progress_bar = False
  config.eval.memory_budget_mb = 0.01  # ~10 kB: forces chunked scoring
  return config


def small_dataset(num_train=240):
  return synthetic.make_dataset(
      synthetic.SyntheticConfig(
          num_train=num_train,
          num_validation=40,
          num_test=60,
          image_dim=32,
          vocab_size=60,
          word_dim=32,
          max_words=12,
          min_words=4,
          image_noise=0.3,
          text_group_strength=0.8,
          image_detail_strength=0.8,
      )
  )


@pytest.fixture(scope="module")
def dataset():
  return small_dataset()


def test_each_config_file_names_a_registered_method():
  """The configs' methods are their files; each is a method of the library's registry (a
  method defined only in code, as the toy ones, has no config to get)."""
  from configs import default  # pylint: disable=g-import-not-at-top

  names = default.method_names()
  assert set(names) == {"drsl", "drsl_code", "hcmsl", "mcsm", "scanet"}
  assert set(names) <= set(methods.names())
  for name in names:
    assert (REPO / "configs" / f"{name}.py").is_file()
    assert get_config(f"{name},synthetic").method == name
  assert {"toy_joint", "toy_sampler"} <= set(methods.names())
  with pytest.raises(ValueError, match="Unknown method 'toy_joint'"):
    get_config("toy_joint,synthetic")


# --------------------------------------------------------------------------------------
# Pairwise scoring at any size
# --------------------------------------------------------------------------------------


class _Recorder:
  """A score function that records the block shapes it is traced with."""

  def __init__(self, fn):
    self.fn, self.shapes = fn, []

  def __call__(self, variables, image_block, text_block):
    self.shapes.append((image_block.shape[0], text_block.shape[0]))
    return self.fn(variables, image_block, text_block)

  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other


def test_plan_keeps_to_the_budget_and_to_the_blocks():
  assert scoring.plan(4096, 4096, 512, 512, pair_bytes=8, memory_budget=2**28) == scoring.Plan(
      512, 512, 512
  )  # a separable scorer keeps full tiles
  p = scoring.plan(4096, 4096, 512, 512, pair_bytes=4096, memory_budget=2**20)
  assert p.chunk_pairs * 4096 <= 2**20 and p.query_rows % p.query_chunk == 0
  assert p.query_rows <= 512 and p.gallery_chunk <= 512
  assert scoring.plan(10, 7, 512, 512, pair_bytes=10**9, memory_budget=1) == scoring.Plan(
      10, 1, 1
  )  # never below one pair


def test_joint_scorer_blockwise_equals_per_pair_loop(dataset):
  config = toy_config("toy_joint")
  method = methods.get_method(config, dataset.dims())
  variables = method.init(jax.random.key(1), method.init_batch(dataset.train))
  images = method.encode_image(variables, dataset.test["image"][:23])
  texts = method.encode_text(variables, dataset.test["text"][:31])
  pair_bytes = method.pair_bytes(images, texts)
  budget = 20 * pair_bytes  # 20 pairs a chunk
  recorder = _Recorder(method.score)
  got = scoring.score_matrix(
      recorder, variables, images, texts, pair_bytes=pair_bytes, memory_budget=budget
  )
  assert max(p * q for p, q in recorder.shapes) <= 20, recorder.shapes  # chunked
  one_pair = jax.jit(method.score)
  for name in ("joint", "dot"):
    want = np.array(
        [
            [
                float(one_pair(variables, images[p : p + 1], texts[q : q + 1])[name][0, 0])
                for q in range(31)
            ]
            for p in range(23)
        ]
    )
    np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6)
  # Text queries: each channel is the transpose.
  got_t = scoring.score_matrix(
      method.score,
      variables,
      texts,
      images,
      queries_are_images=False,
      pair_bytes=pair_bytes,
      memory_budget=budget,
  )
  np.testing.assert_allclose(got_t["joint"], got["joint"].T, rtol=1e-5, atol=1e-6)


def test_joint_method_trains_and_evaluates_through_the_library(tmp_path, dataset):
  config = toy_config("toy_joint", epochs=6)
  workdir = str(tmp_path / "wd")
  state, method = training.train(config, workdir, dataset=dataset)
  assert isinstance(method, toy_methods.ToyJoint)
  results = evaluation.evaluate(workdir, config=config, dataset=dataset, plots=False)
  # 10 balanced classes: chance mAP is about 0.1.
  assert results["map_all"]["avg"] > 0.3, results["map_all"]
  # Evaluation ranks each direction by the method's own fusion of full query rows.
  variables, _ = runs.restore_variables(workdir, method, dataset.train, "best")
  scores = ranking.score_split(method, variables, dataset.test, config.eval)
  zi = method.encode_image(variables, dataset.test["image"])
  zt = method.encode_text(variables, dataset.test["text"])
  full = jax.tree.map(np.asarray, method.score(variables, zi, zt))
  for direction, channels in (("i2t", full), ("t2i", jax.tree.map(np.transpose, full))):
    want = method.retrieval_scores(variables, channels, direction)
    np.testing.assert_allclose(scores[direction], want, rtol=2e-4, atol=1e-5)
  assert not np.allclose(scores["t2i"], scores["i2t"].T, atol=1e-3)  # direction-specific
  del state


def test_evaluation_restores_a_step_only_in_best_without_optimizer_state(tmp_path, dataset):
  config = toy_config("toy_sampler")
  method = methods.get_method(config, dataset.dims())
  optimizer = method.optimizer(config.train, 6)
  state = training.initial_state(method, optimizer, dataset, seed=0)
  later = state.replace(step=state.step + 12, params=jax.tree.map(lambda x: x + 1.0, state.params))
  latest, best = ckpt.managers(str(tmp_path), keep=1)
  best.save(5, args=ckpt.save_args(state), metrics={ckpt.METRIC: 0.5})
  latest.save(12, args=ckpt.save_args(later))
  for m in (latest, best):
    m.wait_until_finished()
    m.close()
  # Drop the optimizer item of step 5: evaluation must not need it.
  import shutil  # pylint: disable=g-import-not-at-top

  shutil.rmtree(tmp_path / "checkpoints" / "best" / "5" / "train")
  for which, step, want in (
      ("5", 5, state),
      ("best", 5, state),
      ("latest", 12, later),
      ("12", 12, later),
  ):
    variables, got_step = runs.restore_variables(str(tmp_path), method, dataset.train, which)
    assert got_step == step
    jax.tree.map(np.testing.assert_array_equal, variables["params"], want.params)
  with pytest.raises(FileNotFoundError, match=r"step 7 .*steps there: \[5, 12\]"):
    runs.restore_variables(str(tmp_path), method, dataset.train, "7")


# --------------------------------------------------------------------------------------
# A method with its own sampler and optimizer
# --------------------------------------------------------------------------------------


def test_sampler_is_a_function_of_seed_and_epoch(dataset):
  method = methods.get_method(toy_config("toy_sampler"), dataset.dims())
  assert method.num_batches(dataset.train, 40) == 6
  a = list(method.batches(dataset.train, 40, seed=3, epoch=1))
  b = list(method.batches(dataset.train, 40, seed=3, epoch=1))
  c = list(method.batches(dataset.train, 40, seed=3, epoch=2))
  assert len(a) == 6 and set(a[0]) == {"image", "text", "target"}
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  targets = np.concatenate([x["target"] for x in a])
  assert targets[::2].all() and not targets[1::2].any()


_SAMPLER_RUN = textwrap.dedent("""
    import sys
    import toy_methods
    from test_method_face import toy_config
    from crossmodal_jax import training
    config = toy_config("toy_sampler", epochs=6, batch_size=40)
    config.data.synthetic_num_train = 480
    config.data.synthetic_preset = "default"
    training.train(config, sys.argv[1])
""")


def _finalized_steps(workdir: pathlib.Path):
  d = workdir / "checkpoints" / "latest"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _latest_params(workdir: pathlib.Path, method, split):
  variables, step = runs.restore_variables(str(workdir), method, split, "latest")
  return jax.device_get(variables["params"]), step


def test_sampler_method_resumes_exactly_after_a_kill(tmp_path):
  args = [sys.executable, "-c", _SAMPLER_RUN]
  unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
  subprocess.run(
      [*args, str(unbroken)], cwd=TESTS, env=ENV, check=True, timeout=600, capture_output=True
  )
  proc = subprocess.Popen(
      [*args, str(killed)], cwd=TESTS, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 300
  while not _finalized_steps(killed) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  assert _finalized_steps(killed)[-1] < 72
  subprocess.run(
      [*args, str(killed)], cwd=TESTS, env=ENV, check=True, timeout=600, capture_output=True
  )
  config = toy_config("toy_sampler")
  config.data.synthetic_num_train = 480
  from crossmodal_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  ds = data_lib.load_dataset(config.data)
  method = methods.get_method(config, ds.dims())
  a, step_a = _latest_params(unbroken, method, ds.train)
  b, step_b = _latest_params(killed, method, ds.train)
  assert step_a == step_b == 72
  assert max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, b))) == 0
  # The checkpointed optimizer state is the method's own (SGD momentum: one trace per
  # parameter), not the config's default Adam (two moments per parameter and a count).
  restored = ocp.StandardCheckpointer().restore(
      unbroken / "checkpoints" / "latest" / "72" / "train"
  )
  n_params = len(jax.tree.leaves(a))
  assert len(jax.tree.leaves(restored["opt_state"])) == n_params


# --------------------------------------------------------------------------------------
# Resume safety
# --------------------------------------------------------------------------------------


def test_resuming_with_a_different_model_is_an_error_naming_the_fields(tmp_path, dataset):
  config = toy_config("toy_sampler", epochs=1)
  workdir = str(tmp_path / "wd")
  training.train(config, workdir, dataset=dataset)
  saved = (tmp_path / "wd" / "config.json").read_text()
  changed = toy_config("toy_sampler", epochs=1)
  changed.model.width = 8
  changed.train.learning_rate = 0.5
  with pytest.raises(ValueError, match=r"model.width: 16 -> 8; train.learning_rate"):
    training.train(changed, workdir, dataset=dataset)
  assert (tmp_path / "wd" / "config.json").read_text() == saved  # nothing rewritten
  longer = toy_config("toy_sampler", epochs=2)  # training longer is allowed
  state, _ = training.train(longer, workdir, dataset=dataset)
  assert int(state.step) == 2 * 6


# --------------------------------------------------------------------------------------
# The default optimizer from the config
# --------------------------------------------------------------------------------------


def _params():
  return {
      "tower": {"dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}},
      "head": {"kernel": jnp.ones((2, 1))},
  }


def test_param_groups_scale_and_freeze_by_name():
  config = get_config("drsl,synthetic").train
  config.optimizer, config.learning_rate = "sgd", 0.1
  config.param_groups = ("tower/.*/bias=0", "tower=0.5")
  opt = optimizers.from_config(config, steps_per_epoch=10)
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = opt.update(grads, opt.init(params), params)
  np.testing.assert_allclose(updates["tower"]["dense_0"]["bias"], 0.0)
  np.testing.assert_allclose(updates["tower"]["dense_0"]["kernel"], -0.05)
  np.testing.assert_allclose(updates["head"]["kernel"], -0.1)
  config.param_groups = ("no_equals_sign",)
  with pytest.raises(ValueError, match="REGEX=MULTIPLIER"):
    optimizers.from_config(config, 10)


def test_gradient_clipping_and_schedules():
  config = get_config("drsl,synthetic").train
  config.optimizer, config.learning_rate, config.grad_clip_norm = "sgd", 1.0, 0.5
  opt = optimizers.from_config(config, steps_per_epoch=10)
  params = _params()
  grads = jax.tree.map(lambda x: 10 * jnp.ones_like(x), params)
  updates, _ = opt.update(grads, opt.init(params), params)
  assert abs(float(optax.tree.norm(updates)) - 0.5) < 1e-5
  config.schedule, config.warmup_epochs, config.num_epochs = "cosine", 1, 3
  lr = optimizers.schedule(config, steps_per_epoch=10)
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(30)], [0.0, 0.5, 1.0, 0.0], atol=1e-6)
  config.schedule, config.lr_decay_per_epoch = "exponential", 0.5
  config.warmup_epochs = 0
  lr = optimizers.schedule(config, steps_per_epoch=10)
  np.testing.assert_allclose([lr(9), lr(10), lr(25)], [1.0, 0.5, 0.25])
  config.optimizer = "lamb"
  with pytest.raises(ValueError, match="Unknown train.optimizer 'lamb'"):
    optimizers.from_config(config, 10)


# --------------------------------------------------------------------------------------
# Data parallel: the toy methods' collectives on 8 devices equal one device
# --------------------------------------------------------------------------------------

_PARALLEL_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    import toy_methods
    from test_method_face import small_dataset, toy_config
    from crossmodal_jax import methods, training
    from sharded_steps import run_steps

    assert jax.device_count() == 8, jax.devices()
    ds = small_dataset(num_train=192)
    out = {}
    for name in ("toy_joint", "toy_sampler"):
      cfg = toy_config(name)
      method = methods.get_method(cfg, ds.dims())
      opt = method.optimizer(cfg.train, 3)
      batches = list(method.batches(ds.train, 64, 0, 0))

      def run(devices):
        return run_steps(method, opt, ds, devices, batches)[0].params

      one, eight = run(jax.devices()[:1]), run(jax.devices())
      start = jax.device_get(training.initial_state(method, opt, ds, 0).params)
      diff = lambda a, b: jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, b))
      out[name] = {"diff": max(diff(one, eight)), "moved": max(diff(one, start))}
    print(json.dumps(out))
""")


def test_toy_methods_sharded_steps_equal_single_device():
  result = sharded_steps.run_on_8_devices(_PARALLEL_SCRIPT)
  for name, r in result.items():
    assert r["moved"] > 1e-3, (name, r)
    assert r["diff"] < 1e-5, (name, r)


def test_last_partial_batch_is_kept_when_asked(tmp_path):
  ds = small_dataset(num_train=250)
  config = toy_config("toy_joint", epochs=2)
  method = methods.get_method(config, ds.dims())
  assert method.num_batches(ds.train, 40) == 6
  config.train.drop_remainder = False
  method = methods.get_method(config, ds.dims())
  assert method.num_batches(ds.train, 40) == 7
  batches = list(method.batches(ds.train, 40, seed=0, epoch=0))
  assert [len(b["label"]) for b in batches] == [40] * 6 + [10]
  rows = np.concatenate([b["image"] for b in batches])
  assert len(np.unique(rows, axis=0)) == 250  # every row once
  state, _ = training.train(config, str(tmp_path), dataset=ds)
  assert int(state.step) == 14
