"""The .npy and HDF5 layouts of the feature-file builder (crossmodal_jax.data.sources.feature_builder).

Each test writes small files in exactly the layout the authors' code reads: DSCMR's
``load_data.py`` (one .mat per array: float32 features, an n x 1 int64 0-based class
column), the same names as .npy files, and the single ``*_deep_doc2vec_data.h5py`` file of
SDML's ``data_loader.py`` / MRL's ``src/noisydataset.py`` (``train_imgs_deep``,
``train_text`` or ``train_texts``, ``train_imgs_labels``, ``train_texts_labels``, ...),
and Pascal VOC 2007's ``train.mat`` / ``test.mat`` of struct arrays ``D1``, ``D2``, ...
(``gist``, ``taglist``, ``objectcount``, ``filename``), as MATLAB saves Hwang & Grauman's
tag data.
"""

from __future__ import annotations


from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from configs import default
from crossmodal_jax import errors
from crossmodal_jax.data.sources import features
from crossmodal_jax.data.sources.feature_builder import CrossModalFeatures
from crossmodal_jax.data.tfds_io import (
    DatasetFileError,
    DatasetFileNotFoundError,
    prepare,
    read_split,
)

_STEMS = {"img": "img", "txt": "txt", "lab": "img_lab"}


def _make(*, n=(("train", 24), ("test", 8)), classes=4, base=0, multi=False, seed=0):
  """{prefix: {"img", "txt", "lab"}} with DSCMR's dtypes: float32 features, int64 labels."""
  rng = np.random.default_rng(seed)
  out = {}
  for prefix, rows in n:
    cls = np.arange(rows) % classes
    rng.shuffle(cls)
    if multi:
      lab = (rng.random((rows, classes)) < 0.4).astype(np.uint8)
      lab[np.arange(rows), cls] = 1
    else:
      lab = (cls + base).astype(np.int64)[:, None]  # n x 1, as DSCMR's *_img_lab.mat
    out[prefix] = {
        "img": rng.normal(size=(rows, 6)).astype(np.float32),
        "txt": rng.normal(size=(rows, 3)).astype(np.float32),
        "lab": lab,
    }
  return out


def _write_mat(root: Path, arrays) -> Path:
  root.mkdir(parents=True, exist_ok=True)
  for prefix, part in arrays.items():
    for role, x in part.items():
      name = f"{prefix}_{_STEMS[role]}"
      scipy.io.savemat(root / f"{name}.mat", {name: x})
  return root


def _write_npy(root: Path, arrays) -> Path:
  root.mkdir(parents=True, exist_ok=True)
  for prefix, part in arrays.items():
    for role, x in part.items():
      np.save(root / f"{prefix}_{_STEMS[role]}.npy", x)
  return root


def _write_h5(
    root: Path, arrays, *, name="xmedianet_deep_doc2vec_data.h5py", text="text", flat=True
) -> Path:
  """The SDML / MRL file: one dataset per array, text labels beside the image labels."""
  root.mkdir(parents=True, exist_ok=True)
  with h5py.File(root / name, "w") as f:
    for prefix, part in arrays.items():
      lab = part["lab"].reshape(-1) if flat and part["lab"].shape[1] == 1 else part["lab"]
      f.create_dataset(f"{prefix}_imgs_deep", data=part["img"])
      f.create_dataset(f"{prefix}_{text}", data=part["txt"])
      f.create_dataset(f"{prefix}_imgs_labels", data=lab)
      f.create_dataset(f"{prefix}_texts_labels", data=lab)
  return root


def _read_all(builder) -> dict[str, dict[str, np.ndarray]]:
  return {s: read_split(builder, s) for s in builder.info.splits.keys()}


