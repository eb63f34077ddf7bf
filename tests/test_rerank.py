"""Retrieve, then rerank (crossmodal_jax/rerank.py): a first stage's shortlist of K items
per query reranked by the method's own scorer.

- with K = the gallery size the two-stage ranking is the exhaustive one, tie for tie
  (toy methods with integer scores, so every score is exact whatever the block shapes),
  and for DRSL and MCSM (several score channels, a fused retrieval_scores);
- an item outside the shortlist never ranks in the first K; the rest follow the first
  stage's order;
- the second stage scores only each query's K pairs (the blocks the scorer sees, and a
  brute-force reference from the full score matrix), and nothing scores the whole
  gallery when the exhaustive ranking is not affordable;
- the "sm" first stage is the semantic-matching baseline's own ranking;
- a trained run's ranking as the first stage, through evaluate and retrieve;
- bad settings are one-line UserErrors.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from conftest import REPO
from int_methods import IntDot, IntFused
from configs import default
from crossmodal_jax import baselines
from crossmodal_jax import data as data_lib
from crossmodal_jax import errors
from crossmodal_jax import evaluation
from crossmodal_jax import methods
from crossmodal_jax import protocols
from crossmodal_jax import ranking
from crossmodal_jax import rerank
from crossmodal_jax import shortlists
from crossmodal_jax import runs
from crossmodal_jax import scoring
from crossmodal_jax import training
from crossmodal_jax.data import common
from crossmodal_jax.methods.mcsm import method as mcsm
from experiments import retrieve
from experiments.reproduce import table

# --------------------------------------------------------------------------------------
# Toy methods with exact integer scores, and a toy dataset
# --------------------------------------------------------------------------------------


class IntSum(IntFused):
  """Two integer channels ranked by their sum: a function of each pair's own channels."""

  def retrieval_scores(self, variables, scores, direction):
    del variables, direction
    return np.asarray(scores["a"], np.float32) + 3 * np.asarray(scores["b"], np.float32)


TOYS = {"int_dot": IntDot, "int_fused": IntFused, "int_sum": IntSum}


def toy(name: str):
  config = ml_collections.ConfigDict({"method": name, "model": {}})
  method = TOYS[name](config, {"image": (4,), "text": (4,)})
  return method, method.init(jax.random.key(0), None)


def toy_split(rng, n: int) -> common.Split:
  labels = rng.integers(0, 4, size=n).astype(np.int32)
  # Features leaning on the label, so that semantic matching has something to fit.
  lean = np.eye(4, dtype=np.float32)[labels]
  noisy = lambda: np.clip(np.round(lean + rng.normal(0, 0.7, (n, 4))), -1, 1)
  return common.Split(
      {"image": noisy().astype(np.float32), "text": noisy().astype(np.float32), "label": labels}
  )


@pytest.fixture(scope="module")
def toy_dataset():
  rng = np.random.default_rng(0)
  return common.Dataset(
      "toy", toy_split(rng, 120), toy_split(rng, 40), toy_split(rng, 30), num_classes=4
  )


@pytest.fixture(scope="module")
def toy_sm(toy_dataset):
  return shortlists.SemanticMatching(toy_dataset, eval_config()).fit()


def eval_config(**fields) -> ml_collections.ConfigDict:
  config = default.eval_config()
  # Small blocks and a budget of 0.01 MB: many query chunks and candidate blocks.
  config.update(query_block=8, gallery_block=16, memory_budget_mb=0.01, map_r=5)
  config.update({"precision_ks": (1, 5, 10), **fields})
  return config


def flat(result: dict) -> dict:
  """{(key, ..., leaf position): value} of a result's figures."""
  out = {}
  for key, value in result.items():
    if isinstance(value, dict):
      out.update({(key, *path): x for path, x in flat(value).items()})
    elif isinstance(value, list):
      out.update({(key, i): x for i, x in enumerate(value)})
    else:
      out[(key,)] = value
  return out


