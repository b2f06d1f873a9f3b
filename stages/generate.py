"""generate: a teacher model reads Arabic paragraphs and writes instruction records
(data/generated/synthetic.parquet), as 61% of the paper's dataset was made.

Paragraphs are streamed from the `kind: text` sources and picked by a seeded hash (bottom-k:
a fixed-size heap, whatever the size of the source), split between seed tasks by the
quotas, and rendered through the versioned Arabic prompt templates of
templates/generate/<version>/. Every answer is looked up first in a content-addressed cache
(sha256 of backend, model, template version, rendered prompt and sampling params); only
misses go to the teacher, and each answer lands in the cache as soon as it arrives. Answers
must be one JSON object {instruction, input, output}, Arabic, non-empty and no copy of the
paragraph; the rest, and prompts the teacher never answered, go to
data/quarantine/generate.parquet. metrics/generate.json counts calls, hits and tokens.
"""

from __future__ import annotations

import difflib
import hashlib
import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from instar import teacher
from instar.console import StageError, console, parser, progress, run
from instar.params import core as config
from instar.params.generate import GenerateParams, SamplingParams
from instar.params.sources import TextSourceParams
from instar.params.tasks import load as load_tasks
from instar.params.tasks import require
from instar.records.paths import quarantine_path
from instar.records.quarantine import Drop, Quarantine
from instar.records.readers import read_rows
from instar.records.schema import make_record
from instar.records.storage import RecordWriter, atomic_path, write_json
from instar.text.arabic import arabic_ratio, dedup_key, words

OUTPUT = Path("data/generated/synthetic.parquet")
METRICS = Path("metrics/generate.json")
MIN_ARABIC_RATIO = 0.5
CACHE_HEADER = {"instar_answers_cache": 1}  # first line of a cache file
COPY_SIMILARITY = 0.9  # word-sequence similarity to the paragraph at which an answer is a copy


@dataclass(frozen=True)
class Paragraph:
    source: str
    row: int
    doc: str  # the id column's value, or the row number
    text: str
    sha: str  # sha256 of the text: what picks and groups it, whatever its row

    @property
    def group(self) -> str:
        return f"{self.source}:{self.sha[:16]}"


@dataclass(frozen=True)
class Prompt:
    task: str
    prompt_id: str  # <version>/<task>
    messages: list[dict[str, str]]
    paragraph: Paragraph
    key: str


# --- streaming and picking paragraphs -------------------------------------------------------


def _rows(src: TextSourceParams) -> Iterator[tuple[int, Any]]:
    if src.format == "hf":  # streamed from the hub shard by shard, never stored whole
        import datasets

        ds = datasets.load_dataset(
            src.hf.repo_id,
            name=src.hf.config,
            split=src.hf.split,
            revision=src.hf.revision,
            streaming=True,
        )
        return enumerate(ds)
    path = Path(src.path)
    if not path.exists():
        raise StageError(f"{path}: text source file not found")
    return read_rows(path, src.format)


def stream_paragraphs(
    name: str, src: TextSourceParams, counts: Counter, max_scan: int | None = None
) -> Iterator[Paragraph]:
    """Paragraphs of one text source, one row in memory at a time; unreadable rows counted."""
    for n, (i, row) in enumerate(_rows(src)):
        if max_scan is not None and n >= max_scan:
            return
        counts["scanned"] += 1
        text = row.get(src.text_column) if isinstance(row, dict) else None  # not a Drop
        if not isinstance(text, str) or not text.strip():
            counts["unreadable"] += 1
            continue
        doc = row.get(src.id_column) if src.id_column else None
        sha = hashlib.sha256(text.strip().encode("utf-8")).hexdigest()
        yield Paragraph(name, i, str(doc if doc is not None else i), text.strip(), sha)


def pick_hash(seed: int, p: Paragraph) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{p.sha}".encode()).digest()[:8], "big")


def pick(
    paragraphs: Iterable[Paragraph], n: int, seed: int, min_words: int, max_words: int,
    counts: Counter,
) -> list[Paragraph]:  # fmt: skip
    """The `n` paragraphs of smallest seeded hash (bottom-k sampling), smallest first.

    Memory is the heap of `n`, whatever the stream's length. A paragraph's pick depends on
    its text and the seed only, so appending paragraphs to a source keeps every earlier
    pick unless a newcomer hashes lower, and raising `n` only adds picks.
    """
    heap: list[tuple[int, str, Paragraph]] = []  # max-heap by negated hash
    held: set[str] = set()
    for p in paragraphs:
        if not min_words <= words(p.text) <= max_words:
            counts["out_of_length"] += 1
            continue
        if p.sha in held:
            counts["duplicate"] += 1
            continue
        h = pick_hash(seed, p)
        if len(heap) < n:
            heapq.heappush(heap, (-h, p.sha, p))
            held.add(p.sha)
        elif h < -heap[0][0]:
            _, old, _ = heapq.heappushpop(heap, (-h, p.sha, p))
            held.discard(old)
            held.add(p.sha)
    return [p for _, _, p in sorted(heap, key=lambda t: (-t[0], t[1]))]