def _check(built, arrays, *, base=0, multi=False, carve=0):
  """The build holds exactly the arrays written (validation: valid_* or carved rows)."""
  expect = {"train": arrays["train"], "test": arrays["test"]}
  if "valid" in arrays:
    expect["validation"] = arrays["valid"]
  elif carve:
    tr = arrays["train"]
    expect["train"] = {k: v[:-carve] for k, v in tr.items()}
    expect["validation"] = {k: v[-carve:] for k, v in tr.items()}
  assert set(built) == set(expect)
  for split, part in expect.items():
    d = built[split]
    np.testing.assert_array_equal(d["image"], part["img"])
    np.testing.assert_array_equal(d["text"], part["txt"])
    if multi:
      np.testing.assert_array_equal(d["labels"], part["lab"])
      single = part["lab"].sum(1) == 1
      np.testing.assert_array_equal(d["label"], np.where(single, part["lab"].argmax(1), -1))
    else:
      cls = part["lab"][:, 0] - base
      np.testing.assert_array_equal(d["label"], cls)
      np.testing.assert_array_equal(d["labels"], np.eye(4)[cls])
    start = len(arrays["train"]["img"]) - carve if split == "validation" and carve else 0
    np.testing.assert_array_equal(d["index"], np.arange(start, start + len(part["img"])))


def _same(a, b):
  assert set(a) == set(b)
  for split in a:
    assert set(a[split]) == set(b[split])
    for k in a[split]:
      np.testing.assert_array_equal(a[split][k], b[split][k], err_msg=f"{split}/{k}")


def test_npy_layout_equals_mat(tmp_path):
  arrays = _make()
  data = tmp_path / "data"
  b_npy = prepare(CrossModalFeatures, _write_npy(tmp_path / "npy", arrays), data, num_validation=5)
  b_mat = prepare(CrossModalFeatures, _write_mat(tmp_path / "mat", arrays), data, num_validation=5)
  assert b_npy.data_dir != b_mat.data_dir
  npy = _read_all(b_npy)
  _check(npy, arrays, carve=5)
  _same(npy, _read_all(b_mat))


@pytest.mark.parametrize(
    "name,text,flat", [("nus_wide.h5py", "text", True), ("pascal.h5", "texts", False)]
)
def test_h5_layout_with_valid_equals_mat(tmp_path, name, text, flat):
  arrays = _make(n=(("train", 20), ("valid", 6), ("test", 7)), base=1)
  data = tmp_path / "data"
  src = _write_h5(tmp_path / "h5", arrays, name=name, text=text, flat=flat)
  h5 = _read_all(prepare(CrossModalFeatures, src, data))
  _check(h5, arrays, base=1)
  _same(h5, _read_all(prepare(CrossModalFeatures, _write_mat(tmp_path / "mat", arrays), data)))


def _data_config(**fields):
  """The project's data defaults for a feature folder (configs/default.py), with `fields`."""
  config = default.data_config("features")
  config.update(fields)
  return config


def test_h5_multi_hot_and_load(tmp_path):
  arrays = _make(multi=True)
  src = _write_h5(tmp_path / "h5", arrays, name="feats.hdf5")
  cfg = _data_config(manual_dir=str(src), data_dir=str(tmp_path / "data"), num_validation=4)
  ds = features.load(cfg)
  assert ds.num_classes == 4 and ds.meta["multi_label"]
  np.testing.assert_array_equal(ds.train["image"], arrays["train"]["img"][:-4])
  np.testing.assert_array_equal(ds.validation["label"], arrays["train"]["lab"][-4:])
  np.testing.assert_array_equal(ds.test["text"], arrays["test"]["txt"])
  np.testing.assert_array_equal(ds.test["label"], arrays["test"]["lab"])


