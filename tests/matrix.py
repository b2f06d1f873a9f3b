"""The change matrix of tests/test_workflows.py, tests/test_reevaluation.py and
tests/test_retraining.py: each row is a change to a built pipeline and the stages a real
`dvc repro` must then run, no more, no less.

`dvc repro --dry` and `dvc status` do not follow a change downstream (they cannot know that
an output will differ), so every row runs a real `dvc repro` and reads the stages it ran.
Training is cut to a couple of steps in the matrix's copy: what reruns does not depend on it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import dvc, git_commit_all, run, stages_run

MODELS = ("tiny", "tiny-gemma")
SOURCES_FILE = "data/sources/handwritten.jsonl"


def set_param(repo: Path, dotted: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), "utf-8")


def fast(repo: Path) -> None:
    """Two optimiser steps per model and a short evaluation: the graph is what is tested."""
    for m in MODELS:
        set_param(repo, f"models.{m}.train.max_steps", 2)
        set_param(repo, f"models.{m}.train.eval_steps", 1)
        set_param(repo, f"models.{m}.train.logging_steps", 1)
    set_param(repo, "evaluate.benchmarks.limit", 4)
    set_param(repo, "evaluate.generation.samples", 4)


def build_matrix(pipeline: Path, repo: Path) -> Path:
    """A copy of the session's pipeline with fast training, rebuilt and committed: built once a
    run, in the background after the pipeline (tests/builds.py)."""
    shutil.copytree(pipeline, repo, symlinks=True)
    fast(repo)
    dvc(repo, "repro", timeout=1200)
    git_commit_all(repo, "fast training")
    return repo


def matrix_fixture():
    """A test module's `matrix_repo` fixture: its own copy of the built matrix repo (its
    rows change and restore it)."""

    @pytest.fixture(scope="module")
    def matrix_repo(pipeline, request, tmp_path_factory) -> Path:
        from tests import builds
        from tests.conftest import shared_dir

        built = builds.wait(shared_dir(request.config), "matrix")
        repo = tmp_path_factory.mktemp("matrix") / "repo"
        shutil.copytree(built, repo, symlinks=True)
        return repo

    return matrix_repo


def row_tests(rows: list[Row]):
    """A module's fixture and its test of `rows` (bound as module names, pytest finds them)."""

    @pytest.mark.parametrize("what,change,expected", rows, ids=[r[0] for r in rows])
    def test_a_change_reruns_exactly_the_stages_it_touches(matrix_repo, what, change, expected):
        check_row(matrix_repo, what, change, expected)

    return matrix_fixture(), test_a_change_reruns_exactly_the_stages_it_touches


def restore(repo: Path) -> None:
    run(["git", "checkout", "--", "."], repo)
    run(["git", "clean", "-fdq", "data/sources"], repo)
    run(["git", "clean", "-fdxq", "data/hub"], repo)  # a hub@ output of a row's own entry
    os.environ.pop("HF_HUB_CACHE", None)  # a row's stand-in HF cache
    dvc(repo, "checkout", "--force")


def split_of_new_record(repo: Path, rec: dict) -> str:
    from instar.params.shard import ShardParams
    from instar.records.schema import group_key, make_record
    from stages.shard import split_of

    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    full = make_record(source="handwritten", source_row=0, origin="collected", **rec)
    return split_of(group_key(full), ShardParams(**params["shard"]))


def record_in(repo: Path, split: str) -> dict:
    """A new, valid handwritten record whose split (a hash of its content) is `split`."""
    for n in range(200):
        rec = {
            "instruction": f"اذكر فائدة واحدة من فوائد القراءة اليومية، المثال رقم {n}.",
            "input": "",
            "output": "توسّع القراءة اليومية المفردات وتنمّي القدرة على التركيز والتفكير.",
            "task": "open_qa",
        }
        if split_of_new_record(repo, rec) == split:
            return rec
    raise AssertionError(f"no record lands in {split}")


def append_record(split: str) -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        rec = record_in(repo, split)
        with (repo / SOURCES_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    change.section = "sources"
    return change


def add_source(repo: Path) -> None:
    """A new source with one record, which lands in the test split."""
    rec = record_in(repo, "test")
    (repo / "data/sources/extra.jsonl").write_text(
        json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["sources"]["extra"] = {
        "kind": "instructions",
        "format": "jsonl",
        "path": "data/sources/extra.jsonl",
    }
    (repo / "params.yaml").write_text(
        yaml.safe_dump(params, allow_unicode=True, sort_keys=False), "utf-8"
    )


def param(dotted: str, value) -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        set_param(repo, dotted, value)

    change.section = dotted.split(".")[0]
    return change


def every(stage: str, names) -> set[str]:
    return {f"{stage}@{n}" for n in names}


def source_names(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))["sources"])


