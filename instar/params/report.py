"""Params `report`."""

from __future__ import annotations

from typing import ClassVar

from instar.params.core import Section


class ReportParams(Section):
    SECTION: ClassVar[str] = "report"
    title: str = "InstAr pipeline report"
