"""Scores of generated Arabic text against references: chrF (sacrebleu) and ROUGE-L.

rouge-score's default tokenizer lower-cases and then replaces every character outside
[a-z0-9] with a space, so on Arabic it returns no tokens and ROUGE-L is 0 for any pair of
strings. ArabicTokenizer folds what people type interchangeably (instar/text/arabic.py's
dedup key: diacritics, alef/yeh/teh marbuta variants, punctuation) and splits on words.
"""

from __future__ import annotations

import re

from instar.text.arabic import dedup_key

WORD = re.compile(r"\w+", re.UNICODE)


class ArabicTokenizer:
    """A rouge-score tokenizer (anything with `tokenize(text) -> list[str]`) that keeps Arabic."""

    def tokenize(self, text: str) -> list[str]:
        return WORD.findall(dedup_key(text))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (one row of the table)."""
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(predictions: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F1 of each prediction against its reference (0..1), as rouge-score computes it
    with ArabicTokenizer (tests/test_evaluate.py compares the two). Computed here because
    importing rouge-score imports nltk, 1.5 s of every evaluation stage."""
    tok = ArabicTokenizer()
    scores = []
    for pred, ref in zip(predictions, references, strict=True):
        p, r = tok.tokenize(pred), tok.tokenize(ref)
        lcs = lcs_length(r, p)
        if lcs == 0:
            scores.append(0.0)
            continue
        precision, recall = lcs / len(p), lcs / len(r)  # rouge-score's order of operations
        scores.append(2 * precision * recall / (precision + recall))
    return scores


def chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu, 0..100)."""
    from sacrebleu.metrics import CHRF

    return CHRF().corpus_score(predictions, [references]).score


def sentence_chrf(prediction: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(prediction, [reference]).score
