"""Params `models.<m>`: the base, LoRA and training settings of one model."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from instar.params.base import BaseModelParams
from instar.params.core import Section


class LoraParams(Section):
    """The adapter (params `models.<name>.lora`), as PEFT's LoraConfig takes it."""

    r: Annotated[int, Field(gt=0)] = 16
    alpha: Annotated[int, Field(gt=0)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: str | list[str] = Field(
        "all-linear", description="module names, or 'all-linear' (every linear but the head)"
    )
    use_rslora: bool = Field(False, description="scale by alpha/sqrt(r) instead of alpha/r")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (DoRA)")


class TrainParams(Section):
    """How an adapter is trained (params `models.<name>.train`)."""

    learning_rate: Annotated[float, Field(gt=0)] = 2e-4
    epochs: Annotated[float, Field(gt=0)] = 1
    max_steps: int = -1
    batch_size: Annotated[int, Field(gt=0)] = 8
    grad_accum: Annotated[int, Field(gt=0)] = 1
    max_length: Annotated[int, Field(gt=0)] = 512
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.03
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    quantization: Literal["none", "4bit"] = "none"
    logging_steps: Annotated[int, Field(gt=0)] = 5
    eval_steps: Annotated[int, Field(gt=0)] = 20
    save_steps: Annotated[int, Field(gt=0)] = Field(
        100, description="a resumable checkpoint every this many optimiser steps"
    )
    save_total_limit: Annotated[int, Field(gt=0)] = 2
    packing: bool = Field(
        False,
        description="pack examples into max_length rows (TRL bfd, padding-free: attention never "
        "crosses examples: flash-attention varlen on GPU, a block-diagonal mask with sdpa)",
    )
    group_by_length: bool = Field(
        False,
        description="batches of rows of similar length, in a seeded order drawn once "
        "(instar.modeling.data.length_grouped; every epoch sees it): less padding, the "
        "same rows. false: a fresh random order each epoch",
    )
    gradient_checkpointing: bool = False
    seed: int = 0
    device: Literal["cpu", "cuda"] = "cpu"
    num_processes: Annotated[int, Field(gt=0)] = Field(
        1, description="> 1: the stage relaunches itself with `accelerate launch`"
    )
    distributed: Literal["ddp", "fsdp"] = "ddp"
    trust_remote_code: bool = False
    export_merged: bool = Field(
        False, description="also write models/<name>/merged/ (base + adapter, safetensors)"
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.quantization == "4bit" and self.distributed == "fsdp" and self.num_processes > 1:
            raise ValueError("4-bit QLoRA with FSDP is not supported here: use ddp")
        return self


class ModelParams(Section):
    SECTION: ClassVar[str] = "models"  # a named section: models.<name>
    base: BaseModelParams
    lora: LoraParams = LoraParams()
    train: TrainParams = TrainParams()
