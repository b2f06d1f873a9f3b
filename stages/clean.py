"""clean@<source>: normalise Arabic text, strip markup, scrub personal data, and drop
records that fail the quality rules.

Every dropped record goes to data/quarantine/clean/<source>.parquet with the rule and the
value that failed; metrics/clean/<source>.json counts each rule and each scrub.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

from instar.console import StageError, console, parser, progress, run
from instar.params import core as config
from instar.params.clean import CleanParams, LengthLimit, for_source
from instar.params.sources import SourceParams
from instar.params.tasks import ANY, ARABIC, TaskParams, language_problems
from instar.params.tasks import load as load_tasks
from instar.records.paths import (
    clean_languages_path,
    clean_overrides_path,
    clean_path,
    quarantine_path,
    raw_path,
)
from instar.records.quarantine import Drop, Quarantine
from instar.records.schema import TEXT_FIELDS, load_meta, with_id
from instar.records.storage import RecordWriter, count_rows, iter_records, write_json
from instar.text.arabic import arabic_ratio, dedup_key, has_letters, normalise, words
from instar.text.language import confidence, language_names
from instar.text.repetition import (
    duplicate_line_fraction,
    duplicate_ngram_fraction,
    tandem_line_share,
    tandem_shares,
    top_ngram_fraction,
)
from instar.text.scrub import scrub_pii, strip_markup

Record = dict[str, Any]
Tasks = dict[str, TaskParams]
Rule = Callable[[Record, CleanParams, Tasks], Drop | None]


def normalise_record(rec: Record, params: CleanParams, scrubbed: Counter) -> Record:
    """Training normalisation, markup and PII scrubbing of every text field; new id."""
    touched = False
    for f in TEXT_FIELDS:
        text = rec[f]
        if params.strip_markup:
            text, n = strip_markup(text)
            scrubbed["markup"] += n
            touched |= n > 0
        if params.scrub_pii:
            text, counts = scrub_pii(text)
            scrubbed.update(counts)
            touched |= any(counts.values())
        rec[f] = normalise(text, params.keep_diacritics)
    scrubbed["records_scrubbed"] += touched
    return with_id(rec)


def output_language(rec: Record, tasks: Tasks) -> str:
    # A task outside the taxonomy is validate's to refuse; until then its output is Arabic.
    task = tasks.get(rec["task"])
    return task.output_language if task else ARABIC


def _prompt(rec: Record) -> str:
    return "\n".join(rec[f] for f in ("instruction", "input") if rec[f])


def language_parts(rec: Record, params: CleanParams, tasks: Tasks) -> list[tuple[str, str]]:
    """What the language rules read, each part with the language it must be: the prompt
    (instruction and input) and the output each on its own, so an English answer to an
    Arabic question does not pass on the question's letters; an Arabic part shorter than
    `language.min_words` is read together with the other (a four-word question is too short
    to tell Arabic from Persian). The output of a task whose `output_language` is `any` is
    not read; one of a named language is read as that language."""
    prompt = _prompt(rec)
    language = output_language(rec, tasks)
    parts = [(prompt, ARABIC)] if prompt.strip() else []
    if language == ANY or not rec["output"].strip():
        return parts
    parts.append((rec["output"], language))
    if (
        language == ARABIC
        and len(parts) == 2
        and min(words(p) for p, _ in parts) < params.language.min_words
    ):
        return [("\n".join(p for p, _ in parts), ARABIC)]
    return parts


@cache
def _tokenizer(name: str, revision: str | None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, revision=revision)


def length(rec: Record, limit: LengthLimit) -> int:
    text = "\n".join(rec[f] for f in TEXT_FIELDS if rec[f])
    if limit.unit == "words":
        return words(text)
    tokenizer = _tokenizer(limit.tokenizer, limit.revision)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# Each rule returns None when the record passes, else its Drop: the rule's name and the value
# that failed. The first failing rule, in RULES' order, is the one recorded.
def _empty_output(r, p, t):
    return Drop("empty_output", "") if not r["output"].strip() else None


def _short_output(r, p, t):
    n = words(r["output"])
    label = r["task"] in t and t[r["task"]].label
    limit = p.min_label_words if label else p.min_output_words
    return Drop("short_output", n) if n < limit else None


def _short_instruction(r, p, t):
    n = words(r["instruction"])
    return Drop("short_instruction", n) if n < p.min_instruction_words else None


def _too_long(r, p, t):
    n = length(r, p.max_length)
    return Drop("too_long", n) if n > p.max_length.limit else None


def _arabic_ratio(r, p, t):
    # Prompt and output each on its own, whatever their length (a share of letters does
    # not get less sure on short text); a part without letters (a number, "42") passes.
    # The output only where it must be Arabic.
    prompt = _prompt(r)
    parts = [prompt, r["output"]] if output_language(r, t) == ARABIC else [prompt]
    ratios = [arabic_ratio(part) for part in parts if has_letters(part)]
    x = min(ratios, default=0.0)
    return Drop("arabic_ratio", round(x, 3)) if x < p.min_arabic_ratio else None


CHEAP_RULES: list[Rule] = [
    _empty_output,
    _short_output,
    _short_instruction,
    _too_long,
    _arabic_ratio,
]


def _repetition(r, p):
    """`repetition:<check>`: the first of the repetition checks the output fails."""
    rp = p.repetition
    if not rp.enabled or words(r["output"]) < rp.min_words:
        return None
    if (x := tandem_line_share(r["output"])) > rp.max_tandem_line_share:
        return Drop("repetition:tandem_lines", round(x, 3))
    share, excess = tandem_shares(r["output"], rp.max_period, rp.free_copies)
    if share > rp.max_tandem_share:
        return Drop("repetition:tandem_share", round(share, 3))
    if excess > rp.max_tandem_excess:
        return Drop("repetition:tandem_excess", round(excess, 3))
    if rp.max_duplicate_line_fraction is not None:
        x = duplicate_line_fraction(r["output"])
        if x > rp.max_duplicate_line_fraction:
            return Drop("repetition:duplicate_lines", round(x, 3))
    toks = r["output"].split()
    for n, limit in sorted(rp.max_top_ngram_fraction.items()):
        if (x := top_ngram_fraction(toks, n)) > limit:
            return Drop(f"repetition:top_{n}gram", round(x, 3))
    for n, limit in sorted(rp.max_duplicate_ngram_fraction.items()):
        x = duplicate_ngram_fraction(toks, n)
        if x > limit:
            return Drop(f"repetition:duplicate_{n}gram", round(x, 3))
        if x == 0:  # no n-gram repeats, so no longer one can: the rest are 0 too
            break
    return None


def _instruction_equals_output(r, p):
    a, b = len(r["instruction"]), len(r["output"])
    if abs(a - b) > 0.3 * max(a, b):  # the key only drops marks and spaces: cheap early out
        return None
    same = dedup_key(r["instruction"]) == dedup_key(r["output"])
    return Drop("instruction_equals_output", r["output"][:80]) if same else None


# The rules that read the language, by script and by language ID: the English answers of
# a published set meet the first, Persian or Urdu the second.
LANGUAGE_RULES = ("arabic_ratio", "language")
# The counts of the published set's language quirks, which the dataset card shows too.
LANGUAGE_COUNTS = ("system_prompts_by_language", "dropped_language_by_published_source")
# The rule names, in order, as metrics/clean/<source>.json counts them.
RULES = [
    "empty_output", "short_output", "short_instruction", "too_long", "arabic_ratio",
    "language", "repetition", "instruction_equals_output",
]  # fmt: skip


def judge(
    batch: list[Record], params: CleanParams, tasks: Tasks | None = None
) -> list[Drop | None]:
    """The first failing rule of each record (None: keep). Language ID runs once a batch
    and language, on both cores, and only on records that passed the cheap rules. The
    language rule's value is the lowest confidence of a part in the language it must be."""
    tasks = load_tasks({}) if tasks is None else tasks  # the published taxonomy
    verdicts: list[Drop | None] = []
    for rec in batch:
        verdicts.append(next((d for rule in CHEAP_RULES if (d := rule(rec, params, tasks))), None))
    todo = [i for i, v in enumerate(verdicts) if v is None]
    by_language: dict[str, list[tuple[int, str]]] = {}
    for i in todo:
        for text, language in language_parts(batch[i], params, tasks):
            by_language.setdefault(language, []).append((i, text))
    lowest: dict[int, float] = {}
    for language, parts in sorted(by_language.items()):
        found = confidence([t for _, t in parts], params.language.languages, language)
        for (i, _), conf in zip(parts, found, strict=True):
            lowest[i] = min(conf, lowest.get(i, 1.0))
    for i in todo:
        rec, conf = batch[i], lowest.get(i, 0.0)
        if conf < params.language.min_arabic_confidence:
            verdicts[i] = Drop("language", round(conf, 3))
        else:
            verdicts[i] = _repetition(rec, params) or _instruction_equals_output(rec, params)
    return verdicts


