"""evaluate_base@<model> and evaluate@<model>: the base model, then its adapter, measured alike.

Each variant is the base loaded as training loads it (instar.modeling.loading.load_base, 4-bit
included), plus the adapter through PEFT for the adapter, handed to lm-eval's `hf` model as
a loaded object, and run on:
  - the benchmarks of `evaluate.benchmarks` (instar/evaluation/harness.py): `oall.*`, per-item logs
    in reports/lm_eval/<model>/<variant>/<task>.jsonl;
  - the InstAr test split: loss on the assistant's tokens, as in training, and perplexity
    = exp(loss) (`instar_test.loss`, `instar_test.perplexity`);
  - greedy answers to the first `evaluate.generation.samples` test records, scored against
    the reference with chrF and ROUGE-L on Arabic words (`instar_test.chrf`,
    `instar_test.rougeL`), saved for reading in reports/samples/.
The base stage writes all its figures to metrics/eval_base/<model>.json, the adapter stage
to metrics/eval_adapter/<model>.json (scores, plain acc, item and token counts). The metric,
metrics/eval/<model>.json, holds what experiments are compared on: the adapter's scores (see
`headline`) and `delta.<key>`, adapter minus base, for each of them. The adapter stage also
writes reports/plots/eval_<model>.json for `dvc plots`. The base is its own stage so that a
change to LoRA or training params does not evaluate it again.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from instar.console import StageError, console, parser, progress, run
from instar.evaluation.fingerprint import KEY as FINGERPRINT
from instar.evaluation.fingerprint import fingerprint as eval_fingerprint
from instar.modeling.build import base_dir
from instar.params import core as config
from instar.params.evaluate import EvaluateParams
from instar.params.train import ModelParams
from instar.records.storage import atomic_path, hash_into, write_json
from instar.reproducible import pin_torch_threads

METRICS = Path("metrics/eval")
BASE_METRICS = Path("metrics/eval_base")
ADAPTER_METRICS = Path("metrics/eval_adapter")
SAMPLES = Path("reports/samples")
LM_EVAL = Path("reports/lm_eval")
PLOTS = Path("reports/plots")


def encode(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels with everything before the assistant's answer masked (-100)."""
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    labels = [-100] * len(prompt) + full[len(prompt) :]
    return full[:max_length], labels[:max_length]


def input_device(net):
    """Where the inputs go: the device of the input embeddings (the first layer, also when
    a device map spreads the model), not a hard-coded one."""
    return net.get_input_embeddings().weight.device


# Rows of logits turned to fp32 at a time for the loss: the paper's 8 x 2048 tokens x 128k
# vocabulary would be 8 GB as one fp32 tensor; 1024 rows of it are 0.5 GB.
LOSS_ROWS = 1024


def assistant_loss(
    net, tokenizer, examples: list[list[dict]], params: EvaluateParams, label: str
) -> dict[str, float]:
    """Token-weighted mean loss over the assistant tokens of `examples`."""
    import torch

    net.eval()
    device = input_device(net)
    total_nll, total_tokens = 0.0, 0
    encoded = [encode(tokenizer, m, params.max_length) for m in examples]
    batches = range(0, len(encoded), params.batch_size)
    with torch.no_grad():
        for start in progress(batches, f"evaluate {label}", len(batches)):
            chunk = encoded[start : start + params.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            pad = tokenizer.pad_token_id
            ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in chunk], device=device)
            labels = torch.tensor(
                [lab + [-100] * (width - len(lab)) for _, lab in chunk], device=device
            )
            mask = torch.tensor(
                [[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk], device=device
            )
            logits = net(input_ids=ids, attention_mask=mask).logits
            # Position t predicts token t + 1: only the positions whose next token carries
            # loss are read, a chunk of rows at a time, each turned to fp32 on its own.
            # (With a device map the logits are on the last layer's device.)
            labels = labels.to(logits.device)
            rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)
            for at in range(0, len(rows), LOSS_ROWS):
                r, c = rows[at : at + LOSS_ROWS], cols[at : at + LOSS_ROWS]
                nll = torch.nn.functional.cross_entropy(
                    logits[r, c].float(), labels[r, c + 1], reduction="sum"
                )
                total_nll += nll.item()
            total_tokens += len(rows)
            del logits
    loss = total_nll / max(total_tokens, 1)
    return {
        "loss": round(loss, 5),
        "perplexity": round(math.exp(min(loss, 50)), 3),
        "tokens": total_tokens,
    }


def weights_id(folders: list[Path], salt: str) -> str:
    """Identity of the weights (lm-eval's request cache key, a local base's and an adapter's
    fingerprint field): every file's name and size, and the bytes of files under 64 MiB
    (large weight files: their first and last MiB)."""
    h = hashlib.sha256(salt.encode())
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            size = path.stat().st_size
            h.update(f"{path.relative_to(folder)}|{size}".encode())
            if size < 64 << 20:
                hash_into(h, path)
                continue
            with open(path, "rb") as f:
                h.update(f.read(1 << 20))
                f.seek(-(1 << 20), 2)
                h.update(f.read())
    return h.hexdigest()[:16]


