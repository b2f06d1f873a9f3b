"""The preflight (scripts/preflight.py): the label-mask audit's refusals on broken chat
templates, the memory estimate against published peak figures, and the command on the
built pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from instar.modeling.audit import audit, bracketed
from instar.modeling.build import build_tokenizer
from instar.modeling.chat import chat_template
from tests.conftest import ROOT, env

SYSTEM = "أنت مساعد يجيب بالعربية الفصحى بإيجاز."


def shipped_records(n: int = 40) -> list[tuple[int, dict]]:
    """Rows of the shipped handwritten sample, every third with a system text."""
    lines = (ROOT / "data/sources/handwritten.jsonl").read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines[:n]):
        r = json.loads(line)
        r.setdefault("input", "")
        r["system"] = SYSTEM if i % 3 == 0 else ""
        rows.append((i, r))
    return rows


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [t for _, r in shipped_records(130) for t in (r["instruction"], r["output"], SYSTEM)]


def tokenizer_with(texts, name: str, template: str | None = None):
    tok = build_tokenizer(iter(texts), 600, name)
    if template is not None:
        tok.chat_template = template
    return tok


def rules(tok, max_length=2048) -> dict[str, str]:
    a = audit(tok, shipped_records(), max_length, 0.05, "the template under test")
    return {p.rule: p.reason for p in a.problems}


# The project's llama3 training template without its header comment, which names the
# markers (TRL's marker check would find them there)
LLAMA3 = chat_template("llama3").split("-#}", 1)[1]
# The ways a template breaks training, each in the project's llama3 training template:
BROKEN = {
    # the markers removed: a template TRL has no training variant of
    "no_generation_markers": LLAMA3.replace("{%- generation %}", "").replace(
        "{%- endgeneration %}", ""
    ),
    # markers around nothing: every token masked
    "no_loss_tokens": LLAMA3.replace(
        "{%- generation %}\n        {{- message['content'] | trim + '<|eot_id|>' }}\n"
        "        {%- endgeneration %}",
        "{%- generation %}{%- endgeneration %}{{- message['content'] | trim + '<|eot_id|>' }}",
    ),
    # the end-of-turn token after the span: the model never learns to stop
    "end_of_turn_not_trained": LLAMA3.replace(
        "{{- message['content'] | trim + '<|eot_id|>' }}\n        {%- endgeneration %}",
        "{{- message['content'] | trim }}\n        {%- endgeneration %}{{- '<|eot_id|>' }}",
    ),
    # a system turn accepted and dropped
    "system_lost": LLAMA3.replace("{%- else %}", "{%- elif message['role'] != 'system' %}"),
}


@pytest.mark.parametrize("rule", list(BROKEN))
def test_each_broken_template_is_refused_by_its_rule_and_no_other(texts, rule):
    assert BROKEN[rule] != LLAMA3  # the edit took
    found = rules(tokenizer_with(texts, "llama3", BROKEN[rule]))
    assert list(found) == [rule], found


def test_a_limit_that_cuts_most_answers_is_refused_with_the_count(texts):
    tok = tokenizer_with(texts, "llama3")
    assert rules(tok) == {}
    lengths = sorted(
        len(tok.apply_chat_template(to_msgs(r), tokenize=True)) for _, r in shipped_records()
    )
    cut = rules(tok, max_length=lengths[len(lengths) // 2])  # the median: half the answers cut
    assert set(cut) == {"answer_truncated"}
    assert (
        "cuts the answer of" in cut["answer_truncated"] and "of 40 rows" in cut["answer_truncated"]
    )


def to_msgs(r):
    from instar.modeling.chat import to_messages

    return to_messages(r, True)


@pytest.mark.parametrize("name", ["llama3", "gemma"])
def test_the_projects_templates_and_the_shipped_ones_trl_swaps_pass(texts, name):
    import trl

    shipped = (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text("utf-8")
    for template in (None, shipped):  # ours, with markers; the model's own, without (TRL's)
        tok = tokenizer_with(texts, name, template)
        a = audit(tok, shipped_records(), 2048, 0.05, name)
        assert a.problems == [] and 0 < a.loss_share < 1 and a.truncated == 0
        runs = a.example
        answer = shipped_records()[0][1]["output"].strip()
        # the answer and the end-of-turn token carry loss, the prompt does not
        assert any(loss and answer[:20] in text for text, loss in runs)
        assert not any(loss and "لماذا" in text for text, loss in runs)
        assert f"[[{answer}" in bracketed(runs)


# --- memory -------------------------------------------------------------------------------

# torchtune's README, "Memory and training speed": Llama 3.1 8B, batch 2, packed to 2048,
# compiled, bf16, its 8B_lora_single_device / 8B_qlora_single_device configs (LoRA rank 8
# on q, v, output and the MLP). Its LoRA rows differ on one GPU each; the 4090 row is the
# config's default (activation checkpointing on), and we take the A6000 row as the same
# run without it: nothing else in the configs moves memory by 14 GiB at that batch.
TORCHTUNE = [
    # (row, quantization, activation checkpointing, peak GiB)
    ("LoRA, 1x 4090", "none", True, 16.2),
    ("LoRA, 1x A6000", "none", False, 30.3),
    ("QLoRA, 1x 4090", "4bit", True, 7.4),
]


@pytest.fixture(scope="module")
def llama3_8b():
    from instar.modeling.memory import shape
    from scripts.gpu_check import llama_config

    # Llama-3-8B's shape (its config.json on the hub; the GPU script builds the same); 3.1
    # changes only RoPE scaling
    config = llama_config("llama3-8b")
    modules = ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return shape(config, modules, 8)


def test_the_meta_build_counts_llama_3_8b_as_published(llama3_8b):
    assert llama3_8b.params == 8_030_261_248  # "8.03B" on the model card, to the parameter


@pytest.mark.parametrize("row,quantization,checkpointing,peak", TORCHTUNE)
def test_the_estimate_lands_within_25_percent_of_torchtunes_peak(
    llama3_8b, row, quantization, checkpointing, peak
):
    from instar.modeling.memory import estimate

    est = estimate(
        llama3_8b,
        batch=2,
        seq=2048,
        precision="bf16",
        quantization=quantization,
        checkpointing=checkpointing,
    )
    assert abs(est["total_gib"] - peak) / peak < 0.25, (row, est)


# --- the command --------------------------------------------------------------------------


def preflight(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.preflight", *args],
        cwd=repo, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_preflight_passes_both_tiny_models_and_refuses_a_broken_template(pipeline_copy):
    ok = preflight(pipeline_copy)
    shown = ok.stdout + ok.stderr  # rich prints to stderr, as every stage does
    assert ok.returncode == 0, shown
    for m in ("tiny", "tiny-gemma"):
        assert f"preflight {m}" in shown
        example = (pipeline_copy / f"reports/preflight/{m}.txt").read_text(encoding="utf-8")
        assert example.count("[[") == example.count("]]") >= 1
    assert "memory (GiB, per GPU)" in shown and "carry loss" in shown

    template = pipeline_copy / "models/tiny/base/chat_template.jinja"
    template.write_text(BROKEN["end_of_turn_not_trained"], encoding="utf-8")
    bad = preflight(pipeline_copy)
    assert bad.returncode == 1
    text = " ".join((bad.stdout + bad.stderr).split())
    assert "tiny: the chat template of models/tiny/base: end_of_turn_not_trained (row" in text
    assert "tiny-gemma:" not in text.split("preflight refuses")[-1]
