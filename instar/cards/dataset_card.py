"""The InstAr dataset card (data/instar/README.md) in the Hugging Face hub's format."""

from __future__ import annotations

import statistics
from typing import Any

import yaml

from instar.params.tasks import ANY, ARABIC, TaskParams
from instar.reproducible import PNG_METADATA

FEATURES = [
    ("id", "string"),
    ("instruction", "string"),
    ("input", "string"),
    ("output", "string"),
    ("system", "string"),
    ("task", "string"),
    ("topic", "string"),
    ("source", "string"),
    ("source_row", "int64"),
    ("origin", "string"),
    ("meta", "string"),
]


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def _table(rows: dict[str, dict[str, int]], splits: list[str], head=("",), label=str) -> str:
    """Counts per key and split, with a total; `head` names the columns `label(key)` fills."""
    keys = sorted({k for s in splits for k in rows[s]})
    top = "|" + "".join(f" {c} |" if c else " |" for c in [*head, *splits, "total"])
    rule = "|" + "---|" * len(head) + "---:|" * (len(splits) + 1)
    lines = [
        f"| {label(k)} | "
        + " | ".join(str(rows[s].get(k, 0)) for s in splits)
        + f" | {sum(rows[s].get(k, 0) for s in splits)} |"
        for k in keys
    ]
    return "\n".join([top + "\n" + rule, *lines])


def _counts_table(counts: dict[str, int], key: str, what: str = "records") -> str:
    if not counts:
        return f"| {key} | {what} |\n|---|---:|\n| (none) | 0 |"
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"| {key} | {what} |\n|---|---:|\n" + "\n".join(f"| {k} | {n} |" for k, n in rows)


def _quantiles(values: list[int]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=20)
    return (
        f"median {statistics.median(values):.0f}, p5 {q[0]:.0f}, p95 {q[-1]:.0f}, max {max(values)}"
    )


CHARTS = {
    "task_mix.png": "Tasks",
    "source_mix.png": "Sources",
    "lengths.png": "Lengths",
}


def _share_chart(ax, counts: dict[str, dict[str, int]], splits: list[str], title: str) -> None:
    """Horizontal bars: records per key, stacked by split."""
    # ties broken by name: a set's order follows the per-process string hash seed
    keys = sorted(
        {k for s in splits for k in counts[s]},
        key=lambda k: (-sum(counts[s].get(k, 0) for s in splits), k),
    )[::-1]
    left = [0] * len(keys)
    for s in splits:
        values = [counts[s].get(k, 0) for k in keys]
        ax.barh(keys, values, left=left, label=s)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("records")
    ax.set_title(title)
    ax.legend()


def card_charts(folder, manifest: dict[str, Any], lengths: dict[str, list[int]]) -> list[str]:
    """PNG charts for the card: task mix, source mix, length distributions (words)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    splits = list(manifest["splits"])
    by = lambda kind: {s: manifest["splits"][s].get(f"by_{kind}", {}) for s in splits}  # noqa: E731
    for name, kind in (("task_mix.png", "task"), ("source_mix.png", "source")):
        fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(by(kind)[splits[0]] or [0]) + 2.5))
        _share_chart(ax, by(kind), splits, f"records by {kind}")
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100, metadata=PNG_METADATA)
        plt.close(fig)
    fig, axes = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3.2), squeeze=False)
    for ax, (field, values) in zip(axes[0], lengths.items(), strict=True):
        if values:
            ax.hist(values, bins=min(40, max(5, len(set(values)))), log=True)
        ax.set_xlabel(f"{field} length (words)")
        ax.set_ylabel("records")
    fig.tight_layout()
    fig.savefig(folder / "lengths.png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)
    return list(CHARTS)


def _task_table(
    rows: dict[str, dict[str, int]], splits: list[str], tasks: dict[str, TaskParams]
) -> str:
    """The task counts with the taxonomy's names and output language (params `tasks`)."""

    def label(k: str) -> str:
        t = tasks.get(k)
        return f"`{k}` | " + (
            f"{t.name_en} | {t.name_ar} | {t.output_language}" if t else "? | ? | ?"
        )

    return _table(rows, splits, ("task", "name", "الاسم", "output"), label)