def task_slots(quotas: dict[str, float], n: int) -> list[str]:
    """`n` tasks in the quotas' proportions, interleaved by smooth weighted round robin: each
    task's count stays within one of its share at every prefix, and the slots for `n` are
    the first `n` slots for any larger `n`, so raising `paragraphs` keeps every earlier
    prompt (paragraph and task) and only adds new ones."""
    total = sum(quotas.values())
    current = dict.fromkeys(quotas, 0.0)
    slots = []
    for _ in range(n):
        for t, w in quotas.items():
            current[t] += w
        best = max(quotas, key=lambda t: current[t])  # first in params order on a tie
        current[best] -= total
        slots.append(best)
    return slots


# --- prompts and the cache ------------------------------------------------------------------


def load_templates(folder: Path, version: str, tasks: Iterable[str]) -> dict[str, str]:
    base = folder / version
    names = ["system", *tasks]
    missing = [n for n in names if not (base / f"{n}.txt").is_file()]
    if missing:
        raise StageError(
            f"{base}: no prompt template {', '.join(f'{m}.txt' for m in missing)} "
            f"(has: {', '.join(sorted(p.stem for p in base.glob('*.txt'))) or 'nothing'})"
        )
    out = {n: (base / f"{n}.txt").read_text(encoding="utf-8").strip() for n in names}
    for t in tasks:
        if "{paragraph}" not in out[t]:
            raise StageError(f"{base / f'{t}.txt'}: the template has no {{paragraph}} slot")
    return out


def render(templates: dict[str, str], task: str, paragraph: Paragraph) -> list[dict[str, str]]:
    # str.replace, not format: the system prompt shows a JSON object, braces and all.
    return [
        {"role": "system", "content": templates["system"]},
        {"role": "user", "content": templates[task].replace("{paragraph}", paragraph.text)},
    ]


