"""A raw instruction corpus of any size with known defects, and the truth about each row.

    python -m bench.corpus --rows 100000 --out /tmp/corpus

writes OUT/raw.jsonl ({"instruction", "input", "output"} a line) and OUT/truth.jsonl
({"row", "label", "of"} a line). Labels: clean, exact_dup, norm_dup (differs only in what
normalisation removes: diacritics, tatweel, invisible marks, presentation forms, spacing),
near_dup (a few words changed), persian, urdu, english, empty_output, too_short, markup
(keep once stripped), pii (keep once scrubbed). The Arabic vocabulary is taken from the
project's own samples in data/sources, so the text is real words in random order: right
for throughput and for what a cleaner keeps, not for training.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from itertools import accumulate
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "data" / "sources"
PERSIAN = (
    "این است که را برای با از به در آن یک ما شما آنها کتاب خانه دانشگاه پدر مادر "
    "برادر خواهر گفت می‌خواهم نمی‌دانم چرا چگونه کجا بسیار خوب بزرگ کوچک زیبا هست نیست "
    "بود باید شاید همه هیچ چیز کار روز شب سال"
).split()
URDU = (
    "یہ ہے کہ کو کے کی میں سے پر اور ایک ہم آپ وہ کتاب گھر اسکول والد والدہ بھائی بہن "
    "کہا چاہتا نہیں کیوں کیسے کہاں بہت اچھا بڑا چھوٹا خوبصورت تھا تھی سب کچھ کام دن رات "
    "سال ہوں گے"
).split()
ENGLISH = (
    "the of and to in is that for it as with was on be by this are from or an which "
    "people time world model data language learning system work study school city "
    "water write explain summarize describe answer question history science"
).split()
DIACRITICS = "\u064e\u064f\u0650\u0651\u0652\u064b\u064c\u064d"
INVISIBLE = ["\u200f", "\u200e", "\u200b", "\u200c", "\u202b", "\u202c", "\ufeff"]
PRESENTATION = {"لا": "\ufefb", "ه": "\ufee9", "م": "\ufee1"}
DEFECTS = {
    "exact_dup": 3,
    "norm_dup": 3,
    "near_dup": 3,
    "persian": 1,
    "urdu": 1,
    "english": 1,
    "empty_output": 1,
    "too_short": 1,
    "markup": 1,
    "pii": 1,
}


def arabic_vocabulary() -> list[str]:
    words: dict[str, int] = {}
    for path in sorted(SOURCES.glob("*")):
        for w in re.findall(r"[\u0621-\u064a]{2,}", path.read_text(encoding="utf-8")):
            words[w] = words.get(w, 0) + 1
    return sorted(words, key=lambda w: (-words[w], w))  # frequent first: a Zipf-like draw


class Maker:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.vocab = arabic_vocabulary()
        # Cumulative weights once: `choices` would otherwise re-sum them on every call.
        self.cum = list(accumulate(1 / (r + 10) for r in range(len(self.vocab))))

    def words(self, lo: int, hi: int, vocab=None) -> str:
        if vocab is not None:
            return " ".join(self.rng.choices(vocab, k=self.rng.randint(lo, hi)))
        return " ".join(
            self.rng.choices(self.vocab, cum_weights=self.cum, k=self.rng.randint(lo, hi))
        )

    def paragraph(self, lo: int, hi: int, vocab=None) -> str:
        return " ".join(
            self.words(6, 14, vocab) + self.rng.choice(".،؟!" if vocab is None else ".")
            for _ in range(self.rng.randint(lo, hi))
        )

    def clean(self) -> dict:
        return {
            "instruction": self.words(4, 10) + "؟",
            "input": self.paragraph(1, 3) if self.rng.random() < 0.4 else "",
            "output": self.paragraph(2, 7),
        }

    def norm_dup(self, rec: dict) -> dict:
        out = dict(rec)
        chars = list(rec["output"])
        for _ in range(max(3, len(chars) // 30)):
            i = self.rng.randrange(len(chars))
            if "\u0621" <= chars[i] <= "\u064a":
                chars[i] += self.rng.choice([*DIACRITICS, "\u0640"])
        text = "".join(chars)
        for plain, form in PRESENTATION.items():
            if self.rng.random() < 0.3:
                text = text.replace(plain, form, 1)
        out["output"] = text.replace(" ", "  ", 2)
        out["instruction"] = self.rng.choice(INVISIBLE) + rec["instruction"] + " "
        return out

    def near_dup(self, rec: dict) -> dict:
        out = dict(rec)
        toks = rec["output"].split(" ")
        for _ in range(max(1, len(toks) // 40)):
            i = self.rng.randrange(len(toks))
            if self.rng.random() < 0.5 and len(toks) > 10:
                del toks[i]
            else:
                toks[i] = self.rng.choice(self.vocab[:300])
        out["output"] = " ".join(toks)
        return out

    def defect(self, kind: str) -> dict:
        if kind in ("persian", "urdu", "english"):
            vocab = {"persian": PERSIAN, "urdu": URDU, "english": ENGLISH}[kind]
            return {
                "instruction": self.words(5, 10, vocab) + "?",
                "input": "",
                "output": self.paragraph(2, 5, vocab),
            }
        rec = self.clean()
        if kind == "empty_output":
            rec["output"] = self.rng.choice(["", " ", "\n", "\u200f"])
        elif kind == "too_short":
            rec["output"] = self.words(1, 2)
        elif kind == "markup":
            rec["output"] = "<p>" + rec["output"].replace(". ", ".</p>\n<p>", 2) + "&nbsp;</p><br/>"
        elif kind == "pii":
            contact = self.rng.choice(
                [
                    f"user{self.rng.randrange(10**6)}@example.com",
                    f"+9665{self.rng.randrange(10**7, 10**8)}",
                    f"https://example.com/u/{self.rng.randrange(10**6)}",
                ]
            )
            rec["output"] += f" للتواصل: {contact}"
        return rec


def make(rows: int, out: Path, seed: int = 0, defect_rate: float = 0.2) -> Path:
    m = Maker(seed)
    out.mkdir(parents=True, exist_ok=True)
    kinds, weights = list(DEFECTS), list(DEFECTS.values())
    originals: list[tuple[int, dict]] = []
    with (
        open(out / "raw.jsonl", "w", encoding="utf-8") as raw,
        open(out / "truth.jsonl", "w", encoding="utf-8") as truth,
    ):
        for row in range(rows):
            label, of = "clean", None
            if originals and m.rng.random() < defect_rate:
                label = m.rng.choices(kinds, weights)[0]
            if label in ("exact_dup", "norm_dup", "near_dup"):
                of, base = m.rng.choice(originals)
                rec = dict(base) if label == "exact_dup" else getattr(m, label)(base)
            elif label == "clean":
                rec = m.clean()
                if len(originals) < 20_000:
                    originals.append((row, rec))
                else:
                    originals[m.rng.randrange(len(originals))] = (row, rec)
            else:
                rec = m.defect(label)
            raw.write(json.dumps(rec, ensure_ascii=False) + "\n")
            truth.write(json.dumps({"row": row, "label": label, "of": of}) + "\n")
    return out / "raw.jsonl"


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    print(make(a.rows, a.out, a.seed))


if __name__ == "__main__":
    main()
