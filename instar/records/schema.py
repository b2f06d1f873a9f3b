"""The one record schema that flows from ingest to shard, and the functions that define it."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

import pyarrow as pa

# The task taxonomy is params (`tasks`, instar/params/tasks.py): a user adds tasks there.
ORIGINS = ("collected", "synthetic")

RECORD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("input", pa.string(), nullable=False),
        pa.field("output", pa.string(), nullable=False),
        pa.field("system", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("meta", pa.string(), nullable=False),
    ]
)
FIELDS = tuple(RECORD_SCHEMA.names)
TEXT_FIELDS = ("instruction", "input", "output", "system")

# Why a row was dropped travels with the row itself.
QUARANTINE_SCHEMA = (
    RECORD_SCHEMA.append(pa.field("stage", pa.string()))
    .append(pa.field("rule", pa.string()))
    .append(pa.field("value", pa.string()))
)

_WS = re.compile(r"\s+")
_TASK_ALIASES = {
    "open_q&a": "open_qa",
    "closed_q&a": "closed_qa",
    "qa": "open_qa",
    "rewriting": "rewrite",
    "completion": "text_completion",
    "extraction_and_explanation": "extraction_explanation",
    "summary": "summarization",
    "brainstorm": "brainstorming",
}


def id_text(text: str) -> str:
    """The light normalisation that makes an id survive invisible differences."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def record_id(instruction: str, input: str, output: str) -> str:
    """Stable id: sha256 of the normalised instruction, input and output (128 bits, hex)."""
    joined = "\x1f".join(id_text(t) for t in (instruction, input, output))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def normalise_task(name: str) -> str:
    """Map the many spellings of a task ("Closed QA", "closed-qa") onto the taxonomy's slugs."""
    slug = _WS.sub("_", name.strip().lower().replace("-", " ").replace(" qa", "_qa"))
    return _TASK_ALIASES.get(slug, slug)


def make_record(
    *,
    instruction: str,
    output: str,
    source: str,
    source_row: int,
    origin: str,
    task: str,
    input: str = "",
    system: str = "",
    topic: str = "",
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one record with its id; the only place records are born."""
    rec = {
        "instruction": instruction,
        "input": input or "",
        "output": output,
        "system": system or "",
        "task": normalise_task(task),
        "topic": topic or "",
        "source": source,
        "source_row": int(source_row),
        "origin": origin,
        "meta": dump_meta(meta or {}),
    }
    rec["id"] = record_id(rec["instruction"], rec["input"], rec["output"])
    return {f: rec[f] for f in FIELDS}


def with_id(rec: dict[str, Any]) -> dict[str, Any]:
    """Recompute the id after a stage rewrote the text."""
    rec["id"] = record_id(rec["instruction"], rec["input"], rec["output"])
    return rec


def dump_meta(meta: dict[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True)


def load_meta(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def group_key(rec: dict[str, Any]) -> str:
    """What keeps related records together in one split.

    Records phrased from one labelled item carry `meta.group`; any other record is its own
    group, keyed by content (not by row number), so reordering a source moves nothing.
    """
    return load_meta(rec["meta"]).get("group") or rec["id"]
