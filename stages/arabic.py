"""Arabic text normalisation at two levels: text kept for training, and the key used for dedup."""

from __future__ import annotations

import re
import unicodedata

TATWEEL = "\u0640"
# Harakat, shadda, sukun, maddah/hamza marks above and below, superscript alef.
DIACRITICS = re.compile("[\u064b-\u065f\u0670\u06d6-\u06ed]")
# Bidi embeddings/overrides/isolates, marks, zero-width characters and stray BOMs: invisible,
# yet they split otherwise identical strings.
INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad]")
SPACES = re.compile(r"[^\S\n]+")
BLANK_LINES = re.compile(r"\n\s*\n+")
ARABIC_LETTER = re.compile("[\u0621-\u064a\u066e-\u06d3\u06d5\u06fa-\u06ff]")
LETTER = re.compile(r"[^\W\d_]")
PUNCT = re.compile(r"[^\w\s]|_")
# Letter variants that people type interchangeably (and Persian/Urdu look-alikes).
FOLD = str.maketrans(
    {
        "أ": "ا",
        "إ": "ا",
        "آ": "ا",
        "ٱ": "ا",
        "ٲ": "ا",
        "ٳ": "ا",
        "ى": "ي",
        "ی": "ي",
        "ې": "ي",
        "ے": "ي",
        "ۍ": "ي",
        "ة": "ه",
        "ہ": "ه",
        "ۀ": "ه",
        "ە": "ه",
        "ھ": "ه",
        "ک": "ك",
        "ڪ": "ك",
        "ؤ": "و",
        "ئ": "ي",
        "٠": "0",
        "١": "1",
        "٢": "2",
        "٣": "3",
        "٤": "4",
        "٥": "5",
        "٦": "6",
        "٧": "7",
        "٨": "8",
        "٩": "9",
    }
)


def normalise(text: str, keep_diacritics: bool = True) -> str:
    """Text kept for training: NFKC (folds presentation forms), no tatweel or invisible
    characters, tidy whitespace. Latin text, digits and code are left as they are."""
    text = unicodedata.normalize("NFKC", text)
    text = INVISIBLE.sub("", text.replace(TATWEEL, ""))
    if not keep_diacritics:
        text = DIACRITICS.sub("", text)
    lines = [SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def dedup_key(text: str) -> str:
    """The comparison key: training normalisation, then no diacritics, folded letter
    variants, no punctuation, case-folded."""
    text = DIACRITICS.sub("", normalise(text)).translate(FOLD)
    return " ".join(PUNCT.sub(" ", text).casefold().split())


def arabic_ratio(text: str) -> float:
    """Share of letters that are Arabic (digits, punctuation and spaces do not count)."""
    letters = len(LETTER.findall(text))
    return len(ARABIC_LETTER.findall(text)) / letters if letters else 0.0


def words(text: str) -> int:
    return len(text.split())
