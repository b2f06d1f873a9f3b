"""The CPU pins hold where they matter: in a stage's own process, as MKL itself reports."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, env

# What a stage's process does before its first matmul: `stages` pins, then torch loads.
MATMUL = """
import stages
from instar.reproducible import pin_torch_threads
import torch
pin_torch_threads()
a = torch.ones(64, 64)
(a @ a).sum()
"""


def test_a_stages_matmuls_take_mkls_fixed_branch_on_its_pinned_threads():
    """MKL ignores a named ISA branch on a CPU that is not Intel's and falls back to its
    AUTO dispatch without a word; MKL_VERBOSE shows the branch each call really took."""
    pins = ("MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    environ = {k: v for k, v in env().items() if k not in pins}
    out = subprocess.run(
        [sys.executable, "-c", MATMUL],
        cwd=ROOT, env={**environ, "MKL_VERBOSE": "1"}, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    calls = [line for line in out.splitlines() if "SGEMM(" in line]
    assert calls, out
    for line in calls:
        assert re.search(r"\bCNR:COMPATIBLE\b", line), line
        assert re.search(r"\bNThr:2\b", line), line
