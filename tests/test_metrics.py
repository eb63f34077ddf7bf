"""Tests for crossmodal_jax.metrics against slow plain-Python references and the
single-metric functions of reference_metrics.py."""

import json

import numpy as np
import pytest

import reference_metrics as R
from crossmodal_jax import metrics as M
from crossmodal_jax import protocols
from crossmodal_jax import results_layout

TOL = 1e-12


# --------------------------------------------------------------------------------------
# Plain-Python references: loops over queries and ranks, nothing clever.
# --------------------------------------------------------------------------------------


def ref_relevant(ql, gl):
  if np.ndim(ql) == 0:
    return ql == gl
  return any(a and b for a, b in zip(ql, gl))


def ref_ranking(row):
  # Sort by descending score; equal scores keep ascending gallery index.
  return sorted(range(len(row)), key=lambda j: (-row[j], j))


def ref_rel_list(scores, qlabels, glabels, i):
  return [bool(ref_relevant(qlabels[i], glabels[j])) for j in ref_ranking(list(scores[i]))]


def ref_ap(rels, r=None):
  if r is not None:
    rels = rels[:r]
  hits, total = 0, 0.0
  for k, rel in enumerate(rels, start=1):
    if rel:
      hits += 1
      total += hits / k
  return total / hits if hits else 0.0


def ref_map(scores, ql, gl, r=None):
  aps = [ref_ap(ref_rel_list(scores, ql, gl, i), r) for i in range(len(scores))]
  return sum(aps) / len(aps), aps


def ref_precision_at(scores, ql, gl, k):
  vals = []
  for i in range(len(scores)):
    rels = ref_rel_list(scores, ql, gl, i)
    kk = min(k, len(rels))
    vals.append(sum(rels[:kk]) / kk)
  return sum(vals) / len(vals)


def ref_pr_curve(scores, ql, gl, num_points=11):
  from fractions import Fraction

  levels = [Fraction(i, num_points - 1) for i in range(num_points)]
  curves = []
  for i in range(len(scores)):
    rels = ref_rel_list(scores, ql, gl, i)
    n_rel = sum(rels)
    if n_rel == 0:
      continue
    points = []  # (recall, precision) at every rank
    hits = 0
    for k, rel in enumerate(rels, start=1):
      hits += rel
      points.append((Fraction(hits, n_rel), hits / k))
    curves.append([max(p for rc, p in points if rc >= lv) for lv in levels])
  if not curves:
    return [0.0] * num_points
  return [sum(c[j] for c in curves) / len(curves) for j in range(num_points)]


# --------------------------------------------------------------------------------------
# Random cases with ties
# --------------------------------------------------------------------------------------


def make_case(kind, seed, nq=13, ng=29):
  rng = np.random.default_rng(seed)
  scores = np.round(rng.random((nq, ng)), 1)  # many ties
  if kind == "int":
    ql = rng.integers(0, 4, nq)
    gl = rng.integers(0, 4, ng)
    ql[0] = 99  # a query with no relevant gallery item
  elif kind == "int_many_classes":
    ql = rng.integers(0, 12, nq)
    gl = rng.integers(0, 12, ng)
    ql[-1] = -1
  elif kind == "multihot":
    ql = (rng.random((nq, 5)) < 0.3).astype(np.int64)
    gl = (rng.random((ng, 5)) < 0.3).astype(np.int64)
    ql[0] = 0  # no label: no relevant item
    ql[1] = 0
    ql[1, 2] = 1
    gl[:, 2] = 0  # class 2 absent from gallery: query 1 has no relevant item
  elif kind == "multihot_bool":
    ql = rng.random((nq, 7)) < 0.2
    gl = rng.random((ng, 7)) < 0.2
  else:
    raise AssertionError(kind)
  return scores, ql, gl


KINDS = ["int", "int_many_classes", "multihot", "multihot_bool"]
CASES = [(k, s) for k in KINDS for s in (0, 1)]


