"""The label-mask audit: which tokens of each training example carry loss, masked as TRL's
SFTTrainer masks them (`assistant_only_loss`, the chat template's `{% generation %}` spans,
then truncation to `max_length`), and the problems that make a run bound to fail.

The preflight (scripts/preflight.py) prints it before any GPU hour; train@ runs it again on
the split it trains on, puts it in the model card and refuses to start on a problem.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from instar.modeling.chat import supports_system, to_messages

# Each refusal's rule name, in the order they are checked.
RULES = (
    "no_generation_markers",  # the template marks no assistant span, and TRL has no variant
    "no_loss_tokens",  # an example in which no token carries loss
    "end_of_turn_not_trained",  # the answer's last trained token is content, not the stop token
    "system_lost",  # the system text does not reach the rendered example
    "answer_truncated",  # max_length cuts the answer of too many rows
)
OPEN, CLOSE = "[[", "]]"  # around loss-carrying text, in files
# What the template-level rules need where no split is at hand: a record with every part.
PROBE = {
    "system": "أنت مساعد مفيد يجيب بالعربية الفصحى.",
    "instruction": "ما عاصمة مصر؟",
    "input": "",
    "output": "عاصمة مصر هي القاهرة.",
}


@dataclass(frozen=True)
class Problem:
    rule: str
    row: int | None  # the row of the train split (None: the whole template or split)
    reason: str

    def __str__(self) -> str:
        return self.rule + (f" (row {self.row})" if self.row is not None else "")


@dataclass
class Audit:
    template: str  # what is audited, for messages: a model's chat template
    rows: int = 0  # audited
    split_rows: int = 0  # in the split the audited rows were sampled from
    tokens: int = 0  # after truncation, what the trainer sees
    loss_tokens: int = 0
    truncated: int = 0  # rows whose answer the length limit cuts
    example: list[tuple[str, bool]] = field(default_factory=list)  # one example, `marked`
    problems: list[Problem] = field(default_factory=list)

    @property
    def loss_share(self) -> float:
        return self.loss_tokens / self.tokens if self.tokens else 0.0

    @property
    def truncated_share(self) -> float:
        return self.truncated / self.rows if self.rows else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "split_rows": self.split_rows,
            "tokens": self.tokens,
            "loss_tokens": self.loss_tokens,
            "loss_share": round(self.loss_share, 4),
            "truncated_rows": self.truncated,
            "truncated_share": round(self.truncated_share, 4),
            "problems": [str(p) for p in self.problems],
            "example": bracketed(self.example),
        }


def training_template(tokenizer) -> str | None:
    """The template TRL trains with: None for the tokenizer's own when it has generation
    markers, else TRL's training variant of it. ValueError when TRL has none."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if tokenizer.chat_template and has_generation_markers(tokenizer.chat_template):
        return None
    return get_training_chat_template(tokenizer)


def sample_rows(n: int, k: int, seed: int) -> list[int]:
    """`k` of `n` row numbers, seeded and sorted (all of them when `k >= n`)."""
    if k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def audit(
    tokenizer,
    records: list[tuple[int | None, dict[str, Any]]],
    max_length: int | None,
    max_truncated_share: float,
    template: str,
) -> Audit:
    """Audit `(row, record)` pairs as the trainer would tokenize them."""
    out = Audit(template)
    try:
        chat_template = training_template(tokenizer)
    except ValueError:
        out.problems.append(
            Problem(
                "no_generation_markers",
                None,
                f"{template}: no {{% generation %}} markers, and TRL has no training variant of "
                "it, so no token would carry loss; add the markers around the assistant's answer",
            )
        )
        return out
    system_role = supports_system(tokenizer)
    added = set(tokenizer.get_added_vocab().values())
    first = {}  # the first row that breaks each rule
    for row, rec in records:
        messages = to_messages(rec, system_role)
        enc = tokenizer.apply_chat_template(
            messages,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            chat_template=chat_template,
        )
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        limit = len(ids) if max_length is None else min(len(ids), max_length)
        cut = any(mask[limit:])
        out.rows += 1
        out.tokens += limit
        out.loss_tokens += sum(mask[:limit])
        out.truncated += cut
        if not out.example:
            out.example = marked(tokenizer, ids[:limit], mask[:limit])
        if not any(mask):  # the template's fault; a cut that leaves none is answer_truncated's
            first.setdefault("no_loss_tokens", (row, "no token of the example carries loss"))
            continue
        if not cut and not _ends_on_stop(tokenizer, ids, mask, added):
            first.setdefault(
                "end_of_turn_not_trained",
                (row, "the answer's last trained token is content: the end-of-turn token is "
                      "outside the {% generation %} span, so the model never learns to stop"),
            )  # fmt: skip
        if rec["system"].strip():
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, chat_template=chat_template
            )
            if rec["system"].strip() not in text:
                where = "system turn" if system_role else "user turn"
                first.setdefault(
                    "system_lost",
                    (row, f"the system text, passed in the {where}, is not in the rendered "
                          "example: the template drops it"),
                )  # fmt: skip
    out.problems += [
        Problem(rule, *first[rule]) for rule in RULES if rule in first
    ]  # fmt: skip
    if out.rows and out.truncated_share > max_truncated_share:
        out.problems.append(
            Problem(
                "answer_truncated",
                None,
                f"max_length {max_length} cuts the answer of {out.truncated} of {out.rows} rows "
                f"({out.truncated_share:.1%} > preflight.max_truncated_share "
                f"{max_truncated_share:.1%}): raise train.max_length or cap clean.max_length",
            )
        )
    return out


def _ends_on_stop(tokenizer, ids: list[int], mask: list[int], added: set[int]) -> bool:
    """Whether the last trained token that is not whitespace is an added (special) token,
    the way TRL's `is_chat_template_stop_token_trained` tells a stop token from content."""
    for token, m in zip(reversed(ids), reversed(mask), strict=True):
        if not m or not tokenizer.decode([token]).strip():
            continue
        return token in added
    return False


def marked(tokenizer, ids: list[int], mask: list[int]) -> list[tuple[str, bool]]:
    """The example as decoded runs of text, each with whether it carries loss."""
    runs: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or bool(mask[i]) != bool(mask[start]):
            runs.append((tokenizer.decode(ids[start:i]), bool(mask[start])))
            start = i
    return runs


def bracketed(runs: list[tuple[str, bool]]) -> str:
    """The example with its loss-carrying text between [[ and ]], for files and cards."""
    return "".join(f"{OPEN}{t}{CLOSE}" if loss else t for t, loss in runs)


def audit_split(tokenizer, folder, max_length: int | None, params, template: str) -> Audit:
    """The audit over a seeded sample of `params.sample_rows` rows of a split's shards (all
    when fewer; `params`: the `preflight` section); a problem's row is its position in the
    split, shards in name order."""
    from pathlib import Path

    import pyarrow.parquet as pq

    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        from instar.console import StageError

        raise StageError(f"{folder}: no shards; run `make repro` or `dvc pull` first")
    cols = ["instruction", "input", "output", "system"]
    table = pq.ParquetDataset([str(f) for f in files]).read(columns=cols)
    rows = sample_rows(table.num_rows, params.sample_rows, params.seed)
    records = list(zip(rows, table.take(rows).to_pylist(), strict=True))
    out = audit(tokenizer, records, max_length, params.max_truncated_share, template)
    out.split_rows = table.num_rows
    return out
