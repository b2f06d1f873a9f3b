"""train@<model>: a LoRA (or QLoRA) adapter on the InstAr train split, with TRL's SFTTrainer.

Loss is on the assistant's tokens only (the chat template's {% generation %} markers); curves
go to dvclive/<model>/ for `dvc plots`; checkpoints to checkpoints/<model>/<run key>/, from
which a killed run resumes on the next `dvc repro`; the adapter, its tokenizer and a model
card are written atomically to models/<model>/, final figures to metrics/train/<model>.json.
How fast it ran (seconds, tokens/s) and how (processes, the step it resumed from) go to
metrics/perf/train/<model>.json only: every other output must be the same bytes on a rerun,
and timings never are.
With `num_processes > 1` the stage relaunches itself under `accelerate launch` (DDP or FSDP,
configs/accelerate/).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instar.cards import model_card
from instar.console import StageError, console, parser, run
from instar.imports import closure
from instar.modeling import checkpoints
from instar.modeling.audit import audit_split
from instar.modeling.build import base_dir
from instar.modeling.chat import supports_system
from instar.modeling.data import INSTAR, as_messages, length_grouped, load_split, text_lengths
from instar.modeling.loading import adapter_dir, load_base, require_device
from instar.params.preflight import PreflightParams
from instar.params.train import ModelParams
from instar.records.storage import atomic_dir, write_json, write_text
from instar.reproducible import PINNED, pin_torch_threads

ACCELERATE_CONFIGS = Path("configs/accelerate")
PERF = Path("metrics/perf/train")

if TYPE_CHECKING:
    from instar.modeling.trainer import LiveCurves


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def merged_dir(model: str) -> Path:
    return Path("models") / model / "merged"


def gathered_weights(net) -> dict[str, Any] | None:
    """The model's whole state dict, for rank 0, when FSDP shards it; every rank must call
    this, since the shards are gathered collectively.

    Under FSDP2 each parameter is a DTensor holding this rank's shard: `state_dict()` alone
    would give rank 0 its shards only. torch gathers them to full tensors on rank 0's CPU
    (others get an empty dict) and cleans the wrappers' names (activation checkpointing,
    compile) so that the keys are the model's own. Unsharded models (one process, DDP):
    None, and PEFT reads the model's own state dict.
    """
    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in net.parameters()):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(
        net, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def sort_config_sets(net) -> None:
    """PEFT holds some config fields as sets (target_modules, "all-linear" resolved to module
    names) and writes them to adapter_config.json in set order, which follows the process's
    random string-hash seed: the one run-dependent content of the adapter folder. Sorted
    lists are written as they are, and load back as the same sets."""
    for cfg in net.peft_config.values():
        for key, value in list(vars(cfg).items()):
            if isinstance(value, set):
                setattr(cfg, key, sorted(value))


def save_adapter(net, tokenizer, model: str, m: ModelParams) -> Path | None:
    """The adapter folder, written beside its place and renamed over it, by rank 0. Every
    rank calls this (FSDP gathers the weights from all of them); the others get None."""
    weights = gathered_weights(net)
    if rank() != 0:
        return None
    out = adapter_dir(model)
    sort_config_sets(net)
    with atomic_dir(out) as tmp:
        # PEFT keeps only the adapter's keys of the state dict it is given, in its own format.
        net.save_pretrained(tmp, safe_serialization=True, state_dict=weights)
        tokenizer.save_pretrained(tmp)
        (tmp / "training_params.json").write_text(json.dumps(m.model_dump(), indent=2) + "\n")
    return out


def export_merged(model: str, m: ModelParams, enabled: bool | None = None) -> Path:
    """models/<model>/merged/: base + adapter in one safetensors model (export_merged), or a
    note saying it was not asked for (DVC declares the folder either way)."""
    out = merged_dir(model)
    with atomic_dir(out) as tmp:
        if enabled if enabled is not None else m.train.export_merged:
            import torch
            from peft import PeftModel

            # Merge into full-precision weights: merging into a 4-bit base would round the
            # adapter away, so a QLoRA adapter is merged into the unquantised base.
            train = m.train.model_copy(update={"quantization": "none"})
            plain = m.model_copy(update={"train": train})
            tokenizer, base = load_base(model, plain)
            merged = PeftModel.from_pretrained(base, str(adapter_dir(model))).merge_and_unload()
            with torch.no_grad():
                merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        else:
            (tmp / "NOT_EXPORTED.md").write_text(
                f"Set `models.{model}.train.export_merged: true` to get the merged model here.\n"
            )
    return out


def audit_train_split(model: str, m: ModelParams, p: PreflightParams, tokenizer) -> dict[str, Any]:
    """The label-mask audit of the split about to be trained on (what `make preflight`
    prints); refuses before the trainer starts on any problem."""
    split = INSTAR / "train"
    name = f"the chat template of models.{model}.base"
    a = audit_split(tokenizer, split, m.train.max_length, p, name)
    if a.problems:
        raise StageError(
            f"train {model}: the label-mask audit of {split} refuses:\n  - "
            + "\n  - ".join(f"{pr}: {pr.reason}" for pr in a.problems)
        )
    return a.summary()


def train(model: str, m: ModelParams, p: PreflightParams | None = None) -> dict[str, Any]:
    require_device(model, m)
    splits = [INSTAR / "train", INSTAR / "validation"]
    key = checkpoints.run_key(m, base_dir(model), splits, closure("stages.train"))
    # Every rank computes the same key; only rank 0 removes other runs' folders.
    if rank() == 0:
        folder, resume = checkpoints.prepare(model, key)
    else:
        folder = checkpoints.run_dir(model, key)
        resume = None
    pin_torch_threads()
    from instar.modeling.trainer import LiveCurves, build_trainer

    tokenizer, net = load_base(model, m)
    audit = audit_train_split(model, m, p or PreflightParams(), tokenizer)
    system_role = supports_system(tokenizer)
    split = load_split("train")
    if m.train.group_by_length:
        # one device's batch: under DDP each rank takes whole batches of the order in turn
        split = split.select(length_grouped(text_lengths(split), m.train.batch_size, m.train.seed))
    train_ds = as_messages(split, system_role)
    eval_ds = as_messages(load_split("validation"), system_role)

    live = None
    callbacks = []
    if rank() == 0:
        from dvclive import Live

        live = Live(dir=str(Path("dvclive") / model), dvcyaml=None, save_dvc_exp=False, report=None)
        callbacks.append(LiveCurves(live))
    trainer = build_trainer(net, tokenizer, train_ds, eval_ds, m, folder, callbacks)
    world = trainer.args.world_size
    if world > 1:
        # Ranks other than 0 find the checkpoint the same way (the folder is shared).
        resume = checkpoints.latest(folder)
        log = folder / "samples" / f"rank-{trainer.args.process_index}.tsv"
        log.parent.mkdir(exist_ok=True)
        log.unlink(missing_ok=True)
        trainer.sample_log = log
    if console.is_terminal:  # a live rich panel instead of one printed dict per log step
        from transformers import PrinterCallback
        from trl.trainer.callbacks import RichProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(RichProgressCallback())
    trainable, total = trainer.model.get_nb_trainable_parameters()
    resumed_from = checkpoints.state(resume)["global_step"] if resume else None
    if rank() == 0:
        console.print(
            f"train {model}: {len(train_ds)} examples, {trainable:,} of {total:,} parameters "
            f"trainable, {world} process(es), run {key}"
            + (f", resuming from {resume.name}" if resume else "")
        )
        if resume:
            callbacks[0].replay(checkpoints.state(resume)["log_history"])
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - start
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if evals and evals[-1]["step"] == trainer.state.global_step:
        final_eval = evals[-1]  # already evaluated at the last step; do not log it twice
    else:
        final_eval = trainer.evaluate()
    save_adapter(trainer.model, tokenizer, model, m)  # every rank: FSDP gathers from all
    if rank() != 0:
        return {}
    live.end()

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    curves = callbacks[0]
    metrics = {
        "train_loss": round(result.training_loss, 5),
        "first_logged_loss": round(losses[0], 5) if losses else None,
        "last_logged_loss": round(losses[-1], 5) if losses else None,
        "eval_loss": round(final_eval["eval_loss"], 5),
        "eval_perplexity": round(math.exp(min(final_eval["eval_loss"], 50)), 3),
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "trainable_parameters": trainable,
        "total_parameters": total,
        # what the loaded model runs (instar.modeling.loading.attention), not what was asked
        "attn_implementation": net.config._attn_implementation,
    }
    write_text(
        Path("models") / model / "README.md", model_card.render(model, m, metrics, key, audit)
    )
    # How this run went, beside its timings: a resumed run ends with the same adapter, card
    # and figures as an unbroken one, so these must not be in them.
    how = {
        "processes": world,
        "resumed_from_step": resumed_from,
        "first_step_this_run": curves.first_step,
    }
    write_json(PERF / f"{model}.json", {**how, **perf(elapsed, curves, result.metrics, final_eval)})
    checkpoints.finish(folder, {"run_key": key, "steps": trainer.state.global_step})
    console.print(
        f"train {model}: loss {metrics['first_logged_loss']} -> "
        f"{metrics['last_logged_loss']}, eval loss {metrics['eval_loss']}"
    )
    return metrics


def perf(elapsed: float, curves: LiveCurves, train: dict, final_eval: dict) -> dict[str, Any]:
    """How fast this run went: the trainer's runtimes and rates, and tokens/s per logged step."""
    rates = {
        k: v for k, v in {**train, **final_eval}.items() if k.endswith(("_runtime", "_per_second"))
    }
    return {
        "train_seconds": round(elapsed, 2),
        "tokens_per_second": curves.tokens_per_second(),
        **rates,
        "tokens_per_second_by_step": curves.speed,
    }


