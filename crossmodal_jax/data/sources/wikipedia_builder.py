"""TFDS builder for the Wikipedia cross-modal dataset (Rasiwasia et al., ACM MM 2010).

The builder reads a folder in the public layout of the dataset (``manual_dir``)::

    trainset_txt_img_cat.list   text_id<TAB>image_id<TAB>class (1..C), 2173 lines
    testset_txt_img_cat.list    same, 693 lines
    categories.list             C class names, one a line (C = 10)
    raw_features.mat            I_tr/T_tr (train) and I_te/T_te (test) rows in list order:
                                I_* 128-d SIFT bag-of-visual-words, T_* 10-d LDA topics
    texts/<text_id>.xml         <document name=..><text>...</text>...</document>

Splits: ``train`` (all rows of the train list); ``validation`` and ``test`` from the test
list, by ``split``:

- ``"literature"``: the split of the published tables, 231 validation and 462 test pairs
  named by text id in ``wikipedia_literature_split.txt`` beside this module (the order of
  MCSM's evaluation code, Peng et al., IEEE TIP 2018; its first 231 ids are validation);
- ``"list_order"`` (the builder's default): the first ``num_validation`` rows of the test
  list (231 by default) and the other rows; ``num_validation=0`` gives no validation split.

Both keep each split's rows in list order (only which rows belong to which split differs).

Example features: ``image`` float32[128], ``lda`` float32[10], ``text`` (the article
body), ``title`` (the document's ``name`` attribute), ``label`` ClassLabel (class - 1,
names from categories.list), ``text_id``, ``image_id`` and ``index`` (int64, the row in
the split's list file: validation and test rows are both rows of the test list). Examples are keyed by ``index`` and written unshuffled, so
``as_data_source`` returns them in list order; :func:`crossmodal_jax.data.tfds_io.read_split`
additionally sorts by ``index``.

888 of the XML files are not well-formed (raw ``&``); they are read with a regular
expression and ``html.unescape`` when ElementTree fails.

Every source file is validated before anything is written; any problem raises one
:class:`~crossmodal_jax.data.tfds_io.DatasetFileError` naming the file (and line).
Build with :func:`crossmodal_jax.data.tfds_io.prepare`::

    builder = prepare(WikipediaCrossModal, "/path/to/wikipedia_dataset", data_dir)
    train = read_split(builder, "train")
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from crossmodal_jax import errors
from crossmodal_jax.data.tfds_io import (
    DatasetFileError,
    SourceBuilderMixin,
    require_file,
    resolve_dir,
    source_fingerprint,
)

__all__ = ["WikipediaCrossModal", "WikipediaConfig", "WIKIPEDIA_CATEGORIES", "parse_text_xml"]

WIKIPEDIA_CATEGORIES = (
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
)
TRAIN_LIST = "trainset_txt_img_cat.list"
TEST_LIST = "testset_txt_img_cat.list"
CATEGORIES = "categories.list"
FEATURES_MAT = "raw_features.mat"
TEXTS = "texts"
IMAGE_DIM = 128
LDA_DIM = 10
DEFAULT_NUM_VALIDATION = 231
SPLITS = ("literature", "list_order")
LITERATURE_SPLIT_FILE = Path(__file__).with_name("wikipedia_literature_split.txt")
LITERATURE_NUM_VALIDATION = 231

_TEXT_RE = re.compile(r"<text(?:\s[^>]*)?>(.*?)</text\s*>", re.DOTALL | re.IGNORECASE)
_TEXT_EMPTY_RE = re.compile(r"<text(?:\s[^>]*)?/>", re.IGNORECASE)
_DOC_RE = re.compile(r"<document\b([^>]*)>", re.IGNORECASE)
_NAME_RE = re.compile(r"""\bname\s*=\s*(?:"([^"]*)"|'([^']*)')""")


@dataclasses.dataclass(eq=False)
class WikipediaConfig(tfds.core.BuilderConfig):
  """Config of :class:`WikipediaCrossModal`; built by its constructor."""

  manual_dir: str | None = None
  num_validation: int = DEFAULT_NUM_VALIDATION
  split: str = "list_order"


def literature_split() -> tuple[list[str], list[str]]:
  """(validation text ids, test text ids) of the literature's split, from the shipped file."""
  ids = [
      line.strip()
      for line in LITERATURE_SPLIT_FILE.read_text(encoding="utf-8").splitlines()
      if line.strip() and not line.startswith("#")
  ]
  return ids[:LITERATURE_NUM_VALIDATION], ids[LITERATURE_NUM_VALIDATION:]


