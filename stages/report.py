"""report: every model's figures side by side (reports/summary.md) and charts (reports/*.png).

The results table has the shape of the paper's: one row per model and variant (base, base +
InstAr adapter), one column per benchmark, the averages, and the InstAr test figures.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

from instar.console import StageError, console, parser, run
from instar.evaluation.fingerprint import differences
from instar.params import core as config
from instar.params.report import ReportParams
from instar.records.storage import atomic_path, write_text
from instar.reproducible import PNG_METADATA

REPORTS = Path("reports")


def load_metrics(folder: Path, models: list[str]) -> dict[str, dict[str, Any]]:
    # Only the params' models: another profile's files stay in git beside them (an
    # experiment of the paper profile still holds the default models' metrics).
    return {m: json.loads((folder / f"{m}.json").read_text()) for m in models
            if (folder / f"{m}.json").is_file()}  # fmt: skip


def loss_curve(model: str) -> tuple[list[int], list[float]]:
    path = Path("dvclive") / model / "plots" / "metrics" / "train" / "loss.tsv"
    if not path.exists():
        return [], []
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def benchmark_names(scores: dict[str, Any]) -> list[str]:
    """Benchmarks in a flat metrics dict, in its key order (`oall.<name>.acc[_norm]`)."""
    names: list[str] = []
    for key in scores:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "oall" and parts[2] in ("acc", "acc_norm"):
            if not parts[1].startswith("mean_") and parts[1] not in names:
                names.append(parts[1])
    return sorted(names)


def score(scores: dict[str, Any], name: str) -> tuple[float | None, str]:
    """A benchmark's acc_norm (the leaderboard's metric), or acc where the task has no other."""
    for metric in ("acc_norm", "acc"):
        if f"oall.{name}.{metric}" in scores:
            return scores[f"oall.{name}.{metric}"], metric
    return None, ""


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def committed(path: Path) -> dict[str, Any]:
    """`path` as the last commit (git HEAD) has it: the last committed run's figures; {}
    outside git or where HEAD has none."""
    try:
        out = subprocess.run(
            ["git", "show", f"HEAD:{path.as_posix()}"], capture_output=True, text=True, timeout=60
        )
    except OSError:
        return {}
    try:
        return json.loads(out.stdout) if out.returncode == 0 else {}
    except ValueError:
        return {}


VARIANTS = (("base", "metrics/eval_base"), ("+ InstAr adapter", "metrics/eval"))


def fingerprint_changes(evals: dict, bases: dict) -> dict[tuple[str, str], list[str]]:
    """(model, variant) -> the fingerprint fields that differ from the last committed run:
    scores measured under other settings, not comparable with it as they stand."""
    found = {}
    for model in evals:
        for (label, folder), now in zip(
            VARIANTS, (bases.get(model, {}), evals[model]), strict=True
        ):
            changed = differences(now, committed(Path(folder) / f"{model}.json"))
            if changed:
                found[(model, label)] = changed
    return found


def results_table(evals: dict, bases: dict, flagged=()) -> list[str]:
    """The paper's results table: one row per model and variant, one column per benchmark;
    a flagged row's variant ends in "(fingerprint changed)"."""
    names = sorted({n for ev in [*evals.values(), *bases.values()] for n in benchmark_names(ev)})
    metric = {
        n: next((score(ev, n)[1] for ev in evals.values() if score(ev, n)[0] is not None), "")
        for n in names
    }
    head = [f"{n} ({metric[n]})" for n in names]
    head += ["average", "average (size-weighted)", "test ppl", "chrF", "ROUGE-L"]
    lines = ["| model | variant | " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(head)]
    for model in evals:
        for (label, _), sc in zip(VARIANTS, (bases.get(model, {}), evals[model]), strict=True):
            shown = f"{label} (fingerprint changed)" if (model, label) in flagged else label
            cells = [_pct(score(sc, n)[0]) for n in names]
            cells += [
                _pct(sc.get("oall.mean_unweighted.acc_norm")),
                _pct(sc.get("oall.mean_size_weighted.acc_norm")),
                f"{sc['instar_test.perplexity']:.2f}" if "instar_test.perplexity" in sc else "",
                f"{sc['instar_test.chrf']:.2f}" if "instar_test.chrf" in sc else "",
                _pct(sc.get("instar_test.rougeL")),
            ]
            lines.append(f"| {model} | {shown} | " + " | ".join(cells) + " |")
    return lines