def test_validation_from_the_first_test_rows(tmp_path):
  """SDML's and MRL's convention: validation is the first test rows, test the rest."""
  arrays = _make(n=(("train", 24), ("test", 10)))
  src = _write_h5(tmp_path / "h5", arrays)
  data = tmp_path / "data"
  built = _read_all(
      prepare(CrossModalFeatures, src, data, num_validation=4, validation_from="test")
  )
  test = arrays["test"]
  np.testing.assert_array_equal(built["train"]["image"], arrays["train"]["img"])
  np.testing.assert_array_equal(built["validation"]["image"], test["img"][:4])
  np.testing.assert_array_equal(built["test"]["text"], test["txt"][4:])
  np.testing.assert_array_equal(built["validation"]["index"], np.arange(4))
  np.testing.assert_array_equal(built["test"]["index"], np.arange(4, 10))
  # Its own build, beside the one carved from train.
  from_train = prepare(CrossModalFeatures, src, data, num_validation=4)
  assert len(read_split(from_train, "test")["index"]) == 10
  cfg = _data_config(
      manual_dir=str(src), data_dir=str(data), num_validation=4, validation_from="test"
  )
  ds = features.load(cfg)
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (24, 4, 6)
  with pytest.raises(errors.UserError, match="validation_from must be one of"):
    prepare(CrossModalFeatures, src, data, num_validation=4, validation_from="valid")
  with pytest.raises(errors.UserError, match="leaves no test rows"):
    prepare(CrossModalFeatures, src, data, num_validation=10, validation_from="test")


def test_h5_changed_file_is_rebuilt(tmp_path):
  data = tmp_path / "data"
  src = _write_h5(tmp_path / "h5", _make(seed=1))
  b1 = prepare(CrossModalFeatures, src, data)
  assert prepare(CrossModalFeatures, src, data).data_dir == b1.data_dir
  arrays2 = _make(seed=2, n=(("train", 24), ("test", 9)))
  _write_h5(src, arrays2)
  b2 = prepare(CrossModalFeatures, src, data)
  assert b2.data_dir != b1.data_dir
  np.testing.assert_array_equal(read_split(b2, "test")["image"], arrays2["test"]["img"])


# --------------------------------------------------------------------------- Pascal VOC 2007

_VOC_FIELDS = [("gist", "O"), ("taglist", "O"), ("objectcount", "O"), ("filename", "O")]


def _voc_images(rows: int, vocab: int, seed: int):
  """Per-image (gist [8], tag ids 1-based in given order, object counts [5]) of a split."""
  rng = np.random.default_rng(seed)
  images = []
  for i in range(rows):
    counts = np.zeros(5)
    counts[i % 5] = rng.integers(1, 4)  # one class for sure ...
    if i % 3 == 0:
      counts[(i + 2) % 5] = 1  # ... and a second one on every third image
    tags = rng.integers(1, vocab + 1, size=i % 4)  # 0 to 3 tags, repeats possible
    images.append((rng.normal(size=8), tags.astype(np.float64), counts))
  return images


def _write_voc(root: Path, splits, names=("D1", "D2", "D10")) -> Path:
  """Each split as MATLAB would save it: 1 x k struct arrays D1, D2, D10 (in that order)."""
  root.mkdir(parents=True, exist_ok=True)
  for prefix, images in splits.items():
    cuts = np.array_split(np.arange(len(images)), len(names))
    variables = {"vocab_note": np.array([[1.0]])}  # a non-struct variable is ignored
    for name, rows in zip(names, cuts):
      arr = np.zeros((1, len(rows)), dtype=_VOC_FIELDS)
      for j, r in enumerate(rows):
        gist, tags, counts = images[r]
        arr[0, j]["gist"] = gist[None, :]
        arr[0, j]["taglist"] = tags[None, :] if tags.size else np.zeros((0, 0))
        arr[0, j]["objectcount"] = counts[None, :]
        arr[0, j]["filename"] = f"{prefix}{r:06d}.jpg"
      variables[name] = arr
    scipy.io.savemat(root / f"{prefix}.mat", variables)
  return root


