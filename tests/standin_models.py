"""Tiny models under the paper's model ids, for the stand-in hub (tests/hubstub.py).

Each has the real model's architecture, special tokens and shipped chat template (the
original one, without `{% generation %}` markers: TRL's copies in trl/chat_templates/), and
the real tokenizer's quirks that code must survive: Llama-3-8B-Instruct ships no pad token.
Only the sizes differ, so the paper profile's code path runs unchanged on CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trl

from instar.modeling.build import build_model, build_tokenizer
from instar.params.base import BaseModelParams
from tests.hubstub import add_folder

TRL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"
PAPER_MODELS = {
    # hub id: (architecture, the project's template name, TRL's copy of the shipped template)
    "meta-llama/Meta-Llama-3-8B-Instruct": ("llama", "llama3", "llama3.jinja"),
    "google/gemma-7b-it": ("gemma", "gemma", "gemma.jinja"),
}
SIZES = {
    "llama": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "gemma": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
              "max_position_embeddings": 2048},
}  # fmt: skip


def save_standin(repo_id: str, texts: list[str], dest: Path, vocab_size: int = 600) -> Path:
    """A tiny model for `repo_id` saved to `dest` as the hub would serve it."""
    architecture, template, shipped = PAPER_MODELS[repo_id]
    tokenizer = build_tokenizer(iter(texts), vocab_size, template)
    tokenizer.chat_template = (TRL_TEMPLATES / shipped).read_text(encoding="utf-8")
    if architecture == "llama":
        tokenizer.pad_token = None  # as Meta-Llama-3-8B-Instruct: no pad token at all
    params = BaseModelParams(
        kind="config", architecture=architecture, chat_template=template, config=SIZES[architecture]
    )
    net = build_model(params, tokenizer)
    net.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest


def add_paper_models(cache: Path, texts: list[str]) -> dict[str, str]:
    """Both paper models into the HF cache `cache`; returns repo id -> commit."""
    commits = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repo_id in PAPER_MODELS:
            folder = save_standin(repo_id, texts, Path(tmp) / repo_id.replace("/", "--"))
            commits[repo_id] = add_folder(cache, repo_id, folder)
    return commits
