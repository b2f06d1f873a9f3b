"""Markup and personal data out of training text: tags and entities stripped, e-mail
addresses, URLs and phone numbers replaced by placeholders that no filter mistakes for them."""

from __future__ import annotations

import html
import re

# A tag is "<" + a letter, "/" or "!" ... ">": "a < b" and "x<3" in prose or code survive.
TAG = re.compile(
    r"<(?:[A-Za-z][\w:-]*(?:\s[^<>]*)?/?|/[A-Za-z][\w:-]*\s*|!--.*?--|![A-Za-z][^<>]*)>", re.S
)
BLOCK_TAG = re.compile(r"</?(?:p|br|div|li|ul|ol|h[1-6]|tr|table|section|article)\b[^>]*>", re.I)
ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'،]+", re.I)
# 8 to 15 digits with optional +, spaces, dashes, dots or brackets: phone numbers in the
# Gulf, Levant, Egypt and Maghreb formats. Years and prices are shorter or use commas.
PHONE = re.compile(r"(?<![\w+])\+?[\d٠-٩](?:[\d٠-٩]|[\s().-](?=[\d٠-٩(])){7,18}[\d٠-٩](?!\w)")
# The phone number the contract (instar/validation/expectations.py) looks for in clean's
# output: a number as it is dialled, international (+ or 00, country code) or Arab-world
# local (0, then an area or mobile prefix), in Western or Arabic-Indic digits (\d matches
# both). Two patterns, because scrubbing and checking err on opposite sides: PHONE replaces
# any 8 to 15 digits (lists of numbers and ISBNs too, at no cost), a leftover check must
# flag only what is surely a phone number. What PHONE replaces is no longer there to match.
_ZERO, _NONZERO = "[0\u0660\u06f0]", "[1-9\u0661-\u0669\u06f1-\u06f9]"
_SEP = r"[ .-]?"
DIALLED_PHONE = re.compile(
    rf"(?<![\w+])(?:(?:\+|{_ZERO}{{2}}){_NONZERO}\d{{0,2}}{_SEP}(?:\(?\d{{1,4}}\)?{_SEP}){{2,4}}"
    rf"\d{{2,4}}|{_ZERO}{_NONZERO}\d{{1,2}}{_SEP}\d{{3}}{_SEP}\d{{3,4}})(?!\w)"
)
PLACEHOLDERS = {"email": "[EMAIL]", "url": "[URL]", "phone": "[PHONE]"}


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def strip_markup(text: str) -> tuple[str, int]:
    """Remove tags (block tags become a line break) and decode entities; count removals."""
    n = len(TAG.findall(text)) + len(ENTITY.findall(text))
    if not n:
        return text, 0
    text = BLOCK_TAG.sub("\n", text)
    text = TAG.sub("", text)
    # Unescape twice: "&amp;nbsp;" is common in scraped text; a no-break space then folds.
    text = html.unescape(html.unescape(text)).replace("\u00a0", " ")
    return text, n


def scrub_pii(text: str) -> tuple[str, dict[str, int]]:
    counts = {"email": 0, "url": 0, "phone": 0}

    def sub(kind: str, pattern: re.Pattern, text: str) -> str:
        def repl(m: re.Match) -> str:
            if kind == "phone" and not 8 <= _digits(m.group()) <= 15:
                return m.group()
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(repl, text)

    for kind, pattern in (("email", EMAIL), ("url", URL), ("phone", PHONE)):
        text = sub(kind, pattern, text)
    return text, counts