@pytest.mark.parametrize("kind,seed", CASES)
def test_relevance_and_ranked_relevance_match_reference(kind, seed):
  scores, ql, gl = make_case(kind, seed)
  rel = M.relevance(ql, gl)
  assert rel.dtype == bool and rel.shape == (len(ql), len(gl))
  for i in range(len(ql)):
    for j in range(len(gl)):
      assert rel[i, j] == ref_relevant(ql[i], gl[j])
  ranked = R.ranked_relevance(scores, ql, gl)
  top = R.ranked_relevance(scores, ql, gl, top=7)
  assert top.shape == (len(ql), 7)
  for i in range(len(ql)):
    expect = ref_rel_list(scores, ql, gl, i)
    assert ranked[i].tolist() == expect
    assert top[i].tolist() == expect[:7]


@pytest.mark.parametrize("kind,seed", CASES)
def test_map_all_and_aps_match_reference(kind, seed):
  scores, ql, gl = make_case(kind, seed)
  want, want_aps = ref_map(scores, ql, gl)
  aps = R.average_precisions(scores, ql, gl)
  assert aps.shape == (len(ql),)
  np.testing.assert_allclose(aps, want_aps, rtol=0, atol=TOL)
  got = M.map_at_all(scores, ql, gl)
  assert isinstance(got, float)
  assert abs(got - want) < TOL


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("r", [1, 3, 10, 29, 100])
def test_map_at_r_matches_reference(kind, seed, r):
  scores, ql, gl = make_case(kind, seed)
  want, want_aps = ref_map(scores, ql, gl, r)
  np.testing.assert_allclose(R.average_precisions(scores, ql, gl, r=r), want_aps, rtol=0, atol=TOL)
  assert abs(R.map_at_r(scores, ql, gl, r) - want) < TOL


@pytest.mark.parametrize("kind,seed", CASES)
def test_precision_at_k_and_scope_match_reference(kind, seed):
  scores, ql, gl = make_case(kind, seed)
  ks = [1, 2, 5, 10, 29, 50]
  got = R.precision_at_k(scores, ql, gl, ks)
  assert list(got) == ks
  for k in ks:
    assert isinstance(got[k], float)
    assert abs(got[k] - ref_precision_at(scores, ql, gl, k)) < TOL
  scopes = [50, 3, 1, 20]
  ps = R.precision_scope(scores, ql, gl, scopes)
  assert ps.shape == (4,)
  np.testing.assert_allclose(
      ps, [ref_precision_at(scores, ql, gl, k) for k in scopes], rtol=0, atol=TOL
  )


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("num_points", [11, 5, 2])
def test_pr_curve_matches_reference(kind, seed, num_points):
  scores, ql, gl = make_case(kind, seed)
  recall, precision = R.pr_curve(scores, ql, gl, num_points=num_points)
  np.testing.assert_allclose(recall, np.linspace(0, 1, num_points), rtol=0, atol=TOL)
  np.testing.assert_allclose(precision, ref_pr_curve(scores, ql, gl, num_points), rtol=0, atol=TOL)
  assert np.all(np.diff(precision) <= TOL)  # interpolated precision is non-increasing


@pytest.mark.parametrize("kind,seed", CASES)
def test_retrieval_metrics_matches_reference(kind, seed):
  scores, ql, gl = make_case(kind, seed)
  out = M.retrieval_metrics(scores, ql, gl, r=10, ks=(1, 5, 10, 50))
  json.dumps(out)
  assert set(out) == {"map_all", "map_r", "precision_at_k"}
  assert abs(out["map_all"] - ref_map(scores, ql, gl)[0]) < TOL
  assert abs(out["map_r"] - ref_map(scores, ql, gl, 10)[0]) < TOL
  assert set(out["precision_at_k"]) == {"1", "5", "10", "50"}
  for k in (1, 5, 10, 50):
    assert abs(out["precision_at_k"][str(k)] - ref_precision_at(scores, ql, gl, k)) < TOL
  out2 = M.retrieval_metrics(scores, ql, gl)
  assert "map_r" not in out2
  assert set(out2["precision_at_k"]) == {"1", "5", "10", "50", "100"}
  json.dumps(out2)


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("chunk_size", [1, 4, 13, 1000])
def test_chunk_size_does_not_change_results(kind, seed, chunk_size):
  scores, ql, gl = make_case(kind, seed)
  np.testing.assert_array_equal(
      R.ranked_relevance(scores, ql, gl, chunk_size=chunk_size),
      R.ranked_relevance(scores, ql, gl),
  )
  kw = dict(chunk_size=chunk_size)
  assert abs(M.map_at_all(scores, ql, gl, **kw) - M.map_at_all(scores, ql, gl)) < TOL
  assert abs(R.map_at_r(scores, ql, gl, 5, **kw) - R.map_at_r(scores, ql, gl, 5)) < TOL
  a = R.precision_at_k(scores, ql, gl, [1, 5], **kw)
  b = R.precision_at_k(scores, ql, gl, [1, 5])
  assert all(abs(a[k] - b[k]) < TOL for k in (1, 5))
  np.testing.assert_allclose(
      R.precision_scope(scores, ql, gl, [2, 7], **kw),
      R.precision_scope(scores, ql, gl, [2, 7]),
      rtol=0,
      atol=TOL,
  )
  np.testing.assert_allclose(
      R.pr_curve(scores, ql, gl, **kw)[1], R.pr_curve(scores, ql, gl)[1], rtol=0, atol=TOL
  )
  ra = M.retrieval_metrics(scores, ql, gl, r=5, **kw)
  rb = M.retrieval_metrics(scores, ql, gl, r=5)
  assert abs(ra["map_all"] - rb["map_all"]) < TOL
  assert abs(ra["map_r"] - rb["map_r"]) < TOL
  for k in ra["precision_at_k"]:
    assert abs(ra["precision_at_k"][k] - rb["precision_at_k"][k]) < TOL
  order = np.argsort(-scores, axis=1, kind="stable")
  assert (
      abs(R.map_at_r_from_topk(order[:, :8], ql, gl, 5, **kw) - R.map_at_r(scores, ql, gl, 5)) < TOL
  )


