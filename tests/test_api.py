"""The Python API (`crossmodal_jax.api`): the README's example runs; a loaded model's scores
of raw inputs are the scores evaluation ranked (every method on the synthetic benchmark,
the text-from-text paths on real Wikipedia); `rank` is the top k of `score`; the saved
preprocessing remakes a dataset's arrays from its raw inputs exactly; and the errors."""

from __future__ import annotations

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
import scipy.io

import crossmodal_jax
from conftest import REPO, WIKI_DIR
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import methods
from crossmodal_jax import metrics
from crossmodal_jax import ranking
from crossmodal_jax import runs
from crossmodal_jax.configs import default
from crossmodal_jax.data import preprocessing
from crossmodal_jax.data.sources import synthetic
from crossmodal_jax.data.sources import wikipedia_builder
from crossmodal_jax.data.text import glove

README = REPO / "README.md"
NUM_TRAIN = 300  # synthetic training pairs of the runs here


def readme_example() -> str:
  section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
  match = re.search(r"```python\n(.*?)```", section, re.S)
  assert match, "no Python block in the README's Python API section"
  return match.group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch):
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # the example's tempfile.mkdtemp()
  monkeypatch.setattr("tempfile.tempdir", None)
  namespace = {"__name__": "readme_api"}
  exec(compile(readme_example(), "README.md:Python API", "exec"), namespace)
  model, scores = namespace["model"], namespace["scores"]
  assert isinstance(model, crossmodal_jax.Model)
  assert scores.shape == (600, 600) and namespace["indices"].shape == (3, 5)
  assert namespace["results"]["map_all"]["avg"] > 0.2  # chance is about 0.1


# --------------------------------------------------------------------------------------
# Runs on the synthetic benchmark, one per method
# --------------------------------------------------------------------------------------

# Each method's small run, and its raw test inputs: the generated arrays (images as the
# global feature, or as region sequences for MCSM; texts as the arrays the method reads).
SYNTHETIC = {
    "drsl": {
        "model.image_layers": (32, 16),
        "model.text_layers": (32, 16),
        "model.relation_layers": (32,),
    },
    "hcmsl": {},
    "scanet": {
        "model.num_positive": 600,
        "model.num_negative": 600,
        "data.graph_signal": "tfidf",  # a fitted graph signal: the idf of the training bows
    },
    "mcsm": {},
}


def raw_synthetic(method: str):
  test = synthetic.make_dataset(synthetic.SyntheticConfig(num_train=NUM_TRAIN)).test
  images = test["image_regions"] if method == "mcsm" else test["image"]
  if method == "mcsm":
    texts = {k: test[k] for k in ("word_ids", "word_mask", "text")}
  else:
    texts = test["bow"] if method == "scanet" else test["text"]
  return images, texts, test["label"]


@pytest.fixture(scope="module")
def runs_by_method(tmp_path_factory):
  root = tmp_path_factory.mktemp("api_runs")
  done = {}

  def run(method: str):
    if method not in done:
      config = crossmodal_jax.get_config(
          f"{method},synthetic,ci",
          data=dict(synthetic_num_train=NUM_TRAIN, data_dir=str(root / "tfds")),
          train=dict(num_epochs=1, progress_bar=False),
          **SYNTHETIC[method],
      )
      workdir = root / method
      results = crossmodal_jax.train(config, workdir)
      done[method] = (workdir, config, results)
    return done[method]

  return run


def evaluated_scores(workdir, config, dataset=None) -> dict[str, np.ndarray]:
  """What evaluation ranked: the test split's ranking scores of the best checkpoint, from
  the dataset rebuilt from the config."""
  dataset = dataset or data_lib.load_dataset(config.data)
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables, _ = runs.restore_variables(str(workdir), method, dataset.train, "best")
  return ranking.score_split(method, variables, dataset.test, config.eval)


def assert_scores_are_evaluations(
    model, images, texts, labels, workdir, config, results, dataset=None
):
  want = evaluated_scores(workdir, config, dataset)
  for direction in ("i2t", "t2i"):
    got = model.score(images, texts, direction)
    np.testing.assert_allclose(got, want[direction], rtol=1e-5, atol=1e-5)
  i2t = model.score(images, texts)
  assert metrics.map_at_all(i2t, labels, labels) == pytest.approx(
      results["map_all"]["i2t"], abs=1e-6
  )
  on_disk = json.loads((workdir / "results.json").read_text())
  assert on_disk["map_all"] == results["map_all"]


