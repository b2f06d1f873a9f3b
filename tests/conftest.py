"""Shared fixtures. The end-to-end `dvc repro` runs once per session in a copy of the repo
(what a fresh clone holds) and every test that needs its outputs reuses it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
# MKL on this CPU's own branch, still deterministic (CNR: fixed threads, fixed reductions),
# instead of the stages' default COMPATIBLE branch (instar/reproducible.py), which takes
# about twice as long a matmul. The bits then hold from run to run on one machine, which is
# what every test but one compares; the pipeline build, compared with the committed lock
# made under the default, drops it (build_pipeline).
SPEED = {"MKL_CBWR": "AUTO"}
os.environ.update(OFFLINE)
for name, value in SPEED.items():  # before torch loads in this process
    os.environ.setdefault(name, value)


def env(stage_pins: bool = False) -> dict[str, str]:
    """The environment for subprocesses: offline, with this venv's tools first on PATH;
    `stage_pins`: without SPEED, so that the stages pin the CPU as a user's run does."""
    bindir = str(Path(sys.executable).parent)
    environ = {**os.environ, **OFFLINE, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    return {k: v for k, v in environ.items() if not (stage_pins and k in SPEED)}


def run(
    cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900, stage_pins: bool = False
):
    proc = subprocess.run(
        cmd, cwd=cwd, env=env(stage_pins), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def dvc(cwd: Path, *args: str, check: bool = True, timeout: int = 900, stage_pins: bool = False):
    return run(["dvc", *args], cwd, check, timeout, stage_pins)


def wait_gone(pgid: int, timeout: float = 30) -> None:
    """Until a SIGKILLed process group is gone: DVC's rwlock takes a PID not yet reaped for a
    live holder, so a rerun straight after a kill may find its outputs busy."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def stages_run(output: str) -> set[str]:
    """The stages DVC says it ran (not what --dry predicts)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def repo_files(root: Path = ROOT) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [p for p in out.split("\0") if p and (root / p).is_file()]


def git_commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(
        [
            "git",
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@invalid",
            "commit",
            "-qm",
            message,
            "--allow-empty",
        ],
        repo,
    )


def fresh_clone(dest: Path) -> Path:
    """What a clone of the current work tree holds: tracked and unignored files, a git repo."""
    for rel in repo_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    run(["git", "init", "-q", "-b", "main"], dest)
    # DVC experiments commit: give the copy an identity whatever the machine's git config.
    run(["git", "config", "user.name", "InstAr tests"], dest)
    run(["git", "config", "user.email", "tests@instar.invalid"], dest)
    git_commit_all(dest, "fresh clone")
    return dest


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty stand-in HF cache that the code under test reads."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    return cache


def build_pipeline(dest: Path) -> Path:
    """A fresh clone's `dvc repro` under the stages' own CPU pins, as a user's would run."""
    repo = fresh_clone(dest)
    proc = dvc(repo, "repro", timeout=1200, stage_pins=True)
    (repo / "repro.log").write_text(proc.stdout + proc.stderr)
    git_commit_all(repo, "after dvc repro")
    return repo


BUILDS = pytest.StashKey()  # the background build's process, in the worker that started it


def shared_dir(config) -> Path:
    """The folder every worker of this run sees: the run's base temp (xdist: its parent)."""
    base = config._tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def needs(item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items) -> None:
    """Files in the order that keeps both workers busy while the builds run (`make test`
    keeps it with --no-loadscope-reorder; xdist gives a worker a whole file):
    0. those whose tests need no built pipeline;
    1. those with some tests that do (those last within the file), but not the matrix;
    2. the `long` ones that need the pipeline only: they run while the matrix builds;
    3. the `long` ones of the change matrix, then 4. its others;
    5. the rest.
    Tests that need the pipeline keep their order."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def rank(group: list) -> int:
        uses = [needs(i, "pipeline") for i in group]
        long = any(i.get_closest_marker("long") for i in group)
        if not any(uses):
            return 0
        if any(needs(i, "matrix_repo") for i in group):
            return 3 if long else 4
        if not all(uses):
            return 1
        return 2 if long else 5

    ordered = sorted(files.values(), key=rank)  # stable: collection order within a rank
    items[:] = [i for g in ordered for i in sorted(g, key=lambda i: needs(i, "pipeline"))]


def pytest_collection_finish(session) -> None:
    """Start the pipeline build (and the matrix's, if a test needs it) in the background as
    soon as the tests are known, once a run: tests/builds.py."""
    from tests import builds

    items = session.items
    if session.config.option.collectonly or not any(needs(i, "pipeline") for i in items):
        return
    matrix = any(needs(i, "matrix_repo") for i in items)
    session.config.stash[BUILDS] = builds.start(shared_dir(session.config), matrix)


def pytest_sessionfinish(session) -> None:
    from tests import builds

    proc = session.config.stash.get(BUILDS, None)
    if proc is not None:
        builds.stop(proc, interrupted=bool(session.shouldstop or session.shouldfail))


@pytest.fixture(scope="session")
def pipeline(request) -> Path:
    """A fresh clone after one full `dvc repro` of the default profile, committed: built once
    a run, in the background (tests/builds.py) into the run's shared temp folder; every worker
    waits for it here and never writes to it (tests that change it take `pipeline_copy`)."""
    from tests import builds

    return builds.wait(shared_dir(request.config), "pipeline")


@pytest.fixture
def pipeline_copy(pipeline: Path, tmp_path: Path) -> Path:
    """A private copy of the built pipeline (cache included) for tests that change it."""
    dest = tmp_path / "repo"
    shutil.copytree(pipeline, dest, symlinks=True)
    return dest
