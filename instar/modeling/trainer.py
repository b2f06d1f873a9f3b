"""The trainer: TRL's SFTTrainer with the project's config, LoRA config and training curves.

Apart from stages/train.py so that the stage's `--help`, and its refusals before a model
loads, do not wait for TRL, PEFT and transformers to import (several seconds).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from peft import LoraConfig
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from instar.params.train import ModelParams


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
        self._first = None  # (time, tokens) at this process's first train log
        self._last = None
        self.first_step: int | None = None  # the first step this process logged
        # Not a dvclive curve: dvclive/ is cached and read by report, and a speed changes on
        # every run. It goes to metrics/perf/ with the other timings.
        self.speed: list[dict[str, float]] = []

    def replay(self, history: list[dict[str, Any]]) -> None:
        """Curves of the steps a resumed run did before it was stopped (its trainer state)."""
        for entry in history:
            if "step" in entry:
                self._log(entry["step"], entry)

    def _log(self, step: int, logs: dict[str, Any]) -> None:
        self.live.step = step
        for key, name in self.CURVES.items():
            if isinstance(logs.get(key), int | float):
                self.live.log_metric(name, logs[key])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.first_step is None:
            self.first_step = state.global_step
        self._log(state.global_step, logs)
        if "loss" in logs and "num_tokens" in logs:
            self._tokens_per_second(state.global_step, logs["num_tokens"])
        self.live.make_summary()

    def _tokens_per_second(self, step: int, tokens: float) -> None:
        now = time.perf_counter()
        if self._last is not None and now > self._last[0]:
            rate = round((tokens - self._last[1]) / (now - self._last[0]), 1)
            self.speed.append({"step": step, "tokens_per_second": rate})
        self._last = (now, tokens)
        self._first = self._first or self._last

    def tokens_per_second(self) -> float | None:
        """Over this process's logged steps: TRL's num_tokens counts all ranks' tokens."""
        if self._first and self._last and self._last[0] > self._first[0]:
            return round((self._last[1] - self._first[1]) / (self._last[0] - self._first[0]), 1)
        return None


class InstArTrainer(SFTTrainer):
    """SFTTrainer that, when asked, records which examples each rank trained on (a hash of
    each row's tokens per step), so a test can check that ranks see different batches."""

    sample_log: Path | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.sample_log is not None:
            pad = self.processing_class.pad_token_id
            with self.sample_log.open("a") as f:
                for row in inputs["input_ids"]:
                    ids = [t for t in row.tolist() if t != pad]
                    digest = hashlib.sha1(str(ids).encode()).hexdigest()[:16]
                    f.write(f"{self.state.global_step}\t{digest}\n")
        return super().training_step(model, inputs, num_items_in_batch)


def sft_config(m: ModelParams, output_dir: Path) -> SFTConfig:
    t = m.train
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a fraction of the total steps
        weight_decay=t.weight_decay,
        logging_steps=t.logging_steps,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        max_length=t.max_length,
        assistant_only_loss=True,
        # bfd packing is padding-free: examples are concatenated with position_ids restarting
        # at each, and attention (flash-attention varlen on GPU, the block-diagonal mask
        # transformers derives from position_ids with sdpa) never crosses them.
        packing=t.packing,
        packing_strategy="bfd",
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},  # DDP- and PEFT-safe
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        use_cpu=t.device == "cpu",
        # length_grouped (stages/train.py) has ordered the rows already
        train_sampling_strategy="sequential" if t.group_by_length else "random",
        seed=t.seed,
        data_seed=t.seed,
        # Deterministic torch kernels, so a rerun gives the same weights (with the CPU pins of
        # instar.reproducible). CPU only: on CUDA it also forces CUDA_LAUNCH_BLOCKING and fails
        # on ops without a deterministic kernel; GPU runs are not claimed bit-identical.
        full_determinism=t.device == "cpu",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
    )


def lora_config(m: ModelParams) -> LoraConfig:
    return LoraConfig(
        r=m.lora.r,
        lora_alpha=m.lora.alpha,
        lora_dropout=m.lora.dropout,
        target_modules=m.lora.target_modules,
        use_rslora=m.lora.use_rslora,
        use_dora=m.lora.use_dora,
        task_type="CAUSAL_LM",
    )


def build_trainer(
    net, tokenizer, train_ds, eval_ds, m: ModelParams, output_dir: Path, callbacks=()
) -> InstArTrainer:
    """The trainer on chat-message datasets (instar.modeling.data.as_messages)."""
    trainer = InstArTrainer(
        model=net,
        args=sft_config(m, output_dir),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(m),
        callbacks=list(callbacks),
    )
    if trainer.args.full_determinism:
        import torch

        # Deterministic mode also fills every torch.empty with NaN, a guard against kernels
        # that read memory before writing it. None of ours does (the adapter's bytes are the
        # same either way), and on CPU the fill cost train@tiny ~30% of each step: TRL's
        # chunked log-prob head allocates its tiles afresh every step.
        torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer
