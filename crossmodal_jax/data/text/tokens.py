"""Tokenizer and stop words: the text -> token-list step of every text feature.

Plain Python (no NLTK) and deterministic; it receives plain strings (parsing the dataset
files, e.g. the Wikipedia XML articles, is the dataset builders' job).

The tokenizer (:func:`tokenize`): text is lower-cased and NFKC-normalised (so a
decomposed ``"e" + U+0301`` and the ligature ``"ﬁ"`` become ``"é"`` and ``"fi"``);
combining marks left over afterwards are removed. A token is a run of Latin letters --
ASCII letters plus the accented letters of Latin-1 Supplement, Latin Extended-A/B and
Latin Extended Additional -- with optional *inner* apostrophes (``'``, ``’``, ``ʼ``) that
are dropped: ``"don't" -> "dont"``, ``"O'Brien" -> "obrien"``. A possessive ``'s`` is
stripped (``"king's" -> "king"``) so possessives share the noun's vocabulary entry and
GloVe vector. Digits, punctuation, and letters of other scripts separate tokens and are
dropped (``"mp3" -> "mp"``, ``"1943" -> nothing``); tokens of one character are dropped.

Stop words (:data:`DEFAULT_STOPWORDS`, :func:`load_stopwords`) are kept in the form
:func:`tokenize` produces (:func:`normalize_stopword`), so they can be compared with
tokens directly.
"""

from __future__ import annotations

import os
import pathlib
import re
import unicodedata

__all__ = ["DEFAULT_STOPWORDS", "tokenize", "normalize_stopword", "load_stopwords"]

# ASCII letters, Latin-1 letters (without the multiplication and division signs), Latin
# Extended-A and -B, and Latin Extended Additional.
_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
# The ASCII apostrophe, the right single quotation mark and the modifier letter apostrophe.
_APOSTROPHE_CHARS = ("'", "\u2019", "\u02bc")
_APOSTROPHES = "".join(_APOSTROPHE_CHARS)
_TOKEN_RE = re.compile(f"[{_LETTERS}]+(?:[{_APOSTROPHES}][{_LETTERS}]+)*")
_POSSESSIVE_RE = re.compile(f"[{_APOSTROPHES}]s$")
_APOSTROPHE_RE = re.compile(f"[{_APOSTROPHES}]")
_COMBINING_RE = re.compile("[\u0300-\u036f]")


def tokenize(text: str) -> list[str]:
  """Splits a text into lower-case word tokens.

  Args:
    text: any string (plain text, not markup).

  Returns:
    The tokens in text order: maximal runs of (possibly accented) Latin letters, joined
    across inner apostrophes which are then removed (``"don't" -> "dont"``); a trailing
    possessive ``'s`` is stripped (``"king's" -> "king"``). Digits, punctuation and
    other scripts separate tokens and are dropped; tokens of length 1 are dropped.

  Raises:
    TypeError: if ``text`` is not a string.
  """
  if not isinstance(text, str):
    raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
  text = unicodedata.normalize("NFKC", text.lower())
  text = _COMBINING_RE.sub("", text)
  tokens = []
  ascii_apostrophe, right_quote, modifier = _APOSTROPHE_CHARS
  for token in _TOKEN_RE.findall(text):
    # Most tokens have no apostrophe: skip the two substitutions for them (they took
    # about half the time of tokenising the Wikipedia articles).
    if ascii_apostrophe in token or right_quote in token or modifier in token:
      token = _APOSTROPHE_RE.sub("", _POSSESSIVE_RE.sub("", token))
    if len(token) > 1:
      tokens.append(token)
  return tokens


def normalize_stopword(word: str) -> str:
  """Puts a stop word in the form :func:`tokenize` produces (lower case, no apostrophe)."""
  word = unicodedata.normalize("NFKC", word.strip().lower())
  return _APOSTROPHE_RE.sub("", word)


DEFAULT_STOPWORDS: frozenset[str] = frozenset("""
    about above after again against all almost along already also although always am among
    an and another any anyone anything are around as at be because been before being below
    between both but by can could did do does doing done down during each either else
    enough etc even ever every few for from further had has have having he her here hers
    herself him himself his how however if in into is it its itself just least less like
    many me might more most much must my myself neither no nor not now of off often on
    once one only onto or other others otherwise our ours ourselves out over own per
    perhaps quite rather same several she should since so some such than that the their
    theirs them themselves then there thereby therefore these they this those though
    through throughout thus to too toward towards under until up upon us very via was we
    were what whatever when whenever where whereas wherever whether which while who whoever
    whom whose why will with within without would yet you your yours yourself yourselves
    dont doesnt didnt isnt arent wasnt werent hasnt havent hadnt cant cannot couldnt
    wouldnt shouldnt im ive youre youve theyre theyve weve thats theres whats
    """.split())
"""A compact English stop-word list (function words and common contractions, in the
apostrophe-free form :func:`tokenize` produces)."""


def load_stopwords(path: str | os.PathLike[str]) -> frozenset[str]:
  """Reads a stop-word list with one word per line.

  Blank lines are ignored; words are lower-cased, stripped, and their apostrophes
  removed so they match :func:`tokenize` output.

  Args:
    path: the file to read (UTF-8).

  Returns:
    The set of stop words.

  Raises:
    FileNotFoundError: if ``path`` does not exist (the message names the path).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"stop-word file not found: {path}")
  words = set()
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      word = normalize_stopword(line)
      if word:
        words.add(word)
  return frozenset(words)
