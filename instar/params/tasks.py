"""Params `tasks`: the task taxonomy, the one list that every stage reading a record's task
reads (ingest's default and template tasks, clean's label minimum and output-language rule,
validate's known tasks, generate's quotas, the dataset card's names)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

from pydantic import Field

from instar.params.core import ParamsError, Section, read_params, validate

# What the language rules may be told of an output: Arabic, anything, or one named language.
ARABIC, ANY = "arabic", "any"


class TaskParams(Section):
    """One task of the taxonomy (params `tasks.<slug>`)."""

    SECTION: ClassVar[str] = "tasks"  # a named section: tasks.<slug>

    name_ar: str = Field(min_length=1, description="the Arabic display name (dataset card)")
    name_en: str = Field(min_length=1, description="the English display name (dataset card)")
    output_language: Annotated[str, Field(pattern=r"^[a-z]+$")] = Field(
        ARABIC,
        description="arabic: the language rules read the output as Arabic; any: they read "
        "the prompt only (code answers); a lingua language name (english): the output must "
        "be that language, the prompt Arabic",
    )
    label: bool = Field(
        False,
        description="the answer is a label or a short span: clean's min_label_words applies "
        "instead of min_output_words",
    )


# The published taxonomy (arXiv 2407.02147, table of task types; "mixed" and
# "extraction_explanation" are task labels of the published dataset): the default when
# params.yaml has no `tasks`. The label tasks are the ones whose answers the published set
# gives in a word (a class, a span, a yes or no).
PUBLISHED: dict[str, dict[str, Any]] = {
    "open_qa": {"name_ar": "سؤال وجواب مفتوح", "name_en": "Open QA"},
    "closed_qa": {"name_ar": "سؤال وجواب مغلق", "name_en": "Closed QA", "label": True},
    "classification": {"name_ar": "تصنيف", "name_en": "Classification", "label": True},
    "summarization": {"name_ar": "تلخيص", "name_en": "Summarization"},
    "extraction": {"name_ar": "استخراج", "name_en": "Extraction", "label": True},
    "extraction_explanation": {"name_ar": "استخراج وشرح", "name_en": "Extraction and explanation"},
    "explanation": {"name_ar": "شرح", "name_en": "Explanation"},
    "rewrite": {"name_ar": "إعادة صياغة", "name_en": "Rewriting"},
    "generation": {"name_ar": "توليد نص", "name_en": "Generation"},
    "brainstorming": {"name_ar": "عصف ذهني", "name_en": "Brainstorming"},
    "text_completion": {"name_ar": "إكمال نص", "name_en": "Text completion"},
    "mixed": {"name_ar": "مختلط", "name_en": "Mixed"},
}


def load(params: dict[str, Any] | None = None) -> dict[str, TaskParams]:
    """Every task of params.yaml, validated, in its order (the published taxonomy when the
    section is absent). A slug must be its own normal form, since ingest maps a source's
    spellings ("Closed QA") onto slugs before anything compares them."""
    from instar.records.schema import normalise_task

    params = read_params() if params is None else params
    raw = params.get("tasks")
    raw = PUBLISHED if raw is None else raw
    if not isinstance(raw, dict) or not raw:
        raise ParamsError("params.yaml: `tasks` must map each task slug to its entry")
    for slug in raw:
        if normalise_task(str(slug)) != slug:
            raise ParamsError(
                f"tasks.{slug}: a slug is lower case with '_' (write {normalise_task(str(slug))!r})"
            )
    return {slug: validate(TaskParams, entry, f"tasks.{slug}") for slug, entry in raw.items()}


def require(names: Iterable[str], where: str, tasks: dict[str, TaskParams]) -> None:
    """Refuse, naming the params key, task names that are not in the taxonomy."""
    unknown = sorted(set(names) - set(tasks))
    if unknown:
        raise ParamsError(
            f"{where} names tasks that `tasks` lacks: {unknown} (known: {', '.join(tasks)}); "
            "add them under `tasks:` in params.yaml"
        )


def language_problems(tasks: dict[str, TaskParams], languages: Iterable[str]) -> list[str]:
    """A named output language must be one of clean's lingua candidates, or lingua could
    never find it."""
    known = {ARABIC, ANY, *languages}
    return [
        f"tasks.{slug}.output_language {t.output_language!r} is not among "
        f"clean.language.languages {sorted(set(languages))}: add it there"
        for slug, t in tasks.items()
        if t.output_language not in known
    ]