def summary(
    title: str, evals: dict, bases: dict, trains: dict, contamination: dict, changes=None
) -> str:
    changes = changes or {}
    lines = [
        f"# {title}",
        "",
        "Written by the `report` stage from `metrics/eval/*.json` (adapters),",
        "`metrics/eval_base/*.json` (their base models), `metrics/train/*.json` and",
        "`metrics/contamination.json`.",
        "",
        "## Results",
        "",
        "Benchmarks: accuracy in percent through lm-evaluation-harness, 0-shot, `acc_norm`",
        "(log-likelihood over the answer's length in characters) where the task has it.",
        "A benchmark made of subtasks scores the unweighted mean of its subtasks, and",
        "`average` is the unweighted mean over benchmarks, as the Open Arabic LLM Leaderboard",
        "averages; `average (size-weighted)` is the mean over every item, as lm-eval's group",
        "scores are. Base and adapter ran in the same harness with the same prompts: compare",
        "them with each other, not with the leaderboard's lighteval numbers (README,",
        "'Evaluation'). Test ppl: perplexity on the assistant tokens of the InstAr test split",
        "(lower is better); chrF and ROUGE-L (percent): greedy answers to test prompts.",
        "",
        *results_table(evals, bases, changes),
        "",
    ]
    if changes:
        lines += [
            "Fingerprint changed since the last committed run (git HEAD's metrics files): these",
            "rows were measured under other settings, so their scores do not compare with",
            "that run's as they stand.",
            "",
            *[
                f"- {model}, {label}: " + "; ".join(fields)
                for (model, label), fields in changes.items()
            ],
            "",
        ]
    if contamination:
        lines += [
            f"Contamination: {contamination.get('contamination.items_in_train', 0)} of "
            f"{contamination.get('contamination.items_checked', 0)} benchmark items have their "
            "normalised question in the training split (reports/contamination.jsonl).",
            "",
        ]
    lines += [
        "## Change from base to adapter",
        "",
        "| model | Δ average acc_norm (points) | Δ test loss | Δ test perplexity | Δ chrF |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, ev in evals.items():
        d = {k[len("delta.") :]: v for k, v in ev.items() if k.startswith("delta.")}
        lines.append(
            f"| {model} | {_signed(d.get('oall.mean_unweighted.acc_norm'), 100)} | "
            f"{_signed(d.get('instar_test.loss'))} | {_signed(d.get('instar_test.perplexity'))} | "
            f"{_signed(d.get('instar_test.chrf'))} |"
        )
    lines += [
        "",
        "## Training",
        "",
        "| model | steps | first loss | last loss | eval loss | trainable params |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model, tr in trains.items():
        lines.append(
            f"| {model} | {tr['steps']} | {tr['first_logged_loss']} | {tr['last_logged_loss']} "
            f"| {tr['eval_loss']} | {tr['trainable_parameters']:,} |"
        )
    lines += [
        "",
        # Not read here: a timing differs on every run, and report's outputs must not.
        "How fast each model trained (seconds, tokens/s): metrics/perf/train/<model>.json.",
        "",
        "![benchmarks, base and adapter](benchmarks.png)",
        "",
        "![test perplexity](perplexity.png)",
        "",
        "![training loss](train_loss.png)",
        "",
    ]
    return "\n".join(lines)


def _signed(value: float | None, scale: float = 1) -> str:
    return "" if value is None else f"{scale * value:+.2f}"


def charts(evals: dict, bases: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(evals)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(models))
    ax.bar(
        [x - 0.2 for x in xs],
        [bases[m]["instar_test.perplexity"] for m in models],
        width=0.4,
        label="base",
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [evals[m]["instar_test.perplexity"] for m in models],
        width=0.4,
        label="+ adapter",
    )
    ax.set_xticks(list(xs), models)
    ax.set_ylabel("perplexity (InstAr test)")
    ax.set_yscale("log")
    ax.legend()
    _save(fig, REPORTS / "perplexity.png")

    names = sorted({n for ev in evals.values() for n in benchmark_names(ev)}) + ["average"]
    fig, axes = plt.subplots(
        1, len(models), figsize=(max(5, 0.9 * len(names)) * len(models), 3.8), squeeze=False
    )
    for ax, m in zip(axes[0], models, strict=True):
        xs = range(len(names))
        for offset, label, sc in ((-0.2, "base", bases[m]), (0.2, "+ adapter", evals[m])):
            values = [
                100
                * (
                    sc.get("oall.mean_unweighted.acc_norm")
                    if n == "average"
                    else score(sc, n)[0] or 0
                )
                for n in names
            ]
            ax.bar([x + offset for x in xs], values, width=0.4, label=label)
        ax.set_xticks(list(xs), names, rotation=45, ha="right")
        ax.set_ylabel("accuracy, % (acc_norm)")
        ax.set_title(m)
        ax.set_ylim(0, 100)
        ax.legend()
    _save(fig, REPORTS / "benchmarks.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m in models:
        steps, losses = loss_curve(m)
        ax.plot(steps, losses, label=m)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    _save(fig, REPORTS / "train_loss.png")


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path, ".png") as tmp:
        fig.tight_layout()
        fig.savefig(tmp, dpi=120, format="png", metadata=PNG_METADATA)
    plt.close(fig)


def main() -> None:
    p = parser("report", __doc__)
    p.parse_args()
    params = ReportParams.load()
    models = sorted(config.read_params().get("models") or {})
    evals = load_metrics(Path("metrics/eval"), models)
    if not evals:
        raise StageError("metrics/eval/ has no results; run the evaluate stages first")
    bases = load_metrics(Path("metrics/eval_base"), models)
    missing = sorted(set(evals) - set(bases))
    if missing:
        raise StageError(f"metrics/eval_base/ lacks {missing}; run the evaluate_base stages first")
    trains = load_metrics(Path("metrics/train"), models)
    contamination_file = Path("metrics/contamination.json")
    contamination = (
        json.loads(contamination_file.read_text()) if contamination_file.is_file() else {}
    )
    charts(evals, bases)
    changes = fingerprint_changes(evals, bases)
    text = summary(params.title, evals, bases, trains, contamination, changes)
    write_text(REPORTS / "summary.md", text)
    console.print(f"report: {len(evals)} models -> {REPORTS / 'summary.md'}")


if __name__ == "__main__":
    run(main)
