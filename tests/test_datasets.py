"""Tests of the TFDS dataset builders (Wikipedia, DRSL-layout feature files) and load_dataset."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from crossmodal_jax import data
from crossmodal_jax import errors
from crossmodal_jax.data.sources.feature_builder import CrossModalFeatures
from crossmodal_jax.data.tfds_io import (
    DatasetFileError,
    DatasetFileNotFoundError,
    prepare,
    read_split,
)
from crossmodal_jax.data.sources import wikipedia_builder
from crossmodal_jax.data.sources.wikipedia_builder import WikipediaCrossModal, parse_text_xml

from configs import default as default_configs
from conftest import WIKI_DIR as REAL_WIKI


def _files_under(path: Path) -> list[str]:
  """All files (not directories) below ``path``."""
  return [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]


def _read_list(path: Path) -> list[tuple[str, str, int]]:
  rows = []
  for line in path.read_text().splitlines():
    if line.strip():
      t, i, c = line.split("\t")
      rows.append((t, i, int(c)))
  return rows


# =========================================================================== real data


@pytest.fixture(scope="module")
def wiki(tmp_path_factory):
  if not REAL_WIKI.is_dir():
    pytest.skip(f"real Wikipedia dataset not found at {REAL_WIKI}")
  data_dir = tmp_path_factory.mktemp("wiki_data")
  builder = prepare(WikipediaCrossModal, REAL_WIKI, data_dir)
  splits = {s: read_split(builder, s) for s in ("train", "validation", "test")}
  return builder, splits


def test_wikipedia_real_splits_and_shapes(wiki):
  builder, splits = wiki
  assert {s: len(v["index"]) for s, v in splits.items()} == {
      "train": 2173,
      "validation": 231,
      "test": 462,
  }
  assert builder.info.features["label"].names == [
      "art",
      "biology",
      "geography",
      "history",
      "literature",
      "media",
      "music",
      "royalty",
      "sport",
      "warfare",
  ]
  for s, d in splits.items():
    n = len(d["index"])
    assert d["image"].shape == (n, 128) and d["image"].dtype == np.float32
    assert d["lda"].shape == (n, 10) and d["lda"].dtype == np.float32
    assert d["label"].dtype == np.int64
    assert d["label"].min() >= 0 and d["label"].max() <= 9
    assert d["text"].dtype == object and all(isinstance(t, str) for t in d["text"])
    assert all(len(t) > 0 for t in d["text"])


def test_wikipedia_real_matches_source_files(wiki):
  _, splits = wiki
  mat = scipy.io.loadmat(REAL_WIKI / "raw_features.mat")
  train_rows = _read_list(REAL_WIKI / "trainset_txt_img_cat.list")
  test_rows = _read_list(REAL_WIKI / "testset_txt_img_cat.list")
  tr, va, te = splits["train"], splits["validation"], splits["test"]
  np.testing.assert_array_equal(tr["index"], np.arange(2173))
  np.testing.assert_array_equal(va["index"], np.arange(231))
  np.testing.assert_array_equal(te["index"], np.arange(231, 693))
  np.testing.assert_array_equal(tr["image"], mat["I_tr"].astype(np.float32))
  np.testing.assert_array_equal(tr["lda"], mat["T_tr"].astype(np.float32))
  np.testing.assert_array_equal(
      np.concatenate([va["image"], te["image"]]), mat["I_te"].astype(np.float32)
  )
  np.testing.assert_array_equal(
      np.concatenate([va["lda"], te["lda"]]), mat["T_te"].astype(np.float32)
  )
  np.testing.assert_array_equal(tr["label"], [c - 1 for _, _, c in train_rows])
  np.testing.assert_array_equal(
      np.concatenate([va["label"], te["label"]]), [c - 1 for _, _, c in test_rows]
  )
  assert list(tr["text_id"]) == [t for t, _, _ in train_rows]
  assert list(np.concatenate([va["image_id"], te["image_id"]])) == [i for _, i, _ in test_rows]


def test_wikipedia_real_data_source_order(wiki):
  builder, _ = wiki
  # Raw as_data_source (no sorting by read_split) already gives list order.
  ds = builder.as_data_source(split="test")
  assert [int(ex["index"]) for ex in ds.__getitems__(list(range(len(ds))))] == list(range(231, 693))


def test_wikipedia_real_malformed_xml(wiki):
  _, splits = wiki
  tr = splits["train"]
  found = 0
  for row, text_id in enumerate(tr["text_id"]):
    raw = (REAL_WIKI / "texts" / f"{text_id}.xml").read_bytes()
    try:
      ET.fromstring(raw)
      continue
    except ET.ParseError:
      pass
    text = tr["text"][row]
    assert len(text) > 100 and "<text" not in text and "</text" not in text
    assert tr["title"][row]
    assert parse_text_xml(REAL_WIKI / "texts" / f"{text_id}.xml")[1] == text
    found += 1
    if found == 5:
      break
  assert found == 5


def test_wikipedia_real_literature_split(wiki_data_dir):
  """`split="literature"` (the config's default) gives exactly the shipped 231 / 462 text
  ids, each row the list row of that id, in list order; 306 of its test pairs are in the
  list-order test split, as the published split's permutation implies."""
  if not REAL_WIKI.is_dir():
    pytest.skip(f"real Wikipedia dataset not found at {REAL_WIKI}")
  builder = prepare(WikipediaCrossModal, REAL_WIKI, wiki_data_dir, split="literature")
  va, te = (read_split(builder, s) for s in ("validation", "test"))
  ids = [
      line
      for line in wikipedia_builder.LITERATURE_SPLIT_FILE.read_text().splitlines()
      if line and not line.startswith("#")
  ]
  assert len(ids) == 693 and len(set(ids)) == 693
  assert sorted(va["text_id"]) == sorted(ids[:231])
  assert sorted(te["text_id"]) == sorted(ids[231:])
  assert (len(va["index"]), len(te["index"])) == (231, 462)
  test_rows = _read_list(REAL_WIKI / "testset_txt_img_cat.list")
  mat = scipy.io.loadmat(REAL_WIKI / "raw_features.mat")
  for split in (va, te):
    assert list(split["index"]) == sorted(split["index"])
    assert list(split["text_id"]) == [test_rows[i][0] for i in split["index"]]
    assert list(split["image_id"]) == [test_rows[i][1] for i in split["index"]]
    np.testing.assert_array_equal(split["label"], [test_rows[i][2] - 1 for i in split["index"]])
    np.testing.assert_array_equal(split["image"], mat["I_te"][split["index"]].astype(np.float32))
  assert len(set(te["index"]) & set(range(231, 693))) == 306


def test_literature_split_on_another_folder_is_one_error(fake_wiki, tmp_path):
  data_dir = tmp_path / "data"
  with pytest.raises(DatasetFileError, match=r"testset_txt_img_cat.list: 231 text ids"):
    prepare(WikipediaCrossModal, fake_wiki, data_dir, split="literature")
  assert _files_under(data_dir) == []
  with pytest.raises(errors.UserError, match="num_validation=5 needs split='list_order'"):
    WikipediaCrossModal(manual_dir=fake_wiki, split="literature", num_validation=5)
  with pytest.raises(errors.UserError, match="Unknown Wikipedia split 'lit'"):
    WikipediaCrossModal(manual_dir=fake_wiki, split="lit")


def test_wikipedia_real_no_tensorflow_and_reuse(wiki):
  builder, _ = wiki
  assert "tensorflow" not in sys.modules
  again = prepare(WikipediaCrossModal, REAL_WIKI, Path(builder.data_dir_root))
  assert again.data_dir == builder.data_dir and again.is_prepared()


# =========================================================================== fake wiki

_CATS = ["alpha", "beta", "gamma"]
_TRAIN = [(f"tr{i}", f"imtr{i}", 1 + i % 3) for i in range(6)]
_TEST = [(f"te{i}", f"imte{i}", 1 + (i + 1) % 3) for i in range(4)]


def _write_list(path: Path, rows) -> None:
  path.write_text("".join(f"{t}\t{i}\t{c}\n" for t, i, c in rows))


def _write_wiki_folder(root: Path, train, test, document) -> dict[str, np.ndarray]:
  """A Wikipedia-layout folder: lists of (text_id, image_id, class) rows, random features,
  and texts/<id>.xml from document(text_id, class). Returns the .mat arrays."""
  root.mkdir(parents=True, exist_ok=True)
  (root / "texts").mkdir(exist_ok=True)
  (root / "categories.list").write_text("\n".join(_CATS) + "\n")
  _write_list(root / "trainset_txt_img_cat.list", train)
  _write_list(root / "testset_txt_img_cat.list", test)
  rng = np.random.default_rng(0)
  mat = {
      "I_tr": rng.random((len(train), 128)),
      "T_tr": rng.random((len(train), 10)),
      "I_te": rng.random((len(test), 128)),
      "T_te": rng.random((len(test), 10)),
  }
  scipy.io.savemat(root / "raw_features.mat", mat)
  for t, _, c in train + test:
    (root / "texts" / f"{t}.xml").write_text(document(t, c))
  return mat


def _fake_document(t: str, c: int) -> str:
  del c
  body = (
      f"Article {t} about R&D and <things> &amp; more."
      if t == "tr1"
      else (f"Article {t} &amp; friends.")
  )
  # tr1 is not well-formed XML (raw '&' and '<'), the others are.
  return (
      f'<document id="{t}" name="Name_{t}" cat="3">\n<text>\n{body}\n</text>\n'
      f"<imageset><image>../img/x.jpg</image></imageset>\n</document>\n"
  )


def _write_fake_wiki(root: Path) -> dict[str, np.ndarray]:
  return _write_wiki_folder(root, _TRAIN, _TEST, _fake_document)


@pytest.fixture
def fake_wiki(tmp_path):
  root = tmp_path / "wiki_src"
  _write_fake_wiki(root)
  return root


def test_fake_wiki_builds(fake_wiki, tmp_path):
  b = prepare(WikipediaCrossModal, fake_wiki, tmp_path / "data", num_validation=2)
  assert b.info.features["label"].names == _CATS
  tr, va, te = (read_split(b, s) for s in ("train", "validation", "test"))
  assert (len(tr["index"]), len(va["index"]), len(te["index"])) == (6, 2, 2)
  np.testing.assert_array_equal(tr["label"], [c - 1 for _, _, c in _TRAIN])
  np.testing.assert_array_equal(te["index"], [2, 3])
  assert tr["text"][1] == "Article tr1 about R&D and <things> & more."
  assert tr["title"][1] == "Name_tr1"
  assert tr["text"][0] == "Article tr0 & friends."
  # num_validation=0: no validation split.
  b0 = prepare(WikipediaCrossModal, fake_wiki, tmp_path / "data", num_validation=0)
  assert set(b0.info.splits) == {"train", "test"}
  assert len(read_split(b0, "test")["index"]) == 4


def _mut_write(rel: str, text: str):
  def f(root: Path):
    (root / rel).write_text(text)

  return f


def _mut_mat(**changes):
  def f(root: Path):
    mat = {
        k: v
        for k, v in scipy.io.loadmat(root / "raw_features.mat").items()
        if not k.startswith("__")
    }
    for k, v in changes.items():
      if v is None:
        del mat[k]
      else:
        mat[k] = v(mat[k])
    scipy.io.savemat(root / "raw_features.mat", mat)

  return f


def _mut_remove(rel: str):
  def f(root: Path):
    p = root / rel
    shutil.rmtree(p) if p.is_dir() else p.unlink()

  return f


_TRAIN_LIST = "trainset_txt_img_cat.list"
_TEST_LIST = "testset_txt_img_cat.list"

WIKI_BAD_CASES = {
    "missing_categories": (_mut_remove("categories.list"), ["categories.list"]),
    "missing_mat": (_mut_remove("raw_features.mat"), ["raw_features.mat"]),
    "missing_test_list": (_mut_remove(_TEST_LIST), [_TEST_LIST]),
    "missing_text": (_mut_remove("texts/te3.xml"), ["te3.xml"]),
    "missing_texts_dir": (_mut_remove("texts"), ["texts"]),
    "columns": (
        _mut_write(_TRAIN_LIST, "tr0\timtr0\t1\ntr1\timtr1\n"),
        [_TRAIN_LIST, "line 2", "columns"],
    ),
    "non_int_class": (
        _mut_write(_TEST_LIST, "te0\timte0\t1\nte1\timte1\tx\n"),
        [_TEST_LIST, "line 2", "not an integer"],
    ),
    "class_zero": (
        _mut_write(_TRAIN_LIST, "tr0\timtr0\t1\ntr1\timtr1\t2\ntr2\timtr2\t0\n"),
        [_TRAIN_LIST, "line 3", "out of range"],
    ),
    "class_too_big": (
        _mut_write(_TEST_LIST, "te0\timte0\t4\n"),
        [_TEST_LIST, "line 1", "out of range"],
    ),
    "rows_mismatch": (_mut_mat(I_tr=lambda x: x[:5]), ["raw_features.mat", "I_tr", "5 rows"]),
    "missing_variable": (_mut_mat(T_te=None), ["raw_features.mat", "T_te"]),
    "wrong_dim": (_mut_mat(T_tr=lambda x: x[:, :9]), ["raw_features.mat", "T_tr", "columns"]),
    "no_text_element": (
        _mut_write("texts/tr2.xml", "<document name='x'></document>"),
        ["tr2.xml", "<text>"],
    ),
}


@pytest.mark.parametrize("case", sorted(WIKI_BAD_CASES))
def test_fake_wiki_bad_input(case, fake_wiki, tmp_path):
  mutate, needles = WIKI_BAD_CASES[case]
  mutate(fake_wiki)
  data_dir = tmp_path / "data"
  with pytest.raises(DatasetFileError) as err:
    prepare(WikipediaCrossModal, fake_wiki, data_dir, num_validation=2)
  for needle in needles:
    assert needle in str(err.value), (needle, str(err.value))
  assert _files_under(data_dir) == []
  assert not (data_dir / "wikipedia_cross_modal").exists()
  # Fix the folder in place: the next build into the same data_dir succeeds.
  _write_fake_wiki(fake_wiki)
  b = prepare(WikipediaCrossModal, fake_wiki, data_dir, num_validation=2)
  assert len(read_split(b, "train")["index"]) == 6


def test_concurrent_prepares_build_once_and_wait_for_the_build(fake_wiki, tmp_path, caplog):
  """Callers that find the dataset unbuilt at the same moment (seeds started together on a
  fresh machine, parallel test workers) build it once: the others wait on the build's lock
  and open its result; the lock file does not outlive the build."""
  data_dir = tmp_path / "data"
  start = threading.Barrier(3)

  def build(_):
    start.wait()
    return prepare(WikipediaCrossModal, fake_wiki, data_dir, num_validation=2)

  with caplog.at_level("INFO"), concurrent.futures.ThreadPoolExecutor(3) as pool:
    builders = list(pool.map(build, range(3)))
  builds = [r for r in caplog.records if r.getMessage().startswith("Building")]
  assert len(builds) == 1, [r.getMessage() for r in builds]
  first = read_split(builders[0], "train")
  for b in builders:
    assert b.is_prepared() and b.data_dir == builders[0].data_dir
    np.testing.assert_array_equal(read_split(b, "train")["index"], first["index"])
  assert not list(data_dir.glob("*.lock")) and not list(data_dir.glob(".*.lock"))


def test_fake_wiki_missing_folder(tmp_path):
  with pytest.raises(DatasetFileNotFoundError, match="nope"):
    prepare(WikipediaCrossModal, tmp_path / "nope", tmp_path / "data")
  assert issubclass(DatasetFileNotFoundError, FileNotFoundError)
  assert issubclass(DatasetFileError, ValueError)


def test_fake_wiki_too_many_validation_rows(fake_wiki, tmp_path):
  with pytest.raises(DatasetFileError, match="num_validation=4"):
    prepare(WikipediaCrossModal, fake_wiki, tmp_path / "data", num_validation=4)


def test_direct_download_and_prepare_failure_leaves_nothing(fake_wiki, tmp_path):
  """Without prepare(): the error surfaces in _split_generators, TFDS drops its tmp dir."""
  _mut_mat(I_te=lambda x: x[:3])(fake_wiki)
  data_dir = tmp_path / "data"
  b = WikipediaCrossModal(
      manual_dir=fake_wiki,
      num_validation=2,
      data_dir=os.fspath(data_dir),
      file_format="array_record",
  )
  with pytest.raises(DatasetFileError, match="I_te"):
    b.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(fake_wiki))
    )
  assert _files_under(data_dir) == []
  assert not b.is_prepared()


