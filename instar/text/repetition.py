"""Repetition measures in the style of the Gopher filters (Rae et al. 2021, as datatrove and
FineWeb-2 implement them), for the long outputs where a model or a scraper looped.

They were built for web pages: on a two-sentence answer, its most frequent bigram is a
large share of the text by construction, so `clean` applies them only to outputs of at
least `repetition.min_words` words.
"""

from __future__ import annotations

from collections import Counter


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
