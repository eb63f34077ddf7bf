"""The fitted text pipeline: what `features.make` fitted on the training texts, as one object.

A `TextFit` holds every piece fitted on a dataset's training texts (the vocabulary, the
idf, the SVD components and column scale, the LDA, the word-id sequences' length, the
word graph's vocabulary and its signal's idf), and `transform` turns any raw texts into
the text arrays with them: "text" (unless the text feature is given as vectors),
"word_ids" / "word_mask" (word sequences) and "bow" (the graph signal). `features.make`
makes every split's arrays with `transform`, so the training texts' arrays are the
training split's, and a run saves the fit (`state`, `from_state`) to make the same
arrays from new texts (`crossmodal_jax.data.preprocessing`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from crossmodal_jax.data.text import lda as lda_lib
from crossmodal_jax.data.text import svd
from crossmodal_jax.data.text import tfidf
from crossmodal_jax.data.text import tokens as tokens_lib
from crossmodal_jax.data.text import vocab as vocab_lib
from crossmodal_jax.data.text import word_graph as word_graph_lib

__all__ = ["TextFit"]

# The arrays of a TextFit (`state`), by field.
_ARRAYS = ("idf", "components", "scale", "graph_idf")


@dataclasses.dataclass(frozen=True)
class TextFit:
  """The text pieces fitted on a dataset's training texts (module doc).

  Attributes:
    feature: `data.text_feature`, the "text" array: "bow", "tfidf", "tfidf_svd", "lda", or
      a feature given as fixed vectors (`given`).
    given: whether "text" is given as fixed vectors (not made from the texts).
    vocab: the training texts' vocabulary (None: none was built).
    sublinear_tf: TF-IDF with 1 + log(tf).
    idf: the training idf ("tfidf", "tfidf_svd").
    components: the SVD components [V, svd_dim] ("tfidf_svd").
    scale: the projected columns' training standard deviation ("tfidf_svd").
    lda: the LDA model ("lda").
    max_words: the word-id sequences' length (0: no word sequences).
    graph_vocab: the word graph's vertices (None: no graph signal from texts).
    graph_signal: "counts" or "tfidf" (`data.graph_signal`).
    graph_idf: the graph signal's training idf ("tfidf").
  """

  feature: str
  given: bool = False
  vocab: vocab_lib.Vocabulary | None = None
  sublinear_tf: bool = True
  idf: np.ndarray | None = None
  components: np.ndarray | None = None
  scale: np.ndarray | None = None
  lda: lda_lib.Model | None = None
  max_words: int = 0
  graph_vocab: vocab_lib.Vocabulary | None = None
  graph_signal: str = "counts"
  graph_idf: np.ndarray | None = None

  @property
  def reads_texts(self) -> bool:
    """Whether raw texts make any array (a vocabulary or a graph vocabulary was fitted)."""
    return self.vocab is not None or self.graph_vocab is not None

  def keys(self) -> tuple[str, ...]:
    """The arrays `transform` makes from raw texts, in the order it makes them."""
    keys = ("word_ids", "word_mask") if self.max_words else ()
    keys += () if self.given or self.vocab is None else ("text",)
    return keys + (("bow",) if self.graph_vocab is not None else ())

  def transform(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The text arrays of raw texts (`keys`): tokenised, then `transform_tokens`."""
    return self.transform_tokens([tokens_lib.tokenize(t) for t in texts])

  def transform_tokens(self, tokens: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """The text arrays of token lists (`keys`), with the pieces fitted on train."""
    out: dict[str, np.ndarray] = {}
    if self.max_words:
      out["word_ids"], out["word_mask"] = vocab_lib.word_id_sequences(
          tokens, self.vocab, self.max_words, drop_oov=True
      )
    if not self.given and self.vocab is not None:
      counts = vocab_lib.bag_of_words(tokens, self.vocab)
      out["text"] = np.asarray(self.feature_of(counts), dtype=np.float32)
    if self.graph_vocab is not None:
      out["bow"] = self.signal(vocab_lib.bag_of_words(tokens, self.graph_vocab))
    return out

  def feature_of(self, counts: np.ndarray) -> np.ndarray:
    """The text feature of bag-of-words counts over `vocab`."""
    if self.feature == "bow":
      return counts
    if self.feature == "lda":
      return self.lda.transform(counts)
    x = tfidf.tfidf(counts, self.idf, sublinear_tf=self.sublinear_tf)
    if self.feature == "tfidf":
      return x
    return (svd.project(x, self.components) / self.scale).astype(np.float32)

  def signal(self, counts: np.ndarray) -> np.ndarray:
    """The graph signal ("bow") of counts over the graph vocabulary."""
    return word_graph_lib.apply_signal(counts, self.graph_signal, self.graph_idf)

  # --- Saving ---------------------------------------------------------------------------

  def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the JSON-able fields, the arrays): what `from_state` reads back."""
    words = lambda v: None if v is None else list(v.words)
    fields = {
        "feature": self.feature,
        "given": self.given,
        "vocab": words(self.vocab),
        "sublinear_tf": self.sublinear_tf,
        "max_words": self.max_words,
        "graph_vocab": words(self.graph_vocab),
        "graph_signal": self.graph_signal,
        "lda": self.lda is not None,
    }
    arrays = {k: getattr(self, k) for k in _ARRAYS if getattr(self, k) is not None}
    if self.lda is not None:
      arrays.update({f"lda.{k}": v for k, v in self.lda.arrays().items()})
    return fields, arrays

  @classmethod
  def from_state(cls, fields: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> TextFit:
    vocab = lambda w: None if w is None else vocab_lib.Vocabulary(tuple(w))
    lda = None
    if fields["lda"]:
      lda = lda_lib.Model.from_arrays(
          {k[len("lda.") :]: v for k, v in arrays.items() if k.startswith("lda.")}
      )
    return cls(
        feature=fields["feature"],
        given=bool(fields["given"]),
        vocab=vocab(fields["vocab"]),
        sublinear_tf=bool(fields["sublinear_tf"]),
        max_words=int(fields["max_words"]),
        graph_vocab=vocab(fields["graph_vocab"]),
        graph_signal=fields["graph_signal"],
        lda=lda,
        **{k: np.asarray(arrays[k]) for k in _ARRAYS if k in arrays},
    )
