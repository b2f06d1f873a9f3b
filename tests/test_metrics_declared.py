"""What `dvc exp show` lists: dvc.yaml declares as metrics only what experiments compare
(train@'s and evaluate@'s final figures, the dataset totals); every other count a stage
writes is a plain `cache: false` output, which `dvc metrics show PATH` still reads.

The built pipeline's side (how many keys those files hold, the column order) is in
tests/test_pipeline.py."""

from __future__ import annotations

import functools
import os

import yaml
from dvc.repo import Repo

from tests.conftest import ROOT

# Written by a stage, read by a stage or a script: outputs, not metrics.
BOOKKEEPING = ("metrics/ingest/", "metrics/clean/", "metrics/eval_base/", "metrics/eval_adapter/")
BOOKKEEPING_FILES = (
    "metrics/generate.json",
    "metrics/dedup.json",
    "metrics/validation.json",
    "metrics/contamination.json",
)
TOTALS = "metrics/data.json"


def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@functools.cache
def declared() -> tuple[list[str], list[str], dict[str, bool]]:
    """Stage metrics in DVC's order, top-level metrics, and every output's `cache` flag."""
    with Repo(str(ROOT)) as repo:
        stage_metrics = [os.path.relpath(o.fs_path, ROOT) for o in repo.index.metrics]
        top = [p for files in repo.index._metrics.values() for p in files]
        outs = {os.path.relpath(o.fs_path, ROOT): o.use_cache for o in repo.index.outs}
    return stage_metrics, top, outs


def test_only_train_and_eval_figures_and_the_totals_are_metrics():
    stage_metrics, top, _ = declared()
    models = list(params()["models"])
    assert sorted(stage_metrics) == sorted(
        [f"metrics/train/{m}.json" for m in models] + [f"metrics/eval/{m}.json" for m in models]
    )
    # Top-level metrics come after the stages' in `dvc exp show`: the totals go last.
    assert top == [TOTALS]


def test_no_per_source_or_bookkeeping_file_is_a_metric():
    stage_metrics, top, _ = declared()
    for path in [*stage_metrics, *top]:
        assert not path.startswith(BOOKKEEPING) and path not in BOOKKEEPING_FILES, path


def test_the_bookkeeping_files_are_still_uncached_outputs():
    _, _, outs = declared()
    p = params()
    expected = [
        *BOOKKEEPING_FILES,
        TOTALS,
        *(f"metrics/{stage}/{s}.json" for s in p["sources"] for stage in ("ingest", "clean")),
        *(f"metrics/{v}/{m}.json" for m in p["models"] for v in ("eval_base", "eval_adapter")),
    ]
    for path in expected:
        assert outs.get(path) is False, f"{path}: not an output with cache: false"
