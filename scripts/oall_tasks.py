"""Local lm-eval tasks for OALL v1 and ArabicMMLU, generated from lm-eval's own task files.

  python -m scripts.oall_tasks            # (re)write lm_eval_tasks/oall/ from the installed lm-eval
  python -m scripts.oall_tasks --check    # exit 1 if lm_eval_tasks/oall/ is not what it writes

lm-eval's `arabic_leaderboard_*` and `arabicmmlu` tasks read their sets from the hub by id
(`dataset_path: OALL/ACVA`, `dataset_name: Algeria`), which datasets 5.2 refuses offline. The
copies here read hub@'s Parquet instead (`dataset_path: parquet`, `data_files` under
data/hub/<entry>/<config>/<split>.parquet) and keep every other line of lm-eval's files as it
is (prompts, choices, targets, process_docs and its utils.py), so they ask what lm-eval asks.
Names get the prefix `local_`, so that they never clash with lm-eval's own in one index.
`hub_entries()` is the paper profile's `hub_data` for these sets: which configs and splits.
"""

from __future__ import annotations

import argparse
import filecmp
import functools
import re
import sys
import tempfile
from pathlib import Path

from instar.hub import config_dir

OUT = Path("lm_eval_tasks/oall")
PREFIX = "local_"
# The paper profile's benchmarks, as lm-eval names them (OALL v1's 14 groups, ArabicMMLU).
GROUPS = (
    "arabic_leaderboard_acva",
    "arabic_leaderboard_alghafa",
    "arabic_leaderboard_arabic_mmlu",
    "arabic_leaderboard_arabic_exams",
    "arabic_leaderboard_arabic_mt_arc_challenge",
    "arabic_leaderboard_arabic_mt_arc_easy",
    "arabic_leaderboard_arabic_mt_boolq",
    "arabic_leaderboard_arabic_mt_copa",
    "arabic_leaderboard_arabic_mt_hellaswag",
    "arabic_leaderboard_arabic_mt_openbook_qa",
    "arabic_leaderboard_arabic_mt_piqa",
    "arabic_leaderboard_arabic_mt_race",
    "arabic_leaderboard_arabic_mt_sciq",
    "arabic_leaderboard_arabic_mt_toxigen",
    "arabicmmlu",
)
# hub repository -> its hub_data entry (data/hub/<entry>/)
ENTRIES = {
    "OALL/ACVA": "oall_acva",
    "OALL/AlGhafa-Arabic-LLM-Benchmark-Native": "oall_alghafa_native",
    "OALL/AlGhafa-Arabic-LLM-Benchmark-Translated": "oall_alghafa_translated",
    "OALL/Arabic_EXAMS": "oall_arabic_exams",
    "OALL/Arabic_MMLU": "oall_arabic_mmlu",
    "MBZUAI/ArabicMMLU": "arabicmmlu",
}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
NAME_LINE = re.compile(r'^(\s*"?(?:task|group|tag)"?\s*:\s*"?)([\w-]+)("?\s*)$')
ITEM_LINE = re.compile(r'^(\s*-\s*"?)([\w-]+)("?\s*)$')
PATH_LINE = re.compile(r'^(\s*"?dataset_path"?\s*:\s*).*$')
CONFIG_LINE = re.compile(r'^\s*"?dataset_name"?\s*:')
INCLUDE = re.compile(r'^\s*"?include"?\s*:\s*"?([^"\s]+)"?\s*$', re.M)


@functools.cache
def lm_eval_index() -> dict:
    """lm-eval's own task index (built once: it parses every YAML lm-eval ships)."""
    from lm_eval.tasks import TaskManager

    return TaskManager().task_index


def upstream(groups: tuple[str, ...] = GROUPS):
    """lm-eval's index entries that `groups` reach (groups, tags and tasks), by name."""
    index = lm_eval_index()
    seen: dict = {}

    def walk(name: str) -> None:
        if name in seen:
            return
        entry = index.get(name)
        if entry is None:
            raise SystemExit(f"lm-eval has no task, group or tag {name!r}")
        seen[name] = entry
        if entry.kind.name == "GROUP":
            for child in (entry.cfg or {}).get("task", []):
                walk(child if isinstance(child, str) else child["task"])
        elif entry.kind.name == "TAG":
            for other in sorted(index.values(), key=lambda e: e.name):
                if name in other.tags:
                    walk(other.name)

    for g in groups:
        walk(g)
    return seen


