"""Retrieval at scale and from a checkpoint: streamed top-k evaluation against the full
score matrix, the cross-split protocol against a slow numpy reference, and
experiments/retrieve.py on a tiny trained run (in this process, and once through the real
entry point).

The toy methods here score with small integers, so every score is exact whatever the
tile shapes, with heavy ties: the streamed and the full rankings must then agree exactly,
tie for tie.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
import scipy.io
from absl import flags

from conftest import REPO, WIKI_DIR, age_drsl_config_json, train_on_real_wikipedia
from int_methods import IntDot, IntFused
from configs import default
from crossmodal_jax import errors
from crossmodal_jax import evaluation
from crossmodal_jax import methods
from crossmodal_jax import protocols
from crossmodal_jax import ranking
from crossmodal_jax import runs
from crossmodal_jax import scoring
from crossmodal_jax import training
from crossmodal_jax.data import common
from experiments import retrieve

ENV = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
ENV.pop(errors.TRACEBACK_ENV, None)

# --------------------------------------------------------------------------------------
# Toy methods with exact integer scores
# --------------------------------------------------------------------------------------


class ColumnNorm(IntFused):
  """Not row-wise: each gallery item's scores are centred over the queries."""

  def retrieval_scores(self, variables, scores, direction):
    del variables, direction
    a = np.asarray(scores["a"], np.float64)
    return a - a.mean(axis=0, keepdims=True)


TOYS = {"int_dot": IntDot, "int_fused": IntFused, "column_norm": ColumnNorm}


def toy_split(rng, n: int) -> common.Split:
  return common.Split(
      {
          "image": rng.integers(-1, 2, size=(n, 4)).astype(np.float32),
          "text": rng.integers(-1, 2, size=(n, 4)).astype(np.float32),
          "label": rng.integers(0, 4, size=n).astype(np.int32),
      }
  )


@pytest.fixture(scope="module")
def toy_dataset():
  rng = np.random.default_rng(0)
  # 120 training items: the yu2018 gallery is larger than its R = 100.
  train_split, validation, test = toy_split(rng, 120), toy_split(rng, 10), toy_split(rng, 30)
  return common.Dataset("toy", train_split, validation, test, num_classes=4)


def toy(name: str):
  config = ml_collections.ConfigDict({"method": name, "model": {}})
  method = TOYS[name](config, {"image": (4,), "text": (4,)})
  return method, method.init(jax.random.key(0), None)


def eval_config(**fields) -> ml_collections.ConfigDict:
  config = default.eval_config()
  # Small blocks and a budget of 0.1 MB: many query and gallery tiles on these splits.
  config.update(query_block=8, gallery_block=16, memory_budget_mb=0.1, map_r=5)
  config.update({"precision_ks": (1, 5, 10), **fields})
  return config


def flat(result: dict) -> dict:
  """{(key, ..., leaf position): float}; precision-scope values keyed by their scope."""
  out = {}
  for key, value in result.items():
    if key == "precision_scope":
      for d in ("i2t", "t2i"):
        out.update({(key, d, s): x for s, x in zip(value["scopes"], value[d])})
    elif isinstance(value, dict):
      out.update({(key, *path): x for path, x in flat(value).items()})
    elif isinstance(value, list):
      out.update({(key, i): x for i, x in enumerate(value)})
    else:
      out[(key,)] = value
  return out


def assert_same_metrics(streamed: dict, full: dict, whole: bool):
  """Every figure of the streamed result equals the full ranking's (all of them when the
  streamed k is the gallery size)."""
  got, want = flat({k: v for k, v in streamed.items() if k != "top_k"}), flat(full)
  assert got and set(got) <= set(want), sorted(set(got) - set(want))
  if whole:
    assert set(got) == set(want) - {k for k in want if k[0] == "map_all_by_channel"}
  for key, value in got.items():
    assert value == pytest.approx(want[key], rel=1e-12, abs=1e-12), key


