"""Profiles: overlays, pinning (against a stubbed hub and offline against a stand-in cache),
base@'s check of the pinned weights, and the hub mode `make paper` chooses."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from instar.params.checks import check_all
from scripts import profiles as profile
from tests.conftest import ROOT, env, wait_gone
from tests.hubstub import add_repo

MODEL_FILES = {
    "config.json": b'{"model_type": "llama"}',
    "generation_config.json": b"{}",
    "model-00001-of-00002.safetensors": b"weights one",
    "model-00002-of-00002.safetensors": b"weights two",
    "model.safetensors.index.json": b'{"weight_map": {}}',
    "tokenizer.json": b'{"model": {}}',
    "tokenizer_config.json": b'{"chat_template": "x"}',
    "README.md": b"# card",  # never read by loading: not pinned
    "original/consolidated.00.pth": b"pickle",  # another format: not pinned
}
LOADED = sorted(n for n in MODEL_FILES if n.endswith((".json", ".safetensors")))


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long messages at 80 columns


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder with the project's profiles, as the working directory."""
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fill(cache: Path, params: dict) -> dict[str, str]:
    """Every hub repository the profile names, in the stand-in cache; returns their commits."""
    commits = {}
    for p in profile.pins(params):
        files = MODEL_FILES if p.repo_type == "model" else {"data/train.parquet": b"rows"}
        commits[p.repo_id] = add_repo(cache, p.repo_id, files, p.repo_type)
    return commits


# ------------------------------------------------------------------------- overlays


def test_merge_keeps_the_siblings_of_an_overridden_nested_key():
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [1, 2], "s": "x"}
    over = {"a": {"c": {"d": 5}, "new": 1}, "l": [9], "s": None}
    assert profile.merge(base, over) == {
        "a": {"b": 1, "c": {"d": 5, "e": 3}, "new": 1},
        "l": [9],  # lists replace
        "s": None,  # scalars replace, null included
    }


def test_an_overlay_chain_merges_in_order_and_a_circle_is_refused(workspace):
    (workspace / "profiles/one.yaml").write_text("x: {a: 1, b: 1}\ny: [1]\n")
    (workspace / "profiles/two.yaml").write_text("extends: one\nx: {b: 2}\n")
    (workspace / "profiles/three.yaml").write_text("extends: two\nx: {c: 3}\ny: [3]\n")
    assert profile.load_profile("three") == {"x": {"a": 1, "b": 2, "c": 3}, "y": [3]}
    (workspace / "profiles/one.yaml").write_text("extends: three\n")
    with pytest.raises(profile.StageError, match="circle"):
        profile.load_profile("three")


def flat(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flat(v, key + ".") if isinstance(v, dict) and v else {key: v})
    return out


# device, sizes and step counts, and the evaluation limits and row count those imply
REHEARSAL_KEYS = {
    "device",
    "precision",
    "max_steps",
    "batch_size",
    "grad_accum",
    "max_length",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "limit",
    "samples",
    "max_new_tokens",
    "min_rows",
}


def test_the_rehearsal_is_the_paper_profile_but_for_device_sizes_and_steps():
    paper, rehearsal = flat(profile.load_profile("paper")), flat(profile.load_profile("rehearsal"))
    assert set(rehearsal) == set(paper)  # overrides only: no key of its own
    changed = {k for k in paper if paper[k] != rehearsal[k]}
    assert {k.rsplit(".", 1)[-1] for k in changed} <= REHEARSAL_KEYS, changed
    assert rehearsal["models.llamar-8b.train.device"] == "cpu"
    assert rehearsal["models.gemmar-7b.train.precision"] == "fp32"
    # siblings of the overridden keys are the paper's
    assert (
        rehearsal["models.llamar-8b.train.learning_rate"]
        == paper["models.llamar-8b.train.learning_rate"]
    )
    assert rehearsal["evaluate.benchmarks.tasks.acva"] == paper["evaluate.benchmarks.tasks.acva"]


def test_the_params_file_a_run_writes_is_the_merged_profile_with_the_papers_comments(workspace):
    from io import StringIO

    out = StringIO()
    profile._roundtrip().dump(profile.load_profile("rehearsal", roundtrip=True), out)
    assert yaml.safe_load(out.getvalue()) == profile.load_profile("rehearsal")
    assert "community default" in out.getvalue() and "extends" not in out.getvalue()