def splits_of(cfg: dict) -> list[str]:
    return sorted({cfg[k] for k in SPLIT_KEYS if cfg.get(k)})


def leaves(entries: dict) -> dict[str, dict]:
    """task name -> its merged lm-eval config, for the tasks that read data."""
    return {n: e.cfg for n, e in entries.items() if e.kind.name == "TASK"}


def hub_entries(groups: tuple[str, ...] = GROUPS) -> dict[str, dict]:
    """The hub_data entries these tasks read: configs and splits per repository."""
    found: dict[str, dict] = {}
    for cfg in leaves(upstream(groups)).values():
        repo = cfg["dataset_path"]
        entry = found.setdefault(
            ENTRIES[repo], {"repo_id": repo, "configs": set(), "splits": set()}
        )
        entry["configs"].add(cfg.get("dataset_name") or "default")
        entry["splits"].update(splits_of(cfg))
    return {
        name: {
            "repo_id": e["repo_id"],
            "revision": None,
            "repo_type": "dataset",
            "configs": sorted(e["configs"]),
            "splits": sorted(e["splits"]),
        }
        for name, e in sorted(found.items())
    }


def data_files(cfg: dict) -> list[str]:
    """The dataset_kwargs lines that replace a task's dataset_name line."""
    entry = ENTRIES[cfg["dataset_path"]]
    folder = config_dir(cfg.get("dataset_name") or "default")
    lines = ["dataset_kwargs:", "  data_files:"]
    lines += [f"    {s}: data/hub/{entry}/{folder}/{s}.parquet" for s in splits_of(cfg)]
    return lines


def rewrite(text: str, names: set[str], cfg: dict | None, origin: str) -> str:
    """One lm-eval YAML with the names prefixed and the hub set replaced by local Parquet."""
    out = [f"# Generated by `python -m scripts.oall_tasks` from lm-eval's {origin}: do not edit."]
    wrote_files = False
    for line in text.splitlines():
        if m := (NAME_LINE.match(line) or ITEM_LINE.match(line)):
            if m[2] in names:
                line = f"{m[1]}{PREFIX}{m[2]}{m[3]}"
        elif m := PATH_LINE.match(line):
            line = f"{m[1]}parquet"
        elif CONFIG_LINE.match(line) and cfg is not None:
            out += data_files(cfg)
            wrote_files = True
            continue
        out.append(line)
    if cfg is not None and not wrote_files:
        out += data_files(cfg)
    return "\n".join(out) + "\n"


def generate(dest: Path, groups: tuple[str, ...] = GROUPS) -> list[Path]:
    """Write the local copies of `groups`' task files (and their utils) under `dest`."""
    import lm_eval

    tasks_root = Path(lm_eval.__file__).parent / "tasks"
    entries = upstream(groups)
    names = set(entries)
    configs = leaves(entries)
    files: dict[Path, dict | None] = {}
    for name, e in entries.items():
        if e.yaml_path is None:  # a tag: it has no file of its own
            continue
        files[Path(e.yaml_path)] = configs.get(name)
    for path in list(files):  # templates a file includes, and the utils its functions use
        for inc in INCLUDE.findall(path.read_text(encoding="utf-8")):
            files.setdefault(path.parent / inc, None)
    written = []
    for path, cfg in sorted(files.items()):
        target = dest / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        origin = str(path.relative_to(tasks_root))
        target.write_text(rewrite(path.read_text(encoding="utf-8"), names, cfg, origin))
        written.append(target)
        utils = path.parent / "utils.py"
        if utils.is_file() and not (target.parent / "utils.py").exists():
            (target.parent / "utils.py").write_bytes(utils.read_bytes())
            written.append(target.parent / "utils.py")
    return written


def same_tree(a: Path, b: Path) -> list[str]:
    """Files that differ between two folders (or exist in one only)."""
    fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    differ = sorted(str(p) for p in fa ^ fb)
    differ += sorted(str(p) for p in fa & fb if not filecmp.cmp(a / p, b / p, shallow=False))
    return differ


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m scripts.oall_tasks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--check", action="store_true", help="compare, write nothing")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            differ = same_tree(Path(tmp), args.out)
        if differ:
            print(f"{args.out} differs from what lm-eval's files give: {', '.join(differ)}")
            sys.exit(1)
        print(f"{args.out}: as generated")
        return
    import shutil

    if args.out.exists():
        shutil.rmtree(args.out)
    written = generate(args.out)
    print(f"{args.out}: {len(written)} files")


if __name__ == "__main__":
    main()
