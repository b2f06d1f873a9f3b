"""Arabic benchmarks through lm-evaluation-harness (used by evaluate_base@ and evaluate@).

The model is lm-eval's `hf` around the loaded base (and adapter), built once and
run benchmark by benchmark, each through lm-eval's request cache, so a run that stops loses
at most the benchmark it was on. Local task YAMLs (lm_eval_tasks/instar/) are copied to a temp
folder with their `data_files` made absolute, so they load whatever the working directory.

Scores, flat so `dvc metrics diff` lines them up (metrics: acc and acc_norm, where the task
has them):
  oall.<benchmark>.<metric>            the leaderboard's convention: the unweighted mean over
                                       the benchmark's subtasks (a single task: its score)
  oall.<benchmark>.<metric>_lmeval_weighted  for a group: lm-eval's own mean, weighted by size
  oall.<benchmark>.items               items scored
  oall.mean_unweighted.<metric>        mean over benchmarks (the leaderboard's average)
  oall.mean_size_weighted.<metric>     mean over every item of every benchmark
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from instar.console import StageError, console
from instar.params.evaluate import BenchmarkParams
from instar.records.storage import atomic_path

ROOT = Path(__file__).resolve().parents[2]  # the project
METRICS = ("acc", "acc_norm")
# A data file path on its own line in a task YAML: `test: data/benchmarks/x.jsonl`.
DATA_FILE = re.compile(r"(?m)^(\s+[\w-]+:\s*)(?![/~])(\S+\.(?:jsonl|json|parquet|csv))\s*$")


def go_offline() -> None:
    """lm-eval and datasets must never look anything up: every model and set is local."""
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[key] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def include_dir(src: Path, dest: Path, root: Path = ROOT) -> Path:
    """Copy the task folder `src` to `dest`, relative data file paths made absolute (`root`)."""
    if not src.is_dir():
        raise StageError(f"{src}: no such task folder (evaluate.benchmarks.include_path)")
    dest.mkdir(parents=True, exist_ok=True)
    # Subfolders too: each generated OALL group keeps its own utils.py beside its YAMLs.
    for path in sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        target = dest / path.relative_to(src)
        if path.suffix in (".yaml", ".yml") or path.name.endswith("_yaml"):
            target.parent.mkdir(parents=True, exist_ok=True)
            text = DATA_FILE.sub(lambda m: f"{m[1]}{(root / m[2]).resolve()}", path.read_text())
            target.write_text(text, encoding="utf-8")
        elif path.suffix == ".py":
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return dest


def make_lm(args: dict[str, Any], device: str, batch_size: int):
    """lm-eval's `hf` model, as `lm_eval --model hf --model_args pretrained=...,peft=...`.
    evaluate_base@/evaluate@ pass the model loaded as training loads it (`pretrained`: the
    object, `tokenizer` beside it); lm-eval then ignores `device` and keeps its placement."""
    from lm_eval.api.registry import get_model

    return get_model("hf").create_from_arg_obj(args, {"batch_size": batch_size, "device": device})


def _leaves(results: dict[str, Any]) -> dict[str, int]:
    """Scored tasks (not groups) and their item counts."""
    return {t: int(n["effective"]) for t, n in results["n-samples"].items()}


def _score(results: dict[str, Any], task: str, metric: str) -> float | None:
    value = results["results"].get(task, {}).get(f"{metric},none")
    return None if value in (None, "N/A") else float(value)


def benchmark_metrics(name: str, task: str, results: dict[str, Any]) -> dict[str, float]:
    """Flat metrics of one benchmark from one simple_evaluate result."""
    leaves = _leaves(results)
    out: dict[str, float] = {f"oall.{name}.items": sum(leaves.values())}
    for metric in METRICS:
        scores = {t: _score(results, t, metric) for t in leaves}
        if any(v is None for v in scores.values()):
            continue  # e.g. ArabicMMLU has acc only
        out[f"oall.{name}.{metric}"] = round(sum(scores.values()) / len(scores), 6)
        if task not in leaves:  # a group: lm-eval's own, size-weighted mean too
            weighted = _score(results, task, metric)
            if weighted is not None:
                out[f"oall.{name}.{metric}_lmeval_weighted"] = round(weighted, 6)
    return out


def overall(per: dict[str, dict[str, float]], sizes: dict[str, dict[str, int]]) -> dict:
    """Means over benchmarks: unweighted (leaderboard) and over all items (size-weighted)."""
    out: dict[str, float] = {}
    for metric in METRICS:
        names = [b for b in per if f"oall.{b}.{metric}" in per[b]]
        if not names:
            continue
        out[f"oall.mean_unweighted.{metric}"] = round(
            sum(per[b][f"oall.{b}.{metric}"] for b in names) / len(names), 6
        )
        total = sum(sizes[b][t] * per[b][f"_leaf.{t}.{metric}"] for b in names for t in sizes[b])
        items = sum(n for b in names for n in sizes[b].values())
        out[f"oall.mean_size_weighted.{metric}"] = round(total / items, 6)
    return out


def sample_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What lm-eval logged per item (`log_samples`), in plain JSON: the log-likelihood of
    every choice, the strings scored, the gold index and lm-eval's own verdicts."""
    rows = []
    for s in samples:
        continuations = [a[1] for a in s["arguments"]]
        # Tasks whose choices come from a function (ArabicMMLU) keep none in the doc: the
        # scored strings less lm-eval's default target delimiter (one space) are the choices.
        choices = s["doc"].get("choices") or [c.removeprefix(" ") for c in continuations]
        target = s["target"]
        rows.append(
            {
                "doc_id": s["doc_id"],
                "target": int(target) if str(target).isdigit() else target,
                "choices": list(choices),
                "continuations": continuations,
                "loglikelihoods": [float(r[0]) for r in s["filtered_resps"]],
                "acc": s.get("acc"),
                "acc_norm": s.get("acc_norm"),
            }
        )
    return sorted(rows, key=lambda r: r["doc_id"])


