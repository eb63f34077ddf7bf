"""A run's config (completion of an old config.json, the fields that change a result, the
resume check) and its variables (`crossmodal_jax.runs`)."""

import json

import ml_collections
import pytest

from configs import default
from crossmodal_jax import errors
from crossmodal_jax import runs


def _old_workdir(tmp_path, config, *dropped):
  """A workdir of an older version: checkpoints, and a config.json without `dropped`."""
  workdir = tmp_path / "wd"
  (workdir / "checkpoints" / "latest" / "12").mkdir(parents=True)
  saved = config.to_dict()
  for path in dropped:
    section, field = path.split(".")
    del saved[section][field]
  (workdir / "config.json").write_text(json.dumps(saved))
  return str(workdir)


def test_resume_completes_a_field_newer_than_config_json_with_the_value_it_ran_with(tmp_path):
  workdir = _old_workdir(tmp_path, default.get_config("drsl,synthetic"), "train.grad_clip_norm")
  now = default.get_config("drsl,synthetic")
  runs.check_resumable(now, workdir)  # at the value the run had: the same run
  now.train.num_epochs += 5  # a resume may train longer,
  now.eval.map_r = 10  # report otherwise,
  now.train.log_every_steps = 3  # and steer the run otherwise
  runs.check_resumable(now, workdir)
  now.train.grad_clip_norm = 1.0  # but not train otherwise
  with pytest.raises(errors.UserError, match=r"train.grad_clip_norm: 0.0 -> 1.0"):
    runs.check_resumable(now, workdir)
  now.train.grad_clip_norm = 0.0
  now.model.dropout = 0.5  # a field config.json has, changed
  with pytest.raises(errors.UserError, match=r"model.dropout: 0.0 -> 0.5"):
    runs.check_resumable(now, workdir)


def test_a_common_field_set_by_a_method_file_is_completed_with_its_common_default():
  """A common field added since an old run, which a method file sets for a dataset: that
  run behaved as the field's common default, not as the method's value; a model field
  takes the method file's base value (`model_config()`), not its per-dataset one."""
  now = default.get_config("scanet,wikipedia")
  assert (now.data.image_power, now.train.ema_warmup, now.model.activation) == (0.5, 4.0, "relu")
  saved = now.to_dict()
  del saved["data"]["image_power"], saved["train"]["ema_warmup"], saved["model"]["activation"]
  completed = runs.complete(ml_collections.ConfigDict(saved))
  assert (completed.data.image_power, completed.train.ema_warmup) == (1.0, 10.0)
  assert completed.model.activation == "linear"
  assert runs.differences(saved, now) == [
      "data.image_power",
      "model.activation",
      "train.ema_warmup",
  ]
  # Saved values always win; a config not built by configs/default.py stays as it is.
  assert runs.complete(now).to_dict() == now.to_dict()
  user_config = ml_collections.ConfigDict({"train": {"batch_size": 8}})
  assert runs.complete(user_config) is user_config


def test_the_wikipedia_split_of_configs_saved_before_it():
  """New Wikipedia configs take the literature's split; one saved before the field (and
  resumed, evaluated or reused) keeps the list-order split it ran with; other datasets
  have no such field."""
  config = default.get_config("drsl,wikipedia")
  assert config.data.wikipedia_split == "literature"
  old = config.to_dict()
  del old["data"]["wikipedia_split"]
  assert runs.complete(ml_collections.ConfigDict(old)).data.wikipedia_split == "list_order"
  assert runs.complete(config).data.wikipedia_split == "literature"
  assert runs.differences(old, config) == ["data.wikipedia_split"]
  assert runs.data_defaults("wikipedia")["wikipedia_split"] == "list_order"
  synthetic = default.get_config("drsl,synthetic")
  assert "wikipedia_split" not in synthetic.data
  assert "wikipedia_split" not in runs.complete(synthetic).data
  assert "wikipedia_split" not in runs.data_defaults("synthetic")


def test_one_table_says_which_fields_change_a_result():
  for field in ("data.data_dir", "train.progress_bar", "eval.memory_budget_mb"):
    assert runs.same_result_with(field) and runs.may_resume_with(field)
  for field in ("eval.map_r", "eval.select_by", "train.num_epochs"):
    assert runs.may_resume_with(field) and not runs.same_result_with(field)
  for field in ("train.learning_rate", "model.dim", "data.text_feature", "seed"):
    assert not runs.may_resume_with(field) and not runs.same_result_with(field)
  config = default.get_config("drsl,synthetic")
  moved = config.to_dict()
  moved["data"]["data_dir"] = "/elsewhere"
  moved["train"]["num_epochs"] = 3
  assert runs.differences(moved, config) == ["train.num_epochs"]
  assert runs.differences(moved, config, runs.may_resume_with) == []


def test_load_reads_and_completes_a_workdir_config(tmp_path):
  config = default.get_config("drsl,synthetic")
  workdir = _old_workdir(tmp_path, config, "train.ema_decay")
  assert "ema_decay" not in runs.load_saved(workdir).train
  loaded = runs.load(workdir)
  assert loaded.train.ema_decay == 0.0 and loaded.model.image_layers == (1024, 300)
  with pytest.raises(errors.MissingError, match="config.json not found"):
    runs.load(str(tmp_path / "nowhere"))