@pytest.mark.parametrize("method", list(SYNTHETIC))
def test_scores_of_raw_inputs_are_what_evaluation_ranked(method, runs_by_method):
  workdir, config, results = runs_by_method(method)
  assert (workdir / preprocessing.DIRECTORY / "preprocessing.json").is_file()
  model = crossmodal_jax.load(workdir)
  assert model.checkpoint == "best" and model.step == results["checkpoint_step"]
  images, texts, labels = raw_synthetic(method)
  assert_scores_are_evaluations(model, images, texts, labels, workdir, config, results)
  # The encodings: one per item, a pytree of numpy arrays.
  for tree, n in ((model.embed_images(images[:7]), 7), (model.embed_texts(texts), 600)):
    leaves = jax.tree.leaves(tree)
    assert leaves and all(isinstance(x, np.ndarray) and len(x) == n for x in leaves)


def assert_top_k_of(indices, top, matrix, k):
  """Each row of (indices, top) is the k best of the matrix's row, best first, up to
  float32 rounding (the streamed top k scores other tiles); the indices themselves where
  no near-tie makes the order ambiguous."""
  assert indices.shape == top.shape == (len(matrix), k)
  clear = 0
  for row, got, scores in zip(matrix.astype(np.float64), indices, top):
    tol = 1e-5 * max(float(np.abs(row).max()), 1.0)
    want = np.argsort(-row, kind="stable")[:k]
    np.testing.assert_allclose(scores, row[got], rtol=0, atol=tol)
    np.testing.assert_allclose(scores, row[want], rtol=0, atol=tol)
    assert len(set(got.tolist())) == k and np.all(np.diff(scores) <= 0)
    edge = np.sort(row)[::-1][: k + 1]
    if np.min(-np.diff(edge)) > tol:
      np.testing.assert_array_equal(got, want)
      clear += 1
  assert clear > 0


@pytest.mark.parametrize("method", ["drsl", "mcsm"])  # one score channel; a row-wise fusion
def test_rank_is_the_top_k_of_score(method, runs_by_method):
  model = crossmodal_jax.load(runs_by_method(method)[0])
  images, texts, _ = raw_synthetic(method)
  queries = images[:9]
  scores = model.score(images, texts)
  indices, top = model.rank(queries, texts, k=6)
  assert indices.dtype == np.int32 and top.dtype == np.float32
  assert_top_k_of(indices, top, scores[:9], 6)
  # t2i: texts rank the images by the t2i scores (the gallery is the whole image set).
  few = texts[:5] if not isinstance(texts, dict) else {k: v[:5] for k, v in texts.items()}
  indices, top = model.rank(few, images, k=4, direction="t2i")
  assert_top_k_of(indices, top, model.score(images, texts, "t2i")[:5], 4)
  for bad in (0, 601):
    with pytest.raises(errors.UserError, match=r"k=.* must be an integer in \[1, 600\]"):
      model.rank(queries, texts, k=bad)
  with pytest.raises(errors.UserError, match="Unknown direction 'x2y'"):
    model.score(images, texts, "x2y")


def test_raw_inputs_the_method_cannot_read_are_one_error(runs_by_method):
  model = crossmodal_jax.load(runs_by_method("mcsm")[0])
  images, texts, _ = raw_synthetic("mcsm")
  with pytest.raises(errors.UserError, match="reads the image array 'image_regions'"):
    model.embed_images(images.mean(axis=1))  # global features: MCSM reads the regions
  with pytest.raises(errors.UserError, match="reads the text array 'word_ids'"):
    model.embed_texts(texts["text"])
  with pytest.raises(errors.UserError, match="has no raw texts"):
    model.embed_texts(["a text"])
  with pytest.raises(errors.UserError, match=r"'text' rows have shape \(3,\)"):
    model.embed_texts({**texts, "text": texts["text"][:, :3]})