# --------------------------------------------------------------------------------------
# retrieval_metrics: everything from one sort per query
# --------------------------------------------------------------------------------------

ALL_KS = (1, 2, 5, 10, 29, 50)  # 50 > n_gallery = 29: evaluated at 29
ALL_SCOPES = (50, 3, 1, 20)


def _single_functions(scores, ql, gl, r, ks, scopes, pr_points, chunk_size):
  """What retrieval_metrics must return, from the single-metric functions."""
  kw = dict(chunk_size=chunk_size)
  recall, precision = R.pr_curve(scores, ql, gl, num_points=pr_points, **kw)
  return {
      "map_all": M.map_at_all(scores, ql, gl, **kw),
      "map_r": R.map_at_r(scores, ql, gl, r, **kw),
      "precision_at_k": {str(k): v for k, v in R.precision_at_k(scores, ql, gl, ks, **kw).items()},
      "precision_scope": R.precision_scope(scores, ql, gl, scopes, **kw).tolist(),
      "pr_curve": {"recall": recall.tolist(), "precision": precision.tolist()},
  }


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("chunk_size", [1, 4, 13, 1000])
@pytest.mark.parametrize("r,pr_points", [(10, 11), (1, 5), (100, 2)])
def test_retrieval_metrics_equals_single_functions(kind, seed, chunk_size, r, pr_points):
  scores, ql, gl = make_case(kind, seed)
  out = M.retrieval_metrics(
      scores, ql, gl, r=r, ks=ALL_KS, scopes=ALL_SCOPES, pr_points=pr_points, chunk_size=chunk_size
  )
  json.dumps(out)
  want = _single_functions(scores, ql, gl, r, ALL_KS, ALL_SCOPES, pr_points, chunk_size)
  assert list(out) == list(want)
  assert list(out["precision_at_k"]) == [str(k) for k in ALL_KS]  # keys as given
  assert isinstance(out["precision_scope"], list) and len(out["precision_scope"]) == 4
  assert len(out["pr_curve"]["recall"]) == len(out["pr_curve"]["precision"]) == pr_points
  # The same per-block code and the same accumulation order: equal, not just close.
  assert out == want
  # And to the plain-Python references.
  assert abs(out["map_all"] - ref_map(scores, ql, gl)[0]) < TOL
  assert abs(out["map_r"] - ref_map(scores, ql, gl, r)[0]) < TOL
  np.testing.assert_allclose(
      out["precision_scope"],
      [ref_precision_at(scores, ql, gl, k) for k in ALL_SCOPES],
      rtol=0,
      atol=TOL,
  )
  np.testing.assert_allclose(
      out["pr_curve"]["precision"], ref_pr_curve(scores, ql, gl, pr_points), rtol=0, atol=TOL
  )


