"""Language identification with lingua: is this Arabic, or Persian, Urdu or English that
happens to share its script or its topic?

lingua ships its models inside the package, so nothing is downloaded. It chooses among the
candidate languages of params (restricting it to the ones a source can plausibly contain is
what makes it both fast and sharp).
"""

from __future__ import annotations

from functools import cache

from lingua import Language, LanguageDetector, LanguageDetectorBuilder


@cache
def detector(languages: tuple[str, ...]) -> LanguageDetector:
    langs = [Language.from_str(name) for name in languages]
    if Language.ARABIC not in langs:
        langs.append(Language.ARABIC)
    return LanguageDetectorBuilder.from_languages(*langs).with_preloaded_language_models().build()


def confidence(texts: list[str], languages: tuple[str, ...], of: str = "arabic") -> list[float]:
    """Confidence in [0, 1] that each text is in language `of` (Arabic, or one of
    `languages`), among `languages` and Arabic (both cores)."""
    if not texts:
        return []
    target = Language.from_str(of)
    return detector(languages).compute_language_confidence_in_parallel(texts, target)


def language_names(texts: list[str], languages: tuple[str, ...]) -> list[str]:
    """The most likely of `languages` (and Arabic) for each text, in lower case; "unknown"
    where lingua cannot tell (no letters)."""
    if not texts:
        return []
    found = detector(languages).detect_languages_in_parallel_of(texts)
    return [lang.name.lower() if lang else "unknown" for lang in found]
