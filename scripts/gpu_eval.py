"""The OALL suite for a base model and its adapter on a CUDA machine, from local files only.

  # once, on a machine with network: the benchmark sets at the profile's pinned commits into
  # a local HF cache folder, and from it as Parquet under data/hub/ (what hub@ writes; a
  # clone can `dvc pull` those instead)
  python -m scripts.gpu_eval fetch --hf-home /data/hf --profile profiles/paper.yaml
  # on the GPU machine, offline: base, then base + adapter, same harness and prompts, the
  # local task files of the profile's include_path reading data/hub/
  python -m scripts.gpu_eval run --hf-home /data/hf --profile profiles/paper.yaml \\
      --pretrained /models/Meta-Llama-3-8B-Instruct --peft models/llamar-8b/adapter \\
      --out reports/gpu_eval/llamar-8b.json
  # throughput only: the Llama-3-8B architecture built from config (random weights, a
  # random LoRA on top), on the project's own offline sets
  # (the tokenizer: the profile's Meta-Llama-3-8B-Instruct at its pin, from the HF cache;
  # --tokenizer <folder or cached hub id> for another)
  python -m scripts.gpu_eval run --from-config llama3-8b \\
      --out reports/gpu_eval/llama3-8b-config.json

The task list, few-shot count, limit, batch size and chat-template flag come from the
profile's `evaluate.benchmarks` (flags override them). The output has the pipeline's flat
keys (`oall.*`, per variant, and `delta.*`) plus items/s of each variant. Per-item logs go
beside it in <out stem>/<variant>/<task>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from instar.evaluation import harness as benchmarks
from instar.params.evaluate import BenchmarkParams
from instar.params.hub import HubDataParams
from instar.records.storage import write_json

# Llama-3-8B's published config (meta-llama/Meta-Llama-3-8B config.json).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "llama3-8b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    }
}


def bench_params(profile: Path, overrides: dict[str, Any]) -> BenchmarkParams:
    ev = (yaml.safe_load(profile.read_text()) or {}).get("evaluate") or {}
    data = {**(ev.get("benchmarks") or {}), **{k: v for k, v in overrides.items() if v is not None}}
    return BenchmarkParams.model_validate(data)


def dataset_repos(manager, names: list[str]) -> set[str]:
    """The hub datasets that the tasks (or groups) `names` read, from lm-eval's task index
    (nothing is loaded or downloaded)."""
    index = manager.task_index
    repos: set[str] = set()
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        entry = index.get(name)
        if entry is None:
            raise SystemExit(f"lm-eval has no task or group {name!r}")
        cfg = entry.cfg or {}
        if entry.kind.name == "GROUP":
            for child in cfg.get("task", []):
                walk(child if isinstance(child, str) else child.get("task", ""))
        elif entry.kind.name == "TAG":
            for other in index.values():
                if name in other.tags:
                    walk(other.name)
        elif cfg.get("dataset_path"):
            repos.add(cfg["dataset_path"])

    for n in names:
        walk(n)
    return repos


def benchmark_data(profile: Path, params: BenchmarkParams) -> dict[str, dict]:
    """The profile's hub_data entries that its local task files read (data/hub/<name>/)."""
    entries = (yaml.safe_load(profile.read_text()) or {}).get("hub_data") or {}
    if not params.include_path:
        return {}
    folder = benchmarks.ROOT / params.include_path
    texts = [p.read_text() for p in folder.rglob("*") if p.is_file() and "yaml" in p.name]
    return {n: h for n, h in entries.items() if any(f"data/hub/{n}/" in t for t in texts)}


def fetch(hf_home: Path, profile: Path, params: BenchmarkParams) -> None:
    """The benchmark sets at the profile's pinned commits, from the hub into `hf_home`'s cache
    and then as hub@'s Parquet under data/hub/ (what `run` reads); an unpinned one stops it."""
    os.environ["HF_HOME"] = str(hf_home)
    from instar import hub as hub_data
    from instar.console import StageError

    entries = benchmark_data(profile, params)
    unpinned = [n for n, h in entries.items() if not h.get("revision")]
    if unpinned:
        raise SystemExit(
            f"{profile}: hub_data {', '.join(unpinned)} not pinned: run "
            f"`python -m scripts.profiles pin {profile.stem}` first (fetch never takes main)"
        )
    for name, h in entries.items():
        try:
            hub_data.fetch(name, HubDataParams(**h))
        except StageError as e:
            raise SystemExit(str(e)) from None


# The published model of each architecture, whose tokenizer drives it by default.
TOKENIZERS = {"llama3-8b": "meta-llama/Meta-Llama-3-8B-Instruct"}


def default_tokenizer(name: str, profile: Path) -> tuple[str, str | None]:
    """The architecture's own model and the revision the profile pins for it: what a fresh
    GPU clone has in its HF cache after the paper profile's models are fetched."""
    repo = TOKENIZERS[name]
    models = (yaml.safe_load(profile.read_text()) or {}).get("models") or {}
    for m in models.values():
        base = (m or {}).get("base") or {}
        if base.get("repo_id") == repo:
            return repo, base.get("revision")
    return repo, None


