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

from peft import LoraConfig
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from dvclive import Live
from stages import config
from stages.chat import supports_system
from stages.console import console, parser, run
from stages.data import as_messages, load_split
from stages.loading import adapter_dir, load_base, require_device
from stages.storage import write_json


class LiveCurves(TrainerCallback):
    """Training curves into dvclive, stepped by the trainer's global step.

    transformers' own DVCLiveCallback counts log calls as steps, which interleaves train and
    eval points on one axis that is not the optimiser's.
    """

    # What people plot; the trainer logs more (entropy, runtimes) that only clutters plots.
    CURVES = {
        "loss": "train/loss",
        "grad_norm": "train/grad_norm",
        "learning_rate": "train/learning_rate",
        "mean_token_accuracy": "train/mean_token_accuracy",
        "eval_loss": "eval/loss",
        "eval_mean_token_accuracy": "eval/mean_token_accuracy",
    }

    def __init__(self, live):
        self.live = live
        self._last = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.live.step = state.global_step
        for key, name in self.CURVES.items():
            if isinstance(logs.get(key), int | float):
                self.live.log_metric(name, logs[key])
        if "loss" in logs and "num_tokens" in logs:
            self._tokens_per_second(state, logs["num_tokens"])
        self.live.make_summary()

    def _tokens_per_second(self, state, tokens: float) -> None:
        now = time.perf_counter()
        if self._last is not None and now > self._last[0]:
            self.live.log_metric(
                "train/tokens_per_second",
                round((tokens - self._last[1]) / (now - self._last[0]), 1),
            )
        self._last = (now, tokens)


def train(model: str, m: config.ModelParams) -> dict[str, Any]:
    require_device(model, m)
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
        eval_steps=m.train.eval_steps,
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
        callbacks=[LiveCurves(live)],
    )
    if console.is_terminal:  # a live rich panel instead of one printed dict per log step
        from transformers import PrinterCallback
        from trl.trainer.callbacks import RichProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(RichProgressCallback())
    trainable, total = trainer.model.get_nb_trainable_parameters()
    console.print(
        f"train {model}: {len(train_ds)} examples, {trainable:,} of {total:,} parameters trainable"
    )
    start = time.perf_counter()
    result = trainer.train()
    elapsed = time.perf_counter() - start
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if evals and evals[-1]["step"] == trainer.state.global_step:
        final_eval = evals[-1]  # already evaluated at the last step; do not log it twice
    else:
        final_eval = trainer.evaluate()
    live.end()
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
    console.print(
        f"train {model}: loss {metrics['first_logged_loss']} -> "
        f"{metrics['last_logged_loss']}, eval loss {metrics['eval_loss']}"
    )
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
