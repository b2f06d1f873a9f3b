"""Experiments in a copy of the matrix's repo, compared through `dvc exp show`,
`dvc metrics diff` and `dvc plots diff`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import dvc
from tests.matrix import matrix_fixture

pytestmark = pytest.mark.slow


matrix_repo = matrix_fixture()


@pytest.fixture(scope="module")
def two_ranks(matrix_repo) -> Path:
    """Two experiments in the matrix's copy: short training."""
    repo = matrix_repo
    for r in (4, 8):
        dvc(
            repo,
            "exp",
            "run",
            "--name",
            f"rank{r}",
            "--set-param",
            f"models.tiny.lora.r={r}",
            "--set-param",
            "models.tiny.train.max_steps=4",
            timeout=1200,
        )
    return repo


def test_exp_show_lists_both_ranks_with_their_metrics(two_ranks):
    rows = json.loads(dvc(two_ranks, "exp", "show", "--json").stdout)
    exps = {
        e["name"]: e["data"]
        for row in rows
        for e in (row.get("experiments") or [])
        for e in (e.get("revs") or [])
        if e.get("name", "").startswith("rank")
    }
    assert set(exps) == {"rank4", "rank8"}, exps
    for name, data in exps.items():
        params = data["params"]["params.yaml"]["data"]
        assert params["models"]["tiny"]["lora"]["r"] == int(name[4:])
        metrics = data["metrics"]
        assert "train_loss" in metrics["metrics/train/tiny.json"]["data"]
        assert metrics["metrics/eval/tiny.json"]["data"]


def test_metrics_diff_between_the_two_ranks_lists_the_eval_keys(two_ranks):
    # --all: on 4 benchmark items a score may not move between two 4-step runs.
    cmd = ("metrics", "diff", "rank4", "rank8", "--all", "--json")
    out = json.loads(dvc(two_ranks, *cmd).stdout)
    evals = out["metrics/eval/tiny.json"]
    assert {"oall.acva.acc_norm", "instar_test.perplexity", "delta.oall.mmlu.acc_norm"} <= set(
        evals
    ), evals
    assert all({"old", "new"} <= set(v) for v in evals.values())
    assert evals["instar_test.perplexity"]["diff"] != 0  # the adapters differ
    # Only the adapter changed: the base's figures and the other model's did not move.
    for unchanged in ("metrics/eval_base/tiny.json", "metrics/eval/tiny-gemma.json"):
        assert all(not v.get("diff") for v in out.get(unchanged, {}).values()), unchanged


def test_plots_diff_renders_the_loss_curves_of_both(two_ranks, tmp_path):
    out = json.loads(dvc(two_ranks, "plots", "diff", "rank4", "rank8", "--json").stdout)
    [loss] = out["data"]["dvclive/tiny/plots/metrics/train/loss.tsv"]
    assert set(loss["revisions"]) == {"rank4", "rank8"}
    points = loss["content"]["data"]["values"]
    for rev in ("rank4", "rank8"):
        steps = [int(p["step"]) for p in points if p["rev"] == rev]
        assert len(steps) >= 2 and steps == sorted(steps), (rev, steps)
    dvc(two_ranks, "plots", "diff", "rank4", "rank8", "--out", str(tmp_path / "plots"))
    html = (tmp_path / "plots/index.html").read_text(encoding="utf-8")
    assert "rank4" in html and "rank8" in html
