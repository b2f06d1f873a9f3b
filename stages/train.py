"""train@<model>: a LoRA (or QLoRA) adapter on the InstAr train split, with TRL's SFTTrainer.

Loss is on the assistant's tokens only (the chat template's {% generation %} markers);
curves go to dvclive/<model>/ for `dvc plots`; the adapter and its tokenizer are written
atomically to models/<model>/adapter/ and final figures to metrics/train/<model>.json.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from stages import config
from stages.base import base_dir
from stages.console import StageError, console, parser, run
from stages.storage import write_json


def adapter_dir(model: str) -> Path:
    return Path("models") / model / "adapter"


def require_device(model: str, m: config.ModelParams) -> None:
    """Refuse at once, before anything loads, what this machine cannot do."""
    import torch

    if m.base.kind == "hub" or m.train.device == "cuda" or m.train.precision != "fp32":
        if not torch.cuda.is_available():
            raise StageError(
                f"model {model!r} needs a CUDA GPU ({m.base.repo_id or 'device: cuda'}); "
                "none is visible. The paper profile runs on a GPU machine with hub access or "
                "local weights and the gated licences accepted (see README, 'Profiles')."
            )


def load_base(model: str, m: config.ModelParams):
    """Tokenizer and model, from the local base folder or the pinned hub revision."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    src: dict[str, Any]
    if m.base.kind == "config":
        src = {"pretrained_model_name_or_path": str(base_dir(model))}
    else:
        src = {"pretrained_model_name_or_path": m.base.repo_id, "revision": m.base.revision}
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        m.train.precision
    ]
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    if m.train.quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if m.train.device == "cuda" else torch.float32,
        )
    tokenizer = AutoTokenizer.from_pretrained(**src)
    net = AutoModelForCausalLM.from_pretrained(**src, **kwargs)
    return tokenizer, net


def train(model: str, m: config.ModelParams) -> dict[str, Any]:
    require_device(model, m)
    from dvclive import Live
    from peft import LoraConfig
    from transformers.integrations import DVCLiveCallback
    from trl import SFTConfig, SFTTrainer

    from stages.chat import supports_system
    from stages.data import as_messages, load_split

    tokenizer, net = load_base(model, m)
    system_role = supports_system(tokenizer)
    train_ds = as_messages(load_split("train"), system_role)
    eval_ds = as_messages(load_split("validation"), system_role)
    work = Path(tempfile.mkdtemp(prefix=f"train-{model}-"))
    args = SFTConfig(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=m.train.epochs,
        max_steps=m.train.max_steps,
        per_device_train_batch_size=m.train.batch_size,
        per_device_eval_batch_size=m.train.batch_size,
        gradient_accumulation_steps=m.train.grad_accum,
        learning_rate=m.train.learning_rate,
        lr_scheduler_type=m.train.scheduler,
        warmup_steps=m.train.warmup_ratio,
        weight_decay=m.train.weight_decay,
        logging_steps=m.train.logging_steps,
        eval_strategy="steps",
        eval_steps=m.train.logging_steps * 4,
        save_strategy="no",
        max_length=m.train.max_length,
        assistant_only_loss=True,
        bf16=m.train.precision == "bf16",
        fp16=m.train.precision == "fp16",
        use_cpu=m.train.device == "cpu",
        seed=m.train.seed,
        data_seed=m.train.seed,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=m.lora.r,
        lora_alpha=m.lora.alpha,
        lora_dropout=m.lora.dropout,
        target_modules=m.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    live = Live(dir=str(Path("dvclive") / model), dvcyaml=None, save_dvc_exp=False, report=None)
    trainer = SFTTrainer(
        model=net,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[DVCLiveCallback(live=live)],
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    console.print(f"train {model}: {len(train_ds)} examples, {trainable:,} of {total:,} "
                  "parameters trainable")
    start = time.perf_counter()
    result = trainer.train()
    elapsed = time.perf_counter() - start
    final_eval = trainer.evaluate()
    tokens = trainer.state.num_input_tokens_seen or _count_tokens(trainer)

    out = adapter_dir(model)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "training_params.json").write_text(json.dumps(m.model_dump(), indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    shutil.rmtree(work, ignore_errors=True)

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "train_loss": round(result.training_loss, 5),
        "first_logged_loss": round(losses[0], 5) if losses else None,
        "last_logged_loss": round(losses[-1], 5) if losses else None,
        "eval_loss": round(final_eval["eval_loss"], 5),
        "eval_perplexity": round(math.exp(min(final_eval["eval_loss"], 50)), 3),
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "train_seconds": round(elapsed, 2),
        "tokens_per_second": round(tokens / elapsed, 1) if tokens else None,
        "trainable_parameters": trainable,
        "total_parameters": total,
    }
    console.print(f"train {model}: loss {metrics['first_logged_loss']} -> "
                  f"{metrics['last_logged_loss']}, eval loss {metrics['eval_loss']}")
    return metrics


def _count_tokens(trainer) -> int:
    ds = trainer.train_dataset
    per_epoch = sum(len(ids) for ids in ds["input_ids"]) if "input_ids" in ds.column_names else 0
    return int(per_epoch * (trainer.state.epoch or 1))


def main() -> None:
    p = parser("train", __doc__)
    p.add_argument("model", help="a key of `models` in params.yaml")
    args = p.parse_args()
    m = config.named("models", args.model)
    metrics = train(args.model, m)
    write_json(Path("metrics/train") / f"{args.model}.json", metrics)


if __name__ == "__main__":
    run(main)