# ------------------------------------------------------------------------- pin


def fake_commit(repo_id: str) -> str:
    return hashlib.sha1(f"hub:{repo_id}".encode()).hexdigest()


class FakeHfApi:
    """The hub's answers: a fixed commit per repository, and file metadata for models."""

    def repo_info(self, repo_id, repo_type=None, files_metadata=False, **_):
        from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling

        siblings = []
        if repo_type == "model" and files_metadata:
            for name, data in MODEL_FILES.items():
                lfs = name.endswith((".safetensors", ".pth"))
                siblings.append(
                    RepoSibling(
                        rfilename=name,
                        size=len(data),
                        blob_id=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                        lfs=BlobLfsInfo(
                            size=len(data), sha256=hashlib.sha256(data).hexdigest(), pointer_size=1
                        )
                        if lfs
                        else None,
                    )
                )
        return SimpleNamespace(sha=fake_commit(repo_id), siblings=siblings)

    def model_info(self, repo_id, **kw):
        return self.repo_info(repo_id, repo_type="model", **kw)

    def dataset_info(self, repo_id, **kw):
        return self.repo_info(repo_id, repo_type="dataset", **kw)


def with_hf_text_source(path: Path) -> None:
    """A streamed `format: hf` text source and a hub_data entry, so that pin meets every kind."""
    text = path.read_text()
    text = text.replace(
        "text_sources:\n",
        "text_sources:\n  corpus:                          # streamed by generate\n"
        "    kind: text\n    format: hf\n    text_column: text\n"
        "    hf: {repo_id: ClusterlabAi/101_billion_arabic_words_dataset, revision: null}\n",
    )
    if "hub_data" not in yaml.safe_load(text):  # until the hub-data section is in the profile
        text += "\nhub_data:                          # stand-in for the hub-data section\n"
        text += "  oall_acva: {repo_id: OALL/ACVA, revision: null}\n"
    path.write_text(text)