# =========================================================================== features


def _write_features(
    root: Path,
    *,
    n_train=40,
    n_test=10,
    n_valid=0,
    d_img=7,
    d_txt=5,
    classes=3,
    onehot=False,
    base=1,
    seed=0,
) -> dict[str, np.ndarray]:
  """Writes a DRSL-layout folder; returns {"<prefix>_<mod>": array} as written."""
  root.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  out = {}
  sizes = [("train", n_train), ("test", n_test)] + ([("valid", n_valid)] if n_valid else [])
  for prefix, n in sizes:
    cls = np.arange(n) % classes
    rng.shuffle(cls)
    lab = np.eye(classes, dtype=np.uint8)[cls] if onehot else (cls + base)[:, None]
    arrays = {
        "img": rng.normal(size=(n, d_img)),
        "txt": rng.normal(size=(n, d_txt)),
        "img_lab": lab,
    }
    for mod, arr in arrays.items():
      name = f"{prefix}_{mod}"
      scipy.io.savemat(root / f"{name}.mat", {name: arr})
      out[name] = arr
  return out


def test_features_int_labels_roundtrip(tmp_path):
  src = tmp_path / "src"
  arrays = _write_features(src)
  b = prepare(CrossModalFeatures, src, tmp_path / "data")
  assert set(b.info.splits) == {"train", "test"}
  for split, prefix, n in (("train", "train", 40), ("test", "test", 10)):
    d = read_split(b, split)
    assert d["image"].shape == (n, 7) and d["image"].dtype == np.float32
    assert d["text"].shape == (n, 5) and d["text"].dtype == np.float32
    assert d["labels"].shape == (n, 3) and d["labels"].dtype == np.float32
    np.testing.assert_array_equal(d["image"], arrays[f"{prefix}_img"].astype(np.float32))
    np.testing.assert_array_equal(d["text"], arrays[f"{prefix}_txt"].astype(np.float32))
    cls = arrays[f"{prefix}_img_lab"][:, 0] - 1
    np.testing.assert_array_equal(d["label"], cls)
    np.testing.assert_array_equal(d["labels"], np.eye(3)[cls])
    np.testing.assert_array_equal(d["index"], np.arange(n))
  assert "tensorflow" not in sys.modules