def test_voc2007_layout(tmp_path):
  splits = {"train": _voc_images(30, 6, 0), "test": _voc_images(12, 9, 1)}
  src = _write_voc(tmp_path / "voc", splits)
  built = _read_all(prepare(CrossModalFeatures, src, tmp_path / "data", num_validation=4))
  assert set(built) == {"train", "validation", "test"}
  for split, images, rows in (
      ("train", splits["train"][:26], range(26)),
      ("validation", splits["train"][26:], range(26, 30)),
      ("test", splits["test"], range(12)),
  ):
    d = built[split]
    np.testing.assert_array_equal(d["index"], np.array(rows))
    np.testing.assert_allclose(d["image"], np.stack([g for g, _, _ in images]), rtol=1e-6)
    # Tag counts over ids 1..9: the largest id of any split sets the width.
    want = np.zeros((len(images), 9))
    for i, (_, tags, _) in enumerate(images):
      for t in tags:
        want[i, int(t) - 1] += 1
    np.testing.assert_array_equal(d["text"], want)
    labels = np.stack([c > 0 for _, _, c in images]).astype(np.float32)
    np.testing.assert_array_equal(d["labels"], labels)
    single = labels.sum(1) == 1
    np.testing.assert_array_equal(d["label"], np.where(single, labels.argmax(1), -1))


def test_voc2007_single_label_rows(tmp_path):
  splits = {"train": _voc_images(30, 6, 0), "test": _voc_images(12, 6, 1)}
  src = _write_voc(tmp_path / "voc", splits)
  cfg = _data_config(manual_dir=str(src), data_dir=str(tmp_path / "data"), num_validation=6)
  multi = features.load(cfg)
  assert multi.meta["multi_label"] and multi.num_classes == 5
  assert multi.train["label"].shape == (24, 5) and multi.test["label"].shape == (12, 5)
  cfg.single_label_rows = True
  single = features.load(cfg)
  assert not single.meta["multi_label"] and single.num_classes == 5
  for name in ("train", "validation", "test"):
    m, s = getattr(multi, name), getattr(single, name)
    keep = m["label"].sum(1) == 1  # every third image has two classes
    assert 0 < keep.sum() < len(keep)
    np.testing.assert_array_equal(s["label"], m["label"][keep].argmax(1))
    np.testing.assert_array_equal(s["image"], m["image"][keep])
    np.testing.assert_array_equal(s["text"], m["text"][keep])
  # A split in which no row has exactly one label is one error naming the folder.
  doubles = _voc_images(1, 6, 2) * 3  # image 0 has two classes
  cfg.manual_dir = str(
      _write_voc(tmp_path / "doubles", {"train": splits["train"], "test": doubles})
  )
  with pytest.raises(errors.UserError, match="single_label_rows leaves the test split") as err:
    features.load(cfg)
  assert cfg.manual_dir in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- bad input


def _h5_edit(**changes):
  """Edits the .h5py file: key -> function of its array, None (delete) or a new array."""

  def f(root: Path):
    with h5py.File(root / "xmedianet_deep_doc2vec_data.h5py", "a") as h:
      for key, fn in changes.items():
        if isinstance(fn, np.ndarray):  # a new dataset
          h.create_dataset(key, data=fn)
          continue
        x = h[key][()]
        del h[key]
        if fn is not None:
          h.create_dataset(key, data=fn(x))

  return f


def _npy_edit(name, fn):
  def f(root: Path):
    np.save(root / f"{name}.npy", fn(np.load(root / f"{name}.npy")), allow_pickle=True)

  return f


