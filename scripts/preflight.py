"""The preflight: before any GPU hour, what each model's run will need, and whether it is
bound to fail. No GPU, no weights (the model is built on the meta device), seconds.

    python -m scripts.preflight               # the default profile: make preflight
    python -m scripts.preflight paper         # a profile of profiles/: make preflight PROFILE=paper

One table per model:
- pins: the base's hub commit and hashed files (or the local build), and what is missing;
- memory: weights at the chosen precision or 4-bit, LoRA with its gradients and AdamW
  moments, activations at the batch size, length and checkpointing (instar/modeling/memory.py);
- the run: training tokens after the chat template, steps, epochs, and the time at
  `preflight.tokens_per_second` (and at the last run's measured rate, when there is one);
- the label-mask audit of its chat template on the train split as it is in the workspace
  (instar/modeling/audit.py): the share of tokens that carry loss, the answers the length
  limit cuts, and one rendered example, its loss-carrying text in colour here and between
  [[ and ]] in reports/preflight/<model>.txt.

Exit 1 when a rule refuses (the model, the template, the rule, the row and why); train@
refuses on the same rules before it starts. The profile's hub repositories are read from
the HF cache (HF_HUB_OFFLINE=1 by default), tokenizer and config files only.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from instar.console import StageError, console, parser, run
from instar.hub import is_offline
from instar.modeling.audit import PROBE, Audit, audit, audit_split, bracketed
from instar.modeling.build import base_dir
from instar.modeling.data import INSTAR
from instar.modeling.loading import base_source
from instar.modeling.memory import for_model
from instar.params.preflight import PreflightParams
from instar.params.train import ModelParams
from instar.records.storage import write_text
from scripts.profiles import OFFLINE_VARS, _at, load_profile, not_cached, pins

REPORTS = Path("reports/preflight")
PERF = Path("metrics/perf/train")


def source(model: str, m: ModelParams) -> dict[str, Any]:
    """Where the base's tokenizer and config are read from (never its weights), refused
    at once where they cannot be."""
    if m.base.kind == "config" and not (base_dir(model) / "config.json").is_file():
        raise StageError(f"{base_dir(model)}: no base model; run `make repro` or `dvc pull` first")
    if m.base.kind == "hub" and m.base.revision is None:
        raise StageError(f"models.{model}.base.revision is not pinned: run `profile pin` first")
    return base_source(model, m)


def pin_row(model: str, m: ModelParams) -> str:
    b = m.base
    if b.kind == "config":
        return f"built here from models.{model}.base ({b.architecture}, seed {b.seed})"
    files = f"{len(b.files)} files hashed" if b.files else "MISSING file hashes (`profile pin`)"
    return f"{b.repo_id}@{b.revision[:12]}, {files}"


def run_size(m: ModelParams, a: Audit) -> dict[str, Any]:
    """Tokens, steps and epochs of the run, from the audited rows' token counts."""
    t = m.train
    per_row = a.tokens / a.rows if a.rows else 0.0
    tokens = per_row * a.split_rows  # exact when the whole split was audited
    per_step = t.batch_size * t.grad_accum * t.num_processes
    units = math.ceil(tokens / t.max_length) if t.packing else a.split_rows
    per_epoch = max(1, math.ceil(units / per_step))
    steps = t.max_steps if t.max_steps > 0 else math.ceil(per_epoch * t.epochs)
    trained = steps * per_step * (t.max_length if t.packing else per_row)
    return {
        "split_tokens": round(tokens),
        "steps": steps,
        "epochs": round(steps / per_epoch, 3),
        "trained_tokens": round(trained),
    }


