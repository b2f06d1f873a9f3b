"""base@<model>: the model that adapters are trained on (models/<model>/base/).

kind config: a tiny model built from the config in params.yaml, with a byte-level BPE
tokenizer trained on the InstAr train split and the chat template of the real model it
stands in for. Nothing is downloaded.
kind hub: the weights stay in the HF cache at the pinned revision. This stage fetches the
files that loading reads (or finds them in the cache offline), checks each against the hash
that `profile pin` wrote into `base.files`, and writes base.json (hub id, revision, licence,
the files it checked), so that another revision or another file is a visible params change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from instar.console import StageError, console, parser, run
from instar.modeling.build import (
    base_dir,
    build_model,
    build_tokenizer,
    check_hub_files,
    train_texts,
)
from instar.params.base import BaseModelParams, load_base
from instar.records.storage import atomic_dir, write_json
from instar.reproducible import pin_torch_threads

TRAIN = Path("data/instar/train")


def build_base(model: str, params: BaseModelParams) -> dict[str, Any]:
    out = base_dir(model)
    if params.kind == "hub":
        if params.revision is None:
            raise StageError(
                f"models.{model}.base.revision is not pinned to a commit; run "
                "`python -m scripts.profiles pin <profile>` where the hub is reachable"
            )
        if not params.files:
            raise StageError(
                f"models.{model}.base.files: no file list of {params.repo_id}@"
                f"{params.revision[:12]} to check the weights against; run "
                "`python -m scripts.profiles pin <profile>`"
            )
        info = {
            "kind": "hub",
            "repo_id": params.repo_id,
            "revision": params.revision,
            "license": params.license,
            "files": check_hub_files(model, params),
        }
        with atomic_dir(out) as tmp:
            write_json(tmp / "base.json", info)
        size = sum(f["size"] for f in info["files"]) / 1e9
        console.print(
            f"base {model}: {params.repo_id}@{params.revision[:12]} (hub, pinned): "
            f"{len(info['files'])} files, {size:.2f} GB, each as pinned"
        )
        return info
    if not any(TRAIN.glob("*.parquet")):
        raise StageError(f"{TRAIN}: no train shards; run `dvc repro shard` first")
    tokenizer = build_tokenizer(train_texts(TRAIN), params.vocab_size, params.chat_template)
    net = build_model(params, tokenizer)
    n_params = sum(p.numel() for p in net.parameters())
    info = {
        "kind": "config",
        "architecture": params.architecture,
        "parameters": n_params,
        "vocab_size": len(tokenizer),
        "chat_template": params.chat_template,
    }
    with atomic_dir(out) as tmp:
        net.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "base.json", info)
    console.print(
        f"base {model}: {params.architecture}, {n_params / 1e6:.2f}M parameters, "
        f"vocab {len(tokenizer)}"
    )
    return info


def main() -> None:
    p = parser("base", __doc__)
    p.add_argument("model", help="a key of `models` in params.yaml")
    args = p.parse_args()
    pin_torch_threads()  # random init and tokenizer training: the same bytes on a rerun
    build_base(args.model, load_base(args.model))


if __name__ == "__main__":
    run(main)