def parse_text_xml(path: str | os.PathLike) -> tuple[str, str]:
  """Returns ``(title, text)`` of one article file, tolerating malformed XML.

  Tries ElementTree first; when the file is not well-formed, takes the body of the
  first ``<text>`` element and the ``name`` attribute of ``<document>`` with regular
  expressions and decodes character/entity references with ``html.unescape``.
  Raises DatasetFileError when the file cannot be read or has no ``<text>`` element.
  """
  path = Path(path)
  try:
    raw = path.read_bytes()
  except FileNotFoundError:
    raise DatasetFileError(f"{path}: text file is missing") from None
  except OSError as e:
    raise DatasetFileError(f"{path}: cannot read text file ({e})") from None
  try:
    root = ET.fromstring(raw)
  except ET.ParseError:
    root = None
  if root is not None:
    node = root if root.tag == "text" else root.find(".//text")
    if node is not None:
      return (root.get("name") or "").strip(), "".join(node.itertext()).strip()
  s = raw.decode("utf-8", errors="replace")
  m = _TEXT_RE.search(s)
  if m is not None:
    body = m.group(1)
  elif _TEXT_EMPTY_RE.search(s):
    body = ""
  else:
    raise DatasetFileError(f"{path}: no <text> element found")
  body = re.sub(r"<!\[CDATA\[(.*?)\]\]>", r"\1", body, flags=re.DOTALL)
  title = ""
  d = _DOC_RE.search(s)
  if d is not None:
    n = _NAME_RE.search(d.group(1))
    if n is not None:
      title = html.unescape(n.group(1) if n.group(1) is not None else n.group(2))
  return title.strip(), html.unescape(body).strip()


def _read_lines(path: Path) -> list[str]:
  """The lines of a UTF-8 text file, trailing blank lines dropped; one error naming it."""
  require_file(path)
  try:
    lines = path.read_text(encoding="utf-8").splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise DatasetFileError(f"{path}: cannot read ({e})") from None
  while lines and not lines[-1].strip():
    lines.pop()
  return lines


def _read_categories(path: Path) -> list[str]:
  lines = _read_lines(path)
  names = []
  for i, line in enumerate(lines, 1):
    name = line.strip()
    if not name:
      raise DatasetFileError(f"{path}, line {i}: empty category name")
    if name in names:
      raise DatasetFileError(f"{path}, line {i}: duplicate category {name!r}")
    names.append(name)
  if not names:
    raise DatasetFileError(f"{path}: no categories")
  return names


def _read_list(path: Path, num_classes: int) -> list[tuple[str, str, int]]:
  """Parses a ``text_id<TAB>image_id<TAB>class`` list; returns 0-based labels."""
  lines = _read_lines(path)
  rows = []
  for i, line in enumerate(lines, 1):
    parts = line.split()
    if len(parts) != 3:
      raise DatasetFileError(
          f"{path}, line {i}: expected 3 columns text_id<TAB>image_id<TAB>class,"
          f" got {len(parts)}: {line!r}"
      )
    text_id, image_id, cls = parts
    try:
      c = int(cls)
    except ValueError:
      raise DatasetFileError(f"{path}, line {i}: class {cls!r} is not an integer") from None
    if not 1 <= c <= num_classes:
      raise DatasetFileError(f"{path}, line {i}: class {c} out of range 1..{num_classes}")
    rows.append((text_id, image_id, c - 1))
  if not rows:
    raise DatasetFileError(f"{path}: the list is empty")
  return rows


def _mat_rows(mat: dict, path: Path, var: str, n: int, dim: int, list_path: Path):
  if var not in mat:
    found = sorted(k for k in mat if not k.startswith("__"))
    raise DatasetFileError(f"{path}: variable {var!r} is missing (found {found})")
  x = mat[var]
  if hasattr(x, "toarray"):
    x = x.toarray()
  x = np.asarray(x)
  if x.dtype.kind not in "biuf" or x.ndim != 2:
    raise DatasetFileError(f"{path}: {var} must be a 2-D numeric matrix, got {x.dtype} {x.shape}")
  if x.shape[0] != n:
    raise DatasetFileError(
        f"{path}: {var} has {x.shape[0]} rows but {list_path.name} has {n} lines"
    )
  if x.shape[1] != dim:
    raise DatasetFileError(f"{path}: {var} has {x.shape[1]} columns, expected {dim}")
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise DatasetFileError(f"{path}: {var} contains NaN or infinite values")
  return x


