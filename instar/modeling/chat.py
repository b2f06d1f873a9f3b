"""Chat formatting shared by training and evaluation: records become chat messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path("templates/chat")
# Special tokens of the real models whose chat templates the tiny ones reuse.
SPECIAL_TOKENS = {
    "llama3": {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": "<|finetune_right_pad_id|>",
        "additional": ["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"],
    },
    "gemma": {
        "bos_token": "<bos>",
        "eos_token": "<end_of_turn>",
        "pad_token": "<pad>",
        "additional": ["<start_of_turn>", "<eos>", "<unk>"],
    },
}


def chat_template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def supports_system(tokenizer) -> bool:
    """Whether the template accepts a system turn (Gemma's raises on one)."""
    try:
        tokenizer.apply_chat_template(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], tokenize=False
        )
        return True
    except Exception:  # jinja's raise_exception surfaces as a TemplateError
        return False


def to_messages(rec: dict[str, Any], system_role: bool) -> list[dict[str, str]]:
    """One record as a conversation; where the template has no system role, the system text
    goes first in the user turn, as Gemma's own guidance says."""
    user = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"] else "")
    messages = []
    if rec["system"]:
        if system_role:
            messages.append({"role": "system", "content": rec["system"]})
        else:
            user = f"{rec['system']}\n\n{user}"
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": rec["output"]})
    return messages