def test_features_carve_validation(tmp_path):
  src = tmp_path / "src"
  arrays = _write_features(src, base=0)  # 0-based labels
  b = prepare(CrossModalFeatures, src, tmp_path / "data", num_validation=8)
  tr, va = read_split(b, "train"), read_split(b, "validation")
  assert len(tr["index"]) == 32 and len(va["index"]) == 8
  np.testing.assert_array_equal(va["index"], np.arange(32, 40))
  np.testing.assert_array_equal(va["image"], arrays["train_img"][32:].astype(np.float32))
  np.testing.assert_array_equal(va["label"], arrays["train_img_lab"][32:, 0])
  assert tr["labels"].shape == (32, 3)
  with pytest.raises(ValueError, match="num_validation=40"):
    prepare(CrossModalFeatures, src, tmp_path / "data", num_validation=40)


def test_features_onehot_with_valid_files_and_row_labels(tmp_path):
  src = tmp_path / "src"
  arrays = _write_features(src, n_valid=6, onehot=True, classes=4, d_img=9, d_txt=3)
  # A multi-label row and an unlabelled row in test.
  lab = arrays["test_img_lab"].copy()
  lab[0] = [1, 1, 0, 0]
  lab[1] = 0
  scipy.io.savemat(src / "test_img_lab.mat", {"test_img_lab": lab})
  b = prepare(CrossModalFeatures, src, tmp_path / "data")
  assert set(b.info.splits) == {"train", "validation", "test"}
  va, te = read_split(b, "validation"), read_split(b, "test")
  assert va["image"].shape == (6, 9) and va["text"].shape == (6, 3)
  np.testing.assert_array_equal(va["labels"], arrays["valid_img_lab"])
  np.testing.assert_array_equal(va["label"], arrays["valid_img_lab"].argmax(1))
  np.testing.assert_array_equal(te["labels"], lab)
  assert te["label"][0] == -1 and te["label"][1] == -1
  np.testing.assert_array_equal(te["label"][2:], lab[2:].argmax(1))
  with pytest.raises(ValueError, match="valid_"):
    prepare(CrossModalFeatures, src, tmp_path / "data", num_validation=2)

  # Labels as a 1 x n row, 1-based.
  src2 = tmp_path / "src2"
  arrays2 = _write_features(src2, n_train=12, n_test=6)
  for prefix in ("train", "test"):
    name = f"{prefix}_img_lab"
    scipy.io.savemat(src2 / f"{name}.mat", {name: arrays2[name].T})
  b2 = prepare(CrossModalFeatures, src2, tmp_path / "data")
  np.testing.assert_array_equal(
      read_split(b2, "train")["label"], arrays2["train_img_lab"][:, 0] - 1
  )


