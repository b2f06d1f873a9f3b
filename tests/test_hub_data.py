"""hub@<name>: a hub repository at its pinned commit, from the HF cache, as files under
data/hub/<name>/ (stages/hub_data.py), offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from instar.params.checks import check_all
from instar.params.hub import HubDataParams
from tests.conftest import ROOT, env
from tests.hubstub import add_repo
from tests.standin_data import INSTAR, add_instar, dataset_files, instar_rows, oall_table


def hub_stage(work: Path, cache: Path, name: str, hub_data: dict) -> subprocess.CompletedProcess:
    (work / "params.yaml").write_text(yaml.safe_dump({"hub_data": hub_data}))
    return subprocess.run(
        [sys.executable, "-m", "stages.hub_data", name],
        cwd=work,
        env={**env(), "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def cache(tmp_path) -> Path:
    c = tmp_path / "hf-hub"
    c.mkdir()
    return c


def test_a_dataset_becomes_one_parquet_per_config_and_split_with_the_same_bytes_twice(
    tmp_path, cache
):
    tables = {
        c: {s: oall_table("OALL/ACVA", c, 3, k * 10) for k, s in enumerate(["test", "validation"])}
        for c in ("Algeria", "Iraq")
    }
    commit = add_repo(cache, "OALL/ACVA", dataset_files(tables), "dataset")
    entry = {
        "acva": {
            "repo_id": "OALL/ACVA",
            "revision": commit,
            "configs": ["Iraq"],
            "splits": ["test", "validation"],
        }
    }
    proc = hub_stage(tmp_path, cache, "acva", entry)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "data/hub/acva"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "Iraq/test.parquet",
        "Iraq/validation.parquet",
        "hub.json",
    ]  # only the config asked for
    for split in ("test", "validation"):
        got = pq.read_table(out / f"Iraq/{split}.parquet")
        assert got.to_pylist() == tables["Iraq"][split].to_pylist()
    manifest = yaml.safe_load((out / "hub.json").read_text())
    assert manifest["revision"] == commit and manifest["configs"]["Iraq"]["splits"]["test"] == {
        "rows": 3,
        "columns": ["question", "answer"],
    }
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert hub_stage(tmp_path, cache, "acva", entry).returncode == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_instar_keeps_its_published_columns_and_rows(tmp_path, cache):
    rows = instar_rows()
    commits = add_instar(cache, rows)
    entry = {"instar500k": {"repo_id": INSTAR, "revision": commits["latest"]}}
    proc = hub_stage(tmp_path, cache, "instar500k", entry)
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(tmp_path / "data/hub/instar500k/default/train.parquet")
    assert table.column_names[-1] == "__index_level_0__" and "input" not in table.column_names
    assert table.drop(["__index_level_0__"]).to_pylist() == rows
    # the older commit is another layout: what was pinned is what is read
    entry["instar500k"]["revision"] = commits["old"]
    assert hub_stage(tmp_path, cache, "instar500k", entry).returncode == 0
    old = pq.read_table(tmp_path / "data/hub/instar500k/default/train.parquet")
    assert "response" in old.column_names and "output" not in old.column_names


def test_an_unpinned_revision_is_refused_at_once(tmp_path, cache):
    proc = hub_stage(tmp_path, cache, "acva", {"acva": {"repo_id": "OALL/ACVA", "revision": None}})
    assert proc.returncode == 1
    assert "hub_data.acva.revision is not pinned" in one_line(proc.stderr)
    assert "scripts.profiles pin" in one_line(proc.stderr)
    assert not (tmp_path / "data/hub/acva").exists()


def test_a_revision_the_cache_lacks_is_refused_offline_naming_it(tmp_path, cache):
    add_repo(cache, "OALL/ACVA", dataset_files({"Iraq": {"test": oall_table("OALL/ACVA", "Iraq")}}))
    other = "0123456789abcdef0123456789abcdef01234567"
    proc = hub_stage(tmp_path, cache, "acva", {"acva": {"repo_id": "OALL/ACVA", "revision": other}})
    err = one_line(proc.stderr)
    assert proc.returncode == 1 and f"OALL/ACVA@{other}" in err, err
    assert "HF_HUB_OFFLINE=1" in err and "dvc pull" in err


def test_a_config_or_split_the_card_lacks_is_named(tmp_path, cache):
    commit = add_repo(
        cache,
        "OALL/ACVA",
        dataset_files({"Iraq": {"test": oall_table("OALL/ACVA", "Iraq")}}),
        "dataset",
    )
    entry = {"acva": {"repo_id": "OALL/ACVA", "revision": commit, "configs": ["Iraq"]}}
    entry["acva"]["splits"] = ["test", "validation"]
    proc = hub_stage(tmp_path, cache, "acva", entry)
    assert proc.returncode == 1 and "no split 'validation'" in one_line(proc.stderr)
    entry["acva"].update(configs=["Oman"], splits=["test"])
    proc = hub_stage(tmp_path, cache, "acva", entry)
    assert proc.returncode == 1 and "Oman" in proc.stderr


def test_a_model_entry_copies_only_the_files_its_patterns_allow(tmp_path, cache):
    files = {
        "tokenizer.json": b'{"model": {}}',
        "tokenizer_config.json": b"{}",
        "model.safetensors": b"weights",
    }
    commit = add_repo(cache, "meta-llama/Meta-Llama-3-8B-Instruct", files)
    entry = {
        "llama_tokenizer": {
            "repo_id": "meta-llama/Meta-Llama-3-8B-Instruct",
            "revision": commit,
            "repo_type": "model",
            "files": ["tokenizer*", "special_tokens_map.json"],
        }
    }
    proc = hub_stage(tmp_path, cache, "llama_tokenizer", entry)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "data/hub/llama_tokenizer"
    assert sorted(p.name for p in out.iterdir()) == [
        "hub.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not (out / "tokenizer.json").is_symlink()  # a copy, not a link into the cache


def test_hub_data_params_are_checked():
    ok = {"repo_id": "OALL/ACVA", "revision": "a" * 40}
    assert HubDataParams(**ok).configs == ["default"]
    for bad, says in [
        ({**ok, "revision": "main"}, "pattern"),
        ({**ok, "repo_type": "model"}, "needs `files`"),
        ({**ok, "splits": ["test", "test"]}, "twice"),
        ({**ok, "split": "test"}, "Extra inputs"),
    ]:
        problems = [p for p in check_all({"hub_data": {"x": bad}}) if "hub_data" in p]
        assert len(problems) == 1 and says in problems[0], (bad, problems)
    assert not [p for p in check_all({"hub_data": {"x": ok}}) if "hub_data" in p]


def test_the_default_profile_has_an_empty_hub_data_and_dvc_accepts_it():
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["hub_data"] == {}
    proc = subprocess.run(
        ["dvc", "stage", "list"], cwd=ROOT, env=env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "hub@" not in proc.stdout and "ingest@handwritten" in proc.stdout