def hours(tokens: float, rate: float) -> str:
    seconds = tokens / rate
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def preflight(model: str, m: ModelParams, p: PreflightParams) -> tuple[Table, Audit]:
    from transformers import AutoConfig, AutoTokenizer

    src = source(model, m)
    trust = m.train.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(**src, trust_remote_code=trust)
    config = AutoConfig.from_pretrained(**src, trust_remote_code=trust)
    name = f"the chat template of {src['pretrained_model_name_or_path']}"
    split = INSTAR / "train"
    if any(split.glob("*.parquet")):
        a = audit_split(tokenizer, split, m.train.max_length, p, name)
        data = f"{split} as the workspace has it"
    else:  # a fresh clone: the template's own rules still hold or fail on one probe record
        a = audit(tokenizer, [(None, PROBE)], m.train.max_length, 1.0, name)
        data = (
            f"no {split} here (`make repro`, `dvc pull`): a probe record; train@ audits the split"
        )
    t = m.train
    mem = for_model(config, m)
    size = run_size(m, a)
    table = Table(title=f"preflight {model}", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("pin: base", pin_row(model, m))
    dtype = "nf4" if t.quantization == "4bit" else t.precision
    table.add_row(
        "memory (GiB, per GPU)",
        f"{mem['total_gib']} = weights {mem['weights']} ({dtype})"
        f" + LoRA r{m.lora.r} and AdamW {mem['lora_and_optimizer']} + activations "
        f"{mem['activations']} (batch {t.batch_size} x {t.max_length}, checkpointing "
        f"{'on' if t.gradient_checkpointing else 'off'}) + LM head tiles {mem['lm_head_tiles']}",
    )
    if a.split_rows:
        table.add_row(
            "run",
            f"{a.split_rows} rows, {size['split_tokens']:,} tokens after the chat template; "
            f"{size['steps']} steps ({size['epochs']} epochs), "
            f"{size['trained_tokens']:,} tokens trained",
        )
        times = (
            f"{hours(size['trained_tokens'], p.tokens_per_second)} at "
            f"{p.tokens_per_second:,.0f} tokens/s (preflight.tokens_per_second)"
        )
        perf = PERF / f"{model}.json"
        if perf.is_file() and (rate := json.loads(perf.read_text()).get("tokens_per_second")):
            times += (
                f"; {hours(size['trained_tokens'], rate)} at the last run's {rate:,.0f} tokens/s"
            )
        table.add_row("time", times)
    else:
        table.add_row("run", "its size is known once shard has written the train split")
    table.add_row(
        "label mask",
        f"{data}. {name}: {a.loss_share:.1%} of {a.tokens:,} tokens carry loss over {a.rows} rows; "
        f"answers cut by max_length {t.max_length}: {a.truncated} ({a.truncated_share:.1%})",
    )
    for problem in a.problems:
        table.add_row(Text("REFUSED", style="bold red"), f"{problem}: {problem.reason}")
    return table, a


def pins_table(profile: str, params: dict) -> Table:
    """Every hub repository the profile names: its pinned commit, or what is missing."""
    table = Table(title=f"preflight {profile}: pins", title_justify="left")
    for col in ("params key", "repository", "pinned", "HF cache"):
        table.add_column(col)
    gaps = set(not_cached(params))
    for p in pins(params):
        rev = _at(params, p.where).get("revision")
        cached = "(not pinned)" if rev is None else (
            "missing" if any(g.startswith(f"{p.repo_id}@{rev[:12]}") for g in gaps) else "ok"
        )  # fmt: skip
        pinned = rev[:12] if rev else Text("MISSING: `profile pin`", style="bold red")
        table.add_row(".".join(p.where), f"{p.repo_type} {p.repo_id}", pinned, cached)
    if not table.rows:
        table.add_row("(none)", "the profile reads no hub repository", "", "")
    return table


def show_example(runs: list[tuple[str, bool]], limit: int = 1200) -> Text:
    """The example's first `limit` characters, its loss-carrying runs in colour."""
    out = Text()
    for text, loss in runs:
        out.append(text[: max(0, limit - len(out))], style="bold green" if loss else "dim")
    return out


def main() -> None:
    p = parser("scripts.preflight", __doc__)
    p.add_argument("profile", nargs="?", default="default", help="default, or a profile's name")
    p.add_argument(
        "--online-if-needed",
        action="store_true",
        help="unset HF_HUB_OFFLINE when a pinned base is not in the HF cache (its tokenizer and "
        "config files come from the hub; never its weights), as `make paper` does",
    )
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    params = load_profile(args.profile)
    if args.online_if_needed and is_offline() and not_cached(params, ("model",)):
        for var in OFFLINE_VARS:
            os.environ.pop(var, None)
        # huggingface_hub reads the variable once, at import: start again without it
        os.execv(sys.executable, [sys.executable, "-m", "scripts.preflight", args.profile])
    pre = PreflightParams.load(params)
    refused = []
    console.print(pins_table(args.profile, params))
    for model in params.get("models") or {}:
        m = ModelParams.named(model, params)
        table, a = preflight(model, m, pre)
        console.print(table)
        console.print(show_example(a.example))
        write_text(REPORTS / f"{model}.txt", bracketed(a.example) + "\n")
        refused += [f"{model}: {a.template}: {pr}" for pr in a.problems]
    if refused:
        raise StageError("preflight refuses:\n  - " + "\n  - ".join(refused))
    console.print(f"preflight {args.profile}: every model passes ({REPORTS}/ has the examples)")


if __name__ == "__main__":
    run(main)
