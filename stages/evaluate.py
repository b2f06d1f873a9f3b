"""evaluate@<model>: the adapter against its base on the InstAr test split.

Loss counts the assistant's tokens only, as in training; perplexity is exp(mean token
loss). Results go to metrics/eval/<model>.json as `instar_test.*` (adapter), `base.*`
and `delta.*` (adapter minus base), so `dvc metrics diff` lines them up.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stages import config
from stages.console import console, parser, progress, run
from stages.storage import write_json


def encode(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels with everything before the assistant's answer masked (-100)."""
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    labels = [-100] * len(prompt) + full[len(prompt) :]
    return full[:max_length], labels[:max_length]


def assistant_loss(
    net, tokenizer, examples: list[list[dict]], params: config.EvaluateParams, label: str
) -> dict[str, float]:
    """Token-weighted mean loss over the assistant tokens of `examples`."""
    import torch

    net.eval()
    total_nll, total_tokens = 0.0, 0
    encoded = [encode(tokenizer, m, params.max_length) for m in examples]
    batches = range(0, len(encoded), params.batch_size)
    with torch.no_grad():
        for start in progress(batches, f"evaluate {label}", len(batches)):
            chunk = encoded[start : start + params.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            pad = tokenizer.pad_token_id
            ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in chunk])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in chunk])
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk])
            logits = net(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                target.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total_nll += nll.item()
            total_tokens += int((target != -100).sum())
    loss = total_nll / max(total_tokens, 1)
    return {
        "loss": round(loss, 5),
        "perplexity": round(math.exp(min(loss, 50)), 3),
        "tokens": total_tokens,
    }


def evaluate(model: str, m: config.ModelParams, params: config.EvaluateParams) -> dict[str, Any]:
    from peft import PeftModel

    from stages.chat import supports_system, to_messages
    from stages.data import load_split
    from stages.loading import adapter_dir, load_base, require_device

    require_device(model, m)
    tokenizer, net = load_base(model, m)
    system_role = supports_system(tokenizer)
    test = load_split("test", params.limit)
    examples = [to_messages(r, system_role) for r in test]
    base = assistant_loss(net, tokenizer, examples, params, f"{model} base")
    tuned = PeftModel.from_pretrained(net, str(adapter_dir(model)))
    adapter = assistant_loss(tuned, tokenizer, examples, params, f"{model} adapter")
    result = {
        "examples": len(examples),
        "instar_test": adapter,
        "base": {"instar_test": base},
        "delta": {
            "instar_test": {k: round(adapter[k] - base[k], 5) for k in ("loss", "perplexity")}
        },
    }
    console.print(
        f"evaluate {model}: perplexity base {base['perplexity']} -> adapter {adapter['perplexity']}"
    )
    return result


def main() -> None:
    p = parser("evaluate", __doc__)
    p.add_argument("model", help="a key of `models` in params.yaml")
    args = p.parse_args()
    params = config.read_params()
    result = evaluate(
        args.model, config.named("models", args.model, params), config.section("evaluate", params)
    )
    write_json(Path("metrics/eval") / f"{args.model}.json", result)


if __name__ == "__main__":
    run(main)
