"""The session's two expensive builds, run in one background process so that the workers run
the tests that need neither while it works (`python -m tests.builds SHARED [--matrix]`).

- `pipeline`: a fresh clone after one full `dvc repro` of the default profile, committed.
- `matrix`: a copy of it with the change matrix's fast training, rebuilt (tests/matrix.py).

Each build ends in `SHARED/<name>.built` (the repo's path) or `SHARED/<name>.failed` (why),
and the fixtures wait for one of the two. Nothing else writes under SHARED/<name>/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

NAMES = ("pipeline", "matrix")


def build(shared: Path, name: str, make) -> Path | None:
    repo = shared / name / "repo"
    try:
        make(repo)
    except BaseException:
        (shared / f"{name}.failed").write_text(traceback.format_exc())
        return None
    (shared / f"{name}.built").write_text(str(repo))
    return repo


def main(argv: list[str] | None = None) -> None:
    from tests.conftest import build_pipeline
    from tests.matrix import build_matrix

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path)
    parser.add_argument("--matrix", action="store_true", help="also build the matrix's repo")
    args = parser.parse_args(argv)
    pipeline = build(args.shared, "pipeline", build_pipeline)
    if args.matrix:
        if pipeline is None:
            (args.shared / "matrix.failed").write_text("the pipeline build failed")
        else:
            build(args.shared, "matrix", lambda repo: build_matrix(pipeline, repo))


def start(shared: Path, matrix: bool) -> subprocess.Popen | None:
    """Start the builds once a run (the first worker to get here); None if already started."""
    from filelock import FileLock

    with FileLock(str(shared / "builds.lock")):
        if (shared / "builds.started").exists():
            return None
        (shared / "builds.started").write_text(str(os.getpid()))
        root = Path(__file__).resolve().parents[1]
        cmd = [sys.executable, "-m", "tests.builds", str(shared)] + (["--matrix"] if matrix else [])
        log = (shared / "builds.log").open("w")
        # Its own process group, so that an interrupted run can stop it and its stages.
        return subprocess.Popen(
            cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait(shared: Path, name: str, timeout: float = 3600) -> Path:
    """The built repo, once its build is done; an error with the build's reason if it failed."""
    if not (shared / "builds.started").exists():
        raise RuntimeError(f"the {name} build was never started (tests/conftest.py starts it)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (shared / f"{name}.built").exists():
            return Path((shared / f"{name}.built").read_text())
        failed = shared / f"{name}.failed"
        if failed.exists():
            raise RuntimeError(f"the {name} build failed:\n{failed.read_text()}")
        time.sleep(1)
    raise TimeoutError(f"the {name} build did not finish in {timeout:.0f} s")


def stop(proc: subprocess.Popen, interrupted: bool) -> None:
    """At the end of the worker that started the builds: another worker may still need them,
    so wait for them, unless the run was interrupted."""
    if proc.poll() is not None:
        return
    if not interrupted:
        try:
            proc.wait()
            return
        except KeyboardInterrupt:
            pass
    os.killpg(proc.pid, 15)
    proc.wait()


if __name__ == "__main__":
    main()