@pytest.mark.parametrize("kind", ["int", "multihot"])
def test_retrieval_metrics_optional_parts(kind):
  scores, ql, gl = make_case(kind, 0)
  out = M.retrieval_metrics(scores, ql, gl, ks=())
  assert out == {"map_all": M.map_at_all(scores, ql, gl), "precision_at_k": {}}
  out = M.retrieval_metrics(scores, ql, gl, ks=[5], scopes=np.array([2, 7]))
  assert set(out) == {"map_all", "precision_at_k", "precision_scope"}
  assert out["precision_scope"] == R.precision_scope(scores, ql, gl, [2, 7]).tolist()
  out = M.retrieval_metrics(scores, ql, gl, ks=[5], pr_points=11)
  assert set(out) == {"map_all", "precision_at_k", "pr_curve"}
  recall, precision = R.pr_curve(scores, ql, gl)
  assert out["pr_curve"] == {"recall": recall.tolist(), "precision": precision.tolist()}
  json.dumps(out)
  with pytest.raises(ValueError, match="scopes"):
    M.retrieval_metrics(scores, ql, gl, scopes=[0, 3])
  with pytest.raises(ValueError, match="num_points"):
    M.retrieval_metrics(scores, ql, gl, pr_points=1)
  with pytest.raises(ValueError):
    M.retrieval_metrics(scores, ql, gl, ks=[0])
  with pytest.raises(ValueError):
    M.retrieval_metrics(scores, ql, gl, r=0)


def test_retrieval_metrics_no_query_with_relevant_items():
  scores = np.zeros((2, 3))
  out = M.retrieval_metrics(
      scores, np.array([7, 8]), np.array([0, 1, 2]), r=2, ks=[1], scopes=[3], pr_points=11
  )
  assert out["map_all"] == out["map_r"] == 0.0
  assert out["precision_at_k"] == {"1": 0.0} and out["precision_scope"] == [0.0]
  assert out["pr_curve"]["precision"] == [0.0] * 11


class _CountingNumpy:
  """Stands in for numpy inside the metrics module and records every sorting call."""

  SORTS = ("argsort", "sort", "lexsort", "partition", "argpartition")

  def __init__(self):
    self.calls = []  # (function name, number of rows sorted)

  def __getattr__(self, name):
    attr = getattr(np, name)
    if name not in self.SORTS:
      return attr

    def counted(a, *args, **kwargs):
      self.calls.append((name, np.shape(a)[0] if np.ndim(a) > 1 else 1))
      return attr(a, *args, **kwargs)

    return counted


@pytest.mark.parametrize("kind", ["int", "multihot"])
@pytest.mark.parametrize("chunk_size", [1, 4, 13, 1000])
def test_retrieval_metrics_sorts_each_row_once(monkeypatch, kind, chunk_size):
  scores, ql, gl = make_case(kind, 1)
  want = _single_functions(scores, ql, gl, 10, ALL_KS, ALL_SCOPES, 11, chunk_size)
  counting = _CountingNumpy()
  monkeypatch.setattr(M, "np", counting)
  out = M.retrieval_metrics(
      scores, ql, gl, r=10, ks=ALL_KS, scopes=ALL_SCOPES, pr_points=11, chunk_size=chunk_size
  )
  n_query = scores.shape[0]
  n_chunks = -(-n_query // chunk_size)
  assert [name for name, _ in counting.calls] == ["argsort"] * n_chunks
  assert sum(rows for _, rows in counting.calls) == n_query  # every row sorted once
  assert out == want
  # The counter sees the single functions' sorts too: five functions, five passes.
  counting.calls.clear()
  _single_functions(scores, ql, gl, 10, ALL_KS, ALL_SCOPES, 11, chunk_size)
  assert len(counting.calls) == 5 * n_chunks


# --------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------


def test_ap_hand_computed_ranks_1_and_3():
  scores = np.array([[0.9, 0.8, 0.7, 0.6]])
  ql = np.array([1])
  gl = np.array([1, 0, 1, 0])  # relevant at ranks 1 and 3
  want = (1 / 1 + 2 / 3) / 2
  assert abs(M.map_at_all(scores, ql, gl) - want) < TOL
  # top 2 finds only the rank-1 item: denominator = 1 found -> AP 1
  assert abs(R.map_at_r(scores, ql, gl, 2) - 1.0) < TOL
  assert abs(R.map_at_r(scores, ql, gl, 3) - want) < TOL
  # nothing found in the top r -> AP 0
  scores2 = np.array([[0.1, 0.8, 0.7, 0.6]])
  gl2 = np.array([1, 0, 0, 0])
  assert R.map_at_r(scores2, ql, gl2, 3) == 0.0
  assert abs(M.map_at_all(scores2, ql, gl2) - 0.25) < TOL
  p = R.precision_at_k(scores, ql, gl, [1, 2, 3, 4, 10])
  assert p == pytest.approx({1: 1.0, 2: 0.5, 3: 2 / 3, 4: 0.5, 10: 0.5}, abs=TOL)


def test_map_over_queries_and_no_relevant_query_counts_zero():
  scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]])
  ql = np.array([0, 5])  # query 1 has no relevant item
  gl = np.array([0, 1, 0])
  ap0 = (1 + 2 / 3) / 2
  np.testing.assert_allclose(R.average_precisions(scores, ql, gl), [ap0, 0.0], atol=TOL)
  assert abs(M.map_at_all(scores, ql, gl) - ap0 / 2) < TOL


