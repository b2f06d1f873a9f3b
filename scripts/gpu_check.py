"""Train the real LoRA and QLoRA paths of train@<model> on a Llama-3-8B-shaped model.

The model is built from Llama-3-8B's config with random weights (nothing is downloaded), saved
as safetensors, and loaded back through instar.modeling.loading.load_base as the paper profile loads
its base (bf16, or 4-bit NF4 with double quantisation and bf16 compute), then trained with
instar.modeling.trainer.build_trainer (TRL SFTTrainer + PEFT, assistant-only loss, bfd
packing, gradient checkpointing) for --steps steps. Prints tokens/s and peak GPU memory per
path, as JSON too.

It also checks what only a GPU shows: that the attention implementation instar.modeling.loading
chooses is the one the model runs, and is called (varlen calls counted: the packed batches'
`cu_seq_lens` reach it); and, with 2 GPUs, that an FSDP2-sharded adapter saved through
stages.train.save_adapter over NCCL equals a one-process save (tests/fsdp_save.py). A
failed check makes the exit status 1.

    python scripts/gpu_check.py                      # on a CUDA machine (scripts/gpu_check.sh)
    python scripts/gpu_check.py --dry-run            # anywhere: the 8B model on `meta`, sizes
    python scripts/gpu_check.py --arch tiny --device cpu --steps 3   # the loop, on CPU
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Meta-Llama-3-8B(-Instruct) config.json, as published.
LLAMA3_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
    "vocab_size": 2000,
    "tie_word_embeddings": False,
}
WORDS = "العلم نور والجهل ظلام كتاب مدرسة طالب معلم سؤال جواب مدينة نهر جبل بحر شمس قمر".split()


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", choices=["llama3-8b", "tiny"], default="llama3-8b")
    p.add_argument("--modes", default="lora,qlora", help="comma list of lora, qlora")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--work", type=Path, default=Path("/tmp/instar-gpu-check"))
    p.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    p.add_argument("--dry-run", action="store_true", help="build on `meta` and print sizes only")
    p.add_argument("--no-fsdp", action="store_true", help="skip the 2-GPU FSDP save check")
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    if not set(args.modes) <= {"lora", "qlora"}:
        p.error(f"--modes: unknown {sorted(set(args.modes) - {'lora', 'qlora'})}")
    return args


def llama_config(arch: str, tokenizer=None):
    from transformers import LlamaConfig

    cfg = dict(LLAMA3_8B if arch == "llama3-8b" else TINY)
    if tokenizer is not None:
        cfg.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return LlamaConfig(**cfg)


def dry_run(arch: str, r: int = 16) -> dict:
    """The model and its LoRA on the meta device: parameter counts, no memory, no GPU."""
    import torch
    from peft import get_peft_model
    from transformers import LlamaForCausalLM

    from instar.modeling.trainer import lora_config
    from instar.params.train import ModelParams

    with torch.device("meta"):
        net = LlamaForCausalLM(llama_config(arch))
    total = sum(p.numel() for p in net.parameters())
    m = model_params(arch, "lora", 1, 1, 1)
    assert isinstance(m, ModelParams)
    peft = get_peft_model(net, lora_config(m))
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    return {"arch": arch, "parameters": total, "lora_trainable": trainable, "lora_r": r,
            "bf16_weights_gib": round(total * 2 / 2**30, 2),
            "nf4_weights_gib_approx": round(total * 0.5 / 2**30, 2),
            "checks": check_plan(arch)}  # fmt: skip


def check_plan(arch: str) -> dict:
    """What the GPU checks would do on this machine, run nowhere."""
    import torch

    from instar.modeling.loading import attention

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "attention": {mode: attention(model_params(arch, mode, 1, 1, 1)) for mode in MODES},
        "fsdp_save": "2 ranks over NCCL" if gpus >= 2 else f"skipped: needs 2 GPUs, {gpus} visible",
    }


MODES = ("lora", "qlora")


@contextmanager
def counted_attention(impl: str):
    """Count the calls of the attention function `impl` (and those given varlen boundaries)
    through transformers' registry, which every attention layer looks it up in."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    calls = {"calls": 0, "varlen_calls": 0}
    if impl == "eager":  # not in the registry: the model's own function
        yield calls
        return
    inner = ALL_ATTENTION_FUNCTIONS[impl]
    before = ALL_ATTENTION_FUNCTIONS._local_mapping.get(impl)

    def counting(*args, **kwargs):
        calls["calls"] += 1
        calls["varlen_calls"] += kwargs.get("cu_seq_lens_q") is not None
        return inner(*args, **kwargs)

    ALL_ATTENTION_FUNCTIONS[impl] = counting
    try:
        yield calls
    finally:
        if before is None:
            del ALL_ATTENTION_FUNCTIONS[impl]
        else:
            ALL_ATTENTION_FUNCTIONS[impl] = before


def attention_problems(m, facts: dict) -> list[str]:
    """Defect 8 on a GPU: the chosen implementation loaded, ran, and got the boundaries."""
    out = []
    if facts["used"] != facts["chosen"]:
        out.append(f"attention: chose {facts['chosen']}, the model runs {facts['used']}")
    if facts["calls"] == 0 and facts["used"] != "eager":
        out.append(f"attention: {facts['used']} was never called")
    flash = facts["used"] != "sdpa" and facts["used"] != "eager"
    if flash and m.train.packing and facts["varlen_calls"] == 0:
        out.append(f"attention: {facts['used']} never got cu_seq_lens (packing not varlen)")
    return out


