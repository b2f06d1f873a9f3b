"""Arabic text at two levels: the text kept for training, and the key used to find duplicates.

Training text changes as little as possible: presentation forms folded to letters, tatweel
and invisible controls gone, whitespace tidied; Latin text, digits and code untouched (so
NFKC is applied to Arabic presentation forms only: on the whole text it would also turn
"x²" into "x2" and "ﬁ" into "fi"). The dedup key folds everything people type
interchangeably, with camel-tools' normalisers.
"""

from __future__ import annotations

import re
import unicodedata

from camel_tools.utils.dediac import dediac_ar
from camel_tools.utils.normalize import (
    normalize_alef_ar,
    normalize_alef_maksura_ar,
    normalize_teh_marbuta_ar,
)

TATWEEL = "\u0640"
# Harakat, shadda, sukun, maddah/hamza marks, superscript alef, Quranic annotation marks.
DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed]")
# Bidi embeddings/overrides/isolates and marks, zero-width characters, soft hyphen and stray
# BOMs: invisible, yet they split otherwise identical strings.
INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad\u061c]")
PRESENTATION_FORMS = re.compile("[\ufb50-\ufdff\ufe70-\ufefe]+")
SPACES = re.compile(r"[^\S\n]+")
BLANK_LINES = re.compile(r"\n\s*\n+")
ARABIC_LETTER = re.compile("[\u0621-\u064a\u066e-\u06d3\u06d5\u06fa-\u06ff]")
LETTER = re.compile(r"[^\W\d_]")
PUNCT = re.compile(r"[^\w\s]|_")
# Persian and Urdu letters that stand for Arabic ones (keheh, farsi yeh, heh goal, ...),
# and Arabic-Indic digits. camel-tools' own map for this (`arclean`) also deletes every
# character it does not know, so it is not used.
FOLD = str.maketrans(
    {
        "ی": "ي", "ې": "ي", "ے": "ي", "ۍ": "ي", "ئ": "ي",
        "ہ": "ه", "ۀ": "ه", "ە": "ه", "ھ": "ه",
        "ک": "ك", "ڪ": "ك",
        "ؤ": "و", "ٱ": "ا", "ٲ": "ا", "ٳ": "ا",
        "٠": "0", "١": "1", "٢": "2", "٣": "3", "٤": "4",
        "٥": "5", "٦": "6", "٧": "7", "٨": "8", "٩": "9",
        "۰": "0", "۱": "1", "۲": "2", "۳": "3", "۴": "4",
        "۵": "5", "۶": "6", "۷": "7", "۸": "8", "۹": "9",
    }
)  # fmt: skip


def _fold_presentation(match: re.Match) -> str:
    return unicodedata.normalize("NFKC", match.group())


def normalise(text: str, keep_diacritics: bool = True) -> str:
    """Text kept for training."""
    text = PRESENTATION_FORMS.sub(_fold_presentation, unicodedata.normalize("NFC", text))
    text = INVISIBLE.sub("", text.replace(TATWEEL, ""))
    if not keep_diacritics:
        text = DIACRITICS.sub("", text)
    if "\n" not in text and "\r" not in text:
        return SPACES.sub(" ", text).strip()
    lines = [SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def dedup_key(text: str) -> str:
    """The comparison key: no diacritics, alef/alef maksura/teh marbuta and Persian/Urdu
    variants folded, no punctuation, case-folded, single spaces."""
    text = dediac_ar(DIACRITICS.sub("", normalise(text)))
    text = normalize_teh_marbuta_ar(normalize_alef_maksura_ar(normalize_alef_ar(text)))
    return " ".join(PUNCT.sub(" ", text.translate(FOLD)).casefold().split())


def arabic_ratio(text: str) -> float:
    """Share of letters that are Arabic (digits, punctuation and spaces do not count)."""
    letters = len(LETTER.findall(text))
    return len(ARABIC_LETTER.findall(text)) / letters if letters else 0.0


def has_letters(text: str) -> bool:
    # The letters arabic_ratio counts: a guard with another notion of letter (str.isalpha
    # leaves out "²" and "½", which LETTER counts) would judge a text by a ratio of 0.
    return LETTER.search(text) is not None


def arabic_enough(text: str, min_ratio: float) -> bool:
    """Enough of the letters are Arabic; a text without letters (a number, "42") has none
    to judge, so it passes."""
    return not has_letters(text) or arabic_ratio(text) >= min_ratio


def words(text: str) -> int:
    return len(text.split())