H5 = "xmedianet_deep_doc2vec_data.h5py"
BAD = {
    "h5_missing_key": ("h5", _h5_edit(test_imgs_labels=None), [H5, "'test_imgs_labels'"]),
    "h5_rows": ("h5", _h5_edit(train_text=lambda x: x[:23]), [H5, "train_text", "23 rows"]),
    "h5_label_rows": ("h5", _h5_edit(test_imgs_labels=lambda x: x[:7]), [H5, "test_imgs_labels"]),
    "h5_text_labels_differ": (
        "h5",
        _h5_edit(train_texts_labels=lambda x: (x + 1) % 4),
        [H5, "train_texts_labels"],
    ),
    "h5_partial_valid": (
        "h5",
        _h5_edit(train_imgs_deep=lambda x: x, valid_imgs_deep=np.ones((2, 6))),
        [H5, "partial", "valid_text"],
    ),
    "h5_corrupt": ("h5", lambda r: (r / H5).write_text("not hdf5"), [H5, "HDF5"]),
    "two_h5": ("h5", lambda r: (r / "other.h5").write_bytes(b""), [H5, "other.h5", "several"]),
    "npy_rows": ("npy", _npy_edit("test_txt", lambda x: x[:7]), ["test_txt.npy", "7 rows"]),
    "npy_missing": ("npy", lambda r: (r / "train_img_lab.npy").unlink(), ["train_img_lab.npy"]),
    "npy_pickled": (
        "npy",
        _npy_edit("train_img", lambda x: np.array(list(x), dtype=object)),
        ["train_img.npy", "pickle"],
    ),
    "mixed_mat_npy": (
        "npy",
        lambda r: scipy.io.savemat(r / "train_img.mat", {"train_img": np.ones((2, 2))}),
        ["train_img.mat", "train_img.npy", "mixes"],
    ),
    "mixed_mat_h5": (
        "mat",
        lambda r: _write_h5(r, _make()),
        ["train_img.mat", H5, "mixes"],
    ),
    "voc_no_struct": (
        "voc",
        lambda r: scipy.io.savemat(r / "train.mat", {"D1": np.ones((2, 8))}),
        ["train.mat", "gist, taglist, objectcount", "['D1']"],
    ),
    "voc_struct_lacks_a_field": (
        "voc",
        lambda r: scipy.io.savemat(
            r / "train.mat", {"D1": np.zeros((1, 2), dtype=[("gist", "O"), ("taglist", "O")])}
        ),
        ["train.mat [D1]", "lacks the field(s) objectcount"],
    ),
    "voc_no_image": (
        "voc",
        lambda r: scipy.io.savemat(r / "test.mat", {"D1": np.zeros((1, 0), dtype=_VOC_FIELDS)}),
        ["test.mat", "hold no image"],
    ),
    "voc_tag_id_zero": (
        "voc",
        lambda r: _write_voc(r, {"test": [(np.ones(8), np.array([2.0, 0.0]), np.eye(5)[1])]}),
        ["test.mat [taglist]", "image 0", "tag id 0"],
    ),
    "voc_gist_sizes": (
        "voc",
        lambda r: _write_voc(
            r,
            {
                "test": (
                    [(np.ones(8), np.ones(1), np.eye(5)[1])] * 2
                    + [(np.ones(7), np.ones(1), np.eye(5)[1])]
                )
            },
        ),
        ["test.mat [gist]", "image 2 has 7 values"],
    ),
    "mixed_voc_mat": (
        "voc",
        lambda r: scipy.io.savemat(r / "test_txt.mat", {"test_txt": np.ones((2, 2))}),
        ["test_txt.mat", "train.mat", "mixes"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files(case, tmp_path):
  layout, mutate, needles = BAD[case]
  src, data = tmp_path / "src", tmp_path / "data"
  if layout == "voc":
    _write_voc(src, {"train": _voc_images(10, 4, 0), "test": _voc_images(5, 4, 1)})
  else:
    {"h5": _write_h5, "npy": _write_npy, "mat": _write_mat}[layout](src, _make())
  mutate(src)
  with pytest.raises(DatasetFileError) as err:
    prepare(CrossModalFeatures, src, data)
  msg = str(err.value)
  assert "\n" not in msg
  for needle in needles:
    assert needle in msg, (needle, msg)
  if case == "npy_missing":
    assert isinstance(err.value, DatasetFileNotFoundError)
  assert not (data / "cross_modal_features").exists()