def assert_same_figures(got: dict, want: dict, tol: float = 1e-12):
  """Every figure of the exhaustive result equals the two-stage one's."""
  got = flat({k: v for k, v in got.items() if k not in ("rerank", "top_k")})
  want = flat({k: v for k, v in want.items() if k != "map_all_by_channel"})
  assert set(got) == set(want), sorted(set(got) ^ set(want))
  for key, value in want.items():
    assert got[key] == pytest.approx(value, rel=tol, abs=tol), key


class Fixed(shortlists.FirstStage):
  """A first stage that returns given rankings ({direction: [n_query, n_gallery]})."""

  name = "fixed"

  def __init__(self, rankings):
    super().__init__(None, None)
    self.rankings = rankings

  def top(self, query, gallery, direction, k, queries=None):
    rows = self.rankings[direction]
    return rows[:, :k] if queries is None else rows[np.asarray(queries)][:, :k]


def encodings(method, variables, split, eval_config):
  images, texts = ranking.encode_split(method, variables, split, eval_config)
  return {"i2t": (images, texts), "t2i": (texts, images)}


def exhaustive_scores(method, variables, split, eval_config) -> dict[str, np.ndarray]:
  return ranking.score_split(method, variables, split, eval_config)


def stable_order(scores: np.ndarray) -> np.ndarray:
  return np.argsort(-np.asarray(scores, np.float64), axis=1, kind="stable")


# --------------------------------------------------------------------------------------
# K = the gallery size: the exhaustive ranking
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["int_dot", "int_fused", "int_sum"])
def test_whole_gallery_shortlist_is_the_exhaustive_ranking_ties_included(toy_dataset, toy_sm, name):
  method, variables = toy(name)
  split, n = toy_dataset.test, len(toy_dataset.test)
  config = eval_config(rerank_k=n, shortlist="sm")
  scores = exhaustive_scores(method, variables, split, config)
  assert all(len(np.unique(row)) < n for row in scores["i2t"])  # ties in every row
  enc = encodings(method, variables, split, config)
  for d in ("i2t", "t2i"):
    first = toy_sm.top(split, split, d, n)
    assert not np.array_equal(first, stable_order(scores[d]))  # the first stage differs
    ranked, top_scores = rerank.two_stage(method, variables, *enc[d], first, n, d, config)
    np.testing.assert_array_equal(ranked, stable_order(scores[d]))
    np.testing.assert_array_equal(top_scores, np.take_along_axis(scores[d], ranked, axis=1))
  exhaustive = protocols.evaluate_split(method, variables, split, config)
  two_stage = protocols.evaluate_split(method, variables, split, config, first_stage=toy_sm)
  assert_same_figures(two_stage, exhaustive)
  assert "map_all" in two_stage and "top_k" not in two_stage
  assert two_stage["rerank"] == {
      "first_stage": "sm",
      "k": n,
      "r": 5,
      "recall_of_exhaustive_top_r": {"i2t": 1.0, "t2i": 1.0, "avg": 1.0},
  }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  """The synthetic benchmark with 200 training pairs (600 test pairs)."""
  config = default.get_config("drsl,synthetic,ci")
  config.data.synthetic_num_train = 200
  config.data.data_dir = str(tmp_path_factory.mktemp("rerank_tfds"))
  return config.data, data_lib.load_dataset(config.data)


def initialised(spec: str, data_config, dataset, **model):
  """A method of `spec` (synthetic data) with its initial variables (and, for a fused
  ranking, a fusion weight): the scores need no training to be compared."""
  config = default.get_config(spec)
  config.data = data_config
  config.model.update(model)
  config.eval.update(query_block=64, memory_budget_mb=1.0)
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables = method.init(jax.random.key(1), method.init_batch(dataset.train))
  if "mcsm" in spec:
    variables = mcsm.with_fusion_weight(variables, 0.4)
  return config, method, variables