# --------------------------------------------------------------------------------------
# Streamed top-k evaluation equals the full matrix's
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["int_dot", "int_fused"])
@pytest.mark.parametrize("gallery_split", ["test", "train"])
def test_streamed_metrics_equal_full_matrix_metrics(toy_dataset, name, gallery_split):
  method, variables = toy(name)
  split, gallery = toy_dataset.test, toy_dataset.splits[gallery_split]
  ng = len(gallery)
  full = protocols.evaluate_split(
      method, variables, split, eval_config(ranking="full"), gallery=gallery
  )
  # Ties in every query row.
  channels = method.score(variables, split["image"] * 2, gallery["text"] * 2)
  ranking = np.asarray(method.retrieval_scores(variables, channels, "i2t"))
  assert all(len(np.unique(row)) < ng for row in ranking)
  for k, whole in ((0, False), (ng, True)):  # k = max(map_r, precision_ks) = 10; all
    config = eval_config(ranking="top_k", top_k=k)
    streamed = protocols.evaluate_split(method, variables, split, config, gallery=gallery)
    assert streamed["top_k"] == (ng if whole else 10)
    assert ("map_all" in streamed) == whole and ("pr_curve" in streamed) == whole
    assert set(streamed["precision_at_k"]["i2t"]) == {"1", "5", "10"}
    assert_same_metrics(streamed, full, whole)
    if name == "int_dot":  # the plan really tiles queries and gallery
      p = scoring.top_k_plan(30, ng, streamed["top_k"], 8, 16, 4 * 8, int(0.1 * 2**20))
      assert p.query_rows < 30 and (p.merge_block < ng or p.gallery_chunk < ng)


def test_auto_ranking_streams_past_the_full_matrix_limit(toy_dataset):
  method, variables = toy("int_fused")
  split = toy_dataset.test
  # 30 x 30 x 4 B x (2 channels + 2) = 14.4 kB.
  assert (
      protocols.full_matrix_bytes(30, 30, ranking.num_channels(method, variables, split)) == 14400
  )
  small = eval_config(full_matrix_mb=14400 / 2**20)
  assert protocols.ranking_mode(method, variables, split, split, small) == "full"
  tiny = eval_config(full_matrix_mb=14399 / 2**20)
  assert protocols.ranking_mode(method, variables, split, split, tiny) == "top_k"
  assert protocols.ranking_mode(method, variables, split, split, tiny, full=False) == "full"
  result = protocols.evaluate_split(method, variables, split, tiny)
  assert result["top_k"] == 10 and "map_all" not in result
  with pytest.raises(errors.UserError, match="Unknown eval.ranking 'fast'"):
    protocols.evaluate_split(method, variables, split, eval_config(ranking="fast"))
  with pytest.raises(errors.UserError, match="eval.top_k must be an integer >= 0"):
    protocols.evaluate_split(method, variables, split, eval_config(ranking="top_k", top_k=-1))


def test_unstreamable_rankings_are_one_user_error_naming_the_method(toy_dataset):
  method, variables = toy("column_norm")
  split = toy_dataset.test
  config = eval_config(ranking="top_k")
  with pytest.raises(errors.UserError, match="'column_norm'.*not row-wise") as e:
    protocols.evaluate_split(method, variables, split, config)
  assert "\n" not in str(e.value)
  # Fine with the full matrices.
  assert "map_all" in protocols.evaluate_split(method, variables, split, eval_config())
  # One query row of 30 items x 148 B is over half of a 4 kB budget.
  method, variables = toy("int_fused")
  config = eval_config(ranking="top_k", memory_budget_mb=4096 / 2**20)
  with pytest.raises(errors.UserError, match="'int_fused'.*one query's row of 30 gallery items"):
    protocols.evaluate_split(method, variables, split, config)


# --------------------------------------------------------------------------------------
# The cross-split protocol against a slow numpy reference
# --------------------------------------------------------------------------------------


