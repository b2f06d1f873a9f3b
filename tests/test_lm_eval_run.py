"""lm-eval end to end without the pipeline: a tiny random Llama, handed to lm-eval's HFLM as a
loaded model, scored on the project's local tasks by instar.evaluation.harness.run_benchmarks. The
pipeline tests check the figures; this one is what `make test-min` runs at the lower bounds."""

from __future__ import annotations

import json
import os

import pytest

from instar.evaluation import harness as benchmarks
from instar.params.base import BaseModelParams
from instar.params.evaluate import BenchmarkParams
from tests.conftest import ROOT


@pytest.mark.min_versions
def test_local_benchmarks_score_a_loaded_model_and_log_every_item(tmp_path):
    import torch
    from lm_eval.models.huggingface import HFLM

    from instar.modeling.build import build_model, build_tokenizer

    files = [ROOT / f"data/benchmarks/{name}.jsonl" for name in ("alghafa", "acva", "mmlu")]
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    texts = [v for row in rows for v in row.values() if isinstance(v, str)]
    base = BaseModelParams.model_validate(
        {"kind": "config", "architecture": "llama", "chat_template": "llama3", "vocab_size": 300,
         "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "num_key_value_heads": 1,
                    "max_position_embeddings": 512, "tie_word_embeddings": False}}
    )  # fmt: skip
    cwd = os.getcwd()
    os.chdir(ROOT)  # templates/chat
    try:
        tok = build_tokenizer(texts, base.vocab_size, base.chat_template)
    finally:
        os.chdir(cwd)
    torch.manual_seed(0)
    net = build_model(base, tok).eval()
    lm = HFLM(pretrained=net, tokenizer=tok, batch_size=4, device="cpu")
    params = BenchmarkParams(limit=2, request_cache=None)
    out = benchmarks.run_benchmarks(lm, params, None, tmp_path / "samples", "tiny")
    for name in params.tasks:
        assert 0 <= out[f"oall.{name}.acc"] <= 1
        assert out[f"oall.{name}.items"] >= 2
    logged = sorted(tmp_path.joinpath("samples").glob("*.jsonl"))
    assert logged
    for path in logged:
        for row in map(json.loads, path.read_text().splitlines()):
            # one finite log-likelihood per choice, from this model's forward passes
            assert len(row["loglikelihoods"]) == len(row["choices"]) >= 2
            assert all(ll < 0 for ll in row["loglikelihoods"])
    assert 0 <= out["oall.mean_unweighted.acc"] <= 1


def test_lm_evals_own_tree_is_indexed_only_for_a_task_the_include_path_lacks(tmp_path):
    include = str(benchmarks.include_dir(ROOT / "lm_eval_tasks/instar", tmp_path / "tasks"))
    own = benchmarks.task_manager(include, {"instar_acva", "instar_mmlu"})
    assert "instar_acva" in own.all_tasks
    assert "arc_easy" not in own.all_tasks  # lm-eval's tree was not read
    both = benchmarks.task_manager(include, {"instar_acva", "arc_easy"})
    assert {"instar_acva", "arc_easy"} <= set(both.all_tasks)
