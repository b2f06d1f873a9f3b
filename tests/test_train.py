"""train@<model> on models small enough to train in seconds: labels, LoRA and QLoRA, the adapter
and its merged export, run keys, a killed run resuming, and two processes (DDP over gloo)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from instar.imports import closure
from instar.modeling import checkpoints
from instar.modeling.build import build_model, build_tokenizer
from instar.modeling.chat import supports_system, to_messages
from instar.params.train import ModelParams
from tests.conftest import ROOT, env

# A learnable toy task: the answer to "what is the capital of X" is fixed per country.
CAPITALS = {
    "مصر": "القاهرة",
    "المغرب": "الرباط",
    "تونس": "تونس العاصمة",
    "الأردن": "عمّان",
    "لبنان": "بيروت",
    "العراق": "بغداد",
    "السودان": "الخرطوم",
    "الجزائر": "الجزائر العاصمة",
}
SMALL = {
    "llama": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1,
              "max_position_embeddings": 256, "tie_word_embeddings": False},
    "gemma": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
              "max_position_embeddings": 256},
}  # fmt: skip

CODE = closure("stages.train")


def records(n: int) -> list[dict[str, str]]:
    names = list(CAPITALS)
    return [
        {
            "system": "أجب بكلمة أو كلمتين." if i % 2 else "",
            "instruction": f"ما عاصمة {names[i % len(names)]}؟",
            "input": f"السؤال رقم {i}",  # every record distinct, so batches can be told apart
            "output": f"عاصمة {names[i % len(names)]} هي {CAPITALS[names[i % len(names)]]}.",
        }
        for i in range(n)
    ]


def model_params(arch: str, lora: dict | None = None, **train) -> ModelParams:
    template = {"llama": "llama3", "gemma": "gemma"}[arch]
    return ModelParams.model_validate(
        {
            "base": {"kind": "config", "architecture": arch, "chat_template": template,
                     "vocab_size": 400, "config": SMALL[arch]},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear",
                     **(lora or {})},
            "train": {"learning_rate": 0.005, "batch_size": 8, "max_length": 96,
                      "warmup_ratio": 0.0, "logging_steps": 2, "eval_steps": 1000,
                      "save_steps": 1000, **train},
        }
    )  # fmt: skip


def make_repo(root: Path, name: str, m: ModelParams, n_train: int = 64) -> Path:
    """A minimal working tree for `python -m stages.train <name>`: params, splits and base."""
    for folder in ("configs", "templates"):
        shutil.copytree(ROOT / folder, root / folder, dirs_exist_ok=True)
    texts = [t for r in records(n_train) for t in r.values() if t]
    cwd = Path.cwd()
    os.chdir(root)  # templates/chat is read relative to the working tree
    try:
        tok = build_tokenizer(texts, m.base.vocab_size, m.base.chat_template)
    finally:
        os.chdir(cwd)
    net = build_model(m.base, tok)
    base = root / "models" / name / "base"
    net.save_pretrained(base, safe_serialization=True)
    tok.save_pretrained(base)
    for split, n in (("train", n_train), ("validation", 16)):
        (root / "data/instar" / split).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(records(n)), root / f"data/instar/{split}/p.parquet")
    params = {"models": {name: m.model_dump(mode="json")}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return root


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def trainer_for(name: str, m: ModelParams, callbacks=()):
    from instar.modeling.data import as_messages, load_split
    from instar.modeling.loading import load_base
    from instar.modeling.trainer import build_trainer

    tok, net = load_base(name, m)
    role = supports_system(tok)
    train_ds = as_messages(load_split("train"), role)
    eval_ds = as_messages(load_split("validation"), role)
    return tok, build_trainer(net, tok, train_ds, eval_ds, m, Path("out"), callbacks)


@pytest.mark.parametrize(("arch", "end"), [("llama", "<|eot_id|>"), ("gemma", "<end_of_turn>\n")])
def test_only_the_assistants_tokens_carry_loss(repo, arch, end):
    m = model_params(arch)
    make_repo(repo, "m", m, n_train=8)
    tok, trainer = trainer_for("m", m)
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)
    for i, rec in enumerate(records(4)):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        kept = ids[labels != -100].tolist()
        # exactly the answer and the end-of-turn marker the model must learn to emit
        assert tok.decode(kept) == rec["output"] + end
        full = tok.decode(ids[batch["attention_mask"][i] == 1].tolist())
        assert rec["instruction"] in full and full.count(rec["output"]) == 1
        if rec["system"]:
            if arch == "gemma":  # no system role: folded into the user turn, still masked
                assert f"<start_of_turn>user\n{rec['system']}\n\n{rec['instruction']}" in full
            else:
                assert f"system<|end_header_id|>\n\n{rec['system']}<|eot_id|>" in full


def test_templates_carry_generation_markers():
    for name in ("llama3", "gemma"):
        text = (ROOT / "templates/chat" / f"{name}.jinja").read_text()
        assert "{%- generation" in text and "endgeneration" in text


def _logged_losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _padded(order: list[int], lengths: list[int], batch: int) -> int:
    runs = [order[i : i + batch] for i in range(0, len(order), batch)]
    return sum(len(r) * max(lengths[i] for i in r) for r in runs)


def test_length_grouping_reorders_the_same_rows_into_batches_of_like_length():
    import itertools
    import random

    from instar.modeling.data import length_grouped

    rnd = random.Random(7)
    lengths = [int(rnd.lognormvariate(5, 0.8)) + 1 for _ in range(16 * 64 * 3 + 5)]
    order = length_grouped(lengths, 16, seed=0)
    assert sorted(order) == list(range(len(lengths)))  # every row once, no row lost
    assert order == length_grouped(lengths, 16, seed=0)  # the seed decides, not the clock
    assert order != length_grouped(lengths, 16, seed=1)
    shuffled = list(range(len(lengths)))
    rnd.shuffle(shuffled)
    assert _padded(order, lengths, 16) < 0.6 * _padded(shuffled, lengths, 16)
    # still a shuffle, not a walk from short to long: the batches' longest rows go both ways,
    # from one batch to the next (sorted windows alone would descend only where one ends)
    tops = [max(lengths[i] for i in order[j : j + 16]) for j in range(0, len(order), 16)]
    assert tops != sorted(tops) and tops != sorted(tops, reverse=True)
    descents = sum(a > b for a, b in itertools.pairwise(tops))
    assert len(tops) // 4 < descents < 3 * len(tops) // 4


def test_text_lengths_count_every_column_of_the_conversation():
    import datasets

    from instar.modeling.data import text_lengths

    ds = datasets.Dataset.from_dict(
        {"system": [None, "نظام"], "instruction": ["سؤال", "اكتب"], "input": ["", "نص"],
         "output": ["جواب طويل", "ب"], "task": ["open_qa", "open_qa"]}
    )  # fmt: skip
    assert text_lengths(ds) == [4 + 9, 4 + 4 + 2 + 1]


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_loss_falls_in_lora_and_in_4bit_qlora(repo, quantization):
    import bitsandbytes as bnb

    m = model_params("llama", quantization=quantization, max_steps=24, learning_rate=0.01)
    make_repo(repo, "m", m)
    _, trainer = trainer_for("m", m)
    layers = [mod for mod in trainer.model.modules() if isinstance(mod, bnb.nn.Linear4bit)]
    assert bool(layers) == (quantization == "4bit")
    if layers:
        assert layers[0].weight.quant_type == "nf4"
        assert layers[0].weight.quant_state.nested  # double quantisation
    trainer.train()
    losses = _logged_losses(trainer)
    assert len(losses) == 12
    # A random base spreads its logits near uniformly (ln 400 = 6.0) and LoRA spares the
    # output head, so the loss falls by nats, not to zero: 5.9 -> 5.1 in 30 steps measured.
    assert sum(losses[-3:]) / 3 < losses[0] - 0.4, losses


@pytest.mark.slow
@pytest.mark.min_versions
def test_adapter_reloads_changes_logits_and_merges(repo):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from instar.modeling.loading import adapter_dir
    from stages.train import export_merged, save_adapter

    m = model_params("gemma", lora={"use_rslora": True}, max_steps=10)
    make_repo(repo, "m", m)
    tok, trainer = trainer_for("m", m)
    trainer.train()
    save_adapter(trainer.model, tok, "m", m)
    assert not (repo / "models/m/.adapter.tmp").exists()
    ids = tok.apply_chat_template(
        to_messages(records(1)[0], False), return_tensors="pt", return_dict=True
    )["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(repo / "models/m/base")
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter_dir("m"))
        after = tuned(ids).logits
    assert (before - after).abs().max() > 1e-3
    out = export_merged("m", m, enabled=True)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, after, atol=1e-4)
    assert (export_merged("m", m) / "NOT_EXPORTED.md").is_file()  # off by default


def test_run_key_follows_params_data_and_base_but_not_logging(repo):
    m = model_params("llama")
    make_repo(repo, "m", m, n_train=8)
    splits = [Path("data/instar/train"), Path("data/instar/validation")]
    key = checkpoints.run_key(m, Path("models/m/base"), splits, CODE)
    train = m.train.model_copy(update={"logging_steps": 7, "export_merged": True})
    assert (
        checkpoints.run_key(
            m.model_copy(update={"train": train}), Path("models/m/base"), splits, CODE
        )
        == key
    )
    lora = m.lora.model_copy(update={"r": 4})
    assert (
        checkpoints.run_key(
            m.model_copy(update={"lora": lora}), Path("models/m/base"), splits, CODE
        )
        != key
    )
    # the training code: what the stage imports (its dvc.yaml code deps), derived
    assert "instar/modeling/loading.py" in CODE and "stages/train.py" in CODE
    assert checkpoints.run_key(m, Path("models/m/base"), splits, CODE[1:]) != key
    pq.write_table(pa.Table.from_pylist(records(9)), "data/instar/train/p.parquet")
    assert checkpoints.run_key(m, Path("models/m/base"), splits, CODE) != key
    # prepare() keeps only the current key's folder and resumes its newest complete checkpoint
    (Path("checkpoints/m/stale") / "checkpoint-3").mkdir(parents=True)
    folder = Path("checkpoints/m") / key
    for step, done in ((4, True), (8, True), (12, False)):  # 12 was cut short by a kill
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if done:
            (folder / f"checkpoint-{step}/trainer_state.json").write_text("{}")
    got, resume = checkpoints.prepare("m", key)
    assert got == folder and resume == folder / "checkpoint-8"
    assert not Path("checkpoints/m/stale").exists()


def _stage(repo: Path, name: str):
    e = {**env(), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train", name], cwd=repo, env=e,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _finish(proc) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def _curve(repo: Path, name: str, metric: str) -> dict[int, float]:
    path = repo / "dvclive" / name / "plots/metrics/train" / f"{metric}.tsv"
    with path.open() as f:
        return {int(r["step"]): float(r[metric]) for r in csv.DictReader(f, delimiter="\t")}


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_unbroken_one_does(tmp_path):
    m = model_params("llama", max_steps=48, save_steps=6, logging_steps=2, warmup_ratio=0.1,
                     batch_size=4)  # fmt: skip
    repo = make_repo(tmp_path, "m", m)
    _finish(_stage(repo, "m"))
    whole = json.loads((repo / "metrics/train/m.json").read_text())
    card = (repo / "models/m/README.md").read_bytes()
    lr, loss = _curve(repo, "m", "learning_rate"), _curve(repo, "m", "loss")
    assert whole["steps"] == 48
    assert json.loads((repo / "metrics/perf/train/m.json").read_text())["resumed_from_step"] is None
    assert (repo / "models/m/adapter/adapter_model.safetensors").is_file()
    assert (repo / "models/m/README.md").read_text().startswith("---\nlibrary_name: peft")
    for p in ("checkpoints", "dvclive", "metrics", "models/m/adapter"):
        shutil.rmtree(repo / p)

    proc = _stage(repo, "m")
    key_dirs = repo / "checkpoints/m"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if key_dirs.is_dir() and any(checkpoints.latest(d) for d in key_dirs.iterdir()):
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-epoch, no chance to clean up
    proc.wait()
    (folder,) = key_dirs.iterdir()
    ckpt = checkpoints.latest(folder)
    assert ckpt is not None and not (repo / "models/m/adapter").exists()
    at = checkpoints.state(ckpt)["global_step"]
    assert 0 < at < 48

    out = _finish(_stage(repo, "m"))
    assert f"resuming from {ckpt.name}" in out
    how = json.loads((repo / "metrics/perf/train/m.json").read_text())
    assert how["resumed_from_step"] == at
    assert how["first_step_this_run"] > at
    resumed = json.loads((repo / "metrics/train/m.json").read_text())
    assert resumed["steps"] == whole["steps"]
    # how the run went is not in the cached figures or the card
    assert "resumed_from_step" not in resumed
    assert b"resumed_from_step" not in card + (repo / "models/m/README.md").read_bytes()
    # Scheduler state carried over: the learning rate after the checkpoint is the unbroken
    # run's, step for step (a fresh scheduler would warm up again from 0).
    lr2, loss2 = _curve(repo, "m", "learning_rate"), _curve(repo, "m", "loss")
    assert lr2.keys() == lr.keys()
    assert all(lr2[s] == pytest.approx(lr[s], rel=1e-6) for s in lr)
    # Optimizer (Adam moments), RNG and data order carried over too: the same losses.
    later = [s for s in loss if s > at]
    assert later and all(loss2[s] == pytest.approx(loss[s], rel=1e-3) for s in later)
    assert not list(folder.glob("checkpoint-*"))  # a finished run keeps no optimiser states


@pytest.mark.slow
def test_two_processes_train_on_different_batches(tmp_path):
    # 64 examples, 2 ranks x 4 rows: one epoch is 8 steps, in which no example comes twice
    m = model_params("llama", max_steps=8, num_processes=2, batch_size=4, logging_steps=2)
    repo = make_repo(tmp_path, "m", m)
    out = _finish(_stage(repo, "m"))
    assert "accelerate.commands.launch" in out
    metrics = json.loads((repo / "metrics/train/m.json").read_text())
    assert json.loads((repo / "metrics/perf/train/m.json").read_text())["processes"] == 2
    assert metrics["steps"] == 8
    assert (
        metrics["attn_implementation"] == "sdpa"
    )  # CPU: what instar.modeling.loading.attention chose
    assert metrics["last_logged_loss"] < metrics["first_logged_loss"]
    (folder,) = (repo / "checkpoints/m").iterdir()
    seen = {}
    for r in (0, 1):
        lines = (folder / "samples" / f"rank-{r}.tsv").read_text().split()
        seen[r] = set(lines[1::2])
        assert len(lines) // 2 == len(seen[r]) == 8 * 4  # 8 steps of 4 distinct rows
    assert not seen[0] & seen[1]  # each rank its own share of the epoch


@pytest.mark.slow
@pytest.mark.min_versions
def test_an_fsdp2_sharded_adapter_saves_as_the_unsharded_one(tmp_path):
    """FSDP2 over gloo on a CPU mesh, 2 ranks (tests/fsdp_save.py): every rank gathers, rank 0
    writes. Rank 0 saving its own shards (the old path) crashed on the DTensors."""
    import torch
    from safetensors.torch import load_file

    e = {**env(), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    for cmd, out in (
        ([sys.executable, "tests/fsdp_save.py"], tmp_path / "one"),
        ([*torchrun, "--nproc_per_node", "2", "tests/fsdp_save.py"], tmp_path / "fsdp"),
    ):
        proc = subprocess.run([*cmd, str(out)], cwd=ROOT, env=e, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, fsdp = (load_file(tmp_path / d / "models/m/adapter/adapter_model.safetensors")
                 for d in ("one", "fsdp"))  # fmt: skip
    assert one and set(one) == set(fsdp)
    assert all(".lora_A." in k or ".lora_B." in k for k in one)  # the adapter alone
    for k in one:
        assert fsdp[k].shape == one[k].shape and torch.equal(fsdp[k], one[k]), k
    for name in ("adapter_config.json", "training_params.json", "tokenizer.json"):
        assert (tmp_path / "fsdp/models/m/adapter" / name).is_file()


def test_packed_rows_keep_examples_apart_and_mask_prompts(repo):
    m = model_params("llama", packing=True, max_length=200)
    make_repo(repo, "m", m, n_train=12)
    tok, trainer = trainer_for("m", m)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert "attention_mask" not in batch  # padding-free: the positions mark the examples
    ids, labels, pos = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
    assert len(starts) > 3  # several examples in one row
    # and the boundaries flash attention's varlen kernel reads, computed once per batch
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == starts
    outputs = {r["output"] + "<|eot_id|>" for r in records(12)}
    for a, b in zip(starts, starts[1:], strict=False):
        seg_ids, seg_labels = ids[a:b], labels[a:b]
        assert pos[a:b].tolist() == list(range(b - a))  # positions restart per example
        assert tok.decode(seg_ids[seg_labels != -100].tolist()) in outputs
    # and the model sees each example alone: logits over the packed row equal each example's
    import torch

    net = trainer.model.eval()
    with torch.no_grad():
        packed = net(input_ids=ids[None], position_ids=pos[None]).logits[0]
        for a, b in zip(starts, starts[1:], strict=False):
            alone = net(input_ids=ids[None, a:b]).logits[0]
            assert torch.allclose(packed[a:b], alone, atol=1e-4)


def _machine(monkeypatch, cache: Path, installed: set[str], cuda: bool, capability: int = 8):
    """What attention() may look at, made up: packages, the GPU and the HF cache."""
    import importlib.util

    import huggingface_hub.constants
    import torch

    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name in {"flash_attn", "kernels"}:
            return real("json") if name in installed else None  # any spec will do
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (capability, 0))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))


def test_attention_is_the_fastest_installed_and_never_a_download(tmp_path, monkeypatch):
    from transformers.integrations.hub_kernels import get_attn_kernel_version

    from instar.modeling.loading import attention
    from tests.hubstub import add_repo

    def fetched(repo_id: str, version: int | None = None) -> str:
        """A kernel as the `kernels` package caches it: a kernel repo, a v<N> branch."""
        version = get_attn_kernel_version(repo_id) if version is None else version
        files = {"build/torch-cuda/metadata.json": repo_id.encode() + bytes([version])}
        return add_repo(cache, repo_id, files, repo_type="kernel", branch=f"v{version}")

    gpu = model_params("llama", device="cuda", precision="bf16")
    cpu = model_params("llama")
    fa2, fa3 = "kernels-community/flash-attn2", "kernels-community/vllm-flash-attn3"
    cache = tmp_path / "hub"
    _machine(monkeypatch, cache, {"flash_attn", "kernels"}, cuda=True)
    assert attention(gpu) == "flash_attention_2"
    assert attention(cpu) == "sdpa"  # CPU (fp32): SDPA whatever is installed
    assert attention(gpu.model_copy(update={"train": gpu.train.model_copy(
        update={"precision": "fp32"})})) == "sdpa"  # fmt: skip
    _machine(monkeypatch, cache, {"kernels"}, cuda=True)
    assert attention(gpu) == "sdpa"  # kernels installed, nothing fetched: no download
    fetched(fa2, version=get_attn_kernel_version(fa2) - 1)
    assert attention(gpu) == "sdpa"  # another major version than transformers loads
    fa3_commit = fetched(fa3)
    assert attention(gpu) == "sdpa"  # FA3 builds are for Hopper only
    _machine(monkeypatch, cache, {"kernels"}, cuda=True, capability=9)
    assert attention(gpu) == f"{fa3}@{fa3_commit}"  # pinned to what is on disk
    fa2_commit = fetched(fa2)
    _machine(monkeypatch, cache, {"kernels"}, cuda=True, capability=8)
    assert attention(gpu) == f"{fa2}@{fa2_commit}"
    _machine(monkeypatch, cache, set(), cuda=True)
    assert attention(gpu) == "sdpa"  # cached kernels without the package that loads them
    _machine(monkeypatch, cache, {"flash_attn", "kernels"}, cuda=False)
    assert attention(gpu) == "sdpa"


def test_the_base_loads_with_the_chosen_attention(repo, monkeypatch):
    from instar.modeling import loading

    m = model_params("llama")
    make_repo(repo, "m", m, n_train=8)
    assert loading.load_base("m", m)[1].config._attn_implementation == "sdpa"
    monkeypatch.setattr(loading, "attention", lambda m: "eager")
    assert loading.load_base("m", m)[1].config._attn_implementation == "eager"


def test_checkpoints_are_no_dvc_output_and_the_adapters_are_declared():
    # `dvc exp run` checks the lock's outputs out before it runs and deletes a declared one
    # the lock lacks (a killed run's): the rehearsal test shows the resume that needs this.
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    outs = spec["stages"]["train"]["do"]["outs"]
    assert not [o for o in map(str, outs) if "checkpoints" in o]
    assert {"models/${key}/adapter", "models/${key}/README.md"} <= set(map(str, outs))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in params["models"]:
        art = spec["artifacts"][f"{name}-adapter"]
        assert art["type"] == "model" and art["path"] == f"models/{name}/adapter"


@pytest.mark.slow
def test_the_pipeline_writes_cards_curves_and_final_figures(pipeline):
    for m in ("tiny", "tiny-gemma"):
        card = (pipeline / f"models/{m}/README.md").read_text()
        front = yaml.safe_load(card.split("---")[1])
        assert front["library_name"] == "peft" and front["language"] == ["ar"]
        assert "## Final metrics" in card and "## Limits" in card
        # the label-mask audit train@ ran first: its share and an example, the answer trained
        audit = card.split("## Label-mask audit")[1].split("## Final metrics")[0]
        assert "% of" in audit and "tokens carry loss" in audit
        example = audit.split("```text")[1].split("```")[0]
        assert example.count("[[") == example.count("]]") == 1  # one answer, one span
        metrics = json.loads((pipeline / f"metrics/train/{m}.json").read_text())
        assert metrics["eval_loss"] > 0
        # Timings live in metrics/perf/ only: not in the cached card, curves or train figures.
        perf = json.loads((pipeline / f"metrics/perf/train/{m}.json").read_text())
        assert perf["tokens_per_second"] > 0 and perf["train_seconds"] > 0
        assert perf["tokens_per_second_by_step"] and "eval_runtime" in perf
        assert not [k for k in metrics if k.endswith(("_seconds", "_per_second", "_runtime"))]
        assert "per_second" not in card and "train_seconds" not in card
        plots = pipeline / "dvclive" / m / "plots/metrics"
        for curve in ("train/loss", "eval/loss", "train/learning_rate", "train/grad_norm"):
            assert (plots / f"{curve}.tsv").is_file(), curve
        assert not (plots / "train/tokens_per_second.tsv").exists()
        (run,) = (pipeline / "checkpoints" / m).iterdir()
        assert json.loads((run / "finished.json").read_text())["steps"] == metrics["steps"]
        assert not list(run.glob("checkpoint-*"))
        assert (pipeline / f"models/{m}/merged/NOT_EXPORTED.md").is_file()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_trains_on_the_cpu_so_only_the_device_needs_cuda(repo, precision):
    """The evidence behind instar.modeling.loading.needs_cuda: with torch 2.13 both half precisions
    train on the CPU (finite, falling loss), so a CPU rehearsal may keep the paper's bf16."""
    import math

    import torch

    from instar.modeling import loading

    m = model_params("llama", precision=precision, max_steps=4, learning_rate=0.01)
    make_repo(repo, "m", m, n_train=32)
    loading.require_device("m", m)  # no refusal on a CPU machine
    on_gpu = m.model_copy(update={"train": m.train.model_copy(update={"device": "cuda"})})
    assert loading.needs_cuda(on_gpu) and not loading.needs_cuda(m)
    _, trainer = trainer_for("m", m)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert trainer.model.get_input_embeddings().weight.dtype == half
    trainer.train()
    losses = _logged_losses(trainer)
    assert losses and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


SAVE_LORA_CONFIG = """
import sys
from types import SimpleNamespace
from peft import LoraConfig
from stages.train import sort_config_sets
cfg = LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"])
sort_config_sets(SimpleNamespace(peft_config={"default": cfg}))
cfg.save_pretrained(sys.argv[1])
"""


def test_adapter_config_bytes_do_not_follow_the_string_hash_seed(tmp_path):
    # PEFT holds target_modules as a set; its order (and so the file) varies with the seed.
    saved = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        subprocess.run(
            [sys.executable, "-c", SAVE_LORA_CONFIG, str(out)],
            cwd=ROOT,
            env={**env(), "PYTHONHASHSEED": seed},
            check=True,
        )
        saved.append((out / "adapter_config.json").read_bytes())
    assert saved[0] == saved[1]
    assert json.loads(saved[0])["target_modules"] == sorted(json.loads(saved[0])["target_modules"])
