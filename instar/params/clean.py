"""Params `clean`: the keep/drop rules of clean@<source>."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from instar.params.core import Revision, Section, read_params, validate


class LengthLimit(Section):
    """The too-long rule, in words, or in tokens of a named tokenizer (hub id or folder)."""

    unit: Literal["words", "tokens"] = "words"
    limit: Annotated[int, Field(gt=0)] = 2048
    tokenizer: str | None = Field(None, description="needed for unit tokens")
    revision: Revision = None

    @model_validator(mode="after")
    def _tokenizer(self):
        if self.unit == "tokens" and not self.tokenizer:
            raise ValueError("max_length.unit 'tokens' needs max_length.tokenizer")
        return self

    @property
    def from_hub(self) -> bool:
        return self.unit == "tokens" and is_hub_id(self.tokenizer)


def is_hub_id(name: str) -> bool:
    """A hub repository id rather than a local folder. A folder under data/ is a stage's
    output (tokenizer@<name>) that a fresh clone has yet to make or pull."""
    return not (Path(name).exists() or Path(name).parts[:1] == ("data",))


class LanguageParams(Section):
    """Language identification (lingua) among the candidate languages."""

    languages: tuple[str, ...] = ("arabic", "persian", "urdu", "english")
    min_arabic_confidence: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5,
        description="the floor of lingua's confidence that a text is Arabic, and that the "
        "output of a task with a named `output_language` is that language",
    )
    min_words: Annotated[int, Field(ge=1)] = Field(
        8, description="a prompt or output shorter than this is judged with the other part"
    )


class RepetitionParams(Section):
    """Repetition rules (instar/text/repetition.py), for outputs of at least `min_words` words:
    back-to-back copies always; the Gopher n-gram shares only where their thresholds are set."""

    enabled: bool = Field(True, description="false: no repetition rule at all")
    min_words: Annotated[int, Field(ge=1)] = 50
    # The tandem thresholds, measured on tests/test_real_text.py's hadith (14,940) and Quran
    # (198) records: lines in a back-to-back repeat are 0 on all of them; the exact share
    # reaches 0.326 (a supplication said three times, muslim:3146; 99.9th percentile 0.199);
    # the excess reaches 0.189 (six parallel clauses, muslim:4734, the one expected drop).
    # Loops built from the same text (a line, a list or a span again and again, a whole
    # answer pasted twice) score above them from 6 copies; 3 to 5 copies of a span look like
    # the supplication and pass.
    max_tandem_line_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.30, description="share of lines that repeat the 1-4 lines just before them"
    )
    max_tandem_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.35, description="share of characters in exact back-to-back copies of a span"
    )
    max_tandem_excess: Annotated[float, Field(ge=0, le=1)] = Field(
        0.15, description="share of characters in copies after the `free_copies`-th (drift ok)"
    )
    max_period: Annotated[int, Field(ge=1)] = Field(64, description="longest span, in words")
    free_copies: Annotated[int, Field(ge=1)] = 3
    # Gopher's shares, built for web pages, where FineWeb-2's arb_Arab values are 0.304 for
    # lines, {2: 0.197, 3: 0.172, 4: 0.146} top n-grams and 0.165-0.109 for 5-10-gram
    # duplicates. On edited text they mistake formulas for loops (see repetition.py): set them
    # for a web source (`sources.<name>.clean.repetition`), not for everything.
    max_duplicate_line_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    max_top_ngram_fraction: dict[int, float] = Field(default_factory=dict)
    max_duplicate_ngram_fraction: dict[int, float] = Field(default_factory=dict)


class CleanParams(Section):
    SECTION: ClassVar[str] = "clean"
    batch_size: Annotated[int, Field(gt=0)] = 2048
    keep_diacritics: bool = True
    strip_markup: bool = True
    scrub_pii: bool = Field(True, description="e-mails, URLs, phones -> [EMAIL] [URL] [PHONE]")
    min_output_words: Annotated[int, Field(ge=1)] = 3
    min_label_words: Annotated[int, Field(ge=1)] = Field(
        1, description="the minimum for the tasks whose answer is a label (`tasks.<t>.label`)"
    )
    min_instruction_words: Annotated[int, Field(ge=1)] = 2
    max_length: LengthLimit = LengthLimit()
    min_arabic_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5
    language: LanguageParams = LanguageParams()
    repetition: RepetitionParams = RepetitionParams()


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` on top; nested sections merge key by key."""
    out = dict(base)
    for key, value in over.items():
        below = base.get(key)
        out[key] = (
            merged(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
        )
    return out


def for_source(
    name: str, overrides: dict[str, Any], params: dict[str, Any] | None = None
) -> CleanParams:
    """The `clean` section as source `name` gets it: its `sources.<name>.clean` keys on top,
    each checked as the section's own are (an unknown key or a bad value names the source)."""
    params = read_params() if params is None else params
    if overrides:
        validate(CleanParams, overrides, f"sources.{name}.clean")
    return validate(CleanParams, merged(params.get("clean") or {}, overrides), "clean")
