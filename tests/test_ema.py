"""The parameters' exponential moving average (`train.ema_decay`): the step's average
against a numpy reference, its checkpoints, a resumed run, and what evaluation reads."""

from __future__ import annotations

import json

import jax
import numpy as np
import ml_collections
import pytest

import sharded_steps
from configs.default import get_config
from crossmodal_jax import checkpoint as ckpt
from crossmodal_jax import errors
from crossmodal_jax import methods
from crossmodal_jax import runs
from crossmodal_jax import training
from crossmodal_jax.data.sources import synthetic


def _config(epochs=2, ema_decay=0.9, ema_warmup=sharded_steps.WARMUP):
  config = get_config("drsl,synthetic")
  config.model.image_layers, config.model.text_layers = (24,), (24,)
  config.model.relation_layers = (16,)
  config.train.batch_size = 40
  config.train.num_epochs = epochs
  config.train.ema_decay = ema_decay
  config.train.ema_warmup = ema_warmup
  config.train.progress_bar = False
  return config


@pytest.fixture(scope="module")
def dataset():
  return synthetic.make_dataset(
      synthetic.SyntheticConfig(
          num_train=200, num_validation=40, num_test=40, image_dim=16, vocab_size=40, word_dim=8
      )
  )


def _steps(method, optimizer, dataset, batches, ema_decay, ema_warmup=sharded_steps.WARMUP):
  """The host states from seed 0's initial state and after each of `batches`."""
  states = []
  sharded_steps.run_steps(
      method, optimizer, dataset, jax.devices()[:1], batches, ema_decay=ema_decay,
      ema_warmup=ema_warmup, trajectory=states,
  )  # fmt: skip
  return states


@pytest.mark.parametrize("warmup", [10.0, 2.0])
def test_ema_follows_the_parameters_as_the_reference_recurrence(dataset, warmup):
  config = _config()
  method = methods.get_method(config, dataset.dims())
  optimizer = method.optimizer(config.train, 5)
  batches = list(method.batches(dataset.train, 40, 0, 0))
  assert len(batches) == 5
  with_ema = _steps(method, optimizer, dataset, batches, 0.9, warmup)
  without = _steps(method, optimizer, dataset, batches, 0.0)
  assert without[-1].ema is None
  # The average never feeds back: the parameters are those of a run without it.
  jax.tree.map(np.testing.assert_array_equal, with_ema[-1].params, without[-1].params)
  # e_0 = p_0; e_{t+1} = d_t e_t + (1 - d_t) p_{t+1}, d_t = min(0.9, (1 + t) / (w + t)).
  want = jax.tree.map(np.asarray, without[0].params)
  for t, state in enumerate(without[1:]):
    d = min(0.9, (1.0 + t) / (warmup + t))
    want = jax.tree.map(lambda e, p, d=d: d * e + (1.0 - d) * np.asarray(p), want, state.params)
  got = with_ema[-1].ema
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6), got, want)
  # It lags behind the parameters: neither the start nor the last step.
  moved = jax.tree.leaves(
      jax.tree.map(lambda g, p: float(np.abs(g - p).max()), got, without[-1].params)
  )
  assert min(moved) > 0.0
  assert with_ema[-1].variables["params"] is got  # what validation and checkpoints see
  if warmup == 2.0:
    # d_t = (1 + t) / (2 + t) makes the average the plain mean of p_0 .. p_5.
    params = [s.params for s in without]
    mean = jax.tree.map(lambda *ps: np.mean([np.asarray(p) for p in ps], 0), *params)
    jax.tree.map(lambda g, m: np.testing.assert_allclose(g, m, rtol=1e-5, atol=1e-6), got, mean)


def test_checkpoints_keep_the_average_for_evaluation_and_both_for_resuming(tmp_path, dataset):
  config = _config()
  method = methods.get_method(config, dataset.dims())
  optimizer = method.optimizer(config.train, 5)
  batches = list(method.batches(dataset.train, 40, 0, 0))
  state = _steps(method, optimizer, dataset, batches, 0.9)[-1]
  latest, best = ckpt.managers(str(tmp_path), keep=1)
  latest.save(5, args=ckpt.save_args(state))
  latest.wait_until_finished()
  blank = training.initial_state(method, optimizer, dataset, 1, ema=True)
  restored = ckpt.restore_state(latest, 5, blank)
  for m in (latest, best):
    m.close()
  for field in ("params", "ema", "opt_state", "collections", "step"):
    jax.tree.map(np.testing.assert_array_equal, getattr(restored, field), getattr(state, field))
  variables, step = runs.restore_variables(str(tmp_path), method, dataset.train, "latest")
  assert step == 5
  jax.tree.map(np.testing.assert_array_equal, variables["params"], state.ema)


def test_a_resumed_run_with_ema_equals_an_unbroken_one(tmp_path, dataset):
  unbroken, resumed = tmp_path / "unbroken", tmp_path / "resumed"
  training.train(_config(epochs=3), str(unbroken), dataset=dataset)
  training.train(_config(epochs=2), str(resumed), dataset=dataset)
  training.train(_config(epochs=3), str(resumed), dataset=dataset)  # resumes at epoch 2
  method = methods.get_method(_config(), dataset.dims())
  a, _ = runs.restore_variables(str(unbroken), method, dataset.train, "latest")
  b, _ = runs.restore_variables(str(resumed), method, dataset.train, "latest")
  jax.tree.map(np.testing.assert_array_equal, a, b)

  def validation(workdir):
    return [
        json.loads(l)["validation_map"] for l in open(workdir / "metrics.jsonl") if '"epoch"' in l
    ]

  assert validation(unbroken) == validation(resumed)
  # Turning the average on or off is a different run, not a resumable change.
  with pytest.raises(errors.UserError, match="train.ema_decay: 0.9 -> 0.0"):
    training.train(_config(epochs=4, ema_decay=0.0), str(resumed), dataset=dataset)


def test_a_config_saved_before_the_warmup_is_completed_with_the_warmup_it_ran_with():
  config = get_config("drsl,synthetic")
  saved = config.to_dict()
  del saved["train"]["ema_warmup"], saved["train"]["ema_decay"]
  completed = runs.complete(ml_collections.ConfigDict(saved))
  assert (completed.train.ema_decay, completed.train.ema_warmup) == (0.0, 10.0)


@pytest.mark.parametrize("warmup", [0.5, -3.0])
def test_an_ema_warmup_under_1_is_a_clear_error(tmp_path, dataset, warmup):
  with pytest.raises(errors.UserError, match=f"train.ema_warmup must be >= 1, got {warmup}"):
    training.train(_config(ema_warmup=warmup), str(tmp_path / "wd"), dataset=dataset)
  assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_an_ema_decay_outside_0_1_is_a_clear_error(tmp_path, dataset, decay):
  with pytest.raises(errors.UserError, match=f"train.ema_decay must be in \\[0, 1\\).*{decay}"):
    training.train(_config(ema_decay=decay), str(tmp_path / "wd"), dataset=dataset)
  assert not (tmp_path / "wd").exists()