@pytest.mark.parametrize("spec", ["drsl,synthetic,ci", "mcsm,synthetic,ci"])
def test_whole_gallery_shortlist_is_the_exhaustive_ranking_of_real_methods(synthetic, spec):
  """DRSL (one channel, a joint scorer) and MCSM (two channels fused row by row): with K =
  the gallery the reranked scores are the exhaustive ones (up to the rounding of other
  block shapes), and so are the ranking and every figure."""
  data_config, dataset = synthetic
  config, method, variables = initialised(spec, data_config, dataset)
  split, n = dataset.test, len(dataset.test)
  config.eval.rerank_k = n
  # A first stage that ranks the gallery backwards: only the reranking orders it.
  backwards = np.broadcast_to(np.arange(n)[::-1], (n, n)).astype(np.int32)
  stage = Fixed({"i2t": backwards, "t2i": backwards})
  scores = exhaustive_scores(method, variables, split, config.eval)
  enc = encodings(method, variables, split, config.eval)
  for d in ("i2t", "t2i"):
    ranked, top_scores = rerank.two_stage(method, variables, *enc[d], backwards, n, d, config.eval)
    want = np.take_along_axis(scores[d], ranked, axis=1)
    np.testing.assert_allclose(top_scores, want, rtol=1e-5, atol=1e-6)
    # The ranking is the exhaustive one but for swaps of scores within rounding.
    tol = 1e-5 * np.abs(scores[d]).max()
    assert (np.diff(want, axis=1) <= tol).all()
    assert (ranked == stable_order(scores[d])).mean() > 0.99
  exhaustive = protocols.evaluate_split(method, variables, split, config.eval)
  two_stage = protocols.evaluate_split(method, variables, split, config.eval, first_stage=stage)
  assert_same_figures(two_stage, exhaustive, tol=1e-3)
  assert two_stage["map_all"]["avg"] == pytest.approx(exhaustive["map_all"]["avg"], abs=1e-4)


# --------------------------------------------------------------------------------------
# What a shortlist leaves out, and what the second stage scores
# --------------------------------------------------------------------------------------


def test_an_item_outside_the_shortlist_never_ranks_in_the_first_k(synthetic):
  data_config, dataset = synthetic
  config, method, variables = initialised("drsl,synthetic,ci", data_config, dataset)
  split, n, k = dataset.test, len(dataset.test), 10
  scores = exhaustive_scores(method, variables, split, config.eval)
  enc = encodings(method, variables, split, config.eval)
  rng = np.random.default_rng(3)
  for d in ("i2t", "t2i"):
    best = stable_order(scores[d])[:, 0]
    # A random first-stage order with each query's exhaustive best item ranked last.
    first = np.stack([rng.permutation(n) for _ in range(n)]).astype(np.int32)
    at = np.argmax(first == best[:, None], axis=1)
    first[np.arange(n), at], first[:, -1] = first[:, -1], best
    ranked, _ = rerank.two_stage(method, variables, *enc[d], first, k, d, config.eval)
    assert ranked.shape == (n, n)
    assert not (ranked[:, :k] == best[:, None]).any()
    np.testing.assert_array_equal(np.sort(ranked[:, :k]), np.sort(first[:, :k]))
    np.testing.assert_array_equal(ranked[:, k:], first[:, k:])
    assert (ranked[:, -1] == best).all()
    # The first k in the method's order of the shortlisted items.
    mine = np.take_along_axis(scores[d], ranked[:, :k], axis=1)
    assert (np.diff(mine, axis=1) <= 1e-5 * np.abs(scores[d]).max()).all()


def test_the_second_stage_scores_only_each_querys_k_pairs(synthetic, monkeypatch):
  data_config, dataset = synthetic
  config, method, variables = initialised("drsl,synthetic,ci", data_config, dataset)
  split, n, k = dataset.test, len(dataset.test), 7
  seen = []
  score = method.score

  def counted(v, image_block, text_block):  # the block shapes each traced call scores
    seen.append((image_block.shape[0], text_block.shape[0]))
    return score(v, image_block, text_block)

  monkeypatch.setattr(method, "score", counted)
  enc = encodings(method, variables, split, config.eval)
  rng = np.random.default_rng(0)
  shortlist = np.stack([rng.choice(n, k, replace=False) for _ in range(n)]).astype(np.int32)
  full = ranking.method_channels(method, variables, *enc["i2t"], config.eval)
  for d in ("i2t", "t2i"):
    seen.clear()
    got = rerank.candidate_channels(method, variables, *enc[d], shortlist, d, config.eval)
    assert got.shape == (n, k)
    # Brute force: the full score matrix restricted to each query's shortlist.
    oriented = full if d == "i2t" else full.T
    want = np.take_along_axis(oriented, shortlist, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(full).max())
    # Every block the scorer saw: one query (an image for i2t) against at most k items.
    blocks = seen if d == "i2t" else [(q, p) for p, q in seen]
    assert blocks and all(p == 1 and 1 <= q <= k for p, q in blocks), seen