def test_multihot_share_any_label():
  ql = np.array([[1, 0, 1], [0, 0, 0]])
  gl = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 1]])
  np.testing.assert_array_equal(M.relevance(ql, gl), [[True, False, True], [False, False, False]])


def test_pr_curve_hand_computed():
  scores = np.array([[0.9, 0.8, 0.7, 0.6]])
  ql = np.array([1])
  gl = np.array([1, 0, 1, 0])  # precision 1 at recall .5, 2/3 at recall 1
  recall, precision = R.pr_curve(scores, ql, gl, num_points=11)
  want = [1.0] * 6 + [2 / 3] * 5
  np.testing.assert_allclose(precision, want, atol=TOL)
  np.testing.assert_allclose(recall, np.arange(11) / 10, atol=TOL)
  # recall level 0.3 with 10 relevant items: needs exactly 3 hits (no float slip)
  scores = np.arange(20, 0, -1, dtype=float)[None, :]
  gl = np.array([1, 0] * 10)
  _, precision = R.pr_curve(scores, np.array([1]), gl, num_points=11)
  # hit h is at rank 2h - 1, precision h / (2h - 1); max over ranks with >= h hits
  want = [1.0] + [max(h / (2 * h - 1) for h in range(i, 11)) for i in range(1, 11)]
  np.testing.assert_allclose(precision, want, atol=TOL)


def test_pr_curve_no_query_with_relevant_items_is_zero():
  recall, precision = R.pr_curve(np.zeros((2, 3)), np.array([7, 8]), np.array([0, 1, 2]))
  assert recall.shape == precision.shape == (11,)
  np.testing.assert_array_equal(precision, np.zeros(11))


def test_ties_broken_by_lower_gallery_index():
  scores = np.array([[0.5, 0.5, 0.1]])
  ql = np.array([1])
  rel_first = np.array([1, 0, 0])
  rel_second = np.array([0, 1, 0])
  np.testing.assert_array_equal(R.ranked_relevance(scores, ql, rel_first), [[True, False, False]])
  np.testing.assert_array_equal(R.ranked_relevance(scores, ql, rel_second), [[False, True, False]])
  assert M.map_at_all(scores, ql, rel_first) == 1.0
  assert abs(M.map_at_all(scores, ql, rel_second) - 0.5) < TOL
  assert R.precision_at_k(scores, ql, rel_second, [1]) == {1: 0.0}
  # same with integer scores and the tie at the end of the ranking
  scores = np.array([[3, 1, 1]])
  np.testing.assert_array_equal(
      R.ranked_relevance(scores, ql, np.array([0, 0, 1])), [[False, False, True]]
  )


def test_ties_stable_on_large_gallery():
  # Many equal scores over a gallery big enough that an unstable sort would reorder them.
  rng = np.random.default_rng(5)
  scores = rng.integers(0, 3, (4, 600)).astype(np.float32)
  ql = rng.integers(0, 3, 4)
  gl = rng.integers(0, 3, 600)
  ranked = R.ranked_relevance(scores, ql, gl)
  for i in range(4):
    assert ranked[i].tolist() == ref_rel_list(scores, ql, gl, i)
  assert abs(M.map_at_all(scores, ql, gl) - ref_map(scores, ql, gl)[0]) < TOL


