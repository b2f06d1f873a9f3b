"""Evaluation in the built pipeline (the session's `pipeline` fixture): lm-eval's per-item
logs agree with the metrics files, and a LoRA change re-evaluates the adapter only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow


def models(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "params.yaml").read_text())["models"])


def benchmark_tasks(repo: Path) -> dict[str, str]:
    return yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]["benchmarks"]["tasks"]


def recompute(path: Path) -> tuple[float, float, int]:
    """acc and acc_norm from lm-eval's logged log-likelihoods, as lm-eval 0.4.13 scores a
    multiple-choice item: argmax of the log-likelihoods, and argmax of log-likelihood divided
    by the choice's length in characters (api/task.py, `completion_len`)."""
    acc = norm = 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        lls = np.array(r["loglikelihoods"])
        lengths = np.array([len(c) for c in r["choices"]], dtype=float)
        acc += int(np.argmax(lls) == r["target"])
        norm += int(np.argmax(lls / lengths) == r["target"])
    return acc / len(rows), norm / len(rows), len(rows)


def test_accuracy_recomputed_from_logged_loglikelihoods_matches_the_metrics(pipeline):
    for m in models(pipeline):
        for variant, file in (("base", "metrics/eval_base"), ("adapter", "metrics/eval_adapter")):
            metrics = json.loads((pipeline / file / f"{m}.json").read_text())
            per_task = []
            for name, task in benchmark_tasks(pipeline).items():
                acc, norm, n = recompute(
                    pipeline / "reports/lm_eval" / m / variant / f"{task}.jsonl"
                )
                assert metrics[f"oall.{name}.acc"] == pytest.approx(acc, abs=1e-6)
                assert metrics[f"oall.{name}.acc_norm"] == pytest.approx(norm, abs=1e-6)
                assert metrics[f"oall.{name}.items"] == n >= 60
                per_task.append((norm, n))
            mean = sum(s for s, _ in per_task) / len(per_task)
            weighted = sum(s * n for s, n in per_task) / sum(n for _, n in per_task)
            assert metrics["oall.mean_unweighted.acc_norm"] == pytest.approx(mean, abs=1e-6)
            assert metrics["oall.mean_size_weighted.acc_norm"] == pytest.approx(weighted, abs=1e-6)


def test_eval_metrics_are_flat_scores_with_deltas_and_the_samples_are_there(pipeline):
    contamination = json.loads((pipeline / "metrics/contamination.json").read_text())
    assert contamination["contamination.items_checked"] >= 180
    for m in models(pipeline):
        base = json.loads((pipeline / f"metrics/eval_base/{m}.json").read_text())
        full = json.loads((pipeline / f"metrics/eval_adapter/{m}.json").read_text())
        tuned = json.loads((pipeline / f"metrics/eval/{m}.json").read_text())
        # flat scores, and beside them the fingerprint's strings (what the scores were
        # measured under), the adapter's as in its full file
        assert tuned.pop("fingerprint") == full.pop("fingerprint")
        assert all(not isinstance(v, dict) for v in tuned.values())
        for key in ("instar_test.perplexity", "instar_test.chrf", "oall.acva.acc_norm"):
            assert tuned[key] == full[key]
            assert tuned[f"delta.{key}"] == pytest.approx(tuned[key] - base[key], abs=1e-5)
        assert tuned["instar_test.perplexity"] < base["instar_test.perplexity"]
        # the metric holds scores: counts, plain acc and contamination are in other files
        assert not any(k.endswith((".items", ".tokens", ".acc")) for k in tuned)
        assert not any(k.startswith("contamination.") for k in tuned)
        samples = [
            json.loads(x)
            for x in (pipeline / f"reports/samples/{m}.jsonl").read_text().splitlines()
        ]
        assert len(samples) == full["instar_test.generated"] > 0
        assert all(s["reference"] and s["base"] is not None for s in samples)


# The LoRA-rank experiment and its `dvc metrics diff` are in tests/test_experiments.py.


def test_gpu_eval_script_runs_a_config_built_llama_with_a_random_adapter_on_cpu(pipeline, tmp_path):
    """The GPU script's CPU-side path: the Llama-3-8B architecture scaled down, our sets."""
    from scripts.gpu_eval import main

    small = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 4096,
    }
    out = tmp_path / "gpu.json"
    main(["run", "--from-config", "llama3-8b", "--config-overrides", json.dumps(small),
          "--tokenizer", str(pipeline / "models/tiny/base"), "--device", "cpu", "--limit", "8",
          "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    for name in ("alghafa", "acva", "mmlu"):
        assert result[f"base.oall.{name}.items"] == result[f"oall.{name}.items"] == 8
        assert f"delta.oall.{name}.acc_norm" in result
    assert result["throughput.items_per_second"] > 0
    assert (tmp_path / "gpu" / "adapter" / "instar_acva.jsonl").is_file()


def test_report_has_a_paper_style_table_and_the_card_shows_its_charts(pipeline):
    summary = (pipeline / "reports/summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| model |"))
    for name in benchmark_tasks(pipeline):
        assert f"| {name} (acc_norm) |" in header or f" {name} (acc_norm) " in header
    assert "average" in header and "test ppl" in header
    contamination = json.loads((pipeline / "metrics/contamination.json").read_text())
    assert f"Contamination: {contamination['contamination.items_in_train']} of" in summary
    card = (pipeline / "data/instar/README.md").read_text()
    for png in ("task_mix", "source_mix", "lengths"):
        assert f"(card/{png}.png)" in card


def test_a_tiny_4bit_model_trains_and_evaluates_through_dvc_repro(pipeline_copy):
    """QLoRA end to end on CPU (bitsandbytes): the base is loaded for evaluation as training
    loaded it, NF4 with double quantisation, and the adapter goes on top of it."""
    from tests.conftest import dvc, stages_run

    params_file = pipeline_copy / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["models"]["tiny"]["train"]["quantization"] = "4bit"
    # 4-bit matmuls are slow on a CPU, and a few steps lower the perplexity already. (The
    # evaluate section stays: changing it would rerun the other model's evaluation too.)
    params["models"]["tiny"]["train"]["max_steps"] = 16
    params["models"]["tiny"]["train"]["batch_size"] = 4  # perplexity 4110 -> 3250 (16 rows: 3193)
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    proc = dvc(pipeline_copy, "repro", "report", timeout=1200)
    ran = stages_run(proc.stdout)
    assert {"train@tiny", "evaluate_base@tiny", "evaluate@tiny", "report"} <= ran, ran
    assert not any(s.endswith("@tiny-gemma") for s in ran), ran  # its params did not change
    base = json.loads((pipeline_copy / "metrics/eval_base/tiny.json").read_text())
    tuned = json.loads((pipeline_copy / "metrics/eval_adapter/tiny.json").read_text())
    for metrics in (base, tuned):
        assert metrics["oall.acva.items"] >= 60 and metrics["instar_test.tokens"] > 0
        assert math.isfinite(metrics["instar_test.perplexity"])
    assert tuned["instar_test.perplexity"] < base["instar_test.perplexity"]
    assert "tiny" in (pipeline_copy / "reports/summary.md").read_text()