def test_nothing_scores_the_whole_gallery_when_the_exhaustive_ranking_is_too_large(
    toy_dataset, toy_sm, monkeypatch
):
  method, variables = toy("int_sum")
  split = toy_dataset.test
  # 30 x 30 x 4 B x (2 channels + 2) = 14.4 kB of full matrices: over this limit.
  config = eval_config(rerank_k=6, full_matrix_mb=14399 / 2**20)
  want = protocols.evaluate_split(method, variables, split, eval_config(ranking="full"))

  def refuse(*args, **kwargs):
    raise AssertionError("the whole gallery was scored")

  for name in ("score_matrix", "top_k", "top_k_of_rows"):
    monkeypatch.setattr(scoring, name, refuse)
  result = protocols.evaluate_split(method, variables, split, config, first_stage=toy_sm)
  assert result["top_k"] == 10 and "map_all" not in result  # max(K, R, P@K cut-offs)
  assert result["rerank"]["recall_of_exhaustive_top_r"] is None
  assert result["rerank"]["k"] == 6
  assert set(result["precision_at_k"]["i2t"]) == {"1", "5", "10"}
  assert 0 <= result["map_at_5"]["avg"] <= 1 and want["map_at_5"]["avg"] >= 0


def test_a_ranking_that_needs_the_whole_row_is_refused_on_part_of_it(toy_dataset, toy_sm):
  method, variables = toy("int_fused")
  split = toy_dataset.test
  with pytest.raises(errors.UserError, match="method 'int_fused'.*not a function") as e:
    protocols.evaluate_split(method, variables, split, eval_config(rerank_k=10), first_stage=toy_sm)
  assert "\n" not in str(e.value)
  # The whole gallery is fine (test above), and so is a ranking of each pair's own channels.
  method, variables = toy("int_sum")
  result = protocols.evaluate_split(
      method, variables, split, eval_config(rerank_k=10), first_stage=toy_sm
  )
  assert result["rerank"]["k"] == 10 and "map_all" in result


# --------------------------------------------------------------------------------------
# The "sm" first stage is the baseline's ranking
# --------------------------------------------------------------------------------------


def test_sm_first_stage_is_the_semantic_matching_baselines_ranking(toy_dataset, toy_sm):
  config = eval_config(rerank_k=1)
  baseline = baselines.run("sm", toy_dataset, eval_config=config)
  assert toy_sm.chosen == baseline["chosen"]
  split = toy_dataset.test
  cosines = baseline_cosines(toy_dataset, baseline["chosen"])
  top = shortlists.shortlist(toy_sm, split, split, 3)
  for d, scores in (("i2t", cosines), ("t2i", cosines.T)):
    assert top[d].dtype == np.int32
    np.testing.assert_array_equal(top[d], stable_order(scores)[:, :3])
  # K = 1: the final ranking is the first stage's whole ranking, whatever the method.
  method, variables = toy("int_dot")
  result = protocols.evaluate_split(method, variables, split, config, first_stage=toy_sm)
  keys = ("map_all", "map_at_5", "precision_at_k", "pr_curve", "precision_scope")
  assert_same_figures(
      {k: result[k] for k in keys}, {k: baseline[k] for k in keys}, tol=1e-12
  )  # fmt: skip


def baseline_cosines(dataset, chosen) -> np.ndarray:
  """The test split's image x text cosines of semantic matching with `chosen`'s C, as
  baselines.run scores them (float32)."""
  train, test = dataset.train, dataset.test
  probs = [
      baselines.class_posteriors(train[m], train["label"], [test[m]], chosen[f"c_{m}"])[0]
      for m in ("image", "text")
  ]
  return baselines.cosine(*probs).astype(np.float32)


