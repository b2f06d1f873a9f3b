"""Resumable training: checkpoints/<model>/<run key>/checkpoint-N, kept across `dvc repro`.

The run key hashes everything a run's result depends on (the model's params, the base, the
train and validation shards, the training code), so a changed param, base or dataset never
resumes an old run: folders of other keys are removed when a run starts.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from instar.imports import ROOT as PROJECT
from instar.params.train import ModelParams
from instar.records.storage import hash_into

ROOT = Path("checkpoints")

# Params that change nothing the optimiser sees: editing them must not throw a run away.
NEUTRAL = {"export_merged", "logging_steps", "eval_steps", "save_steps", "save_total_limit"}
_STEP = re.compile(r"^checkpoint-(\d+)$")


def _hash_tree(folder: Path, h) -> None:
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(folder)).encode())
        hash_into(h, p)


def run_key(m: ModelParams, base: Path, splits: list[Path], code: tuple[str, ...]) -> str:
    """16 hex digits naming one run: same key, same run (so it may be resumed). `code` is the
    training stage's import closure (instar.imports.closure), the files its dvc.yaml deps list."""
    h = hashlib.sha256()
    params: dict[str, Any] = m.model_dump(mode="json")
    params["train"] = {k: v for k, v in params["train"].items() if k not in NEUTRAL}
    h.update(json.dumps(params, sort_keys=True).encode())
    _hash_tree(base, h)
    for split in splits:
        _hash_tree(split, h)
    for f in code:
        hash_into(h, PROJECT / f)  # `code` paths start at the project's root
    return h.hexdigest()[:16]


def run_dir(model: str, key: str) -> Path:
    return ROOT / model / key


def complete(ckpt: Path) -> bool:
    # The trainer writes trainer_state.json last: a checkpoint cut short by a kill lacks it.
    return (ckpt / "trainer_state.json").is_file()


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint-N in folder, or None."""
    if not folder.is_dir():
        return None
    found = [
        (int(mt.group(1)), p)
        for p in folder.iterdir()
        if (mt := _STEP.match(p.name)) and p.is_dir() and complete(p)
    ]
    return max(found)[1] if found else None


def prepare(model: str, key: str) -> tuple[Path, Path | None]:
    """The run's folder and the checkpoint to resume from; other runs' folders are removed."""
    parent = ROOT / model
    parent.mkdir(parents=True, exist_ok=True)
    for p in parent.iterdir():
        if p.name != key:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    folder = run_dir(model, key)
    folder.mkdir(exist_ok=True)
    return folder, latest(folder)


def finish(folder: Path, summary: dict[str, Any]) -> None:
    """A finished run keeps no checkpoints (a rerun with the same key trains afresh; the
    cache holds no optimiser states), only what it was."""
    for p in folder.iterdir():
        if _STEP.match(p.name) or p.name.startswith("tmp-checkpoint"):
            shutil.rmtree(p, ignore_errors=True)
    (folder / "finished.json").write_text(json.dumps(summary, indent=2) + "\n")


def state(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / "trainer_state.json").read_text())