def test_a_workdir_without_saved_preprocessing_is_one_error(runs_by_method, tmp_path):
  source, config, _ = runs_by_method("drsl")
  workdir = tmp_path / "old"
  shutil.copytree(source, workdir)
  shutil.rmtree(workdir / preprocessing.DIRECTORY)  # as a run trained before it was saved
  with pytest.raises(crossmodal_jax.api.PreprocessingNotSavedError) as e:
    crossmodal_jax.load(workdir)
  message = str(e.value)
  assert isinstance(e.value, errors.UserError) and "\n" not in message
  assert "has no saved preprocessing" in message
  assert f"crossmodal_jax.save_preprocessing({str(workdir)!r})" in message
  # What the message says: saved from the run's data, the model loads, with the scores.
  crossmodal_jax.save_preprocessing(workdir)
  images, texts, _ = raw_synthetic("drsl")
  np.testing.assert_array_equal(
      crossmodal_jax.load(workdir).score(images, texts),
      crossmodal_jax.load(source).score(images, texts),
  )
  with pytest.raises(errors.MissingError, match="config.json not found"):
    crossmodal_jax.load(tmp_path / "nowhere")


def test_evaluate_is_the_evaluate_command(runs_by_method):
  workdir, _, results = runs_by_method("drsl")
  again = crossmodal_jax.evaluate(workdir)
  assert again["map_all"] == results["map_all"]
  assert again["checkpoint"] == "best"
  latest = crossmodal_jax.evaluate(workdir, checkpoint="latest", split="validation")
  assert latest["split"] == "validation" and latest["checkpoint"] == "latest"
  crossmodal_jax.evaluate(workdir)  # results.json as it was


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------


def test_get_config_takes_overrides_by_field_section_or_dotted_name():
  config = crossmodal_jax.get_config(
      "scanet,wikipedia,ci",
      seed=3,
      data=dict(manual_dir="/data/wiki"),
      train=dict(num_epochs=2, param_groups=["x=2"]),
      **{"eval.map_r": 10},
  )
  assert (config.method, config.preset, config.seed) == ("scanet", "ci", 3)
  assert config.data.manual_dir == "/data/wiki" and config.train.num_epochs == 2
  assert config.train.param_groups == ("x=2",) and config.eval.map_r == 10
  assert crossmodal_jax.get_config().to_dict() == default.get_config().to_dict()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(train=dict(num_epoch=3)), "Unknown config field 'train.num_epoch': train has no "
         "'num_epoch'. Did you mean `train.num_epochs`? Fields of train: adamw_weight_decay"),
        (dict(sed=1), "Unknown config field 'sed': config has no 'sed'. Did you mean `seed`?"),
        (dict(train=dict(num_epochs="x")), "Config field 'train.num_epochs': "),
        (dict(data=3), "Config field 'data' is a section"),
    ],
)  # fmt: skip
def test_get_config_errors_are_one_user_error(overrides, message):
  with pytest.raises(errors.UserError) as e:
    crossmodal_jax.get_config("drsl,synthetic", **overrides)
  assert str(e.value).startswith(message), str(e.value)
  with pytest.raises(errors.UserError, match="Unknown method 'nosuch'"):
    crossmodal_jax.get_config("nosuch,synthetic")


# --------------------------------------------------------------------------------------
# The saved preprocessing remakes the arrays exactly (a feature folder with raw texts)
# --------------------------------------------------------------------------------------

_WORDS = ("painting museum colour portrait", "cell species protein gene", "river mountain coast")


def _write_folder(root, sizes=(("train", 24), ("test", 9))) -> dict[str, tuple]:
  root.mkdir(parents=True)
  rng = np.random.default_rng(0)
  out = {}
  for prefix, n in sizes:
    label = np.arange(n) % 3
    image = (rng.gamma(2.0, size=(n, 6)) + label[:, None]).astype(np.float32)
    texts = [
        f"The {_WORDS[c]} of row {'abcdefghijklmnopqrstuvwxyz'[i]}x." for i, c in enumerate(label)
    ]
    np.save(root / f"{prefix}_img.npy", image)
    np.save(root / f"{prefix}_img_lab.npy", label.reshape(-1, 1))
    with open(root / f"{prefix}_text.jsonl", "w", encoding="utf-8") as f:
      f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    out[prefix] = (image, texts)
  return out