def test_features_folders_do_not_collide(tmp_path):
  data_dir = tmp_path / "data"
  a, c = tmp_path / "a", tmp_path / "c"
  arr_a = _write_features(a, seed=1)
  arr_c = _write_features(c, seed=2, d_img=4)
  ba = prepare(CrossModalFeatures, a, data_dir)
  bc = prepare(CrossModalFeatures, c, data_dir)
  assert ba.data_dir != bc.data_dir
  np.testing.assert_array_equal(
      read_split(ba, "test")["image"], arr_a["test_img"].astype(np.float32)
  )
  np.testing.assert_array_equal(
      read_split(bc, "test")["image"], arr_c["test_img"].astype(np.float32)
  )
  # Same folder again: reused. Changed files: a new build, not stale data.
  assert prepare(CrossModalFeatures, a, data_dir).data_dir == ba.data_dir
  arr_a2 = _write_features(a, seed=3, n_test=12)
  ba2 = prepare(CrossModalFeatures, a, data_dir)
  assert ba2.data_dir != ba.data_dir
  np.testing.assert_array_equal(
      read_split(ba2, "test")["image"], arr_a2["test_img"].astype(np.float32)
  )
  # A finished build opens read-only without its source folder.
  ro = tfds.builder_from_directory(ba2.data_dir)
  assert read_split(ro, "test")["image"].shape == (12, 7)