def write_samples(folder: Path, task: str, rows: list[dict[str, Any]]) -> None:
    with atomic_path(folder / f"{task}.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def task_manager(include: str | None, tasks: set[str]):
    """lm-eval's task index: the include path alone when it holds every task asked for.

    Indexing lm-eval's own task tree (thousands of YAML files) took 11 s of an evaluate
    stage's 19 s here; tasks in the include path (ours are self-contained) never need it.
    """
    from lm_eval.tasks import TaskManager

    if include:
        own = TaskManager(include_path=include, include_defaults=False)
        if tasks <= set(own.all_tasks):
            return own
        return TaskManager(include_path=include)
    return TaskManager()


def run_benchmarks(
    lm, params: BenchmarkParams, cache: str | None, samples_dir: Path, label: str
) -> dict[str, float]:
    """Every benchmark of `params.tasks`; per-item logs to `samples_dir`/<task>.jsonl."""
    import lm_eval
    import lm_eval.evaluator

    go_offline()
    if samples_dir.exists():
        shutil.rmtree(samples_dir)
    samples_dir.mkdir(parents=True)
    per: dict[str, dict[str, float]] = {}
    sizes: dict[str, dict[str, int]] = {}
    # lm-eval adds torch's collect_env report to each call's results: a dozen subprocesses
    # (pip, nvidia-smi, ...) per benchmark, 15 of them a stage on the paper profile. Nothing
    # here reads it: only the scores and samples below leave this function.
    with (
        tempfile.TemporaryDirectory(prefix="instar-tasks-") as tmp,
        mock.patch.object(lm_eval.evaluator, "add_env_info", lambda results: None),
    ):
        include = params.include_path and str(include_dir(ROOT / params.include_path, Path(tmp)))
        manager = task_manager(include, set(params.tasks.values()))
        for name, task in params.tasks.items():
            console.print(f"{label}: lm-eval {task}")
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=[task],
                num_fewshot=params.num_fewshot,
                limit=params.limit,
                use_cache=cache,
                apply_chat_template=params.apply_chat_template,
                task_manager=manager,
                log_samples=True,
                bootstrap_iters=0,
                random_seed=0,
                numpy_random_seed=0,
                torch_random_seed=0,
                fewshot_random_seed=0,
            )
            if results is None:
                raise StageError(f"lm-eval returned nothing for {task}")
            per[name] = benchmark_metrics(name, task, results)
            sizes[name] = _leaves(results)
            for leaf in sizes[name]:
                for metric in METRICS:
                    score = _score(results, leaf, metric)
                    if score is not None:
                        per[name][f"_leaf.{leaf}.{metric}"] = score
                write_samples(samples_dir, leaf, sample_rows(results["samples"][leaf]))
    out = overall(per, sizes)
    for scores in per.values():
        out.update({k: v for k, v in scores.items() if not k.startswith("_leaf.")})
    return out


def cache_path(folder: str | None, fingerprint: str) -> str | None:
    """lm-eval's request cache keys requests, not models: one file per model fingerprint, so
    a retrained adapter never reads its predecessor's answers."""
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return str(Path(folder) / fingerprint)