# --------------------------------------------------------------------------------------
# A trained run's ranking as the first stage, through evaluate and retrieve
# --------------------------------------------------------------------------------------


def train_tiny(root: pathlib.Path, spec: str, data_config, **model) -> pathlib.Path:
  config = default.get_config(spec)
  config.data = data_config
  config.model.update(model)
  config.train.update(num_epochs=1, progress_bar=False)
  workdir = root / spec.split(",")[0]
  training.train(config, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic):
  """One-epoch DRSL and HCMSL runs on the same 200 synthetic training pairs."""
  data_config, dataset = synthetic
  root = tmp_path_factory.mktemp("rerank_runs")
  drsl = train_tiny(
      root,
      "drsl,synthetic,ci",
      data_config,
      image_layers=(32, 16),
      text_layers=(32, 16),
      relation_layers=(32,),
  )
  hcmsl = train_tiny(
      root,
      "hcmsl,synthetic,ci",
      data_config,
      image_layers=(32,),
      text_layers=(32,),
      shared_layers=(32,),
      dim=16,
  )
  return drsl, hcmsl, dataset


def test_a_trained_runs_ranking_is_the_first_stage_of_evaluate_and_retrieve(trained):
  drsl, hcmsl, dataset = trained
  n = len(dataset.test)
  config = runs.load(str(drsl))
  exhaustive = evaluation.evaluate(str(drsl), config=config, dataset=dataset, plots=False)
  whole = config.copy_and_resolve_references()
  whole.eval.update(shortlist=str(hcmsl), rerank_k=n)
  got = evaluation.evaluate(str(drsl), config=whole, dataset=dataset, plots=False)
  assert got["rerank"] == {
      "first_stage": "hcmsl",
      "first_stage_workdir": str(hcmsl),
      "k": n,
      "r": 50,
      "recall_of_exhaustive_top_r": {"i2t": 1.0, "t2i": 1.0, "avg": 1.0},
  }
  assert json.loads((drsl / "results.json").read_text())["rerank"] == got["rerank"]
  tolerance = 1e-3  # rankings from other block shapes: near-ties may swap
  assert_same_figures(
      {k: v for k, v in got.items() if k in exhaustive and k[:4] in ("map_", "prec")},
      {k: v for k, v in exhaustive.items() if k[:4] in ("map_", "prec")},
      tol=tolerance,
  )
  # K = 20: the items after the first 20 are the first stage's, in its order.
  short = config.copy_and_resolve_references()
  short.eval.update(shortlist=str(hcmsl), rerank_k=20)
  report = retrieve.retrieve(str(drsl), [0, 7], k=30, direction="t2i", config=short)
  assert report["rerank"] == {"first_stage": "hcmsl", "first_stage_workdir": str(hcmsl), "k": 20}
  other = runs.load(str(hcmsl))
  method = methods.get_method(other, dataset.dims(), dataset.meta)
  variables, _ = runs.restore_variables(str(hcmsl), method, dataset.train, "best")
  cosines = ranking.score_split(method, variables, dataset.test, other.eval)["t2i"]
  for entry in report["queries"]:
    got_items = [r["gallery_index"] for r in entry["results"]]
    want = stable_order(cosines[entry["query"] : entry["query"] + 1])[0]
    assert sorted(got_items[:20]) == sorted(want[:20].tolist())
    assert got_items[20:] == want[20:30].tolist()
    assert all(r["score"] is not None for r in entry["results"][:20])
    assert all(r["score"] is None for r in entry["results"][20:])
    scores = [r["score"] for r in entry["results"][:20]]
    assert scores == sorted(scores, reverse=True)
  lines = retrieve.format_report(report).splitlines()
  assert lines[1].startswith(f"  two stages: the top 20 of hcmsl ({hcmsl})'s ranking")
  assert "score      -" in lines[-1]