def reference_scores(name: str, queries: np.ndarray, gallery: np.ndarray, direction: str):
  """Pair by pair, then each row fused on its own (the images of a t2i pair are the
  gallery: the score is image . text either way)."""
  zq, zg = 2.0 * queries, 2.0 * gallery
  a = np.array([[float(np.dot(q[:2], g[:2])) for g in zg] for q in zq])
  b = np.array([[float(np.dot(q[2:], g[2:])) for g in zg] for q in zq])
  if name == "int_dot":
    return a + b
  del direction  # the fused channels are oriented query x gallery already
  rows = []
  for ra, rb in zip(a, b):
    na = (ra - ra.min()) / (ra.max() - ra.min()) if ra.max() > ra.min() else 0 * ra
    nb = (rb - rb.min()) / (rb.max() - rb.min()) if rb.max() > rb.min() else 0 * rb
    rows.append(0.3 * (na * rb) + 0.7 * (nb * ra))
  return np.array(rows, np.float32)


def reference_metrics(scores, query_labels, gallery_labels, r, ks):
  """mAP@ALL, mAP@R (found-in-top-R denominator) and P@K by explicit loops."""
  aps_all, aps_r, precision = [], [], {k: [] for k in ks}
  for row, label in zip(scores, query_labels):
    order = sorted(range(len(row)), key=lambda j: (-row[j], j))
    rel = [gallery_labels[j] == label for j in order]
    hits, total = 0, []
    for rank, is_rel in enumerate(rel, 1):
      if is_rel:
        hits += 1
        total.append(hits / rank)
    aps_all.append(sum(total) / len(total) if total else 0.0)
    top = [p for p, rank in zip(total, [i + 1 for i, x in enumerate(rel) if x]) if rank <= r]
    aps_r.append(sum(top) / len(top) if top else 0.0)
    for k in ks:
      precision[k].append(sum(rel[:k]) / k)
  return np.mean(aps_all), np.mean(aps_r), {str(k): np.mean(v) for k, v in precision.items()}


@pytest.mark.parametrize("name", ["int_dot", "int_fused"])
@pytest.mark.parametrize("ranking", ["full", "top_k"])
def test_yu2018_protocol_equals_numpy_reference(toy_dataset, name, ranking):
  method, variables = toy(name)
  config = eval_config(ranking=ranking, precision_ks=(1, 5, 10, 50, 100))
  result = protocols.evaluate_protocol(method, variables, toy_dataset, config, "yu2018")
  assert result["protocol"]["metric"] == "map_at_100"
  assert (result["protocol"]["query_split"], result["protocol"]["gallery_split"]) == (
      "test",
      "train",
  )
  test, train_split = toy_dataset.test, toy_dataset.train
  sides = {"i2t": (test["image"], train_split["text"]), "t2i": (test["text"], train_split["image"])}
  for d, (queries, gallery) in sides.items():
    scores = reference_scores(name, queries, gallery, d)
    map_all, map_100, p_at_k = reference_metrics(
        scores, test["label"], train_split["label"], 100, (1, 5, 10, 50, 100)
    )
    assert result["map_at_100"][d] == pytest.approx(map_100, abs=1e-12)
    assert result["precision_at_k"][d] == pytest.approx(p_at_k, abs=1e-12)
    if ranking == "full":
      assert result["map_all"][d] == pytest.approx(map_all, abs=1e-12)
    else:  # k = 100 of the 120 training items: no mAP@ALL
      assert result["top_k"] == 100 and "map_all" not in result
  with pytest.raises(errors.UserError, match="Unknown protocol 'yu'"):
    protocols.evaluate_protocol(method, variables, toy_dataset, config, "yu")