def test_pin_writes_every_revision_and_the_model_file_lists(workspace, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    path = workspace / "profiles/paper.yaml"
    with_hf_text_source(path)
    before = path.read_text().splitlines()
    profile.pin("paper")
    params = profile.load_profile("paper")
    found = profile.pins(params)
    assert {p.where[0] for p in found} >= {"models", "tokenizers", "text_sources", "hub_data"}
    for p in found:
        assert profile._at(params, p.where)["revision"] == fake_commit(p.repo_id), p
    for key in ("llamar-8b", "gemmar-7b"):
        files = params["models"][key]["base"]["files"]
        assert [f["name"] for f in files] == LOADED
        by_name = {f["name"]: f for f in files}
        data = MODEL_FILES["model-00001-of-00002.safetensors"]
        assert by_name["model-00001-of-00002.safetensors"] == {
            "name": "model-00001-of-00002.safetensors",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        assert set(by_name["config.json"]) == {"name", "git_sha1"}  # not in LFS: the blob id
    # clean.max_length counts with tokenizer@llama3's copy of the llama repository, pinned
    # at the model's own commit; the folder is an output, not a hub id to pin
    assert params["clean"]["max_length"]["tokenizer"] == "data/tokenizers/llama3"
    assert "revision" not in params["clean"]["max_length"]
    assert (
        params["tokenizers"]["llama3"]["revision"]
        == params["models"]["llamar-8b"]["base"]["revision"]
    )
    # round trip: every line but the pinned revisions is as it was (comments included), and
    # what was added is the file lists under the revisions
    after = path.read_text().splitlines()
    kept = [line for line in before if "revision: null" not in line]
    assert [line for line in after if line in set(kept)] == kept
    added = [line for line in after if line not in set(before)]
    assert all("revision: " in line or "files:" in line or "{name: " in line for line in added)
    assert sum("# pinned by" in line for line in after) == sum("# pinned by" in b for b in before)
    assert check_all(params) == []
    problems = profile.missing(params)
    assert not [p for p in problems if "pinned" in p], problems


def test_pinning_twice_rewrites_the_file_list_in_place(workspace, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    profile.pin("paper")
    once = (workspace / "profiles/paper.yaml").read_text()
    profile.pin("paper")
    assert (workspace / "profiles/paper.yaml").read_text() == once


def test_pin_offline_reads_refs_main_and_hashes_the_cached_files(workspace, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commits = fill(hub, profile.load_profile("paper"))
    # a newer commit on main is what gets pinned, not the first one
    newer = {**MODEL_FILES, "config.json": b'{"model_type": "llama", "v": 2}'}
    commits["google/gemma-7b-it"] = add_repo(hub, "google/gemma-7b-it", newer)
    paper_before = (workspace / "profiles/paper.yaml").read_bytes()
    profile.pin("rehearsal")
    # an overlay's pins go into the overlay; the paper profile keeps the real hub's
    assert (workspace / "profiles/paper.yaml").read_bytes() == paper_before
    params = profile.load_profile("rehearsal")
    for p in profile.pins(params):
        assert profile._at(params, p.where)["revision"] == commits[p.repo_id]
    gemma = {f["name"]: f["sha256"] for f in params["models"]["gemmar-7b"]["base"]["files"]}
    assert sorted(gemma) == LOADED
    assert gemma["config.json"] == hashlib.sha256(newer["config.json"]).hexdigest()
    problems = profile.missing(params)
    assert not [p for p in problems if "pinned" in p or "HF cache" in p], problems


def test_pin_offline_names_the_repositories_the_cache_lacks(workspace, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill(hub, profile.load_profile("paper"))
    shutil.rmtree(hub / "models--google--gemma-7b-it")
    before = (workspace / "profiles/paper.yaml").read_text()
    with pytest.raises(profile.StageError) as e:
        profile.pin("paper")
    assert "model google/gemma-7b-it" in str(e.value) and "Meta-Llama" not in str(e.value)
    assert (workspace / "profiles/paper.yaml").read_text() == before  # nothing half-written


# Hub models on the CPU: only train.device decides (instar.modeling.loading.needs_cuda).
def test_check_passes_on_cpu_for_the_pinned_rehearsal(workspace, hub, monkeypatch):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill(hub, profile.load_profile("paper"))
    profile.pin("rehearsal")
    assert profile.missing(profile.load_profile("rehearsal")) == []
    # The same pins with the paper's device still need a GPU, wherever the check runs.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    paper = profile.load_profile("rehearsal")
    paper["models"]["llamar-8b"]["train"]["device"] = "cuda"
    assert any("llamar-8b need a CUDA GPU" in p for p in profile.missing(paper))


# ------------------------------------------------------------------------- base@ (hub)


def hub_workspace(workspace: Path, hub: Path) -> dict:
    """params.yaml is the rehearsal, pinned from the stand-in cache."""
    fill(hub, profile.load_profile("paper"))
    profile.pin("rehearsal")
    params = profile.load_profile("rehearsal")
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return params


def base_stage(work: Path, hub: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.base", "llamar-8b"],
        cwd=work,
        env={**env(), "HF_HUB_CACHE": str(hub), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_hub_base_checks_the_cached_files_against_the_pins(workspace, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work, params = workspace, hub_workspace(workspace, hub)
    proc = base_stage(work, hub)
    assert proc.returncode == 0, proc.stderr
    info = yaml.safe_load((work / "models/llamar-8b/base/base.json").read_text())
    assert info["revision"] == params["models"]["llamar-8b"]["base"]["revision"]
    assert [f["name"] for f in info["files"]] == LOADED
    assert all(f["sha256"] and f["size"] > 0 for f in info["files"])
    # one cached weight file changed under the same commit: refused, naming both hashes
    commit = info["revision"]
    link = hub / "models--meta-llama--Meta-Llama-3-8B-Instruct/snapshots" / commit
    blob = (link / "model-00002-of-00002.safetensors").resolve()
    blob.write_bytes(b"tampered")
    proc = base_stage(work, hub)
    err = one_line(proc.stderr)
    assert proc.returncode == 1 and "model-00002-of-00002.safetensors" in err
    assert hashlib.sha256(b"tampered").hexdigest() in err
    assert hashlib.sha256(MODEL_FILES["model-00002-of-00002.safetensors"]).hexdigest() in err
    # a pinned file missing from the cache is named too
    blob.unlink()
    (link / "model-00002-of-00002.safetensors").unlink()
    proc = base_stage(work, hub)
    assert proc.returncode == 1 and "model-00002-of-00002.safetensors" in one_line(proc.stderr)


# ------------------------------------------------------------------------- hub mode


def test_make_paper_stays_offline_when_every_pin_is_cached(workspace, hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    fill(hub, profile.load_profile("paper"))
    profile.pin("rehearsal")
    params = profile.load_profile("rehearsal")
    profile._hub_mode(params)
    assert profile.is_offline() and "stays offline" in one_line(capsys.readouterr().err)
    shutil.rmtree(hub / "models--google--gemma-7b-it")
    gaps = [p for p in profile.missing(params) if "HF cache" in p]
    assert len(gaps) == 1 and "google/gemma-7b-it@" in gaps[0] and "Meta-Llama" not in gaps[0]
    profile._hub_mode(params)
    err = one_line(capsys.readouterr().err)
    assert not profile.is_offline() and "HF_DATASETS_OFFLINE" not in os.environ
    assert "google/gemma-7b-it@" in err and "unset" in err and "Meta-Llama" not in err


def test_make_paper_runs_the_chosen_profile_without_unsetting_offline_mode():
    proc = subprocess.run(
        ["make", "-n", "paper", "PROFILE=rehearsal"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "scripts.profiles run rehearsal --online-if-needed" in proc.stdout
    assert "-u HF_HUB_OFFLINE" not in proc.stdout
    default = subprocess.run(["make", "-n", "paper"], cwd=ROOT, capture_output=True, text=True)
    assert "scripts.profiles run paper " in default.stdout + " "


# ------------------------------------------------------------------------- run (make paper)

STEP = """import json, pathlib, sys, time, yaml
stage, p = sys.argv[1], yaml.safe_load(open("params.yaml"))
with open("../runs.log", "a") as log:
    log.write(stage + "\\n")
out, ck = pathlib.Path("out"), pathlib.Path("ck")
out.mkdir(exist_ok=True)
if stage == "first":
    (out / "first.txt").write_text(str(p["ingest"]["seed"]))
else:  # a training-like stage: a checkpoint outside DVC (as checkpoints/), a pause to kill
    ck.mkdir(exist_ok=True)
    resumed = (ck / "state").exists()
    (ck / "state").write_text("started")
    pathlib.Path("slow.started").write_text("")
    while pathlib.Path("../hold").exists():
        time.sleep(0.1)
    done = (out / "first.txt").read_text() + f"/{p['clean']['batch_size']}/{resumed}"
    (out / "slow.txt").write_text(done)
    pathlib.Path("metrics").mkdir(exist_ok=True)
    pathlib.Path("metrics/slow.json").write_text(json.dumps({"batch": p["clean"]["batch_size"]}))
"""
PIPELINE = """stages:
  first:
    cmd: python step.py first
    deps: [step.py]
    params: [ingest.seed]
    outs: [out/first.txt]
  slow:
    cmd: python step.py slow
    deps: [step.py, out/first.txt]
    params: [clean.batch_size]
    outs: [out/slow.txt]
    metrics:
      - metrics/slow.json:
          cache: false
"""


@pytest.fixture
def small_repo(tmp_path) -> Path:
    """A DVC repo of two stages (one pauses while ../hold exists) with this project's stages
    package, its default params and a profile `mini` that extends a copy of them."""
    from tests.conftest import dvc, git_commit_all
    from tests.conftest import run as run_cmd

    repo = tmp_path / "repo"
    for package in ("stages", "instar", "scripts"):  # `python -m scripts.profiles` and its imports
        shutil.copytree(
            ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (repo / "profiles").mkdir()
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    shutil.copy(ROOT / "params.yaml", repo / "profiles/base.yaml")
    (repo / "profiles/mini.yaml").write_text(
        "extends: base\ningest:\n  seed: 7\nclean:\n  batch_size: 64\n"
    )
    (repo / "step.py").write_text(STEP)
    (repo / "dvc.yaml").write_text(PIPELINE)
    (repo / ".gitignore").write_text("__pycache__/\nslow.started\nck/\n")
    run_cmd(["git", "init", "-q", "-b", "main"], repo)
    run_cmd(["git", "config", "user.name", "InstAr tests"], repo)
    run_cmd(["git", "config", "user.email", "tests@instar.invalid"], repo)
    dvc(repo, "init", "-q")
    dvc(repo, "repro")
    shutil.rmtree(repo / "ck")  # the default run's: only a killed profile run may leave one
    git_commit_all(repo, "default outputs")
    (tmp_path / "runs.log").write_text("")
    return repo


def profile_cmd(repo: Path, *args: str, **kw):
    return subprocess.run(
        [sys.executable, "-m", "scripts.profiles", *args],
        cwd=repo,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def killed_mid_stage(repo: Path, *args: str) -> None:
    """`profile run ...` SIGKILLed, with dvc and its stage, while the slow stage pauses."""
    import signal
    import time

    hold = repo.parent / "hold"
    hold.write_text("")
    (repo / "slow.started").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "scripts.profiles", "run", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=repo,
        env=env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not (repo / "slow.started").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the slow stage never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_gone(proc.pid)
    hold.unlink()


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_killed_profile_run_resumes_and_a_second_run_says_it_is_current(small_repo):
    repo, log = small_repo, small_repo.parent / "runs.log"
    params_before = (repo / "params.yaml").read_bytes()
    # an uncommitted change to the profile (pins, say) goes into the experiment and stays
    mini = repo / "profiles/mini.yaml"
    mini.write_text(mini.read_text() + "# pinned here\n")
    killed_mid_stage(repo, "mini")
    assert log.read_text().split() == ["first", "slow"]
    assert yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["seed"] == 7

    proc = profile_cmd(repo, "run", "mini")
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split() == ["first", "slow", "slow"]  # `first` was not redone
    assert "resuming" in one_line(proc.stderr) and "dvc exp apply mini" in one_line(proc.stderr)
    # the workspace is back as committed: params, lock, outputs, metrics, .gitignore files
    assert (repo / "params.yaml").read_bytes() == params_before
    assert git_out(repo, "status", "--porcelain", "-uall") == " M profiles/mini.yaml\n"
    assert (repo / "out/first.txt").read_text() == "0"
    assert not (repo / profile.STATE).exists()
    # the experiment holds the profile's results, and its slow stage resumed its checkpoint
    show = subprocess.run(
        ["dvc", "exp", "show", "--csv"], cwd=repo, env=env(), capture_output=True, text=True
    )  # a table off a terminal truncates its columns
    assert "mini" in [line.split(",")[0] for line in show.stdout.splitlines()]
    ref = git_out(repo, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    ref = next(r for r in ref if r.endswith("/mini"))
    assert git_out(repo, "show", f"{ref}:profiles/mini.yaml") == mini.read_text()
    assert yaml.safe_load(git_out(repo, "show", f"{ref}:metrics/slow.json")) == {"batch": 64}
    lock = yaml.safe_load(git_out(repo, "show", f"{ref}:dvc.lock"))
    slow = next(o for o in lock["stages"]["slow"]["outs"] if o["path"] == "out/slow.txt")
    assert slow["md5"] == hashlib.md5(b"7/64/True").hexdigest()

    proc = profile_cmd(repo, "run", "mini")
    assert proc.returncode == 0, proc.stderr
    assert "exists" in proc.stderr and "is current" in one_line(proc.stderr)
    assert log.read_text().split() == ["first", "slow", "slow"]

    mini.write_text(mini.read_text() + "# a comment only: same params, other file\n")
    proc = profile_cmd(repo, "run", "mini")
    assert proc.returncode == 1 and "profiles/mini.yaml" in one_line(proc.stderr)
    mini.write_text("extends: base\ningest:\n  seed: 8\n")
    proc = profile_cmd(repo, "run", "mini")
    assert proc.returncode == 1 and "-n mini-2" in one_line(proc.stderr)
    assert (repo / "params.yaml").read_bytes() == params_before
    # what the run puts back must not hold uncommitted changes of the user's
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + "# mine\n")
    proc = profile_cmd(repo, "run", "mini", "-n", "mini-2")
    assert proc.returncode == 1 and "uncommitted changes to params.yaml" in one_line(proc.stderr)


@pytest.mark.slow
def test_a_stopped_run_that_will_not_be_resumed_is_dropped_by_restore(small_repo):
    repo = small_repo
    params_before = (repo / "params.yaml").read_bytes()
    killed_mid_stage(repo, "mini", "-n", "trial")
    proc = profile_cmd(repo, "run", "mini", "-n", "other")
    assert proc.returncode == 1 and "scripts.profiles restore" in one_line(proc.stderr)
    proc = profile_cmd(repo, "restore")
    assert proc.returncode == 0, proc.stderr
    assert (repo / "params.yaml").read_bytes() == params_before
    assert git_out(repo, "status", "--porcelain", "-uall") == ""
    assert (repo / "out/first.txt").read_text() == "0"