def _feat_save(name: str, fn):
  def f(root: Path):
    arr = scipy.io.loadmat(root / f"{name}.mat")[name]
    scipy.io.savemat(root / f"{name}.mat", {name: fn(arr)})

  return f


def _feat_save_as(file: str, var: str):
  def f(root: Path):
    arr = scipy.io.loadmat(root / f"{file}.mat")[file]
    scipy.io.savemat(root / f"{file}.mat", {var: arr})

  return f


FEAT_BAD_CASES = {
    "txt_rows": (
        _feat_save("train_txt", lambda x: x[:39]),
        DatasetFileError,
        ["train_txt.mat", "39 rows"],
    ),
    "lab_rows": (
        _feat_save("test_img_lab", lambda x: x[:9]),
        DatasetFileError,
        ["test_img_lab.mat"],
    ),
    "missing_variable": (
        _feat_save_as("test_img", "features"),
        DatasetFileError,
        ["test_img.mat", "'test_img'", "features"],
    ),
    "missing_file": (
        lambda r: (r / "train_img_lab.mat").unlink(),
        DatasetFileNotFoundError,
        ["train_img_lab.mat"],
    ),
    "partial_valid": (
        lambda r: shutil.copy(r / "test_img.mat", r / "valid_img.mat"),
        DatasetFileNotFoundError,
        ["valid_txt.mat", "partial"],
    ),
    "labels_not_integer": (
        _feat_save("train_img_lab", lambda x: x + 0.5),
        DatasetFileError,
        ["train_img_lab.mat", "not integers"],
    ),
    "labels_not_01": (
        _feat_save("train_img_lab", lambda x: np.eye(3)[x[:, 0] - 1] * 2),
        DatasetFileError,
        ["train_img_lab.mat", "0 or 1"],
    ),
    "mixed_label_forms": (
        _feat_save("test_img_lab", lambda x: np.eye(3)[x[:, 0] - 1]),
        DatasetFileError,
        ["test_img_lab.mat"],
    ),
    "dim_mismatch": (
        _feat_save("test_txt", lambda x: x[:, :4]),
        DatasetFileError,
        ["test_txt.mat", "columns"],
    ),
    "nan": (
        _feat_save("train_img", lambda x: np.where(x > 1, np.nan, x)),
        DatasetFileError,
        ["train_img.mat", "NaN"],
    ),
    "not_a_mat": (
        lambda r: (r / "test_txt.mat").write_text("hello"),
        DatasetFileError,
        ["test_txt.mat"],
    ),
    # Labels must be 0..C-1 or 1..C over all splits: a single 999 among classes 1..3 is
    # no "999 classes".
    "label_far_out": (
        _feat_save("test_img_lab", lambda x: np.where(np.arange(len(x))[:, None] == 4, 999, x)),
        DatasetFileError,
        ["test_img_lab.mat", "label 999", "classes 4-998", "classes seen: 1-3, 999"],
    ),
    "label_gap": (  # class 2 of 1..3 renamed 4 in both splits
        lambda r: [
            _feat_save(f"{p}_img_lab", lambda x: np.where(x == 2, 4, x))(r)
            for p in ("train", "test")
        ],
        DatasetFileError,
        ["train_img_lab.mat", "label 3", "class 2 ", "classes seen: 1, 3-4"],
    ),
}