@pytest.mark.parametrize("feature", ["tfidf_svd", "lda"])
def test_saved_preprocessing_remakes_a_folders_arrays_exactly(feature, tmp_path):
  written = _write_folder(tmp_path / "src")
  config = crossmodal_jax.get_config("scanet,features").data
  config.update(
      manual_dir=str(tmp_path / "src"),
      data_dir=str(tmp_path / "data"),
      text_feature=feature,
      min_count=1,
      svd_dim=3,
      lda_topics=3,
      word_sequences=True,
      max_words=5,
      graph_vocab_size=12,
      graph_neighbors=3,
      graph_signal="tfidf",
      image_power=0.5,
      random_word_vectors=not glove.word_vectors_available(),
  )
  dataset = data_lib.load_dataset(config)
  directory = tmp_path / "saved"
  assert preprocessing.save(dataset, directory)
  loaded = preprocessing.load(directory)
  assert loaded.shapes == dataset.dims()
  assert loaded.meta["vocab"] == dataset.meta["vocab"]
  np.testing.assert_array_equal(loaded.meta["word_vectors"], dataset.meta["word_vectors"])
  for field in ("senders", "receivers", "weights"):
    np.testing.assert_array_equal(
        getattr(loaded.meta["word_graph"], field), getattr(dataset.meta["word_graph"], field)
    )
  for prep in (dataset.meta["preprocessing"], loaded):
    for split, (image, texts) in (("train", written["train"]), ("test", written["test"])):
      want = dataset.splits[split]
      np.testing.assert_array_equal(prep.images(image)["image"], want["image"])
      made = prep.texts(texts)
      assert sorted(made) == ["bow", "text", "word_ids", "word_mask"]
      for key, x in made.items():
        np.testing.assert_array_equal(x, want[key], err_msg=f"{split} {key}")
        assert x.dtype == want[key].dtype
  with pytest.raises(errors.UserError, match="made from raw texts"):
    loaded.texts({"text": dataset.test["text"]})


def test_a_dataset_built_by_hand_saves_no_preprocessing(tmp_path):
  dataset = synthetic.make_dataset(synthetic.SyntheticConfig(num_train=20, num_test=5))
  assert not preprocessing.save(dataset, tmp_path / "p")
  assert not os.path.exists(tmp_path / "p")


# --------------------------------------------------------------------------------------
# Real Wikipedia: raw SIFT rows and article texts
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(not WIKI_DIR.is_dir(), reason=f"Wikipedia dataset not found at {WIKI_DIR}")
@pytest.mark.parametrize(
    "method, text_path",
    [("drsl", "tfidf_svd"), ("scanet", "word graph"), ("mcsm", "word sequences")],
)
def test_wikipedia_scores_of_raw_features_and_articles(method, text_path, tmp_path, wiki_data_dir):
  config = crossmodal_jax.get_config(
      f"{method},wikipedia,ci",
      data=dict(manual_dir=str(WIKI_DIR), data_dir=str(wiki_data_dir)),
      train=dict(num_epochs=1, progress_bar=False),
  )
  workdir = tmp_path / "wd"
  results = crossmodal_jax.train(config, workdir)
  model = crossmodal_jax.load(workdir)
  text = model.preprocessing.text
  assert {"drsl": "text", "scanet": "bow", "mcsm": "word_ids"}[method] in text.keys(), text_path
  # The raw inputs: raw_features.mat's I_te rows of the test split's rows (its lines in
  # the test list) and those rows' articles.
  dataset = data_lib.load_dataset(config.data)
  ids = dataset.meta["ids"]["test"]
  images = scipy.io.loadmat(WIKI_DIR / "raw_features.mat")["I_te"][ids["row"]]
  articles = [
      wikipedia_builder.parse_text_xml(WIKI_DIR / "texts" / f"{t}.xml")[1] for t in ids["text"]
  ]
  labels = dataset.test["label"]
  assert_scores_are_evaluations(model, images, articles, labels, workdir, config, results, dataset)
