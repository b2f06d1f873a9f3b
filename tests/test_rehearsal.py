"""The paper profile rehearsed offline: the README's commands, in a copy of the session's
pipeline, against a stand-in hub (tiny models under the paper's ids, InstAr-500k- and
OALL-shaped data sets) with HF_HUB_OFFLINE=1. Only the device, sizes and steps differ
from `make paper` on a GPU (profiles/rehearsal.yaml)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.conftest import env, stages_run, wait_gone
from tests.standin_data import ENGLISH_ANSWER, ENGLISH_SYSTEM, instar_rows
from tests.standin_hub import fill

pytestmark = [pytest.mark.slow, pytest.mark.rehearsal, pytest.mark.long]
VENV = Path(sys.executable).parent.parent
PAUSE = Path(__file__).parent / "pause"  # sitecustomize: pause training after a checkpoint


def one_line(text: str) -> str:
    return " ".join(text.split())


def make_paper(repo: Path, environ: dict, **kw) -> subprocess.Popen:
    # -o: the venv is this one, already installed
    cmd = ["make", "-o", f"{VENV}/.installed", "paper", "PROFILE=rehearsal", f"VENV={VENV}"]
    return subprocess.Popen(
        cmd, cwd=repo, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, **kw,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: int = 900) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("standin") / "hub"
    fill(cache)
    return cache


def test_the_readme_commands_rehearse_the_paper_profile(pipeline, stand_in, tmp_path):

    repo = tmp_path / "repo"
    shutil.copytree(pipeline, repo, symlinks=True)
    environ = {**env(), "HF_HUB_CACHE": str(stand_in), "HF_HUB_OFFLINE": "1"}
    environ.pop("HF_HOME", None)

    def profile(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scripts.profiles", *args],
            cwd=repo, env=environ, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    pin = profile("pin", "rehearsal")
    assert pin.returncode == 0, pin.stderr
    assert "pinning from the local HF cache" in one_line(pin.stderr)
    check = profile("check", "rehearsal")
    assert check.returncode == 0, check.stdout + check.stderr

    # make paper, killed once the first model has written a checkpoint mid-run
    hold = tmp_path / "hold"
    hold.write_text("")
    paused = {**environ, "INSTAR_PAUSE": str(hold), "PYTHONPATH": str(PAUSE)}
    proc = make_paper(repo, paused)
    reached = Path(f"{hold}.reached")
    deadline = time.monotonic() + 600
    while not reached.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read()[-6000:])
        assert time.monotonic() < deadline, "train@ never wrote a checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    wait_gone(proc.pid)
    step = int(reached.read_text())
    assert 0 < step < 6  # the rehearsal trains 6 steps, saving every 2
    hold.unlink()

    out = one_line(finish(make_paper(repo, environ)))
    assert "resuming" in out and f"resuming from checkpoint-{step}" in out, out[-3000:]
    ran = stages_run(out)
    assert not {"ingest@instar500k", "shard"} & ran  # done before the kill: not redone
    assert {"train@llamar-8b", "train@gemmar-7b", "evaluate@llamar-8b", "report"} <= ran
    assert "report: 2 models" in out  # the profile's models, not the default ones beside them

    show = subprocess.run(
        ["dvc", "exp", "show", "--csv"], cwd=repo, env=environ, capture_output=True, text=True
    )
    assert "rehearsal" in [line.split(",")[0] for line in show.stdout.splitlines()]
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=repo, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    (ref,) = [r for r in refs if r.endswith("/rehearsal")]
    resumed = []
    for m in ("llamar-8b", "gemmar-7b"):

        def shown(path):
            out = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True)
            return json.loads(out.stdout)

        assert shown(f"metrics/train/{m}.json")["steps"] == 6
        resumed.append(shown(f"metrics/perf/train/{m}.json")["resumed_from_step"])
    assert sorted(resumed, key=str) == sorted([step, None], key=str)  # one model was killed

    # the published set's quirks, counted: its English system prompt, and its English answers
    # by the row's own published source
    rows = instar_rows()
    counts = shown("metrics/clean/instar500k.json")
    assert counts["system_prompts_by_language"]["english"] == sum(
        r["system"] == ENGLISH_SYSTEM for r in rows
    )
    by_source = counts["dropped_language_by_published_source"]
    english = Counter(r["source"] for r in rows if r["output"] == ENGLISH_ANSWER)
    assert english and all(by_source.get(s, 0) >= n for s, n in english.items()), by_source
    # and the experiment's dataset card shows both (read from the DVC cache by its lock hash)
    lock = yaml.safe_load(subprocess.run(["git", "show", f"{ref}:dvc.lock"], cwd=repo,
                                         capture_output=True, text=True).stdout)  # fmt: skip
    (md5,) = [o["md5"] for o in lock["stages"]["shard"]["outs"] if o["path"].endswith("README.md")]
    card = (repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_text(encoding="utf-8")
    systems = counts["system_prompts_by_language"]
    assert f"| english | {systems['english']} |" in card
    assert all(f"| {s} | {n} |" in card for s, n in by_source.items()), card

    again = make_paper(repo, environ)
    out = one_line(finish(again))
    assert "is current" in out and "Running stage" not in out
