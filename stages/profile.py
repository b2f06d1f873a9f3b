"""Profiles: the default one is params.yaml; others live in profiles/<name>.yaml.

check NAME   validate the profile and say what this machine lacks to run it
pin NAME     resolve its hub revisions to commit hashes (needs hub access)
run NAME     run it as a DVC experiment in a temporary workspace (`dvc exp run --temp`),
             leaving params.yaml and the default outputs as they were
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stages import config
from stages.console import StageError, console, parser, run

PROFILES = Path("profiles")


def profile_path(name: str) -> Path:
    if name == "default":
        return config.PARAMS_FILE
    path = PROFILES / f"{config._check_name(name, 'profile')}.yaml"
    if not path.exists():
        known = ", ".join(["default", *sorted(p.stem for p in PROFILES.glob("*.yaml"))])
        raise StageError(f"no profile {name!r} (known: {known})")
    return path


def missing(params: dict) -> list[str]:
    """Everything that stops this profile here, all at once."""
    problems = config.check_all(params)
    if problems:
        return problems
    models = {k: config.named("models", k, params) for k in params.get("models") or {}}
    sources = {k: config.named("sources", k, params) for k in params.get("sources") or {}}
    needs_gpu = [
        k
        for k, m in models.items()
        if m.base.kind == "hub" or m.train.device == "cuda" or m.train.precision != "fp32"
    ]
    if needs_gpu:
        import torch

        if not torch.cuda.is_available():
            problems.append(f"models {', '.join(needs_gpu)} need a CUDA GPU; none is visible")
    for k, m in models.items():
        if m.base.kind == "hub" and m.base.revision is None:
            problems.append(f"models.{k}.base.revision is not pinned (run `profile pin`)")
    limit = config.section("clean", params).max_length
    if limit.unit == "tokens" and not Path(limit.tokenizer).exists() and limit.revision is None:
        problems.append("clean.max_length.revision of the hub tokenizer is not pinned")
    for k, s in sources.items():
        if s.format == "hf" and s.hf.revision is None:
            problems.append(f"sources.{k}.hf.revision is not pinned (run `profile pin`)")
    for k in params.get("text_sources") or {}:
        t = config.named("text_sources", k, params)
        if t.format == "hf" and t.hf.revision is None:
            problems.append(f"text_sources.{k}.hf.revision is not pinned")
    gen = config.section("generate", params) if params.get("generate") else None
    if gen and gen.backend == "openai" and gen.openai.api_key_env:
        if not os.environ.get(gen.openai.api_key_env):
            problems.append(f"generate.openai.api_key_env: {gen.openai.api_key_env} is not set")
    if gen and gen.backend == "transformers" and not Path(gen.model).is_dir():
        problems.append(f"generate.model {gen.model!r} is not a local model folder")
    hub = [m.base.repo_id for m in models.values() if m.base.kind == "hub"]
    if hub and os.environ.get("HF_HUB_OFFLINE") == "1" and not _cached(hub):
        problems.append(
            f"HF_HUB_OFFLINE=1 and no local copy of {', '.join(hub)}: unset it "
            "(hub access, gated licences accepted) or fill the HF cache first"
        )
    return problems


def _cached(repo_ids: list[str]) -> bool:
    from huggingface_hub import scan_cache_dir

    try:
        cached = {r.repo_id for r in scan_cache_dir().repos}
    except Exception:  # no cache folder at all
        return False
    return all(r in cached for r in repo_ids)


def check(name: str) -> None:
    params = config.read_params(profile_path(name))
    problems = missing(params)
    if problems:
        raise StageError(f"profile {name!r} cannot run here:\n  - " + "\n  - ".join(problems))
    console.print(f"profile {name!r}: ready")


def pin(name: str) -> None:
    """Write the current commit of every hub model and dataset into the profile."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise StageError("HF_HUB_OFFLINE=1: pinning asks the hub for commits; unset it")
    from huggingface_hub import HfApi
    from ruamel.yaml import YAML

    path = profile_path(name)
    yaml = YAML()  # round-trip: keeps the comments people wrote
    doc = yaml.load(path.read_text(encoding="utf-8"))
    api = HfApi()
    for key, m in (doc.get("models") or {}).items():
        if m["base"].get("kind") == "hub":
            m["base"]["revision"] = api.model_info(m["base"]["repo_id"]).sha
            console.print(f"models.{key}: {m['base']['repo_id']}@{m['base']['revision']}")
    for key, s in (doc.get("sources") or {}).items():
        if s.get("format") == "hf":
            s["hf"]["revision"] = api.dataset_info(s["hf"]["repo_id"]).sha
            console.print(f"sources.{key}: {s['hf']['repo_id']}@{s['hf']['revision']}")
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(doc, f)


def run_profile(name: str, exp_name: str | None) -> None:
    check(name)
    if name == "default":
        raise StageError("the default profile is params.yaml: use `dvc repro` or `make repro`")
    original = config.PARAMS_FILE.read_bytes()
    try:
        config.PARAMS_FILE.write_bytes(profile_path(name).read_bytes())
        # --temp runs in a copy of the workspace: default outputs stay as they are.
        subprocess.run(["dvc", "exp", "run", "--temp", "-n", exp_name or name], check=True)
    except subprocess.CalledProcessError as e:
        raise StageError(f"dvc exp run failed (exit {e.returncode})") from None
    finally:
        config.PARAMS_FILE.write_bytes(original)
    console.print(f"experiment {exp_name or name!r} done: `dvc exp show`, `dvc exp apply`")


def main() -> None:
    p = parser("profile", __doc__)
    p.add_argument("action", choices=["check", "pin", "run"])
    p.add_argument("name", help="default, or a file name in profiles/ without .yaml")
    p.add_argument("-n", "--exp-name", help="experiment name for `run` (default: the profile)")
    args = p.parse_args()
    {
        "check": lambda: check(args.name),
        "pin": lambda: pin(args.name),
        "run": lambda: run_profile(args.name, args.exp_name),
    }[args.action]()


if __name__ == "__main__":
    run(main)