def cache_key(
    backend: str, model: str, version: str, messages: list[dict[str, str]],
    sampling: SamplingParams,
) -> str:  # fmt: skip
    """What makes two teacher answers interchangeable, hashed."""
    blob = json.dumps(
        {
            "backend": backend,
            "model": model,
            "template_version": version,
            "messages": messages,
            "sampling": sampling.model_dump(),
        },
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AnswerCache:
    """Teacher answers by key: JSON lines, read from the shipped file (git) and the cache
    file, appended to the cache file one fsynced line per answer."""

    def __init__(self, path: Path, shipped: Path | None = None):
        self.path = path
        self.entries: dict[str, dict] = {}
        self.torn = 0
        for p in (shipped, path):
            if p is not None and p.exists():
                self._load(p)
        # DVC may have linked the file to its cache: write a fresh copy of our own before
        # appending, so an append never reaches the cached object.
        path.parent.mkdir(parents=True, exist_ok=True)
        # A new file starts with a header line: DVC warns about an empty output.
        with atomic_path(path) as tmp:
            old = path.read_bytes() if path.exists() else b""
            tmp.write_bytes(old or (json.dumps(CACHE_HEADER) + "\n").encode())
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _load(self, path: Path) -> None:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    if entry == CACHE_HEADER:
                        continue
                    self.entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.torn += 1  # a line cut short by a crash: that prompt is asked again

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, entry: dict) -> None:
        self.entries[entry["key"]] = entry
        self._f.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def cache_entry(prompt: Prompt, backend: str, model: str, reply: teacher.Reply) -> dict:
    return {
        "key": prompt.key,
        "backend": backend,
        "model": model,
        "prompt_id": prompt.prompt_id,
        "answer": reply.text,
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- parsing and checking answers -----------------------------------------------------------


class AnswerError(ValueError):
    def __init__(self, rule: str, detail: str):
        super().__init__(f"{rule}: {detail}")
        self.rule, self.detail = rule, detail


_FENCE = re.compile(r"^\s*```[A-Za-z]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


def parse_answer(text: str) -> dict[str, str]:
    """The answer's JSON object: fences stripped, the first {...} span taken if the model
    wrote a word around it; instruction and output strings required, input optional."""
    body = text.strip()
    if m := _FENCE.match(body):
        body = m.group(1).strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        start, end = body.find("{"), body.rfind("}")
        try:
            obj = json.loads(body[start : end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            obj = None
    if not isinstance(obj, dict):
        raise AnswerError("unparseable_answer", "no JSON object")
    out = {}
    for k in ("instruction", "input", "output"):
        v = obj.get(k, "" if k == "input" else None)
        if v is None or not isinstance(v, str | int | float):
            raise AnswerError("unparseable_answer", f"no string {k!r}")
        out[k] = str(v).strip()
    return out


def parses(text: str) -> bool:
    try:
        parse_answer(text)
        return True
    except AnswerError:
        return False


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, dedup_key(a).split(), dedup_key(b).split()).ratio()


def check_answer(ans: dict[str, str], paragraph: Paragraph) -> Drop | None:
    """The first rule the answer breaks, with the failing value; None if it is fit."""
    for f in ("instruction", "output"):
        if not ans[f]:
            return Drop(f"empty_{f}", json.dumps(ans, ensure_ascii=False))
    for f in ("instruction", "output"):
        if arabic_ratio(ans[f]) < MIN_ARABIC_RATIO:
            return Drop("not_arabic", f"{f}: {ans[f][:200]}")
    for f in ("instruction", "output"):
        if similarity(ans[f], paragraph.text) >= COPY_SIMILARITY:
            return Drop("copy_of_paragraph", f"{f}: {ans[f][:200]}")
    return None


# --- the stage ------------------------------------------------------------------------------


def build_prompts(params: GenerateParams, counts: Counter) -> list[Prompt]:
    all_params = config.read_params()
    sources = {t: TextSourceParams.named(t, all_params) for t in params.text_sources}
    templates = load_templates(Path(params.templates), params.template_version, params.quotas)

    def stream() -> Iterator[Paragraph]:
        for name, src in sources.items():
            yield from stream_paragraphs(name, src, counts, params.max_scan)

    picked = pick(
        progress(stream(), "scan paragraphs"),
        params.paragraphs,
        params.seed,
        params.min_words,
        params.max_words,
        counts,
    )
    if len(picked) < params.paragraphs:
        console.print(
            f"[yellow]only {len(picked)} paragraphs fit (asked for {params.paragraphs})[/]"
        )
    prompts = []
    for para, task in zip(picked, task_slots(params.quotas, len(picked)), strict=True):
        messages = render(templates, task, para)
        key = cache_key(
            params.backend, params.model, params.template_version, messages, params.sampling
        )
        prompts.append(Prompt(task, f"{params.template_version}/{task}", messages, para, key))
    return prompts


def estimated_tokens(messages: list[dict[str, str]]) -> int:
    # About 3.5 characters a token for Arabic with the large multilingual vocabularies;
    # only for the plan, never for billing.
    return sum(len(m["content"]) for m in messages) * 2 // 7 + 8


def print_plan(params: GenerateParams, prompts: list[Prompt], missing: list[Prompt]):
    table = Table(title="generate: plan", show_header=False)
    table.add_row("teacher", f"{params.backend}: {params.model}")
    table.add_row("prompts", str(len(prompts)))
    table.add_row("cached", str(len(prompts) - len(missing)))
    table.add_row("to call", str(len(missing)))
    table.add_row("est. tokens in", str(sum(estimated_tokens(p.messages) for p in missing)))
    table.add_row("max tokens out", str(len(missing) * params.sampling.max_tokens))
    by_task = Counter(p.task for p in prompts)
    table.add_row("by task", ", ".join(f"{t} {n}" for t, n in sorted(by_task.items())))
    console.print(table)


def no_teacher_error(params: GenerateParams, missing: int, total: int) -> StageError:
    why = (
        "generate.offline is true"
        if params.offline
        else f"generate.backend is {params.backend!r}, which only reads the cache"
    )
    return StageError(
        f"{missing} of {total} prompts have no answer in the cache ({params.shipped_cache}, "
        f"{params.cache}) and {why}. To ask a teacher, set generate.backend: openai with "
        "generate.model (the served model id) and generate.openai.base_url (e.g. "
        "http://127.0.0.1:8000/v1 for `vllm serve`), or generate.backend: transformers with "
        "generate.model a local model folder; see README, 'Synthetic instructions'"
    )


def ask_teacher(
    params: GenerateParams, missing: list[Prompt], cache: AnswerCache
) -> tuple[teacher.Stats, dict[str, teacher.Reply]]:
    """Ask for every missing prompt; cache each usable answer at once; return the failures."""
    failures: dict[str, teacher.Reply] = {}

    def on_reply(i: int, reply: teacher.Reply) -> None:
        prompt = missing[i]
        if reply.failure is None and reply.text is not None and parses(reply.text):
            cache.put(cache_entry(prompt, params.backend, params.model, reply))
        else:
            failures[prompt.key] = (
                reply
                if reply.failure
                else teacher.Reply(reply.text, "unparseable_answer", reply.text or "")
            )

    messages = [p.messages for p in missing]
    if params.backend == "openai":
        stats = teacher.openai_replies(
            messages, params.model, params.openai, params.sampling, parses, on_reply
        )
    else:
        stats = teacher.transformers_replies(
            messages, params.model, params.transformers, params.sampling, on_reply, progress
        )
    return stats, failures


def generate(params: GenerateParams) -> dict[str, Any]:
    counts: Counter = Counter()
    prompts = build_prompts(params, counts)
    shipped = Path(params.shipped_cache) if params.shipped_cache else None
    cache = AnswerCache(Path(params.cache), shipped)
    try:
        missing = [p for p in prompts if cache.get(p.key) is None]
        print_plan(params, prompts, missing)
        stats, failures = teacher.Stats(), {}
        if missing:
            if params.backend == "authors" or params.offline:
                raise no_teacher_error(params, len(missing), len(prompts))
            try:
                stats, failures = ask_teacher(params, missing, cache)
            except teacher.TeacherError as e:
                raise StageError(f"{e} ({len(cache.entries)} answers are in the cache)") from e
    finally:
        cache.close()
    return write_outputs(params, prompts, cache, failures, stats, len(missing), counts)


def _meta(params: GenerateParams, p: Prompt, entry: dict | None) -> dict[str, Any]:
    return {
        "teacher_backend": entry["backend"] if entry else params.backend,
        "teacher_model": entry["model"] if entry else params.model,
        "prompt_id": p.prompt_id,
        "text_source": p.paragraph.source,
        "paragraph_id": p.paragraph.doc,
        "paragraph_row": p.paragraph.row,
        "paragraph_sha256": p.paragraph.sha,
        "cache_key": p.key,
        "group": p.paragraph.group,  # every record of one paragraph lands in one split
    }


def write_outputs(
    params: GenerateParams,
    prompts: list[Prompt],
    cache: AnswerCache,
    failures: dict[str, teacher.Reply],
    stats: teacher.Stats,
    called: int,
    counts: Counter,
) -> dict[str, Any]:
    kept: Counter = Counter()
    with (
        RecordWriter(OUTPUT) as out,
        Quarantine(quarantine_path("generate"), "generate") as quarantine,
    ):
        for p in prompts:
            entry = cache.get(p.key)
            meta = _meta(params, p, entry)
            base = {
                "task": p.task,
                "source": p.paragraph.source,
                "source_row": p.paragraph.row,
                "origin": "synthetic",
                "meta": meta,
            }
            if entry is None:
                reply = failures.get(p.key) or teacher.Reply(None, "no_answer")
                bad = make_record(instruction="", output="", input=p.paragraph.text, **base)
                quarantine.reject(bad, Drop(reply.failure, reply.detail or reply.text or ""))
                continue
            try:
                ans = parse_answer(entry["answer"] or "")
                broken = check_answer(ans, p.paragraph)
            except AnswerError as e:
                ans, broken = None, Drop(e.rule, entry["answer"] or "", e.detail)
            if broken:
                bad = make_record(instruction="", output="", input=p.paragraph.text, **base)
                quarantine.reject(bad, broken)
                continue
            out.write(make_record(**ans, **base))
            kept[p.task] += 1
    hits = len(prompts) - called
    metrics = {
        "prompts": len(prompts),
        "cache_hits": hits,
        "cache_hit_rate": round(hits / len(prompts), 4) if prompts else 1.0,
        "teacher_calls": stats.calls,
        "prompts_asked": called,
        "retries": stats.retries,
        "failures": sum(quarantine.by_rule.values()),
        "failures_by_rule": quarantine.by_rule,
        "failed_attempts": stats.by_failure,
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "records": sum(kept.values()),
        "records_by_task": dict(sorted(kept.items())),
        "paragraphs": {
            k: counts[k] for k in ("scanned", "unreadable", "out_of_length", "duplicate")
        },
        "torn_cache_lines": cache.torn,
        "teacher": {"backend": params.backend, "model": params.model},
        "template_version": params.template_version,
    }
    console.print(
        f"generate: {metrics['records']} records, {metrics['failures']} quarantined, "
        f"{hits} cache hits, {stats.calls} teacher calls"
    )
    return metrics


def main() -> None:
    p = parser("generate", __doc__)
    p.parse_args()
    raw = config.read_params()
    params = GenerateParams.load(raw)
    require(params.quotas, "generate.quotas", load_tasks(raw))
    write_json(METRICS, generate(params))


if __name__ == "__main__":
    run(main)
