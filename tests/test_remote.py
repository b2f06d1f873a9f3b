"""The DVC remote against a real S3-compatible server (SeaweedFS `weed mini`) on loopback.

Every test points the remote at that server through .dvc/config.local, so nothing can
reach AWS.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.seaweedfs import configure_dvc, start
from tests.conftest import dvc, env, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start(tmp_path_factory.mktemp("seaweedfs"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pushed(pipeline, server, tmp_path_factory):
    """A copy of the built pipeline, pushed to the server."""
    repo = tmp_path_factory.mktemp("pushed") / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    configure(repo, server)
    proc = dvc(repo, "push")
    assert "pushed" in proc.stdout + proc.stderr
    return repo


def configure(repo: Path, server) -> None:
    configure_dvc(server, repo, env())


def clone(repo: Path, dest: Path, server) -> Path:
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    configure(dest, server)
    return dest


def outputs(repo: Path) -> list[str]:
    """Every output path dvc.lock records."""
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return sorted({o["path"] for s in lock["stages"].values() for o in s.get("outs", [])})


def test_the_committed_config_names_an_s3_remote_without_secrets():
    from tests.conftest import ROOT

    text = (ROOT / ".dvc/config").read_text()
    assert "remote = storage" in text and "url = s3://" in text
    assert "secret" not in text and "access_key" not in text and "endpointurl" not in text


def test_push_uploads_everything_and_a_fresh_clone_pulls_it_back(pushed, server, tmp_path):
    again = dvc(pushed, "push")
    assert "Everything is up to date" in again.stdout + again.stderr
    fresh = clone(pushed, tmp_path / "fresh", server)
    assert not (fresh / "data/instar/train").exists()
    dvc(fresh, "pull")
    for out in outputs(pushed):
        assert (fresh / out).exists(), out
    assert stages_run(dvc(fresh, "repro").stdout) == set()
    assert "up to date" in dvc(fresh, "status").stdout


def test_pulling_one_stage_fetches_its_adapter_and_not_the_dataset(pushed, server, tmp_path):
    fresh = clone(pushed, tmp_path / "one", server)
    dvc(fresh, "pull", "train@tiny")
    assert (fresh / "models/tiny/adapter/adapter_model.safetensors").is_file()
    assert not (fresh / "data/instar/train").exists()
    assert not (fresh / "models/tiny-gemma/adapter").exists()


def test_wrong_credentials_are_refused_clearly(pushed, server, tmp_path):
    fresh = clone(pushed, tmp_path / "badkey", server)
    dvc(fresh, "remote", "modify", "--local", "storage", "secret_access_key", "not-the-secret")
    proc = dvc(fresh, "pull", check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert "SignatureDoesNotMatch" in said or "AccessDenied" in said or "403" in said, said
    assert not (fresh / "data/instar/train").exists()


def snapshot(repo: Path) -> dict[str, tuple[int, int]]:
    """Every file of the work tree and the cache, with size and mtime (DVC's own tmp aside)."""
    return {
        str(p.relative_to(repo)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.parts and not p.is_relative_to(repo / ".dvc/tmp")
    }


def test_a_clone_with_an_empty_hf_cache_needs_only_dvc_pull_of_the_hub_data(
    server, tmp_path, monkeypatch
):
    """InstAr-500k through hub@, ingest@ and clean@ with the paper's token limit (the Llama
    tokenizer through tokenizer@llama3) where a stand-in cache holds both; pushed. A clone
    with an empty HF cache and HF_HUB_OFFLINE=1 pulls hub@'s and tokenizer@'s outputs and
    nothing else: its data stages then run from them, and neither fetch stage reruns."""
    import yaml

    from tests.conftest import fresh_clone, git_commit_all
    from tests.standin_data import INSTAR, add_instar, instar_rows
    from tests.standin_models import add_paper_models

    cache = tmp_path / "hf-stub"
    commit = add_instar(cache)["latest"]
    texts = [f"{r['system']} {r['instruction']} {r['output']}" for r in instar_rows()]
    llama = "meta-llama/Meta-Llama-3-8B-Instruct"
    model_commit = add_paper_models(cache, texts)[llama]
    repo = fresh_clone(tmp_path / "origin")
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    paper = yaml.safe_load((repo / "profiles/paper.yaml").read_text(encoding="utf-8"))
    params["hub_data"] = {"instar500k": {**paper["hub_data"]["instar500k"], "revision": commit}}
    params["tokenizers"] = {"llama3": {**paper["tokenizers"]["llama3"], "revision": model_commit}}
    assert paper["tokenizers"]["llama3"]["repo_id"] == llama
    params["sources"]["instar500k"] = paper["sources"]["instar500k"]
    # the paper's token limit, low enough here that the stand-in's longest rows exceed it
    limit = {**paper["clean"]["max_length"], "limit": 40}
    assert limit["unit"] == "tokens" and limit["tokenizer"] == "data/tokenizers/llama3"
    params["clean"]["max_length"] = limit
    assert paper["hub_data"]["instar500k"]["repo_id"] == INSTAR
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    ran = stages_run(dvc(repo, "repro", "clean@instar500k").stdout)
    # source_list too: clean@ reads the source's overrides from it
    assert ran == {
        "hub@instar500k",
        "tokenizer@llama3",
        "ingest@instar500k",
        "source_list",
        "clean@instar500k",
    }
    files = sorted(p.name for p in (repo / "data/tokenizers/llama3").iterdir())
    assert "tokenizer.json" in files and not any(f.endswith(".safetensors") for f in files)
    metrics = json.loads((repo / "metrics/clean/instar500k.json").read_text())
    assert metrics["dropped"].get("too_long", 0) > 0, metrics  # counted in Llama tokens
    git_commit_all(repo, "instar500k and the llama tokenizer from the stand-in hub")
    configure(repo, server)
    dvc(repo, "push", "hub@instar500k", "tokenizer@llama3", "ingest@instar500k", "clean@instar500k")

    empty = tmp_path / "empty-hf"
    empty.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    fresh = clone(repo, tmp_path / "fresh", server)
    dvc(fresh, "pull", "hub@instar500k", "tokenizer@llama3")
    assert (fresh / "data/hub/instar500k/default/train.parquet").is_file()
    assert (fresh / "data/tokenizers/llama3/tokenizer.json").is_file()
    assert not (fresh / "data/raw/instar500k.parquet").exists()
    ran = stages_run(dvc(fresh, "repro", "clean@instar500k").stdout)
    assert ran == {"ingest@instar500k", "source_list", "clean@instar500k"}  # not hub@, tokenizer@
    assert not any(empty.iterdir())  # nothing came from (or went to) an HF cache
    for out in ("data/raw/instar500k.parquet", "data/clean/instar500k.parquet"):
        assert (fresh / out).read_bytes() == (repo / out).read_bytes(), out


def test_a_stopped_server_fails_push_and_pull_clearly_and_leaves_the_workspace(
    pushed, server, tmp_path, monkeypatch
):
    """Last in the module: it stops the module's server (weed mini's ports allow one)."""
    # botocore retries a refused connection 4 times with backoff, per file; 2 attempts keep
    # the test short and still exercise a retry (README, "Troubleshooting").
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    repo = tmp_path / "repo"
    shutil.copytree(pushed, repo, symlinks=True)
    fresh = clone(repo, tmp_path / "fresh", server)
    server.stop()

    before = snapshot(repo)
    push = dvc(repo, "push", check=False)
    said = push.stdout + push.stderr
    assert push.returncode != 0
    assert "Could not connect to the endpoint URL" in said and server.endpoint in said, said
    assert snapshot(repo) == before

    before = snapshot(fresh)
    pull = dvc(fresh, "pull", check=False)
    said = pull.stdout + pull.stderr
    assert pull.returncode != 0
    assert "Could not connect to the endpoint URL" in said and "failed to pull" in said, said
    assert snapshot(fresh) == before
    assert not (fresh / "data/instar/train").exists()
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=fresh, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""