def batches(it: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while batch := list(islice(it, size)):
        yield batch


def clean(source: str, params: CleanParams, tasks: Tasks | None = None) -> dict[str, Any]:
    src = raw_path(source)
    if not src.exists():
        raise StageError(f"{src}: not found; run `dvc repro ingest@{source}` first")
    total = count_rows(src)
    tasks = load_tasks({}) if tasks is None else tasks  # once, not in every batch's judge
    scrubbed: Counter = Counter()
    systems: dict[str, str] = {}  # a system text's language: published sets repeat one text
    system_languages: Counter = Counter()
    language_drops: Counter = Counter()
    with (
        RecordWriter(clean_path(source)) as out,
        Quarantine(quarantine_path("clean", source), "clean") as quarantine,
    ):
        records = progress(iter_records(src, params.batch_size), f"clean {source}", total)
        for batch in batches(records, params.batch_size):
            batch = [normalise_record(r, params, scrubbed) for r in batch]
            new = sorted({r["system"] for r in batch if r["system"]} - systems.keys())
            systems.update(zip(new, language_names(new, params.language.languages), strict=True))
            system_languages.update(systems[r["system"]] if r["system"] else "none" for r in batch)
            for rec, verdict in zip(batch, judge(batch, params, tasks), strict=True):
                if verdict:
                    quarantine.reject(rec, verdict)
                    if verdict.rule in LANGUAGE_RULES:
                        language_drops[published_source(rec)] += 1
                else:
                    out.write(rec)
    dropped = Counter()
    for rule, n in quarantine.by_rule.items():
        dropped[rule.split(":")[0]] += n
    console.print(
        f"clean {source}: {total} in, {out.rows} kept, {quarantine.rows} quarantined "
        f"({', '.join(f'{k} {v}' for k, v in dropped.most_common()) or 'none'})"
    )
    return {
        "records_in": total,
        "records_out": out.rows,
        "quarantined": quarantine.rows,
        "dropped": {rule: dropped.get(rule, 0) for rule in RULES},
        "dropped_repetition": {
            k.split(":", 1)[1]: v
            for k, v in sorted(quarantine.by_rule.items())
            if k.startswith("repetition:")
        },
        "scrubbed": {
            k: scrubbed.get(k, 0) for k in ("markup", "email", "url", "phone", "records_scrubbed")
        },
        # The published InstAr set carries one English system prompt on many rows, and some
        # English answers in Arabic rows: both counted, the drops of the language rules by
        # the row's published source.
        "system_prompts_by_language": dict(sorted(system_languages.items())),
        "dropped_language_by_published_source": dict(sorted(language_drops.items())),
    }


def published_source(rec: Record) -> str:
    """The `source` a published set gave the row (kept in meta by `meta_columns`), else
    this pipeline's own source name."""
    return str(load_meta(rec["meta"]).get("source") or rec["source"])


def main() -> None:
    p = parser("clean", __doc__)
    p.add_argument("source", help="a key of `sources` in params.yaml")
    args = p.parse_args()
    params = config.read_params()
    SourceParams.named(args.source, params)  # checks the name before it becomes a path
    # The source's overrides as source_list wrote them: the file this stage depends on.
    path = clean_overrides_path(args.source)
    if not path.is_file():
        raise StageError(f"{path}: missing; run `dvc repro source_list` first")
    overrides = json.loads(path.read_text(encoding="utf-8"))
    clean_params = for_source(args.source, overrides, params)
    tasks = load_tasks(params)
    if problems := language_problems(tasks, clean_params.language.languages):
        raise config.ParamsError("; ".join(problems))
    metrics = clean(args.source, clean_params, tasks)
    write_json(Path("metrics/clean") / f"{args.source}.json", {**metrics, "overrides": overrides})
    write_json(clean_languages_path(args.source), {k: metrics[k] for k in LANGUAGE_COUNTS})


if __name__ == "__main__":
    run(main)