# --------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,seed", CASES)
def test_map_at_r_equals_map_at_all_when_r_is_gallery_size(kind, seed):
  scores, ql, gl = make_case(kind, seed)
  ng = scores.shape[1]
  assert abs(R.map_at_r(scores, ql, gl, ng) - M.map_at_all(scores, ql, gl)) < TOL
  assert abs(R.map_at_r(scores, ql, gl, 10 * ng) - M.map_at_all(scores, ql, gl)) < TOL


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("r", [1, 5, 29])
def test_map_at_r_from_topk_equals_map_at_r(kind, seed, r):
  scores, ql, gl = make_case(kind, seed)
  order = np.argsort(-scores, axis=1, kind="stable")
  want = R.map_at_r(scores, ql, gl, r)
  assert abs(R.map_at_r_from_topk(order[:, :r], ql, gl, r) - want) < TOL
  assert abs(R.map_at_r_from_topk(order, ql, gl, r) - want) < TOL
  assert abs(R.map_at_r_from_topk(order[:, :r], ql, gl, r) - ref_map(scores, ql, gl, r)[0]) < TOL


# --------------------------------------------------------------------------------------
# Metrics from a streamed top-k
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("chunk_size", [4, 1000])
def test_topk_metrics_equal_retrieval_metrics(kind, seed, chunk_size):
  scores, ql, gl = make_case(kind, seed)
  order = np.argsort(-scores, axis=1, kind="stable")  # the ranking a top-k keeps
  kw = dict(ks=(1, 5, 10), scopes=(3, 10), chunk_size=chunk_size)
  # Every rank: everything, mAP@ALL and the PR curve included.
  full = M.retrieval_metrics(scores, ql, gl, r=7, pr_points=11, **kw)
  assert M.topk_metrics(order, ql, gl, r=7, pr_points=11, **kw) == full
  # The top 10 of 29: what needs no deeper rank, with the same values.
  top = M.topk_metrics(order[:, :10].astype(np.int32), ql, gl, r=7, **kw)
  assert top == {k: v for k, v in full.items() if k not in ("map_all", "pr_curve")}
  assert abs(top["map_r"] - ref_map(scores, ql, gl, 7)[0]) < TOL


def test_split_metrics_from_topk_equal_split_metrics_across_splits():
  rng = np.random.default_rng(5)
  ql, gl = rng.integers(0, 3, 11), rng.integers(0, 3, 40)  # gallery from another split
  scores = {d: np.round(rng.random((11, 40)), 1) for d in ("i2t", "t2i")}
  full = M.split_metrics(scores, ql, 20, (1, 5, 30), gallery_labels=gl)
  order = {d: np.argsort(-s, axis=1, kind="stable") for d, s in scores.items()}
  assert protocols.split_metrics_from_topk(order, ql, 20, (1, 5, 30), gallery_labels=gl) == full
  for d in ("i2t", "t2i"):
    assert abs(full["map_at_20"][d] - ref_map(scores[d], ql, gl, 20)[0]) < TOL
    assert abs(full["map_all"][d] - ref_map(scores[d], ql, gl)[0]) < TOL
  top = protocols.split_metrics_from_topk(
      {d: o[:, :30] for d, o in order.items()}, ql, 20, (1, 5, 30), gallery_labels=gl
  )
  assert list(top) == ["map_at_20", "precision_at_k", "precision_scope"]
  assert top["precision_scope"]["scopes"] == [10, 25]
  for key in ("map_at_20", "precision_at_k"):
    assert top[key] == full[key]
  for d in ("i2t", "t2i"):
    assert top["precision_scope"][d] == full["precision_scope"][d][:2]