def local_base(m: ModelParams) -> str:
    """A base built here has no revision: its recipe (models.<m>.base) stands for one. Not
    its bytes, which follow the train split its tokenizer is trained on."""
    recipe = json.dumps(m.base.model_dump(mode="json"), sort_keys=True)
    return "local:" + hashlib.sha256(recipe.encode()).hexdigest()[:12]


def generate(net, tokenizer, prompts: list[list[dict]], params: EvaluateParams) -> list:
    """Greedy answers, batched with left padding."""
    import torch

    gen = params.generation
    room = max(params.max_length - gen.max_new_tokens, 8)
    encoded = [
        tokenizer.apply_chat_template(
            p, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"][-room:]
        for p in prompts
    ]
    pad = tokenizer.pad_token_id
    answers: list[str] = []
    batches = range(0, len(encoded), gen.batch_size)
    device = input_device(net)
    net.eval()
    with torch.no_grad():
        for start in progress(batches, "generate", len(batches)):
            chunk = encoded[start : start + gen.batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.tensor([[pad] * (width - len(i)) + i for i in chunk], device=device)
            mask = torch.tensor(
                [[0] * (width - len(i)) + [1] * len(i) for i in chunk], device=device
            )
            out = net.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=gen.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
            answers += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [a.strip() for a in answers]


def load_variant(model: str, m: ModelParams, variant: str):
    """The model that lm-eval and the test loss read, and its tokenizer: the base loaded as
    training loaded it (instar.modeling.loading.load_base: precision, NF4 4-bit with double
    quantisation, trust_remote_code, pad token), with the adapter on top for `adapter`.
    One path for every setting; lm-eval gets the loaded object, since its own loading from
    model args cannot take a quantisation config (it passes its own)."""
    from peft import PeftModel

    from instar.modeling.loading import adapter_dir, load_base

    tokenizer, net = load_base(model, m)
    if m.train.device == "cuda" and net.device.type != "cuda":  # 4-bit: its device map did
        net = net.to("cuda")
    if variant == "adapter":
        net = PeftModel.from_pretrained(net, str(adapter_dir(model)))
    return net.eval(), tokenizer


def evaluate_variant(
    model: str, m: ModelParams, params: EvaluateParams, variant: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Flat metrics of one variant (base or adapter) and its generations."""
    from instar.evaluation.harness import cache_path, make_lm, run_benchmarks
    from instar.evaluation.textmetrics import chrf, rouge_l, sentence_chrf
    from instar.modeling.chat import supports_system, to_messages
    from instar.modeling.data import load_split
    from instar.modeling.loading import adapter_dir, require_device

    require_device(model, m)
    folders = [base_dir(model)] + ([adapter_dir(model)] if variant == "adapter" else [])
    for folder in folders:
        if not folder.is_dir():
            raise StageError(f"{folder}: missing; run `dvc repro` up to it first")
    label = f"{model} {variant}"
    net, tokenizer = load_variant(model, m, variant)
    lm = make_lm(
        {"pretrained": net, "tokenizer": tokenizer},
        m.train.device,
        params.benchmarks.batch_size,
    )
    bench = params.benchmarks
    salt = f"{m.train.precision}|{m.train.quantization}|{m.base.revision}"
    cache = cache_path(bench.request_cache, f"{model}-{variant}-{weights_id(folders, salt)}")
    metrics = run_benchmarks(lm, bench, cache, LM_EVAL / model / variant, label)
    metrics[FINGERPRINT] = eval_fingerprint(
        bench,
        Path("."),  # stages run from the repository root
        dtype=m.train.precision,
        quantization=m.train.quantization,
        chat_template=tokenizer.chat_template,
        base=m.base.revision or local_base(m),
        adapter=weights_id([adapter_dir(model)], "") if variant == "adapter" else "none",
        device=m.train.device,
    )

    net, tokenizer = lm.model, lm.tokenizer
    system_role = supports_system(tokenizer)
    test = load_split("test", params.limit)
    examples = [to_messages(r, system_role) for r in test]
    loss = assistant_loss(net, tokenizer, examples, params, label)
    metrics.update({f"instar_test.{k}": v for k, v in loss.items()})
    metrics["instar_test.records"] = len(test)

    rows = test.select(range(min(params.generation.samples, len(test)))).to_list()
    answers = generate(net, tokenizer, [to_messages(r, system_role)[:-1] for r in rows], params)
    refs = [r["output"] for r in rows]
    rouges = rouge_l(answers, refs) if rows else []
    metrics["instar_test.generated"] = len(rows)
    if rows:
        metrics["instar_test.chrf"] = round(chrf(answers, refs), 4)
        metrics["instar_test.rougeL"] = round(sum(rouges) / len(rouges), 6)
    generations = [
        {
            "id": r["id"],
            "task": r["task"],
            "prompt": to_messages(r, True)[-2]["content"],
            "reference": r["output"],
            "answer": a,
            "chrf": round(sentence_chrf(a, r["output"]), 3),
            "rougeL": round(g, 4),
        }
        for r, a, g in zip(rows, answers, rouges, strict=True)
    ]
    console.print(
        f"evaluate {label}: perplexity {loss['perplexity']}, "
        f"benchmarks mean acc_norm {metrics.get('oall.mean_unweighted.acc_norm')}"
    )
    return metrics, generations


TEST_SCORES = (
    "instar_test.loss",
    "instar_test.perplexity",
    "instar_test.chrf",
    "instar_test.rougeL",
)


def headline(scores: dict[str, Any]) -> dict[str, Any]:
    """The figures experiments are compared on (each gets a `dvc exp show` column): every
    benchmark's and mean's acc_norm (acc where a task has no acc_norm), as the leaderboard
    ranks, and the test split's loss, perplexity, chrF and ROUGE-L. Counts are left out."""
    keep = {}
    for key, value in scores.items():
        stem, _, metric = key.rpartition(".")
        if key in TEST_SCORES or (
            key.startswith("oall.")
            and (metric == "acc_norm" or (metric == "acc" and f"{stem}.acc_norm" not in scores))
        ):
            keep[key] = value
    return keep


def deltas(adapter: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """`delta.<key>`: adapter minus base, for the headline scores both have."""
    return {f"delta.{k}": round(v - base[k], 6) for k, v in headline(adapter).items() if k in base}


def plot_rows(adapter: dict[str, Any], base: dict[str, Any], benchmarks: list[str]) -> list:
    """Rows for the `dvc plots` bar chart: one per benchmark and variant."""
    rows = []
    for name in [*benchmarks, "mean_unweighted"]:
        for variant, scores in (("base", base), ("adapter", adapter)):
            key = f"oall.{name}.acc_norm"
            if key in scores:
                label = f"{name} ({variant})"
                rows.append({"benchmark": label, "variant": variant, "acc_norm": scores[key]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate_base(model: str, m: ModelParams, params: EvaluateParams) -> None:
    metrics, generations = evaluate_variant(model, m, params, "base")
    write_jsonl(SAMPLES / "base" / f"{model}.jsonl", generations)
    write_json(BASE_METRICS / f"{model}.json", metrics)


def evaluate_adapter(model: str, m: ModelParams, params: EvaluateParams) -> None:
    base_file = BASE_METRICS / f"{model}.json"
    if not base_file.is_file():
        raise StageError(f"{base_file}: missing; run `dvc repro evaluate_base@{model}` first")
    base = json.loads(base_file.read_text())
    metrics, generations = evaluate_variant(model, m, params, "adapter")
    base_answers = {g["id"]: g for g in read_jsonl(SAMPLES / "base" / f"{model}.jsonl")}
    side_by_side = []
    for g in generations:
        b = base_answers.get(g["id"], {})
        side_by_side.append(
            {
                "id": g["id"],
                "task": g["task"],
                "prompt": g["prompt"],
                "reference": g["reference"],
                "base": b.get("answer"),
                "adapter": g["answer"],
                "chrf": {"base": b.get("chrf"), "adapter": g["chrf"]},
                "rougeL": {"base": b.get("rougeL"), "adapter": g["rougeL"]},
            }
        )
    write_jsonl(SAMPLES / f"{model}.jsonl", side_by_side)
    plot = plot_rows(metrics, base, list(params.benchmarks.tasks))
    write_json(PLOTS / f"eval_{model}.json", plot)
    write_json(ADAPTER_METRICS / f"{model}.json", metrics)
    write_json(
        METRICS / f"{model}.json",
        {**headline(metrics), **deltas(metrics, base), FINGERPRINT: metrics[FINGERPRINT]},
    )
    console.print(
        f"evaluate {model}: perplexity {base['instar_test.perplexity']} -> "
        f"{metrics['instar_test.perplexity']}"
    )


def main() -> None:
    p = parser("evaluate", __doc__)
    p.add_argument("model", help="a key of `models` in params.yaml")
    p.add_argument(
        "--base", action="store_true", help="evaluate the base model (evaluate_base@<model>)"
    )
    args = p.parse_args()
    params = config.read_params()
    m = ModelParams.named(args.model, params)
    ev = EvaluateParams.load(params)
    pin_torch_threads()  # the same figures on a rerun (instar.reproducible)
    (evaluate_base if args.base else evaluate_adapter)(args.model, m, ev)


if __name__ == "__main__":
    run(main)
