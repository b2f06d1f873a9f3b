"""report: every model's figures side by side (reports/summary.md) and charts (reports/*.png)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from stages import config
from stages.console import StageError, console, parser, run
from stages.storage import atomic_path, write_text

REPORTS = Path("reports")


def load_metrics(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def loss_curve(model: str) -> tuple[list[int], list[float]]:
    path = Path("dvclive") / model / "plots" / "metrics" / "train" / "loss.tsv"
    if not path.exists():
        return [], []
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def summary(title: str, evals: dict, trains: dict) -> str:
    lines = [
        f"# {title}",
        "",
        "Written by the `report` stage from `metrics/eval/*.json` and `metrics/train/*.json`.",
        "Perplexity is on the assistant tokens of the InstAr test split; lower is better.",
        "",
        "## Results",
        "",
        "| model | variant | test loss | test perplexity | Δ perplexity |",
        "|---|---|---:|---:|---:|",
    ]
    for model, ev in evals.items():
        base, tuned = ev["base"]["instar_test"], ev["instar_test"]
        lines.append(f"| {model} | base | {base['loss']:.4f} | {base['perplexity']:.2f} | |")
        lines.append(
            f"| {model} | + InstAr adapter | {tuned['loss']:.4f} | "
            f"{tuned['perplexity']:.2f} | {ev['delta']['instar_test']['perplexity']:+.2f} |"
        )
    lines += [
        "",
        "## Training",
        "",
        "| model | steps | first loss | last loss | eval loss | tokens/s | trainable params |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, tr in trains.items():
        lines.append(
            f"| {model} | {tr['steps']} | {tr['first_logged_loss']} | {tr['last_logged_loss']} "
            f"| {tr['eval_loss']} | {tr['tokens_per_second']} | {tr['trainable_parameters']:,} |"
        )
    lines += ["", "![test perplexity](perplexity.png)", "", "![training loss](train_loss.png)", ""]
    return "\n".join(lines)


def charts(evals: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(evals)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(models))
    ax.bar(
        [x - 0.2 for x in xs],
        [evals[m]["base"]["instar_test"]["perplexity"] for m in models],
        width=0.4,
        label="base",
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [evals[m]["instar_test"]["perplexity"] for m in models],
        width=0.4,
        label="+ adapter",
    )
    ax.set_xticks(list(xs), models)
    ax.set_ylabel("perplexity (InstAr test)")
    ax.set_yscale("log")
    ax.legend()
    _save(fig, REPORTS / "perplexity.png")

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
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main() -> None:
    p = parser("report", __doc__)
    p.parse_args()
    params = config.section("report")
    evals = load_metrics(Path("metrics/eval"))
    if not evals:
        raise StageError("metrics/eval/ has no results; run the evaluate stages first")
    trains = load_metrics(Path("metrics/train"))
    charts(evals)
    write_text(REPORTS / "summary.md", summary(params.title, evals, trains))
    console.print(f"report: {len(evals)} models -> {REPORTS / 'summary.md'}")


if __name__ == "__main__":
    run(main)
