"""Base models: the tiny from-config builders (a byte-level BPE tokenizer with a real model's
chat template, a model of the same architecture), where a base lives (models/<m>/base/), and
the check of a hub model's cached files against the hashes that `profile pin` wrote."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from instar.console import StageError
from instar.modeling.chat import SPECIAL_TOKENS, chat_template
from instar.params.base import BaseModelParams
from instar.records.storage import file_digest

# What from_pretrained reads of a hub model: its top-level config, tokenizer and safetensors
# files (weights load as safetensors only; `original/`, .bin, .pth and .gguf are never read).
LOADED = ("*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "*.tiktoken")


def loaded_files(names) -> list[str]:
    return sorted(
        n for n in names if "/" not in n and any(fnmatch.fnmatchcase(n, p) for p in LOADED)
    )


def check_hub_files(model: str, params: BaseModelParams) -> list[dict[str, Any]]:
    """The pinned files of the pinned revision, from the HF cache (fetched first when the hub
    is reachable and they are missing), each checked against its pinned hash."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    where = f"{params.repo_id}@{params.revision}"
    try:
        folder = Path(
            snapshot_download(
                params.repo_id,
                revision=params.revision,
                allow_patterns=[f.name for f in params.files],
            )
        )
    except LocalEntryNotFoundError:
        raise StageError(
            f"models.{model}: {where} is not in the HF cache and the hub is not reachable "
            "(HF_HUB_OFFLINE=1?): fill the cache or run where the hub is reachable"
        ) from None
    except RepositoryNotFoundError as e:  # gated repositories answer so without a token
        raise StageError(
            f"models.{model}: the hub refused {where} ({type(e).__name__}): accept its licence "
            "on the hub and log in (`hf auth login`)"
        ) from None
    checked = []
    for f in params.files:
        path = folder / f.name
        if not path.is_file():
            raise StageError(f"models.{model}: {f.name} of {where} is not in the HF cache")
        kind, want = ("sha256", f.sha256) if f.sha256 else ("git_sha1", f.git_sha1)
        got = file_digest(path, kind)
        if got != want:
            raise StageError(
                f"models.{model}: {f.name} of {where} in the HF cache has {kind} {got}, the "
                f"pin says {want}; delete it from the cache and fetch it again, or re-pin"
            )
        checked.append({"name": f.name, kind: got, "size": path.stat().st_size})
    return checked


def base_dir(model: str) -> Path:
    return Path("models") / model / "base"


def train_texts(folder: Path, batch_size: int = 4096):
    for shard in sorted(folder.glob("*.parquet")):
        cols = ["system", "instruction", "input", "output"]
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=batch_size, columns=cols):
            for col in cols:
                yield from (t for t in batch.column(col).to_pylist() if t)


def build_tokenizer(texts, vocab_size: int, template: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = SPECIAL_TOKENS[template]
    tokens = [
        special["bos_token"],
        special["eos_token"],
        special["pad_token"],
        *special["additional"],
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special["bos_token"],
        eos_token=special["eos_token"],
        pad_token=special["pad_token"],
        additional_special_tokens=special["additional"],
        chat_template=chat_template(template),
        model_max_length=4096,
    )


def build_model(params: BaseModelParams, tokenizer):
    import torch
    from transformers import GemmaConfig, GemmaForCausalLM, LlamaConfig, LlamaForCausalLM

    cls_config, cls_model = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "gemma": (GemmaConfig, GemmaForCausalLM),
    }[params.architecture]
    cfg = cls_config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **params.config,
    )
    torch.manual_seed(params.seed)
    return cls_model(cfg)
