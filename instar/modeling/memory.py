"""A GPU memory estimate for LoRA/QLoRA training, from a model's config (never its weights).

The model is built on the meta device, so its parameters are counted exactly, and the
LoRA matrices follow from the linear layers that `target_modules` names. Activations follow
the tensors a decoder layer keeps for its backward pass with SDPA or flash attention (no
seq x seq scores): per token, the two norms' inputs and outputs, q, k and v, the attention
output, and the MLP's gate, up, activation and product. With activation checkpointing only
each layer's input is kept, plus one layer recomputed at a time. TRL's fused LM head
computes log-probs in tiles, so full logits never exist. The GPU script prints the measured
peak beside this figure; tests/test_preflight.py checks it against torchtune's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# NF4 with double quantisation: 4 bits a weight, an 8-bit absmax per 64 weights and an fp32
# constant per 256 absmax blocks (QLoRA paper, section 3).
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# TRL's fused LM head: one [4096 tokens, vocab chunk] fp32 tile and its gradient at a time.
HEAD_TILE = 4096 * 8192 * 4 * 2


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: sizes, and its parameters counted on meta."""

    hidden: int
    intermediate: int
    layers: int
    kv_width: int  # key (and value) width per token: kv heads x head dim
    vocab: int
    params: int
    linear_params: int  # in decoder-layer linear layers: what 4-bit quantises
    lora_params: int


def shape(config, target_modules: list[str] | str, r: int) -> Shape:
    """The shape of `config` (a transformers config) with LoRA of rank `r` on
    `target_modules` ("all-linear": every linear layer but the LM head)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in net.parameters())
    linear = lora = 0
    for name, module in net.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        linear += module.weight.numel()
        leaf = name.rsplit(".", 1)[-1]
        if target_modules == "all-linear" or leaf in target_modules:
            lora += r * (module.in_features + module.out_features)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Shape(
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        layers=config.num_hidden_layers,
        kv_width=getattr(config, "num_key_value_heads", heads) * head_dim,
        vocab=config.vocab_size,
        params=params,
        linear_params=linear,
        lora_params=lora,
    )


def for_model(config, m) -> dict[str, Any]:
    """The estimate for a model's params (`models.<m>`: its LoRA and train settings)."""
    t = m.train
    return estimate(
        shape(config, m.lora.target_modules, m.lora.r),
        batch=t.batch_size,
        seq=t.max_length,
        precision=t.precision,
        quantization=t.quantization,
        checkpointing=t.gradient_checkpointing,
    )


def estimate(
    s: Shape,
    *,
    batch: int,
    seq: int,
    precision: str,
    quantization: str,
    checkpointing: bool,
) -> dict[str, Any]:
    """Bytes of each part at one optimiser step: weights, LoRA (fp32 weights, gradients and
    two AdamW moments), activations; and the total in GiB."""
    act = 2 if precision in ("bf16", "fp16") else 4  # activations in the compute dtype
    if quantization == "4bit":
        weights = s.linear_params * NF4_BYTES + (s.params - s.linear_params) * act
    else:
        weights = s.params * BYTES[precision]
    lora = s.lora_params * 4 * 4  # PEFT keeps adapters in fp32: weight, grad, 2 moments
    tokens = batch * seq
    # q + k + v + attention out + 2 norms' in and out (6 x hidden), then gate, up, act, product
    layer = (6 * s.hidden + 2 * s.kv_width + 4 * s.intermediate) * act
    if checkpointing:
        activations = tokens * (s.layers * s.hidden * act + layer)
    else:
        activations = tokens * s.layers * layer
    parts = {
        "weights": weights,
        "lora_and_optimizer": lora,
        "activations": activations,
        "lm_head_tiles": HEAD_TILE,
    }
    return {
        **{k: round(v / GIB, 2) for k, v in parts.items()},
        "total_gib": round(sum(parts.values()) / GIB, 2),
    }
