"""models/<model>/README.md: a Hugging Face model card for the trained adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from instar.params.train import ModelParams
from instar.records.storage import file_digest

SPLITS = Path("data/instar")


def shard_hashes(splits=("train", "validation"), root: Path = SPLITS) -> str:
    """The sha256 of each shard the adapter was trained on, as data/instar/manifest.json
    lists them. Hashed here rather than read from the manifest: train would otherwise
    depend on it and rerun when only the test split changes."""
    lines = []
    for split in splits:
        for shard in sorted((root / split).glob("*.parquet")):
            digest = file_digest(shard)
            lines.append(f"  - `{split}/{shard.name}`: sha256 `{digest}`")
    return "\n".join(lines)


def base_id(m: ModelParams) -> tuple[str, str]:
    """(what the card names as base_model, its revision)."""
    if m.base.kind == "hub":
        return m.base.repo_id, m.base.revision or "unpinned"
    return f"instar-tiny-{m.base.architecture} (built from config, random init)", "local"


def render(
    model: str, m: ModelParams, metrics: dict[str, Any], run_key: str, audit: dict[str, Any]
) -> str:
    """The card; `audit` is the label-mask audit of the train split (its summary and its
    bracketed example, instar/modeling/audit.py)."""
    base, revision = base_id(m)
    front = {
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "language": ["ar"],
        "license": m.base.license.split(":")[0] if m.base.license else "apache-2.0",
        "datasets": ["ClusterlabAi/InstAr-500k"],
        "tags": ["lora", "qlora" if m.train.quantization == "4bit" else "lora-sft", "sft", "trl"],
    }
    if m.base.kind == "hub":
        front["base_model"] = m.base.repo_id
    params = json.dumps(m.model_dump(mode="json"), indent=2, ensure_ascii=False)
    figures = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    qlora = m.train.quantization == "4bit"
    method = "QLoRA (4-bit NF4 base, double quantisation)" if qlora else "LoRA"
    gemma = m.base.chat_template == "gemma" or "gemma" in (m.base.repo_id or "")
    fold = ", with the system text folded into the first user turn (no system role)"
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip()}
---

# {model}: InstAr {method} adapter

A {method} adapter trained with TRL's `SFTTrainer` by the InstAr pipeline (`train@{model}`),
following "LlamAr & GemmAr" (arXiv 2407.02147): supervised fine-tuning on Arabic
instruction/response pairs, loss on the assistant's tokens only.

- **Base model:** {base}
- **Base revision:** `{revision}`
- **Dataset:** InstAr as built by this pipeline; the shards trained on (the same hashes
  as in `data/instar/manifest.json`):
{shard_hashes()}
- **Run key:** `{run_key}` (params + base + train/validation data + training code)

## Use

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("models/{model}/adapter")
base = AutoModelForCausalLM.from_pretrained("<the base model above>")
model = PeftModel.from_pretrained(base, "models/{model}/adapter")
```

Prompt it with the tokenizer's chat template (`tokenizer.apply_chat_template`); the base
model's own template is used{fold if gemma else ""}.

## Intended use

Research on Arabic instruction following: answering, explaining, summarising, classifying
and extracting from Modern Standard Arabic text, as the InstAr tasks do.

## Limits

- Trained on what the pipeline's data holds; the default profile's tiny models are random-init
  stand-ins that show the pipeline works, not language models worth using.
- Not evaluated for safety, dialects, or factual accuracy; generated (synthetic) training
  pairs carry their teacher's errors. Not for medical, legal or financial advice.
- The base model's licence and use policy apply.

## Training params

```json
{params}
```

## Label-mask audit

The train split tokenized as the trainer tokenizes it (chat template, `{{% generation %}}`
spans, `max_length` {m.train.max_length}), over {audit["rows"]} of its {audit["split_rows"]} rows:
{audit["loss_share"]:.1%} of {audit["tokens"]:,} tokens carry loss; the length limit cuts the
answer of {audit["truncated_rows"]} rows ({audit["truncated_share"]:.1%}). Every example has
loss-carrying tokens, every uncut answer trains its end-of-turn token, and no system text
is lost (train@ refuses to start otherwise). One example, its loss-carrying text between
`[[` and `]]`:

```text
{audit["example"]}
```

## Final metrics

| metric | value |
|---|---|
{figures}
"""