def _output_languages(manifest: dict[str, Any], tasks: dict[str, TaskParams]) -> list[str]:
    """The ISO 639-1 codes of the named output languages of the tasks that have records."""
    from lingua import Language

    present = {k for s in manifest["splits"].values() for k in s.get("by_task", {})}
    named = {tasks[k].output_language for k in present if k in tasks} - {ARABIC, ANY}
    return sorted(Language.from_str(n).iso_code_639_1.name.lower() for n in named)


def dataset_card(
    manifest: dict[str, Any], lengths: dict[str, list[int]], tasks: dict[str, TaskParams]
) -> str:
    splits = list(manifest["splits"])
    others = _output_languages(manifest, tasks)
    languages = manifest.get("clean_languages", {})
    header = {
        "language": ["ar", *others],
        "license": "apache-2.0",
        "pretty_name": "InstAr (pipeline build)",
        "task_categories": ["text-generation", "question-answering", "summarization"]
        + (["translation"] if others else []),
        "size_categories": [_size_category(manifest["records"])],
        "tags": ["instruction-tuning", "arabic", "sft"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"{s}/*.parquet"} for s in splits],
            }
        ],
        "dataset_info": {
            "features": [{"name": n, "dtype": t} for n, t in FEATURES],
            "splits": [
                {"name": s, "num_examples": manifest["splits"][s]["records"]} for s in splits
            ],
        },
    }
    by = lambda kind: {s: manifest["splits"][s].get(f"by_{kind}", {}) for s in splits}  # noqa: E731
    shards = "\n".join(
        f"| `{name}` | {info['rows']} | `{info['sha256'][:16]}…` |"
        for name, info in manifest["shards"].items()
    )
    split_counts = ", ".join(f"{s} {manifest['splits'][s]['records']}" for s in splits)
    return (
        f"""---
{yaml.safe_dump(header, allow_unicode=True, sort_keys=False).strip()}
---

# InstAr (pipeline build)

Arabic instruction-response pairs built by the InstAr pipeline, after the dataset of
"LlamAr & GemmAr: Enhancing LLMs Through Arabic Instruction-Tuning" (arXiv 2407.02147).
This card is written by the `shard` stage from the data it just wrote; every number below
is counted, not typed.

## Dataset structure

{manifest["records"]} records: {split_counts}.
Each record keeps its lineage: `source` (the source's name in params.yaml) and `source_row`
(its 0-based row in that raw source). `meta` is a JSON string with provenance added by the
source or a stage (for example the published dataset's own `source` and `uuid`, or the
template that phrased a labelled item). `origin` is `collected` or `synthetic`.

| field | type |
|---|---|
"""
        + "\n".join(f"| `{n}` | {t} |" for n, t in FEATURES)
        + f"""

### Tasks

![records by task](card/task_mix.png)

Tasks and their names come from params `tasks`; the language rules of clean read a task's
output in its `output` language (`any`: not read).

{_task_table(by("task"), splits, tasks)}

### Sources

![records by source](card/source_mix.png)

{_table(by("source"), splits)}

### Origin

{_table(by("origin"), splits)}

### Languages, as clean read them

Counted by `clean` over every record it read, before any was dropped: the language of each
record's system prompt (lingua among `clean.language.languages`; `none`: no system
prompt), and the records its language rules (`arabic_ratio`, `language`) dropped, by the
`source` the data was published with (a published set's own column, else the pipeline's
source name).

{_counts_table(languages.get("system_prompts_by_language", {}), "system prompt")}

{_counts_table(languages.get("dropped_language_by_published_source", {}), "source", "dropped")}

### Lengths (words)

![length distributions](card/lengths.png)

- instruction: {_quantiles(lengths["instruction"])}
- output: {_quantiles(lengths["output"])}

## Splits

A record's split comes from a salted hash of its group key, so adding a source never moves
an existing record, and every phrasing of one labelled item lands in the same split
(salt `{manifest["params"]["salt"]}`, validation {manifest["params"]["validation_fraction"]},
test {manifest["params"]["test_fraction"]}).

## Curation

ingest (column mapping, Arabic templates for labelled tasks) -> clean (Arabic
normalisation, quality rules) -> dedup (normalised exact match) -> validate (pandera record
contract). Every dropped row is kept in `data/quarantine/` with the rule that dropped it.

## Files

| shard | rows | sha256 |
|---|---:|---|
{shards}

## Licence and citation

Apache-2.0, like the published InstAr-500k. Cite arXiv 2407.02147 for the method.
"""
    )