@pytest.mark.parametrize("case", sorted(FEAT_BAD_CASES))
def test_features_bad_input(case, tmp_path):
  mutate, exc, needles = FEAT_BAD_CASES[case]
  src, data_dir = tmp_path / "src", tmp_path / "data"
  _write_features(src)
  mutate(src)
  with pytest.raises(exc) as err:
    prepare(CrossModalFeatures, src, data_dir)
  for needle in needles:
    assert needle in str(err.value), (needle, str(err.value))
  assert _files_under(data_dir) == []
  assert not (data_dir / "cross_modal_features").exists()
  for p in src.glob("valid_*"):
    p.unlink()
  _write_features(src)
  b = prepare(CrossModalFeatures, src, data_dir)
  assert read_split(b, "train")["image"].shape == (40, 7)


def test_features_build_is_quiet(tmp_path, capfd, caplog):
  """A fresh build logs one line per split: no TFDS banner, bars or variant warning."""
  src = tmp_path / "src"
  _write_features(src, n_valid=6)
  with caplog.at_level("INFO"):
    prepare(CrossModalFeatures, src, tmp_path / "data")
  out, err = capfd.readouterr()
  assert "Downloading and preparing" not in out + err
  assert "downloaded and prepared" not in out + err
  assert "examples/s" not in err and "splits/s" not in err  # TFDS's tqdm bars
  built = [r.getMessage() for r in caplog.records if "built split" in r.getMessage()]
  assert len(built) == 3 and "built split train (40 examples)" in built[0], built
  assert tfds.core.utils.tqdm_utils._active  # bars are on again after the build


