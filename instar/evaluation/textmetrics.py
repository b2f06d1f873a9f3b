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


def rouge_l(predictions: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F1 of each prediction against its reference (0..1)."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], tokenizer=ArabicTokenizer())
    return [
        scorer.score(ref, pred)["rougeL"].fmeasure
        for pred, ref in zip(predictions, references, strict=True)
    ]


def chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu, 0..100)."""
    from sacrebleu.metrics import CHRF

    return CHRF().corpus_score(predictions, [references]).score


def sentence_chrf(prediction: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(prediction, [reference]).score