def test_split_metrics_keys_follow_the_results_layout():
  rng = np.random.default_rng(6)
  ql, gl = rng.integers(0, 3, 11), rng.integers(0, 3, 40)
  scores = {d: np.round(rng.random((11, 40)), 1) for d in ("i2t", "t2i")}
  full = M.split_metrics(scores, ql, 50, (1, 5, 100), gallery_labels=gl)
  # R capped at the gallery size, the K and scopes beyond it dropped, in results.json's order.
  assert results_layout.cutoffs(40, 50, (1, 5, 100)) == (40, (1, 5), (10, 25))
  assert results_layout.cutoffs(40, 50, (1, 5, 100), top=20) == (40, (1, 5), (10,))
  assert list(full) == ["map_all", "map_at_40", "precision_at_k", "pr_curve", "precision_scope"]
  assert list(full["map_all"]) == list(full["map_at_40"]) == ["i2t", "t2i", "avg"]
  assert list(full["precision_scope"]) == ["scopes", "i2t", "t2i"]
  assert full["precision_scope"]["scopes"] == [10, 25]
  assert list(full["precision_at_k"]["i2t"]) == ["1", "5"]
  assert full["map_all"]["avg"] == np.mean([full["map_all"]["i2t"], full["map_all"]["t2i"]])
  for d in ("i2t", "t2i"):
    assert full["map_all"][d] == M.map_at_all(scores[d], ql, gl)
  assert M.split_metrics(scores, ql, full=False, gallery_labels=gl) == {"map_all": full["map_all"]}