def fsdp_check(work: Path) -> dict:
    """Defect 7 on GPUs: the FSDP2 adapter save over NCCL equals the one-process one."""
    import torch
    from safetensors.torch import load_file

    gpus = torch.cuda.device_count()
    if gpus < 2:
        return {"skipped": f"needs 2 GPUs, {gpus} visible"}
    script = str(ROOT / "tests" / "fsdp_save.py")
    runs = {
        "one": [sys.executable, script],
        "fsdp": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", "2", script],
    }  # fmt: skip
    for name, cmd in runs.items():
        proc = subprocess.run([*cmd, str(work / name), "cuda"], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        if proc.returncode:
            return {"ok": False, "failed": name, "log": (proc.stdout + proc.stderr)[-2000:]}
    one, fsdp = (load_file(work / n / "models/m/adapter/adapter_model.safetensors") for n in runs)
    same = set(one) == set(fsdp) and all(torch.equal(one[k], fsdp[k]) for k in one)
    return {"ok": bool(one) and same, "tensors": len(one)}


def model_params(arch: str, mode: str, steps: int, batch: int, length: int, device="cuda"):
    from instar.params.train import ModelParams

    return ModelParams.model_validate(
        {
            "base": {"kind": "config", "architecture": "llama", "chat_template": "llama3"},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
            "train": {
                "learning_rate": 2e-4, "max_steps": steps, "batch_size": batch,
                "max_length": length, "warmup_ratio": 0.03, "scheduler": "cosine",
                "precision": "bf16" if device == "cuda" else "fp32",
                "quantization": "4bit" if mode == "qlora" else "none",
                "packing": True, "gradient_checkpointing": True,
                "logging_steps": max(1, min(10, steps // 5)),
                "eval_steps": 100000, "save_steps": 100000, "device": device,
            },
        }
    )  # fmt: skip


def records(n: int, seed: int = 0) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    return [
        {"system": "", "input": "",
         "instruction": " ".join(rnd.choices(WORDS, k=rnd.randint(10, 60))) + "؟",
         "output": " ".join(rnd.choices(WORDS, k=rnd.randint(40, 300))) + "."}
        for _ in range(n)
    ]  # fmt: skip


def build_base(arch: str, folder: Path, device: str):
    """Random weights in the model's shape, saved as safetensors where load_base reads them."""
    import torch
    from transformers import LlamaForCausalLM

    from instar.modeling.build import build_tokenizer

    texts = [t for r in records(2000) for t in (r["instruction"], r["output"])]
    tok = build_tokenizer(texts, 2000, "llama3")
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):  # initialise on the GPU: seconds, not minutes on the CPU
        net = LlamaForCausalLM(llama_config(arch, tok)).to(dtype)
    shutil.rmtree(folder, ignore_errors=True)
    net.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    del net
    if device == "cuda":
        torch.cuda.empty_cache()


def train_once(name: str, m, work: Path) -> dict:
    import datasets
    import torch

    from instar.modeling.data import as_messages
    from instar.modeling.loading import attention, load_base
    from instar.modeling.trainer import build_trainer

    if m.train.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    chosen = attention(m)
    tok, net = load_base(name, m)
    used = net.config._attn_implementation
    need = m.train.max_steps * m.train.batch_size * m.train.max_length // 150 + 64
    train_ds = as_messages(datasets.Dataset.from_list(records(need, 1)), True)
    eval_ds = as_messages(datasets.Dataset.from_list(records(16, 2)), True)
    trainer = build_trainer(net, tok, train_ds, eval_ds, m, work / f"run-{name}")
    start = time.perf_counter()
    with counted_attention(used) as calls:
        trainer.train()
    seconds = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "num_tokens" in h]
    tokens = logs[-1]["num_tokens"] if logs else None
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out = {
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if tokens else None,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "attention": {"chosen": chosen, "used": used, **calls},
    }
    from instar.modeling.memory import for_model

    out["estimated_gpu_memory_gib"] = for_model(net.config, m)["total_gib"]  # preflight's
    if m.train.device == "cuda":
        out["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["gpu"] = torch.cuda.get_device_name()
    del trainer, net
    if m.train.device == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> int:
    args = parse(argv)
    import os

    os.chdir(ROOT)  # templates/chat and models/<name>/base are read relative to the repo
    if args.dry_run:
        print(json.dumps(dry_run(args.arch), indent=2))
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device visible", file=sys.stderr)
            return 1
    name = "gpu-check"
    base = ROOT / "models" / name / "base"
    figures = {"arch": args.arch, "batch_size": args.batch_size, "max_length": args.max_length}
    problems: list[str] = []
    try:
        build_base(args.arch, base, args.device)
        for mode in args.modes:
            m = model_params(
                args.arch, mode, args.steps, args.batch_size, args.max_length, args.device
            )
            figures[mode] = train_once(name, m, args.work)
            problems += attention_problems(m, figures[mode]["attention"])
            print(f"{mode}: {json.dumps(figures[mode])}", flush=True)
        if args.device == "cuda" and not args.no_fsdp:
            figures["fsdp_save"] = fsdp_check(args.work / "fsdp")
            if figures["fsdp_save"].get("ok") is False:
                problems.append(f"fsdp_save: {figures['fsdp_save']}")
    finally:
        shutil.rmtree(ROOT / "models" / name, ignore_errors=True)
        shutil.rmtree(args.work, ignore_errors=True)
    figures["problems"] = problems
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
