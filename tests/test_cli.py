"""What a user sees from the command line: --help that helps, and clear refusals."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, env

STAGES = [
    "stages.generate",
    "stages.ingest",
    "stages.clean",
    "stages.dedup",
    "stages.validate",
    "stages.shard",
    "stages.base",
    "stages.train",
    "stages.contamination",
    "stages.evaluate",
    "stages.report",
    "stages.hub_data",
    "scripts.check_params",
    "scripts.profiles",
    "scripts.code_deps",
    "scripts.oall_tasks",
    "scripts.preflight",
]


def cli(*args, cwd=ROOT, no_gpu=False):
    # no_gpu: the refusals a CPU machine gives, on a CUDA machine too (no device visible)
    extra = {"CUDA_VISIBLE_DEVICES": ""} if no_gpu else {}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env={**env(), **extra},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("module", STAGES)
def test_every_stage_and_tool_has_a_help_that_says_what_it_does(module):
    proc = cli(module, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m {module}")
    module = __import__(module, fromlist=["__doc__"])
    first_line = module.__doc__.strip().splitlines()[0]
    assert first_line in proc.stdout


def test_paper_profile_refuses_at_once_saying_what_is_missing():
    start = time.perf_counter()
    proc = cli("scripts.profiles", "check", "paper", no_gpu=True)
    assert proc.returncode == 1
    assert "need a CUDA GPU" in proc.stderr and "llamar-8b" in proc.stderr
    assert "revision is not pinned" in proc.stderr
    assert time.perf_counter() - start < 60


def paper_workspace(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "profiles/paper.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_training_a_hub_model_without_cuda_stops_before_loading_anything(tmp_path):
    proc = cli("stages.train", "llamar-8b", cwd=paper_workspace(tmp_path), no_gpu=True)
    assert proc.returncode == 1
    assert (
        "needs a CUDA GPU" in proc.stderr and "meta-llama/Meta-Llama-3-8B-Instruct" in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_unpinned_hub_base_is_refused(tmp_path):
    proc = cli("stages.base", "gemmar-7b", cwd=paper_workspace(tmp_path))
    assert proc.returncode == 1 and "revision is not pinned" in proc.stderr
    assert not (tmp_path / "models").exists()


def test_hub_data_refuses_an_unpinned_revision(tmp_path):
    proc = cli("stages.hub_data", "instar500k", cwd=paper_workspace(tmp_path))
    said = " ".join(proc.stderr.split())  # rich wraps at 80 columns
    assert proc.returncode == 1 and "hub_data.instar500k.revision is not pinned" in said


def test_a_params_typo_is_one_clear_line_not_a_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("clean:\n  min_output_word: 3\n")
    proc = cli("stages.clean", "x", cwd=tmp_path)
    assert proc.returncode == 2
    assert "params error" in proc.stderr and "Traceback" not in proc.stderr