def test_topk_metrics_bad_inputs_raise_value_error():
  scores, ql, gl = make_case("int", 0)
  order = np.argsort(-scores, axis=1, kind="stable")
  repeated = order[:, :5].copy()
  repeated[3, 4] = repeated[3, 0]
  with pytest.raises(ValueError, match="row 3 lists gallery index .* more than once"):
    M.topk_metrics(repeated, ql, gl, ks=(1,))
  with pytest.raises(ValueError, match="5 ranks per query, but a cut-off asks for 10"):
    M.topk_metrics(order[:, :5], ql, gl, r=3, ks=(1, 10))
  with pytest.raises(ValueError, match="the PR curve needs every rank"):
    M.topk_metrics(order[:, :5], ql, gl, ks=(1,), pr_points=11)
  with pytest.raises(ValueError, match="lie in"):
    M.topk_metrics(order + 1, ql, gl, ks=(1,))
  with pytest.raises(ValueError, match="shape"):
    M.topk_metrics(order[:-1], ql, gl)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def test_bad_shapes_raise_value_error():
  scores, ql, gl = make_case("int", 0)
  with pytest.raises(ValueError, match=r"\(13, 29\)"):
    M.map_at_all(scores, ql[:-1], gl)
  with pytest.raises(ValueError, match=r"\(13, 29\)"):
    M.map_at_all(scores, ql, gl[:-1])
  with pytest.raises(ValueError, match="shape"):
    M.map_at_all(scores[0], ql, gl)
  with pytest.raises(ValueError, match="shape"):
    R.ranked_relevance(scores.T, ql, gl)
  with pytest.raises(ValueError, match="shape"):
    R.precision_at_k(scores, ql, gl[:5], [1])
  with pytest.raises(ValueError, match="shape"):
    R.precision_scope(scores, ql, gl[:5], [1])
  with pytest.raises(ValueError, match="shape"):
    R.pr_curve(scores, ql, gl[:5])
  with pytest.raises(ValueError, match="shape"):
    M.retrieval_metrics(scores, ql, gl[:5])
  with pytest.raises(ValueError, match="shape"):
    R.average_precisions(scores, ql[:3], gl)
  with pytest.raises(ValueError, match="shape"):
    R.map_at_r(scores, ql, gl[:3], 5)
  # label kinds and class counts
  mh_q = np.zeros((13, 4), dtype=int)
  with pytest.raises(ValueError, match="shape"):
    M.relevance(mh_q, gl)
  with pytest.raises(ValueError, match="classes"):
    M.relevance(mh_q, np.zeros((29, 5), dtype=int))
  with pytest.raises(ValueError, match="0/1"):
    M.relevance(np.full((13, 4), 2), np.zeros((29, 4), dtype=int))
  with pytest.raises(ValueError, match="shape"):
    M.relevance(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
  # top-k input
  order = np.argsort(-scores, axis=1, kind="stable")
  with pytest.raises(ValueError, match="shape"):
    R.map_at_r_from_topk(order[:, :3], ql, gl, 5)
  with pytest.raises(ValueError, match="shape"):
    R.map_at_r_from_topk(order[:-1], ql, gl, 5)
  with pytest.raises(ValueError, match="range|lie in"):
    R.map_at_r_from_topk(order + 1, ql, gl, 29)


def test_bad_arguments_raise_value_error():
  scores, ql, gl = make_case("int", 0)
  with pytest.raises(ValueError):
    R.map_at_r(scores, ql, gl, 0)
  with pytest.raises(ValueError):
    R.precision_at_k(scores, ql, gl, [0, 1])
  with pytest.raises(ValueError):
    R.precision_scope(scores, ql, gl, [])
  with pytest.raises(ValueError):
    R.pr_curve(scores, ql, gl, num_points=1)
  with pytest.raises(ValueError):
    M.map_at_all(scores, ql, gl, chunk_size=0)
  bad = scores.copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    M.map_at_all(bad, ql, gl)


# --------------------------------------------------------------------------------------
# Recall@K and the median rank (pair-level relevance)
# --------------------------------------------------------------------------------------


def ref_first_relevant_ranks(scores, ql, gl):
  """Each query's 1-based rank of its first relevant item (None without one)."""
  ranks = []
  for i in range(len(scores)):
    rels = ref_rel_list(scores, ql, gl, i)
    ranks.append(next((k for k, rel in enumerate(rels, start=1) if rel), None))
  return ranks


def ref_recall_and_median(scores, ql, gl, ks):
  ranks = ref_first_relevant_ranks(scores, ql, gl)
  recall = {str(k): sum(r is not None and r <= k for r in ranks) / len(ranks) for k in ks}
  found = sorted(r for r in ranks if r is not None)
  n = len(found)
  median = (found[(n - 1) // 2] + found[n // 2]) / 2 if n else None
  return recall, median


PAIR_CASES = [(k, s) for k in KINDS for s in (0, 1, 2)]


@pytest.mark.parametrize("kind,seed", PAIR_CASES)
def test_recall_at_k_and_median_rank_match_reference(kind, seed):
  """Against a plain-Python loop, with many tied scores and queries without a relevant
  item (they count as misses for Recall@K and have no rank for the median)."""
  scores, ql, gl = make_case(kind, seed)
  got = M.retrieval_metrics(scores, ql, gl, ks=(), recall_ks=(1, 3, 10), chunk_size=5)
  recall, median = ref_recall_and_median(scores, ql, gl, (1, 3, 10))
  assert got["recall_at_k"] == pytest.approx(recall, abs=TOL)
  assert got["median_rank"] == pytest.approx(median, abs=TOL)
  # The same from a streamed top-K deep enough for the cut-offs; the median when it lies
  # within those K ranks.
  top = np.argsort(-scores, axis=1, kind="stable")[:, :12]
  streamed = M.topk_metrics(top, ql, gl, ks=(), recall_ks=(1, 3, 10))
  assert streamed["recall_at_k"] == pytest.approx(recall, abs=TOL)
  ranks = ref_first_relevant_ranks(scores, ql, gl)
  within = sorted(r if r is not None and r <= 12 else np.inf for r in ranks)
  expected = float(np.median(within))
  if np.isfinite(expected):
    assert streamed["median_rank"] == pytest.approx(expected, abs=TOL)
  else:
    assert "median_rank" not in streamed


def test_pair_relevance_ranks_each_query_against_its_own_pair():
  """Pair-level relevance is relevance by row (or group): a query's only relevant item is
  its own pair's; ties go to the lower gallery index."""
  scores = np.array(
      [
          [0.9, 0.1, 0.1, 0.0],  # its pair first
          [0.5, 0.5, 0.2, 0.0],  # tied with row 0, which wins the tie: rank 2
          [0.8, 0.7, 0.6, 0.0],  # rank 3
          [0.1, 0.2, 0.3, 0.4],  # rank 1
      ]
  )
  rows = np.arange(4)
  got = M.split_metrics({"i2t": scores, "t2i": scores.T}, rows, recall_ks=(1, 2, 10))
  assert got["recall_at_k"]["i2t"] == {"1": 0.5, "2": 0.75}  # K beyond the gallery dropped
  assert got["median_rank"]["i2t"] == 1.5
  assert got["map_all"]["i2t"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1) / 4)
  # Groups: rows 0 and 1 are two captions of one image; either is relevant to both.
  groups = np.array([0, 0, 1, 2])
  grouped = M.split_metrics({"i2t": scores, "t2i": scores.T}, groups, recall_ks=(1,))
  assert grouped["recall_at_k"]["i2t"]["1"] == 0.75