class WikipediaCrossModal(SourceBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Wikipedia image/text retrieval dataset (2173 train / 231 validation / 462 test).

  Args (keyword-only, besides those of ``GeneratorBasedBuilder`` such as
  ``data_dir`` and ``file_format="array_record"``):
    manual_dir: the source folder. When given, the class names are read from its
      categories.list and the builder config is named after a fingerprint of the
      folder (see :mod:`crossmodal_jax.data.tfds_io`), so different folders never
      share a build. When omitted, the config is ``val<num_validation>``, the class
      names are the 10 public ones and the folder comes from the download config's
      ``manual_dir``.
    num_validation: how many leading test-list rows form the validation split
      (default 231; 0 means no validation split) under ``split="list_order"``.
    split: ``"list_order"`` or ``"literature"`` (the shipped 231 / 462 split of the
      published tables; ``num_validation`` must then be left at 231).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at the folder of the public Wikipedia cross-modal dataset "
      "(Rasiwasia et al., ACM MM 2010) in its public layout: trainset_txt_img_cat.list, "
      "testset_txt_img_cat.list, categories.list, raw_features.mat and texts/*.xml "
      "(the image pixels are not needed)."
  )

  def __init__(
      self,
      *,
      manual_dir: str | os.PathLike | None = None,
      num_validation: int = DEFAULT_NUM_VALIDATION,
      split: str = "list_order",
      config: WikipediaConfig | None = None,
      **kwargs: Any,
  ):
    if config is None:
      num_validation = int(num_validation)
      if num_validation < 0:
        raise errors.UserError(f"num_validation must be >= 0, got {num_validation}")
      if split not in SPLITS:
        raise errors.UserError(f"Unknown Wikipedia split {split!r}; choose one of {SPLITS}.")
      if split == "literature" and num_validation != LITERATURE_NUM_VALIDATION:
        raise errors.UserError(
            f"The literature's split has {LITERATURE_NUM_VALIDATION} validation pairs; "
            f"num_validation={num_validation} needs split='list_order'."
        )
      # The list-order builds keep their earlier names (and so their caches).
      tag = "literature" if split == "literature" else f"val{num_validation}"
      if manual_dir is not None:
        root = resolve_dir(manual_dir)
        # The literature's build also hashes the shipped ids, so an edit rebuilds it.
        extra = (
            (num_validation,) if split == "list_order" else (num_validation, *literature_split())
        )
        fp = source_fingerprint(
            root, [TRAIN_LIST, TEST_LIST, CATEGORIES, FEATURES_MAT, TEXTS], *extra
        )
        name = f"{tag}_{fp}"
        manual_dir = os.fspath(root)
      else:
        name = tag
      description = (
          "the literature's validation / test split"
          if split == "literature"
          else f"validation = first {num_validation} test rows"
      )
      config = WikipediaConfig(
          name=name,
          description=f"{description}; source {manual_dir or '(download config manual_dir)'}",
          manual_dir=manual_dir,
          num_validation=num_validation,
          split=split,
      )
    elif not isinstance(config, WikipediaConfig):
      raise TypeError(f"config must be a WikipediaConfig, got {type(config)}")
    self._dl_manual_dir: Path | None = None
    super().__init__(config=config, **kwargs)

  # ------------------------------------------------------------------ TFDS hooks

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    if cfg is not None and cfg.manual_dir is not None:
      names = _read_categories(Path(cfg.manual_dir) / CATEGORIES)
    else:
      names = list(WIKIPEDIA_CATEGORIES)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Wikipedia cross-modal retrieval dataset: Wikipedia featured-article "
            "sections paired with one image each, 10 classes; images given as "
            "128-d SIFT bag-of-visual-words, texts as raw article text and 10-d "
            "LDA topic proportions."
        ),
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(IMAGE_DIM,), dtype=np.float32),
                "lda": tfds.features.Tensor(shape=(LDA_DIM,), dtype=np.float32),
                "text": tfds.features.Text(),
                "title": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=names),
                "text_id": tfds.features.Text(),
                "image_id": tfds.features.Text(),
                "index": tfds.features.Scalar(dtype=np.int64),
            }
        ),
        supervised_keys=None,
        disable_shuffling=True,
        homepage="http://www.svcl.ucsd.edu/projects/crossmodal/",
        citation=(
            "@inproceedings{rasiwasia2010new, title={A new approach to cross-modal "
            "multimedia retrieval}, author={Rasiwasia, Nikhil and Costa Pereira, Jose "
            "and Coviello, Emanuele and Doyle, Gabriel and Lanckriet, Gert RG and Levy, "
            "Roger and Vasconcelos, Nuno}, booktitle={ACM Multimedia}, year={2010}}"
        ),
    )

  def _source_dir(self) -> Path:
    cfg = self.builder_config
    if cfg.manual_dir is not None:
      return Path(cfg.manual_dir)
    if self._dl_manual_dir is not None:
      return self._dl_manual_dir
    raise DatasetFileError(
        "no manual_dir: pass manual_dir= to WikipediaCrossModal or a "
        "DownloadConfig(manual_dir=...) to download_and_prepare"
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    if self.builder_config.manual_dir is None:
      self._dl_manual_dir = Path(os.fspath(dl_manager.manual_dir))
    src = self.load_source()
    names = self.info.features["label"].names
    if src["categories"] != names:
      raise DatasetFileError(
          f"{src['root'] / CATEGORIES}: categories {src['categories']} differ "
          f"from the builder's {names}; pass manual_dir= to the constructor"
      )
    test_rows = src["test_rows"]
    splits = {"train": self._generate_examples(src["train"], src["train"]["index"])}
    if len(test_rows["validation"]):
      splits["validation"] = self._generate_examples(src["test"], test_rows["validation"])
    splits["test"] = self._generate_examples(src["test"], test_rows["test"])
    return {name: self.announced(name, examples) for name, examples in splits.items()}

  def _test_rows(self, src: dict[str, Any]) -> dict[str, np.ndarray]:
    """The test list's rows of the validation and test splits, each in list order."""
    n_test = len(src["test"]["index"])
    if self.builder_config.split == "list_order":
      k = self.builder_config.num_validation
      return {"validation": np.arange(k), "test": np.arange(k, n_test)}
    row_of = {text_id: i for i, text_id in enumerate(src["test"]["text_id"])}
    out = {}
    for name, ids in zip(("validation", "test"), literature_split()):
      missing = [i for i in ids if i not in row_of]
      if missing:
        raise DatasetFileError(
            f"{src['root'] / TEST_LIST}: {len(missing)} text ids of the literature's "
            f"{name} split are not in the list (first: {missing[0]!r}); use "
            "data.wikipedia_split=list_order for another folder"
        )
      out[name] = np.sort([row_of[i] for i in ids])
    return out

  def _generate_examples(self, part: dict[str, Any], idx: np.ndarray):
    for i in idx:
      i = int(i)
      yield i, {
          "image": part["image"][i],
          "lda": part["lda"][i],
          "text": part["text"][i],
          "title": part["title"][i],
          "label": int(part["label"][i]),
          "text_id": part["text_id"][i],
          "image_id": part["image_id"][i],
          "index": i,
      }

  # ------------------------------------------------------------------ loading

  def _load_source(self, root: Path) -> dict[str, Any]:
    """Reads and validates every source file; returns per-part arrays."""
    categories = _read_categories(root / CATEGORIES)
    train_list = root / TRAIN_LIST
    test_list = root / TEST_LIST
    train_rows = _read_list(train_list, len(categories))
    test_rows = _read_list(test_list, len(categories))
    k = self.builder_config.num_validation
    if self.builder_config.split == "list_order" and k >= len(test_rows):
      raise DatasetFileError(
          f"{test_list}: num_validation={k} leaves no test rows "
          f"(the list has {len(test_rows)} lines)"
      )
    mat_path = require_file(root / FEATURES_MAT)
    try:
      mat = scipy.io.loadmat(os.fspath(mat_path))
    except Exception as e:  # corrupt file, MATLAB v7.3 (HDF5), ...
      raise DatasetFileError(f"{mat_path}: cannot read MATLAB file ({e})") from None
    texts_dir = root / TEXTS
    if not texts_dir.is_dir():
      raise DatasetFileError(f"{texts_dir}: texts folder is missing")
    out: dict[str, Any] = {"root": root, "categories": categories}
    for part, rows, list_path, ivar, tvar in (
        ("train", train_rows, train_list, "I_tr", "T_tr"),
        ("test", test_rows, test_list, "I_te", "T_te"),
    ):
      n = len(rows)
      image = _mat_rows(mat, mat_path, ivar, n, IMAGE_DIM, list_path)
      lda = _mat_rows(mat, mat_path, tvar, n, LDA_DIM, list_path)
      titles, texts = [], []
      for text_id, _, _ in rows:
        title, text = parse_text_xml(texts_dir / f"{text_id}.xml")
        titles.append(title)
        texts.append(text)
      out[part] = {
          "image": image,
          "lda": lda,
          "text": texts,
          "title": titles,
          "label": np.array([r[2] for r in rows], dtype=np.int64),
          "text_id": [r[0] for r in rows],
          "image_id": [r[1] for r in rows],
          "index": np.arange(n, dtype=np.int64),
      }
    out["test_rows"] = self._test_rows(out)  # checked here, before anything is written
    return out