def test_bad_settings_are_one_line_user_errors(trained, tmp_path):
  drsl, hcmsl, dataset = trained
  config = runs.load(str(drsl))
  not_a_run = tmp_path / "empty"
  not_a_run.mkdir()
  # Another dataset, and the same dataset with other rows (another synthetic seed).
  elsewhere = tmp_path / "elsewhere"
  shutil.copytree(hcmsl, elsewhere)
  saved = json.loads((elsewhere / "config.json").read_text())
  saved["data"]["name"] = "wikipedia"
  (elsewhere / "config.json").write_text(json.dumps(saved))
  reseeded = tmp_path / "reseeded"
  shutil.copytree(hcmsl, reseeded)
  saved["data"].update(name="synthetic", synthetic_seed=5)
  (reseeded / "config.json").write_text(json.dumps(saved))
  cases = [
      (dict(shortlist="bm25"), r"Unknown eval.shortlist 'bm25'"),
      (dict(shortlist="sm", rerank_k=0), r"eval.rerank_k must be an integer >= 1, got 0"),
      (dict(shortlist=str(not_a_run)), f"eval.shortlist='{re.escape(str(not_a_run))}' has no"),
      (
          dict(shortlist=str(elsewhere)),
          f"eval.shortlist='{re.escape(str(elsewhere))}' is a run on another dataset or split "
          f"than {re.escape(str(drsl))}: .*data.name 'synthetic' vs 'wikipedia'",
      ),
      (
          dict(shortlist=str(reseeded)),
          f"than {re.escape(str(drsl))}.*{re.escape(str(reseeded))}.*data.synthetic_seed 0 vs 5",
      ),
  ]
  for fields, match in cases:
    bad = config.copy_and_resolve_references()
    bad.eval.update(fields)
    with pytest.raises(errors.UserError, match=match) as e:
      evaluation.evaluate(str(drsl), config=bad, dataset=dataset, plots=False)
    assert "\n" not in str(e.value)
  with pytest.raises(errors.UserError, match="eval.rerank_k must be an integer >= 1, got 2.5"):
    shortlists.settings(ml_collections.ConfigDict({"shortlist": "sm", "rerank_k": 2.5}))
  assert shortlists.settings(ml_collections.ConfigDict({})) == ("", 100)  # an older eval section
  # A run on the same settings but other rows (fewer training pairs) is caught by the data.
  other = dataset.train
  fewer = common.Dataset(
      "synthetic",
      common.Split({k: v[:150] for k, v in other.arrays.items()}),
      dataset.validation,
      dataset.test,
      dataset.num_classes,
  )
  assert shortlists.same_rows(dataset, fewer) == "the train split has 200 items vs 150"
  assert shortlists.same_rows(dataset, dataset) is None


# --------------------------------------------------------------------------------------
# The table's notes, and the module's place
# --------------------------------------------------------------------------------------


def test_a_reranked_rows_notes_name_the_first_stage_and_k():
  summary = {
      "seed": 0,
      "metric": "map_all",
      "map_all": {"i2t": 0.5, "t2i": 0.4, "avg": 0.45},
      "train_seconds": 10.0,
      "wall_seconds": 12.0,
      "num_params": 1000,
      "epochs": 3,
      "pr_curve": None,
      "rerank": {"first_stage": "sm", "k": 100},
  }
  row = table.method_row("drsl", [summary, {**summary, "seed": 1}])
  assert row["rerank"] == {"first_stage": "sm", "k": 100}
  lines = table._table("method", {"rows": [row]})  # pylint: disable=protected-access
  assert lines[-1].endswith("| 2 seeds, 3 epochs; first stage sm, its top 100 reranked |")


@pytest.mark.parametrize("module", ["rerank", "shortlists"])
def test_rerank_names_no_method_and_imports_no_evaluation(module):
  source = (REPO / "crossmodal_jax" / f"{module}.py").read_text()
  for name in ("drsl", "scanet", "mcsm", "hcmsl"):
    assert name not in source.lower()
  imported = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom) and node.module == "crossmodal_jax":
      imported |= {a.name for a in node.names}
  assert imported and not imported & {"protocols", "evaluation", "training", "api"}
  assert imported <= {
      "scoring", "ranking", "baselines", "runs", "methods", "data", "errors", "metrics",
      "shortlists",
  }  # fmt: skip