# =========================================================================== load_dataset


_WORDS = {1: "painting museum colour", 2: "cell species protein", 3: "river mountain coast"}


def _loadable_document(t: str, c: int) -> str:
  body = f"The article {t} is about {_WORDS[c]} and the {_WORDS[c].split()[0]}."
  return f'<document name="{t}"><text>{body}</text></document>\n'


def _write_loadable_wiki(root: Path) -> None:
  """A fake Wikipedia folder large enough for the default 231 validation rows."""
  train = [(f"tr{i}", f"imtr{i}", 1 + i % 3) for i in range(12)]
  test = [(f"te{i}", f"imte{i}", 1 + i % 3) for i in range(235)]
  _write_wiki_folder(root, train, test, _loadable_document)


@pytest.fixture
def loadable_wiki(tmp_path):
  root = tmp_path / "wiki_full"
  _write_loadable_wiki(root)
  return root


def _data_config(name: str, manual_dir: Path | str, data_dir: Path, **overrides):
  """The project's data defaults (configs/default.py), made small for the toy folders."""
  config = default_configs.data_config(name)
  config.update(
      manual_dir=os.fspath(manual_dir),
      data_dir=os.fspath(data_dir),
      text_feature="tfidf",
      vocab_size=100,
      min_count=1,
      svd_dim=2,
      stopwords="builtin",
      max_words=5,
      standardize_image=False,
      wikipedia_split="list_order",  # the toy folders hold none of the literature's ids
  )
  config.update(overrides)
  return config


@pytest.mark.parametrize("feature", ["bow", "tfidf", "tfidf_svd", "lda"])
def test_load_dataset_wikipedia_text_features(feature, loadable_wiki, tmp_path):
  config = _data_config("wikipedia", loadable_wiki, tmp_path / "data", text_feature=feature)
  ds = data.load_dataset(config)
  assert ds.name == "wikipedia" and ds.num_classes == 3
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (12, 231, 4)
  assert ds.meta["class_names"] == _CATS and ds.meta["text_feature"] == feature
  for split in ds.splits.values():
    assert split["image"].dtype == split["text"].dtype == split["lda"].dtype == np.float32
    assert split["label"].dtype == np.int32
  if feature == "lda":
    assert "vocab" not in ds.meta
    np.testing.assert_array_equal(ds.train["text"], ds.train["lda"])
  else:
    vocab = ds.meta["vocab"]
    assert "article" in vocab and "the" not in vocab  # built-in stop words
    width = config.svd_dim if feature == "tfidf_svd" else len(vocab)
    assert ds.dims()["text"] == (width,)
  if feature == "bow":
    assert ds.train["text"][0, vocab.index["painting"]] == 2


def test_load_dataset_wikipedia_word_sequences_and_standardize(loadable_wiki, tmp_path):
  config = _data_config(
      "wikipedia", loadable_wiki, tmp_path / "data", word_sequences=True, standardize_image=True
  )
  ds = data.load_dataset(config)
  vocab = ds.meta["vocab"]
  assert ds.meta["word_vectors"].shape == (len(vocab) + 2, 50)
  ids, mask = ds.train["word_ids"], ds.train["word_mask"]
  assert ids.shape == mask.shape == (12, 5) and ids.dtype == np.int32
  assert np.all(ids[mask] >= 2)  # in-vocabulary words only (OOV dropped)
  np.testing.assert_allclose(ds.train["image"].mean(0), 0.0, atol=1e-5)
  raw = data.load_dataset(_data_config("wikipedia", loadable_wiki, tmp_path / "data"))
  np.testing.assert_array_equal(data.standardize(raw, "image").test["image"], ds.test["image"])
  # The LDA topics as the text feature keep the same word sequences and vocabulary.
  lda = data.load_dataset(
      _data_config(
          "wikipedia", loadable_wiki, tmp_path / "data", word_sequences=True, text_feature="lda"
      )
  )
  np.testing.assert_array_equal(lda.train["text"], lda.train["lda"])
  assert lda.meta["vocab"].words == vocab.words
  np.testing.assert_array_equal(lda.meta["word_vectors"], ds.meta["word_vectors"])
  for name in ("word_ids", "word_mask"):
    np.testing.assert_array_equal(lda.test[name], ds.test[name])