def evaluation(models=MODELS) -> set[str]:
    return every("evaluate_base", models) | every("evaluate", models)


def training(models=MODELS) -> set[str]:
    return every("base", models) | every("train", models) | evaluation(models)


def add_text_source(repo: Path) -> None:
    """A second text source that generate.text_sources does not name: generate reruns (it
    reads the `text_sources` section) and writes the same records."""
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["text_sources"]["more"] = dict(params["text_sources"]["paragraphs"])
    (repo / "params.yaml").write_text(
        yaml.safe_dump(params, allow_unicode=True, sort_keys=False), "utf-8"
    )


def add_hub_data(repo: Path) -> None:
    """A hub dataset in a stand-in HF cache, listed in hub_data at its commit: hub@ fetches it
    offline; evaluation and contamination depend on data/hub (the benchmark sets' Parquet)
    and rerun, and contamination's unchanged outputs leave report alone."""
    from tests.hubstub import add_repo
    from tests.standin_data import dataset_files, oall_table

    cache = repo.parent / "hf-stub"
    files = dataset_files({"Iraq": {"test": oall_table("OALL/ACVA", "Iraq")}})
    commit = add_repo(cache, "OALL/ACVA", files, "dataset")
    os.environ["HF_HUB_CACHE"] = str(cache)  # dvc's stages inherit it (restore() drops it)
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["hub_data"]["extra"] = {
        "repo_id": "OALL/ACVA",
        "revision": commit,
        "configs": ["Iraq"],
        "splits": ["test"],
    }
    (repo / "params.yaml").write_text(
        yaml.safe_dump(params, allow_unicode=True, sort_keys=False), "utf-8"
    )


def add_tokenizer(repo: Path) -> None:
    """A tokenizer (the tiny base's files) in a stand-in HF cache, listed in tokenizers at its
    commit: tokenizer@ copies it offline; clean depends on data/tokenizers and reruns, with
    the same records out (the words limit does not read it), so nothing after clean runs."""
    from tests.hubstub import add_repo

    cache = repo.parent / "hf-stub"
    base = repo / "models/tiny/base"
    files = {n: (base / n).read_bytes() for n in ("tokenizer.json", "tokenizer_config.json")}
    commit = add_repo(cache, "org/tokenizer", files, "model")
    os.environ["HF_HUB_CACHE"] = str(cache)  # dvc's stages inherit it (restore() drops it)
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["tokenizers"]["extra"] = {"repo_id": "org/tokenizer", "revision": commit}
    (repo / "params.yaml").write_text(
        yaml.safe_dump(params, allow_unicode=True, sort_keys=False), "utf-8"
    )


def edit_code(path: str) -> Callable[[Path], None]:
    """A comment appended to a project module: every stage whose import closure holds it
    reruns, and nothing else does unless its outputs change."""

    def change(repo: Path) -> None:
        with (repo / path).open("a", encoding="utf-8") as f:
            f.write("# an edit that changes no behaviour\n")

    change.section = None  # a code row
    return change


def importers(path: str) -> set[str]:
    """The stages of dvc.yaml whose import closure holds `path` (foreach stages by name)."""
    from instar.imports import closure
    from scripts.code_deps import entry, stages
    from tests.conftest import ROOT

    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    return {name for name, body in stages(doc).items() if path in closure(entry(body["cmd"]))}


add_source.section = "sources"
add_text_source.section = "text_sources"
add_hub_data.section = "hub_data"
add_tokenizer.section = "tokenizers"

# (what changes, the change, the stages that must run: a function of the source names).
# Three groups by what a row reruns, one test module each, so that the two cores share the
# rows (a module runs on one worker) and the longest start first (tests/conftest.py).
Row = tuple[str, Callable[[Path], None], Callable[[list[str]], set[str]]]

