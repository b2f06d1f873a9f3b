"""Repetition measures for the long outputs where a model or a scraper looped.

A loop repeats back to back: a span again and again, the same line, a list whose items
recur. Edited text repeats too, but spread out: chains of narration ("حدثنا ... عن ... عن"),
formulas ("صلى الله عليه وسلم"), refrains, restated chains after "ح". The Gopher shares
(Rae et al. 2021, as datatrove and FineWeb-2 implement them) count every repeated n-gram
wherever it stands, so they cannot tell the two apart: on the hadith and Quran text of
tests/test_real_text.py they drop 7% and 3.5%. The `tandem_*` measures count only copies
that follow the span they copy, and are clean's default; the Gopher shares stay for web
text, where FineWeb-2 tuned them (off unless their thresholds are set).

`clean` applies both only to outputs of at least `repetition.min_words` words.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np


def duplicate_line_fraction(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return 0.0
    return 1 - len(set(lines)) / len(lines)


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def top_ngram_fraction(words: list[str], n: int) -> float:
    """Characters covered by the most frequent n-gram, over all characters of words."""
    grams = _ngrams(words, n)
    if not grams:
        return 0.0
    gram, count = Counter(grams).most_common(1)[0]
    if count < 2:
        return 0.0
    return count * sum(len(w) for w in gram) / max(1, sum(len(w) for w in words))


def duplicate_ngram_fraction(words: list[str], n: int) -> float:
    """Characters inside n-grams that occur more than once, over all characters of words."""
    grams = _ngrams(words, n)
    if not grams:
        return 0.0
    counts = Counter(grams)
    covered = [False] * len(words)
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            for j in range(i, i + n):
                covered[j] = True
    dup = sum(len(w) for w, c in zip(words, covered, strict=True) if c)
    return dup / max(1, sum(len(w) for w in words))


_DIGITS = re.compile(r"[0-9\u0660-\u0669\u06f0-\u06f9]+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_LETTER = re.compile(r"[^\W\d_]")


def _ids(keys: list[str]) -> np.ndarray:
    vocab: dict[str, int] = {}
    return np.fromiter((vocab.setdefault(k, len(vocab)) for k in keys), np.int64, len(keys))


def tandem_copies(ids: np.ndarray, max_period: int, *slack_per: int) -> list[np.ndarray]:
    """For each m in `slack_per`, copy[i] = k >= 1 when item i lies in the k-th extra copy of
    a block of p <= max_period items repeated back to back (the largest k over p), else 0.
    A copy may differ from the one before it in one item in m (a counter or a word that
    drifts); m = 0: exact copies only."""
    n = len(ids)
    copies = [np.zeros(n, np.int64) for _ in slack_per]
    for p in range(1, min(max_period, n // 2) + 1):
        at = np.flatnonzero(ids[p:] == ids[:-p]) + p  # items equal to the one p before
        if len(at) < p:
            continue
        steps = np.diff(at)
        for copy, m in zip(copies, slack_per, strict=True):
            cut = np.flatnonzero(steps > 1 + (p // m if m else 0))
            starts, ends = at[np.r_[0, cut + 1]], at[np.r_[cut, len(at) - 1]] + 1
            for a, b in zip(starts, ends, strict=True):
                if b - a >= p:  # at least one whole extra copy
                    np.maximum(copy[a:b], 1 + np.arange(b - a) // p, out=copy[a:b])
    return copies


def tandem_shares(text: str, max_period: int, free_copies: int) -> tuple[float, float]:
    """(share, excess): characters of the words in an exact back-to-back copy, and in
    copies beyond the first `free_copies` of a run whose copies may drift one word in five,
    each over all characters. Punctuation and bullets at a word's edges do not hide a copy;
    numbers stay, so a run of years or figures is no loop."""
    words = text.split()
    if len(words) < 2:
        return 0.0, 0.0
    ids = _ids([_EDGE.sub("", w) or w for w in words])
    sizes = np.fromiter((len(w) for w in words), np.int64, len(words))
    total = max(1, int(sizes.sum()))
    exact, drift = tandem_copies(ids, max_period, 0, 5)
    return (
        float(sizes[exact > 0].sum()) / total,
        float(sizes[drift > free_copies - 1].sum()) / total,
    )


def tandem_line_share(text: str, max_block: int = 4) -> float:
    """Share of non-empty lines in a back-to-back repeat of the block of up to `max_block`
    lines before them. Digits fold in lines with letters, so "١. X" then "٢. X" repeat."""
    lines = [" ".join(line.split()) for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return 0.0
    keys = [_DIGITS.sub("0", line) if _LETTER.search(line) else line for line in lines]
    (copy,) = tandem_copies(_ids(keys), max_block, 0)
    return float((copy > 0).mean())
