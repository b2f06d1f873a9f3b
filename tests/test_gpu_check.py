"""scripts/gpu_check.sh and .py on CPU: what `run` would install (the lock, with dependencies,
around the machine's torch), the dry plan of the GPU-only checks, and the checks themselves on
a tiny model. The GPU run itself needs a GPU (README, "GPU check")."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import pytest

from scripts import gpu_check, gpu_pins
from tests.conftest import ROOT, env


def _sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/gpu_check.sh", *args], cwd=ROOT, env={**env(), "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _sections(out: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("--- "):
            current = sections.setdefault(line[4:], [])
        elif line.strip():
            current.append(line.strip())
    return sections


def test_pins_install_the_lock_with_dependencies_and_hold_the_machines_torch():
    proc = _sh("pins", "no-such-wheels")
    assert proc.returncode == 0, proc.stderr
    plan = _sections(proc.stdout)
    lock = gpu_pins.lock_pins((ROOT / "requirements.lock").read_text())
    reqs = plan["requirements (with their dependencies)"]
    # The lock's versions, not whatever this machine has (the old script kept its transformers).
    assert "transformers" in {gpu_pins.canonical(r.split("==")[0]) for r in reqs}
    assert all(lock[gpu_pins.canonical(r.split("==")[0])] == r for r in reqs)
    cons = plan["constraints"]
    assert [c for c in cons if c.startswith("torch==")] == [f"torch=={version('torch')}"]
    assert set(cons) - {f"torch=={version('torch')}"} == set(lock.values()) - {lock["torch"]}
    (cmd,) = plan["install command"]
    words = cmd.split()
    assert "--no-deps" not in words  # dependencies come too, resolved within the lock
    assert words[words.index("-c") + 1].endswith("constraints.txt")
    assert "--no-index" not in words  # no wheel folder: the index
    in_venv = sys.prefix != sys.base_prefix
    assert ("--user" in words) == (not in_venv)


def test_pins_refuse_a_lock_without_a_needed_package_and_never_pin_the_locks_torch():
    with pytest.raises(SystemExit, match="peft"):
        gpu_pins.requirements("transformers==5.24.0\n", ("transformers", "peft"))
    cons = gpu_pins.constraints("torch==2.13.0\nPyYAML==6.0.4  # yaml\n", "2.9.1+cu128")
    assert cons == ["PyYAML==6.0.4", "torch==2.9.1+cu128"]


def test_dry_run_plans_the_gpu_only_checks():
    proc = _sh("dry", "no-such-wheels", "--arch", "tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    checks = json.loads(proc.stdout[proc.stdout.index("{") :])["checks"]
    # No CUDA here: SDPA for both paths, and the FSDP save needs 2 GPUs.
    assert checks == {
        "attention": {"lora": "sdpa", "qlora": "sdpa"},
        "fsdp_save": "skipped: needs 2 GPUs, 0 visible",
    }


def test_attention_calls_are_counted_and_the_registry_restored():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                      num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    net = LlamaForCausalLM(cfg).eval()
    assert net.config._attn_implementation == "sdpa"
    with gpu_check.counted_attention("sdpa") as calls, torch.no_grad():
        net(torch.tensor([[1, 2, 3, 4]]))
    assert calls == {"calls": 3, "varlen_calls": 0}  # one per layer, no packed boundaries
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is original


def test_attention_problems_name_a_wrong_idle_or_non_varlen_kernel():
    m = gpu_check.model_params("tiny", "lora", 1, 1, 64)  # packing on
    ok = {"chosen": "flash_attention_2", "used": "flash_attention_2", "calls": 8,
          "varlen_calls": 8}  # fmt: skip
    assert gpu_check.attention_problems(m, ok) == []
    assert gpu_check.attention_problems(m, {**ok, "used": "sdpa", "varlen_calls": 0}) == [
        "attention: chose flash_attention_2, the model runs sdpa"
    ]
    idle = gpu_check.attention_problems(m, {**ok, "calls": 0, "varlen_calls": 0})
    assert any("flash_attention_2 was never called" in p for p in idle)
    (padded,) = gpu_check.attention_problems(m, {**ok, "varlen_calls": 0})
    assert "cu_seq_lens" in padded