def test_image_power_maps_every_split_before_standardising(tmp_path):
  """sign(x) |x|^p on every split's image features, then (if asked) standardised."""
  src = tmp_path / "src"
  _write_features(src)
  config = lambda **kw: _data_config("features", src, tmp_path / "data", num_validation=8, **kw)
  raw = data.load_dataset(config())
  rooted = data.load_dataset(config(image_power=0.5))
  for name, split in raw.splits.items():
    x = split["image"]
    assert (x < 0).any() and (x > 0).any()  # the signed power keeps each entry's sign
    np.testing.assert_allclose(rooted.splits[name]["image"], np.sign(x) * np.sqrt(np.abs(x)))
    assert rooted.splits[name]["image"].dtype == np.float32
    np.testing.assert_array_equal(rooted.splits[name]["text"], split["text"])
  both = data.load_dataset(config(image_power=0.5, standardize_image=True))
  expected = data.standardize(data.power_normalize(raw, "image", 0.5), "image")
  np.testing.assert_array_equal(both.test["image"], expected.test["image"])
  np.testing.assert_allclose(both.train["image"].std(0), 1.0, rtol=1e-4)
  for bad in (0.0, -0.5, 1.5, float("nan")):
    fresh = _data_config("features", src, tmp_path / "fresh", image_power=bad)
    with pytest.raises(errors.UserError, match=rf"data.image_power must be in \(0, 1\], got {bad}"):
      data.load_dataset(fresh)
    assert not (tmp_path / "fresh").exists()  # refused before anything is built


def test_load_dataset_features(tmp_path):
  src = tmp_path / "src"
  arrays = _write_features(src)
  ds = data.load_dataset(_data_config("features", src, tmp_path / "data", num_validation=8))
  assert ds.name == "features" and ds.num_classes == 3
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (32, 8, 10)
  assert ds.meta["multi_label"] is False and ds.train["label"].dtype == np.int32
  np.testing.assert_array_equal(ds.validation["text"], arrays["train_txt"][32:].astype(np.float32))
  # No validation files and none carved: an empty validation split of the right shapes.
  ds = data.load_dataset(_data_config("features", src, tmp_path / "data"))
  assert len(ds.validation) == 0 and ds.validation["image"].shape == (0, 7)


def test_load_dataset_errors(loadable_wiki, tmp_path):
  assert data.DATASETS == ("synthetic", "wikipedia", "features")
  assert data.TEXT_FEATURES == ("tfidf_svd", "tfidf", "bow", "lda")
  data_dir = tmp_path / "data"
  with pytest.raises(ValueError, match="Unknown dataset"):
    data.load_dataset(_data_config("nope", loadable_wiki, data_dir))
  with pytest.raises(ValueError, match="manual_dir"):
    data.load_dataset(_data_config("wikipedia", "", data_dir))
  with pytest.raises(ValueError, match="manual_dir"):
    data.load_dataset(_data_config("features", "", data_dir))
  with pytest.raises(ValueError, match="Unknown text_feature"):
    data.load_dataset(_data_config("wikipedia", loadable_wiki, data_dir, text_feature="x"))


def test_the_dataset_registry_lists_the_configs_datasets():
  """The library's datasets are its registered loaders; the configs give each defaults."""
  assert data.DATASETS == default_configs.DATASETS == ("synthetic", "wikipedia", "features")
  from crossmodal_jax.data import registry  # pylint: disable=import-outside-toplevel

  assert registry.loader("synthetic").__module__ == "crossmodal_jax.data.sources.synthetic"
  with pytest.raises(errors.UserError, match="Unknown dataset 'nope'; choose one of"):
    registry.loader("nope")
  with pytest.raises(ValueError, match="already registered"):
    registry.register("wikipedia")(lambda data_config: None)