def relaunch(model: str, m: ModelParams) -> int:
    """Run this stage under `accelerate launch` with num_processes processes."""
    cfg = ACCELERATE_CONFIGS / f"{m.train.distributed}.yaml"
    if not cfg.is_file():
        raise StageError(f"{cfg}: accelerate config missing")
    env = dict(os.environ)
    if m.train.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # processes talk over gloo, whatever GPUs exist
        # The processes share the CPUs: one thread each, unless the caller chose a count.
        for name in PINNED & {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}:
            env[name] = "1"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(cfg),
        "--num_processes",
        str(m.train.num_processes),
        "-m",
        "stages.train",
        model,
    ]
    console.print(f"train {model}: {' '.join(cmd[2:])}")
    return subprocess.run(cmd, env=env).returncode


def main() -> None:
    p = parser("train", __doc__)
    p.add_argument("model", help="a key of `models` in params.yaml")
    args = p.parse_args()
    m = ModelParams.named(args.model)
    if m.train.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        code = relaunch(args.model, m)
        if code:
            raise SystemExit(code)
        return
    metrics = train(args.model, m, PreflightParams.load())
    if rank() == 0:
        export_merged(args.model, m)
        write_json(Path("metrics/train") / f"{args.model}.json", metrics)


if __name__ == "__main__":
    run(main)
