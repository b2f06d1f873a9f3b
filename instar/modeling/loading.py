"""Where a model's base and adapter live, and loading them as params say (train, evaluate)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from instar.console import StageError
from instar.modeling.build import base_dir
from instar.params.train import ModelParams


def adapter_dir(model: str) -> Path:
    return Path("models") / model / "adapter"


def needs_cuda(m: ModelParams) -> bool:
    """Whether this model's settings need a CUDA GPU: its device only. Where the base comes
    from (a hub id or a local config) does not matter, and neither does the precision: bf16
    and fp16 train and evaluate on the CPU with torch 2.13 (tests/test_train.py trains both)."""
    return m.train.device == "cuda"


def require_device(model: str, m: ModelParams) -> None:
    """Refuse at once, before anything loads, what this machine cannot do."""
    import torch

    if needs_cuda(m) and not torch.cuda.is_available():
        raise StageError(
            f"model {model!r} needs a CUDA GPU ({m.base.repo_id or 'a local base'}, "
            "train.device: cuda); none is visible. The "
            "paper profile runs on a GPU machine with hub access or local weights and the "
            "gated licences accepted (see README, 'Profiles'); its CPU rehearsal is "
            "profiles/rehearsal.yaml."
        )


# Hub attention kernels (the `kernels` package) that transformers loads by repo id, fastest
# first: FA3 builds run on Hopper (compute capability 9) only.
HUB_KERNELS = (("kernels-community/vllm-flash-attn3", (9,)), ("kernels-community/flash-attn2", ()))


def cached_kernel(repo_id: str) -> str | None:
    """The commit of a hub kernel's version branch when the HF cache already holds it, else
    None. transformers would otherwise fetch the kernel at load time, and a run must never
    download code: the commit pins the load to what is on disk.

    The layout is the one the `kernels` package reads offline: refs/v<N> (N the major
    version transformers asks for) in `kernels--<org>--<name>`, or the older `models--`.
    """
    from huggingface_hub import constants
    from transformers.integrations.hub_kernels import get_attn_kernel_version

    ref = f"v{get_attn_kernel_version(repo_id)}"
    cache = Path(os.environ.get("KERNELS_CACHE") or constants.HF_HUB_CACHE)
    for kind in ("kernels", "models"):
        folder = cache / f"{kind}--{repo_id.replace('/', '--')}"
        pointer = folder / "refs" / ref
        if pointer.is_file():
            commit = pointer.read_text().strip()
            if (folder / "snapshots" / commit).is_dir():
                return commit
    return None


def attention(m: ModelParams) -> str:
    """The fastest attention implementation installed for this device and precision.

    Flash attention (the flash-attn package, or a pre-fetched hub kernel) runs the varlen
    kernels on the per-example boundaries TRL's padding-free packing passes; it needs CUDA
    and 16-bit activations. Otherwise SDPA, with the block-diagonal mask transformers derives
    from the restarting position_ids (the CPU tests check that examples stay apart).
    """
    import importlib.util

    import torch

    if m.train.device != "cuda" or m.train.precision == "fp32" or not torch.cuda.is_available():
        return "sdpa"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    if importlib.util.find_spec("kernels") is not None:
        major = torch.cuda.get_device_capability()[0]
        for repo_id, majors in HUB_KERNELS:
            commit = cached_kernel(repo_id) if not majors or major in majors else None
            if commit:
                return f"{repo_id}@{commit}"
    return "sdpa"


def base_source(model: str, m: ModelParams) -> dict[str, Any]:
    """`from_pretrained`'s arguments for the base: the local folder or the pinned revision."""
    if m.base.kind == "config":
        return {"pretrained_model_name_or_path": str(base_dir(model))}
    return {"pretrained_model_name_or_path": m.base.repo_id, "revision": m.base.revision}


def load_base(model: str, m: ModelParams):
    """Tokenizer and model, from the local base folder or the pinned hub revision."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    src = base_source(model, m)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        m.train.precision
    ]
    # Weights as safetensors only (no pickle), and no code from the hub unless a param says so.
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "use_safetensors": True,
        "trust_remote_code": m.train.trust_remote_code,
        "attn_implementation": attention(m),
    }
    if m.train.quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if m.train.device == "cuda" else torch.float32,
        )
        if m.train.device == "cuda":  # each DDP process holds its own copy on its own GPU
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    tokenizer = AutoTokenizer.from_pretrained(**src, trust_remote_code=m.train.trust_remote_code)
    if tokenizer.pad_token is None:
        # Llama-3-Instruct ships none. Padding with eos is what TRL does for training
        # (SFTTrainer: `args.pad_token or tokenizer.pad_token or eos`), so evaluation pads
        # the same way; padded positions are masked in both.
        tokenizer.pad_token = tokenizer.eos_token
    net = AutoModelForCausalLM.from_pretrained(**src, **kwargs)
    return tokenizer, net