def load_tokenizer(source: str, revision: str | None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as e:
        at = f"@{revision}" if revision else ""
        raise SystemExit(
            f"--from-config: no tokenizer {source}{at} here ({type(e).__name__}). Pass "
            "--tokenizer <a local folder or a hub id in the HF cache>, or put the profile's "
            "pinned model into the HF cache (--hf-home) first."
        ) from e


def from_config(name: str, tokenizer, device: str, overrides: dict[str, Any]):
    """A model of a published architecture with random weights, built on `device` in bf16
    (fp32 on CPU), with the tokenizer that drives it (ids must stay below the vocab)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = {**ARCHITECTURES[name], **overrides}
    cfg = AutoConfig.for_model(**spec)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        net = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return net.eval(), tokenizer


def random_lora(net):
    """A LoRA adapter with non-zero B matrices, so base and adapter differ as after training."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(net, cfg).eval()


def run_variant(
    lm, params: BenchmarkParams, out_dir: Path, label: str, weights: list[Path]
) -> dict[str, Any]:
    """One variant's benchmarks and items/s. The request cache is keyed by the weights' id
    (stages.evaluate.weights_id); a model built from config has none and runs uncached (a
    timing run)."""
    from stages.evaluate import weights_id

    start = time.perf_counter()
    cache = weights and benchmarks.cache_path(
        params.request_cache, f"{label.replace(' ', '-')}-{weights_id(weights, label)}"
    )
    metrics = benchmarks.run_benchmarks(
        lm, params, cache or None, out_dir / label.split()[-1], label
    )
    seconds = time.perf_counter() - start
    items = sum(v for k, v in metrics.items() if k.endswith(".items"))
    metrics["throughput.items_per_second"] = round(items / seconds, 3)
    metrics["throughput.seconds"] = round(seconds, 1)
    return metrics


def run(args: argparse.Namespace, params: BenchmarkParams) -> dict[str, Any]:
    if args.from_config:
        overrides = json.loads(args.config_overrides or "{}")
        source, revision = (
            (args.tokenizer, None)
            if args.tokenizer
            else default_tokenizer(args.from_config, args.profile)
        )
        tok = load_tokenizer(source, revision)  # before building 8B of random weights
        net, tok = from_config(args.from_config, tok, args.device, overrides)
        base_lm = benchmarks.make_lm(
            {"pretrained": net, "tokenizer": tok}, args.device, params.batch_size
        )
        adapter_lm = lambda: benchmarks.make_lm(  # noqa: E731
            {"pretrained": random_lora(net), "tokenizer": tok}, args.device, params.batch_size
        )
        name = args.from_config
    else:
        common = {"pretrained": args.pretrained, "dtype": args.dtype, "trust_remote_code": False}
        base_lm = benchmarks.make_lm(common, args.device, params.batch_size)
        adapter_lm = args.peft and (
            lambda: benchmarks.make_lm(
                {**common, "peft": args.peft}, args.device, params.batch_size
            )
        )
        name = Path(args.pretrained).name
    out_dir = args.out.with_suffix("")
    weights = [] if args.from_config else [Path(args.pretrained)]
    base = run_variant(base_lm, params, out_dir, f"{name} base", weights)
    result: dict[str, Any] = {f"base.{k}": v for k, v in base.items()}
    if adapter_lm:
        del base_lm  # one model on the GPU at a time
        peft = [] if args.from_config else [Path(args.peft)]
        tuned = run_variant(adapter_lm(), params, out_dir, f"{name} adapter", weights + peft)
        result.update(tuned)
        result.update(
            {
                f"delta.{k}": round(v - base[k], 6)
                for k, v in tuned.items()
                if k in base and not k.endswith(".items") and not k.startswith("throughput.")
            }
        )
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m scripts.gpu_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", choices=["fetch", "run"])
    p.add_argument("--profile", type=Path, default=Path("profiles/paper.yaml"))
    p.add_argument("--hf-home", type=Path, help="local HF cache holding the benchmark sets")
    p.add_argument("--pretrained", help="local folder of the base model's weights")
    p.add_argument("--peft", help="local folder of the adapter (omit: base only)")
    p.add_argument("--from-config", choices=sorted(ARCHITECTURES), help="random weights")
    p.add_argument("--config-overrides", help="JSON merged into the architecture (tests)")
    p.add_argument(
        "--tokenizer",
        help="with --from-config; default: the architecture's model at the profile's pin",
    )
    p.add_argument("--tasks", help="JSON {name: lm-eval task}; default: the profile's")
    p.add_argument("--limit", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=Path, default=Path("reports/gpu_eval/result.json"))
    args = p.parse_args(argv)
    overrides: dict[str, Any] = {"limit": args.limit, "batch_size": args.batch_size}
    if args.tasks:
        overrides["tasks"] = json.loads(args.tasks)
    if args.from_config and not args.tasks:
        # Throughput runs use the project's own sets: nothing to fetch.
        own = BenchmarkParams()
        overrides["tasks"], overrides["include_path"] = own.tasks, own.include_path
    params = bench_params(args.profile, overrides)
    if args.hf_home:
        os.environ["HF_HOME"] = str(args.hf_home)
    if args.command == "fetch":
        if not args.hf_home:
            p.error("fetch needs --hf-home")
        fetch(args.hf_home, args.profile, params)
        return
    if not (args.from_config or args.pretrained):
        p.error("run needs --pretrained (and --peft) or --from-config")
    benchmarks.go_offline()
    result = run(args, params)
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if "mean" in k or "throughput" in k}))


if __name__ == "__main__":
    main()
