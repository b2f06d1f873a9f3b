"""The one way a stage drops a row: a check returns None (keep) or a `Drop`, and the stage
hands it to its `Quarantine`, which writes the row with its lineage, the stage, the rule and
the failing value to data/quarantine/<stage>[/<source>].parquet.

A `Drop` is a pair `(rule, value)`: `rule` names the check (the key its count goes under),
`value` is what failed it (a length, a score, the raw text of an unreadable row). `detail`,
optional, is for people: it goes in the error of a stage told to fail on a bad row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from instar.records.schema import QUARANTINE_SCHEMA
from instar.records.storage import RecordWriter


class Drop(NamedTuple):
    rule: str
    value: Any
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.rule} ({self.detail})" if self.detail else self.rule


class Quarantine(RecordWriter):
    """Rows a stage dropped. The file is always written, empty when nothing was dropped, so
    DVC tracks a stable output; `by_rule` counts the drops for the stage's metrics."""

    def __init__(self, path: str | Path, stage: str, batch_size: int = 4096):
        super().__init__(path, QUARANTINE_SCHEMA, batch_size)
        self.stage = stage
        self.by_rule: dict[str, int] = {}

    def reject(self, rec: dict[str, Any], drop: Drop) -> None:
        self.by_rule[drop.rule] = self.by_rule.get(drop.rule, 0) + 1
        self.write({**rec, "stage": self.stage, "rule": drop.rule, "value": str(drop.value)})