# --------------------------------------------------------------------------------------
# experiments/retrieve.py on a tiny trained run
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A one-epoch DRSL run on 200 synthetic training pairs (small towers)."""
  root = tmp_path_factory.mktemp("retrieve")
  config = default.get_config("drsl,synthetic")
  config.model.image_layers, config.model.text_layers = (32, 16), (32, 16)
  config.model.relation_layers = (32,)
  config.data.synthetic_num_train = 200
  config.data.data_dir = str(root / "tfds")
  config.train.update(num_epochs=1, progress_bar=False)
  config.eval.memory_budget_mb = 0.05  # many tiles
  workdir = root / "wd"
  training.train(config, str(workdir))
  return workdir, runs.load(str(workdir))


def score_matrix_of(workdir, config, dataset, split: str, direction: str) -> np.ndarray:
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables, _ = runs.restore_variables(str(workdir), method, dataset.train, "best")
  return ranking.score_split(method, variables, dataset.splits[split], config.eval)[direction]


def assert_true_top_k(report: dict, matrix: np.ndarray, labels: np.ndarray, names):
  """Each query's items are the k best of its row of the score matrix, best first, with
  their own scores, labels and relevance."""
  k = report["k"]
  clear_rows = 0
  for entry in report["queries"]:
    row = matrix[entry["query"]].astype(np.float64)
    got = np.array([r["gallery_index"] for r in entry["results"]])
    got_scores = np.array([r["score"] for r in entry["results"]])
    want = np.argsort(-row, kind="stable")[:k]
    # The streamed scores come from other tile shapes than the matrix: equal up to
    # float32 rounding, so near-ties may swap.
    tol = 1e-5 * float(np.abs(row).max())
    np.testing.assert_allclose(got_scores, row[got], rtol=0, atol=tol)
    np.testing.assert_allclose(got_scores, row[want], rtol=0, atol=tol)
    assert len(set(got.tolist())) == k and np.all(np.diff(got_scores) <= 0)
    top = np.sort(row)[::-1][: k + 1]
    if np.min(-np.diff(top)) > tol:  # no near-tie: the indices themselves
      np.testing.assert_array_equal(got, want)
      clear_rows += 1
    for r in entry["results"]:
      label = int(labels[r["gallery_index"]])
      assert r["label"] == label
      assert r["relevant"] == (label == entry["label"])
      if names is not None:
        assert r["class"] == names[label]
  assert clear_rows > 0


def test_retrieve_lists_the_true_top_k_of_the_score_matrix(trained):
  workdir, config = trained
  report = retrieve.retrieve(str(workdir), [0, 5, 17], k=7, direction="i2t", split="test")
  dataset = retrieve.load_data(config, None)
  assert [e["query"] for e in report["queries"]] == [0, 5, 17]
  assert report["num_gallery"] == 600 and report["method"] == "drsl"
  names = dataset.meta["class_names"]
  matrix = score_matrix_of(workdir, config, dataset, "test", "i2t")
  assert_true_top_k(report, matrix, dataset.test["label"], names)
  # Against another split's gallery: the 200 training texts.
  report = retrieve.retrieve(
      str(workdir), [3, 0], k=4, direction="i2t", split="test", gallery_split="train"
  )
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables, _ = runs.restore_variables(str(workdir), method, dataset.train, "best")
  images, _ = ranking.encode_split(method, variables, dataset.test, config.eval)
  _, texts = ranking.encode_split(method, variables, dataset.train, config.eval)
  matrix = ranking.method_channels(method, variables, images, texts, config.eval)
  assert report["num_gallery"] == 200
  assert_true_top_k(report, matrix, dataset.train["label"], names)


def test_retrieve_bad_inputs_are_one_line_user_errors(trained, tmp_path):
  workdir, _ = trained
  cases = [
      (dict(queries=[600]), "row 600 is out of range: the test split of the synthetic"),
      (dict(queries=[0], k=601), r"--k=601 must be in \[1, 600\]"),
      (dict(queries=[0], split="dev"), "Unknown split 'dev'"),
      (dict(queries=[0], checkpoint="7"), "No checkpoint at step 7"),
      (dict(queries=[0], features_dir=str(tmp_path / "none")), "none"),
  ]
  for kwargs, match in cases:
    with pytest.raises(errors.UserError, match=match) as e:
      retrieve.retrieve(str(workdir), **kwargs)
    assert "\n" not in str(e.value)
  for text, match in [("0,x", "'x' is not a row index"), (" , ", "names no query")]:
    with pytest.raises(errors.UserError, match=match):
      retrieve.parse_queries(text)
  assert retrieve.parse_queries("0, 5,17") == [0, 5, 17]
  with pytest.raises(errors.MissingError, match="does not exist"):
    retrieve.write_report({}, str(tmp_path / "no" / "r.json"))


def write_features(folder, image_dim: int, text_dim: int):
  """A DRSL-layout folder: 40 training and 25 test pairs of 10 classes (1-based)."""
  rng = np.random.default_rng(7)
  folder.mkdir()
  for prefix, n in (("train", 40), ("test", 25)):
    labels = (np.arange(n) % 10 + 1)[:, None]
    centres = np.random.default_rng(1).standard_normal((11, image_dim + text_dim))
    x = centres[labels[:, 0]] + 0.3 * rng.standard_normal((n, image_dim + text_dim))
    for name, value in (
        ("img", x[:, :image_dim]),
        ("txt", x[:, image_dim:]),
        ("img_lab", labels.astype(np.float64)),
    ):
      scipy.io.savemat(folder / f"{prefix}_{name}.mat", {f"{prefix}_{name}": value})


def test_retrieve_ranks_a_folder_of_feature_files(trained, tmp_path):
  workdir, config = trained
  folder = tmp_path / "feats"
  write_features(folder, 128, 64)  # the synthetic run's feature sizes
  report = retrieve.retrieve(str(workdir), [2, 24], k=5, direction="t2i", features_dir=str(folder))
  assert report["dataset"] == "features" and report["num_gallery"] == 25
  assert all("class" not in r for e in report["queries"] for r in e["results"])  # no names
  dataset = retrieve.load_data(config, str(folder))
  matrix = score_matrix_of(workdir, config, dataset, "test", "t2i")
  assert_true_top_k(report, matrix, dataset.test["label"], None)
  wrong = tmp_path / "wrong"
  write_features(wrong, 20, 64)
  with pytest.raises(errors.UserError, match=f"{wrong}: its features .* do not fit the model"):
    retrieve.retrieve(str(workdir), [0], features_dir=str(wrong))


def test_retrieve_entry_point_prints_and_writes_the_top_k(trained):
  workdir, config = trained
  proc = subprocess.run(
      [
          sys.executable, "-m", "experiments.retrieve", f"--workdir={workdir}",
          "--split=test", "--direction=t2i", "--queries=4,1", "--k=3",
      ],
      cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  path = workdir / "retrieval_test_t2i.json"
  assert proc.stdout.strip().splitlines()[-1] == f"wrote {path}"
  report = json.loads(path.read_text())
  assert not list(workdir.glob(".tmp_*"))  # the temporary file was renamed onto it
  printed = [l.split() for l in proc.stdout.splitlines() if l.strip().split()[1:2] == ["gallery"]]
  listed = [
      (str(r["rank"]), str(r["gallery_index"])) for e in report["queries"] for r in e["results"]
  ]
  assert [(p[0], p[2]) for p in printed] == listed and len(listed) == 6
  dataset = retrieve.load_data(config, None)
  matrix = score_matrix_of(workdir, config, dataset, "test", "t2i")
  assert_true_top_k(report, matrix, dataset.test["label"], dataset.meta["class_names"])


def test_every_retrieve_flag_has_help():
  flag_values = flags.FlagValues()
  holders = retrieve.define_flags(flag_values)
  assert set(holders) >= {"workdir", "split", "features_dir", "direction", "queries", "k", "output"}
  for name in holders:
    assert len(flag_values[name].help) > 20, name


def test_retrieve_reads_a_workdir_saved_before_newer_fields(trained, tmp_path):
  # A workdir of an older version: config.json lacks fields added since. They take the
  # values the run behaved as, so the report is the same.
  workdir, _ = trained
  old = tmp_path / "old"
  shutil.copytree(workdir, old)
  assert len(age_drsl_config_json(old)) >= 3
  want = retrieve.retrieve(str(workdir), [0, 9], k=5, direction="t2i")
  got = retrieve.retrieve(str(old), [0, 9], k=5, direction="t2i")
  assert got["queries"] == want["queries"]


def test_retrieve_names_wikipedia_items_by_their_ids(tmp_path, wiki_data_dir):
  """On Wikipedia the report and the printed lines carry each item's id (its image or
  text id), its article's title and its row in the test list."""
  if not WIKI_DIR.is_dir():
    pytest.skip(f"real Wikipedia dataset not found at {WIKI_DIR}")
  train_on_real_wikipedia(
      "drsl,wikipedia,ci", tmp_path, wiki_data_dir, "--config.train.num_epochs=1"
  )
  workdir = tmp_path / "wd"
  proc = subprocess.run(
      [
          sys.executable, "-m", "experiments.retrieve", f"--workdir={workdir}",
          "--queries=0,1", "--k=3",
      ],
      cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((workdir / "retrieval_test_i2t.json").read_text())
  listed = [
      line.split("\t")[:2]
      for line in (WIKI_DIR / "testset_txt_img_cat.list").read_text().splitlines()
      if line.strip()
  ]
  for entry in report["queries"]:
    text_id, image_id = listed[entry["source_row"]]
    assert entry["id"] == image_id and entry["title"], entry
    assert f"id {image_id}" in proc.stdout
    for r in entry["results"]:
      assert r["id"] == listed[r["source_row"]][0] and r["title"]
      assert f"id {r['id']}" in proc.stdout
  # The first test row of the literature's split is not the list's row 231.
  assert report["queries"][0]["source_row"] != 231


def test_pair_relevance_through_evaluate_retrieve_and_the_protocol(trained, tmp_path):
  """eval.relevance="pair": evaluate's mAP@ALL, Recall@K and median rank equal a brute-force
  reading of the score matrix with each item relevant only to its own pair; the "pair"
  protocol gives the same figures from a label-relevance run; retrieve marks only the
  query's own pair relevant."""
  workdir, config = trained
  pair = config.copy_and_resolve_references()
  pair.eval.relevance = "pair"
  results = evaluation.evaluate(str(workdir), config=pair, plots=False)
  assert results["relevance"] == "pair"
  dataset = retrieve.load_data(config, None)
  for direction in ("i2t", "t2i"):
    matrix = score_matrix_of(workdir, config, dataset, "test", direction).astype(np.float64)
    ranks = []
    aps = []
    for i, row in enumerate(matrix):
      order = sorted(range(len(row)), key=lambda j: (-row[j], j))  # ties: lower index first
      rank = order.index(i) + 1
      ranks.append(rank)
      aps.append(1.0 / rank)
    assert results["map_all"][direction] == pytest.approx(np.mean(aps), abs=1e-9)
    for k in ("1", "5", "10"):
      want = np.mean([r <= int(k) for r in ranks])
      assert results["recall_at_k"][direction][k] == pytest.approx(want, abs=1e-12)
    assert results["median_rank"][direction] == pytest.approx(float(np.median(ranks)))
  under_protocol = evaluation.evaluate(str(workdir), config=config, plots=False, protocol="pair")
  assert under_protocol["recall_at_k"] == results["recall_at_k"]
  assert under_protocol["protocol"]["name"] == "pair"
  assert (workdir / "results_pair.json").exists()
  report = retrieve.retrieve(str(workdir), [3, 8], k=600, direction="i2t", config=pair)
  for entry in report["queries"]:
    assert [r["gallery_index"] for r in entry["results"] if r["relevant"]] == [entry["query"]]
  with pytest.raises(errors.UserError, match="its pairs are not another split's"):
    evaluation.evaluate(str(workdir), config=pair, plots=False, protocol="yu2018")