# No model stage reruns (tests/test_workflows.py).
DATA_ROWS: list[Row] = [
    (
        "a generate param the shipped answers do not depend on",
        param("generate.openai.concurrency", 4),
        lambda s: {"generate"},
    ),
    ("a text source added", add_text_source, lambda s: {"generate"}),
    ("a tokenizer added", add_tokenizer, lambda s: {"tokenizer@extra"} | every("clean", s)),
    (
        "a module only clean imports",
        edit_code("instar/text/repetition.py"),
        lambda s: every("clean", s),
    ),
    (
        "one source's ingest param (same rows out)",
        param("sources.handwritten.on_error", "quarantine"),
        lambda s: {"ingest@handwritten", "source_list"},
    ),
    (
        # ingest@ and source_list read the whole source entry and write the same bytes;
        # clean@ reads its own overrides file, which changed, and keeps the same records
        "one source's clean override (same records out)",
        param("sources.handwritten.clean", {"batch_size": 64}),
        lambda s: {"ingest@handwritten", "source_list", "clean@handwritten"},
    ),
    (
        "the ingest section (same rows out)",
        param("ingest.batch_size", 1000),
        lambda s: every("ingest", s),
    ),
    (
        "a clean threshold no record is near",
        param("clean.max_length.limit", 4096),
        lambda s: every("clean", s),
    ),
    (
        # every stage that reads `tasks` reruns; only the card's bytes change, and no stage
        # reads the card
        "a task's display name",
        param("tasks.translation.name_en", "English translation"),
        lambda s: every("ingest", s) | every("clean", s) | {"generate", "validate", "shard"},
    ),
    ("a dedup param", param("dedup.examples", 5), lambda s: {"dedup"}),
    ("a validate bound", param("validate.max_task_share", 0.9), lambda s: {"validate"}),
    (
        "a stricter contamination match (no hit either way)",
        param("contamination.min_words", 6),
        lambda s: {"contamination"},
    ),
    ("the report's title", param("report.title", "Another title"), lambda s: {"report"}),
    (
        # train@ reads only the audit's keys of `preflight`; the rate is the preflight's own
        "the preflight's rate",
        param("preflight.tokens_per_second", 1000),
        lambda s: set(),
    ),
]

# The evaluations rerun, and no training (tests/test_reevaluation.py).
EVALUATION_ROWS: list[Row] = [
    (
        "a hub dataset added",
        add_hub_data,
        lambda s: {"hub@extra", "contamination"} | evaluation(),
    ),
    (
        "one source's raw file: a record for the test split",
        append_record("test"),
        lambda s: (
            {"ingest@handwritten", "clean@handwritten", "dedup", "validate", "shard"}
            | evaluation()
            | {"report"}
        ),
    ),
    (
        "a new source (one record, for the test split)",
        add_source,
        lambda s: (
            {"ingest@extra", "clean@extra", "source_list", "dedup", "validate", "shard"}
            | evaluation()
            | {"report"}
        ),
    ),
    (
        # a setting that moves scores: the fingerprint shows it (fingerprint_flagged, below)
        "the benchmarks' batch size",
        param("evaluate.benchmarks.batch_size", 8),
        lambda s: evaluation() | {"report"},
    ),
]

# A model retrains (tests/test_retraining.py).
TRAINING_ROWS: list[Row] = [
    (
        "the shard split ratio",
        param("shard.test_fraction", 0.15),
        lambda s: {"shard", "contamination"} | training() | {"report"},
    ),
    (
        "the train params module",
        edit_code("instar/params/train.py"),
        # the reruns write the same bytes (CPU pins, full determinism), so report stays
        lambda s: training() - every("base", MODELS),
    ),
    (
        "one model's LoRA rank",
        param("models.tiny.lora.r", 8),
        lambda s: {"train@tiny", "evaluate@tiny", "report"},
    ),
    (
        "one model's learning rate",
        param("models.tiny-gemma.train.learning_rate", 0.001),
        lambda s: {"train@tiny-gemma", "evaluate@tiny-gemma", "report"},
    ),
    (
        "one model's base",
        param("models.tiny.base.seed", 1),
        lambda s: training(["tiny"]) | {"report"},
    ),
]

MATRIX = DATA_ROWS + EVALUATION_ROWS + TRAINING_ROWS


def fingerprint_flagged(repo: Path) -> None:
    """The batch size is in every evaluation's fingerprint: `dvc metrics diff` shows it as a
    string beside the scores, and the report flags each model's rows against the last
    committed run (the matrix's commit, at batch size 16), naming the field."""
    diff = json.loads(dvc(repo, "metrics", "diff", "--json").stdout)
    for m in MODELS:
        changed = diff[f"metrics/eval/{m}.json"]["fingerprint.batch_size"]
        assert (changed["old"], changed["new"]) == ("16", "8"), changed
    summary = (repo / "reports/summary.md").read_text(encoding="utf-8")
    for m in MODELS:
        assert f"| {m} | + InstAr adapter (fingerprint changed) |" in summary
        assert f"| {m} | base (fingerprint changed) |" in summary
        assert f"- {m}, + InstAr adapter: batch_size: 16 -> 8" in summary


# Checks a row's repro makes possible beyond the stages it ran, before the repo is restored.
AFTER = {"the benchmarks' batch size": fingerprint_flagged}


def check_row(repo: Path, what: str, change, expected) -> None:
    """Make the change, run `dvc repro`, compare the stages it ran; then put the repo back."""
    change(repo)
    try:
        ran = stages_run(dvc(repo, "repro", timeout=900).stdout)
        assert ran == expected(source_names(repo)), what
        if what in AFTER:
            AFTER[what](repo)
    finally:
        restore(repo)
