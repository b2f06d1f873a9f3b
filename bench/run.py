"""Benchmark of the data stages (ingest, clean and dedup over one raw jsonl file) and of a
no-op `dvc repro` of the whole pipeline.

    make bench                        # makes its own 100k-row corpus (bench.corpus)
    make bench CORPUS=raw.jsonl       # any raw file of {"instruction", "input", "output"}
    python -m bench.run --rows 500000
    python -m bench.run --no-noop     # the data stages only

Each stage runs as the pipeline runs it (`python -m stages.<stage>`) in a scratch workspace
with this project's clean/dedup params, one source `bench`. Writes bench/results.json:
seconds, records/s and peak memory (max RSS) per stage, and, for a corpus with a truth
file beside it (truth.jsonl), what the stages kept as scored by bench.quality.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = [("ingest", ["bench"]), ("source_list", []), ("clean", ["bench"]), ("dedup", [])]
NOOP_TARGET_SECONDS = 5.0  # a `dvc repro` with nothing to do, on the default profile


def workspace(corpus: Path, dest: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    bench = {
        "sources": {"bench": {"kind": "instructions", "format": "jsonl", "path": str(corpus)}},
        "ingest": {
            **params.get("ingest", {}),
            "templates": str(
                ROOT / params.get("ingest", {}).get("templates", "templates/tasks.yaml")
            ),
        },
        "clean": params.get("clean", {}),
        "dedup": params.get("dedup", {}),
    }
    (dest / "params.yaml").write_text(yaml.safe_dump(bench, allow_unicode=True), encoding="utf-8")
    return dest


def run_stage(stage: str, args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}", *args], cwd=cwd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: stage {stage} failed")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def bench(corpus: Path, out: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="instar-bench-") as tmp:
        ws = workspace(corpus, Path(tmp))
        results: dict = {"corpus": str(corpus), "stages": {}}
        for stage, args in STAGES:
            r = run_stage(stage, args, ws)
            if stage == "source_list":  # bookkeeping (the names, the clean overrides), not measured
                continue
            metrics = {
                "ingest": "metrics/ingest/bench.json",
                "clean": "metrics/clean/bench.json",
                "dedup": "metrics/dedup.json",
            }[stage]
            m = json.loads((ws / metrics).read_text())
            rows_in = m.get("records_in", m.get("records", 0) + m.get("quarantined", 0))
            r["records_in"] = rows_in
            r["records_per_second"] = round(rows_in / r["seconds"], 1)
            results["stages"][stage] = r
        results["rows"] = results["stages"]["ingest"]["records_in"]
        results["total_seconds"] = round(sum(s["seconds"] for s in results["stages"].values()), 2)
        results["peak_rss_mb"] = max(s["peak_rss_mb"] for s in results["stages"].values())
        truth = corpus.with_name("truth.jsonl")
        if truth.exists():
            from bench.quality import score

            results["quality"] = score(truth, ws / "data/dedup/instar.parquet", "bench")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


def noop_repro(repo: Path, runs: int = 3) -> dict:
    """Seconds of `dvc repro` when nothing changed: the price of every check-in-and-run.

    Brings `repo` up to date first (a full run if it never ran), then times `runs` more.
    """
    import re

    def repro() -> tuple[float, str]:
        start = time.perf_counter()
        proc = subprocess.run(
            ["dvc", "repro"], cwd=repo, capture_output=True, text=True, env=dvc_env()
        )
        if proc.returncode != 0:
            raise SystemExit(f"bench: dvc repro failed in {repo}\n{proc.stdout}{proc.stderr}")
        return time.perf_counter() - start, proc.stdout

    repro()
    seconds = []
    for _ in range(runs):
        took, out = repro()
        ran = re.findall(r"Running stage '([^']+)'", out)
        if ran:
            raise SystemExit(f"bench: a second dvc repro ran {ran}: the pipeline is not stable")
        seconds.append(round(took, 2))
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "seconds": median,
        "runs": seconds,
        "target_seconds": NOOP_TARGET_SECONDS,
        "within_target": median < NOOP_TARGET_SECONDS,
    }


def dvc_env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
    }


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--corpus", type=Path, help="raw jsonl file; default: make one")
    p.add_argument("--rows", type=int, default=100_000, help="rows of the corpus made here")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    p.add_argument(
        "--no-noop",
        dest="noop",
        action="store_false",
        help="skip timing a no-op `dvc repro` of this repo (which first brings it up to date)",
    )
    a = p.parse_args()
    made = None
    if a.corpus is None:
        from bench.corpus import make

        made = Path(tempfile.mkdtemp(prefix="instar-corpus-"))
        a.corpus = make(a.rows, made)
    try:
        results = bench(a.corpus.resolve(), a.out)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
    if a.noop:
        results["noop_repro"] = noop_repro(ROOT)
        a.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
