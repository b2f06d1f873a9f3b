"""Stand-in hub datasets for the paper profile, in the stand-in HF cache (tests/hubstub.py).

Each repository is laid out as `datasets`' push_to_hub lays one out: Parquet files per config
and split, and a README whose `configs:` metadata names them. The rows have the published
schemas and the quirks the pipeline must survive:
  - InstAr-500k: no input column, a pandas index column (`__index_level_0__`), several
    published `source` values, one English system prompt on many rows, and English answers
    in some Arabic rows (public reviews of the set report both);
  - the OALL v1 sets and ArabicMMLU: a few rows per config, in each set's own columns.

`add_paper_data(cache)` puts them all in; with tests/standin_models.add_paper_models the cache
then holds everything the paper profile names, so `profile pin rehearsal` can pin it offline.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.hubstub import add_repo

ROOT = Path(__file__).resolve().parents[1]
INSTAR = "ClusterlabAi/InstAr-500k"
# The columns of InstAr-500k at its latest commit (its parquet also has pandas' index column).
INSTAR_COLUMNS = ["instruction", "output", "source", "task", "system", "uuid", "topic"]
ENGLISH_SYSTEM = "You are a helpful assistant. Answer the user's question in Arabic."
ENGLISH_ANSWER = (
    "The answer is that this depends on the context, and more details are needed to say."
)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def dataset_files(configs: dict[str, dict[str, pa.Table]]) -> dict[str, bytes]:
    """A dataset repository's files: config -> split -> rows, as push_to_hub writes them."""
    files: dict[str, bytes] = {}
    card = []
    for name, splits in configs.items():
        folder = "data" if name == "default" else name
        entries = []
        for split, table in splits.items():
            path = f"{folder}/{split}-00000-of-00001.parquet"
            files[path] = parquet_bytes(table)
            entries.append({"split": split, "path": path})
        card.append({"config_name": name, "data_files": entries})
    meta = yaml.safe_dump({"configs": card}, allow_unicode=True, sort_keys=False)
    files["README.md"] = f"---\n{meta}---\n# stand-in dataset\n".encode()
    return files


# ------------------------------------------------------------------------- InstAr-500k


def instar_rows() -> list[dict]:
    """InstAr-shaped rows from the project's own Arabic texts (instar_sample.csv is shaped
    like the set, handwritten.jsonl adds more), with the published set's quirks added."""
    with open(ROOT / "data/sources/instar_sample.csv", encoding="utf-8", newline="") as f:
        rows = [dict(r) for r in csv.DictReader(f)]
    with open(ROOT / "data/sources/handwritten.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            r = json.loads(line)
            instruction = r["instruction"] + (f"\n{r['input']}" if r.get("input") else "")
            rows.append(
                {
                    "instruction": instruction,
                    "output": r["output"],
                    "source": "generated" if i % 3 else "arabic_qa_collection",
                    "task": r.get("task") or "open_qa",
                    "system": "",
                    "uuid": f"00000000-0000-4000-8000-{i:012d}",
                    "topic": r.get("topic") or "",
                }
            )
    for i, r in enumerate(rows):
        r = {c: r.get(c) or "" for c in INSTAR_COLUMNS}
        if i % 4 == 1:  # one English system prompt on many rows
            r["system"] = ENGLISH_SYSTEM
        if i % 25 == 7:  # an English answer in an Arabic row
            r["output"] = ENGLISH_ANSWER
        rows[i] = r
    return rows


def instar_table(rows: list[dict], columns: dict[str, str] | None = None) -> pa.Table:
    """The rows as the published parquet: pandas' index column included (the set was pushed
    from a filtered DataFrame), optionally with columns renamed (an older layout)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=INSTAR_COLUMNS)
    frame.index = [3 + 2 * i for i in range(len(frame))]  # a filtered frame's index
    if columns:
        frame = frame.rename(columns=columns)
    return pa.Table.from_pandas(frame)


# An older layout of the stand-in, before a "fix column name" commit: the real set's history
# has such a commit, so the pipeline maps columns by the set of columns it finds.
OLD_INSTAR_NAMES = {"output": "response"}


def add_instar(cache: Path, rows: list[dict] | None = None) -> dict[str, str]:
    """Two commits of the stand-in InstAr-500k: the old layout, then the latest (main)."""
    rows = instar_rows() if rows is None else rows
    old = add_repo(
        cache,
        INSTAR,
        dataset_files({"default": {"train": instar_table(rows, OLD_INSTAR_NAMES)}}),
        "dataset",
    )
    new = add_repo(
        cache, INSTAR, dataset_files({"default": {"train": instar_table(rows)}}), "dataset"
    )
    return {"old": old, "latest": new}


# ------------------------------------------------------------------------- OALL v1


def _alghafa(i: int, n: int = 4) -> dict:
    row = {"query": f"ما الجواب الصحيح عن السؤال رقم {i} من هذه المجموعة؟"}
    row.update({f"sol{k + 1}": f"الخيار {k + 1} للسؤال {i}" for k in range(n)})
    row["label"] = str(i % n)
    return row


def _mcq(i: int, subject: str) -> dict:
    return {
        "question": f"أي العبارات صحيحة في السؤال {i}؟",
        "A": f"العبارة الأولى {i}",
        "B": f"العبارة الثانية {i}",
        "C": f"العبارة الثالثة {i}",
        "D": f"العبارة الرابعة {i}",
        "answer": "ABCD"[i % 4],
        "subject": subject,
    }


def oall_row(repo_id: str, config_name: str, i: int) -> dict:
    """Row `i` of a config in its set's published columns (the ones lm-eval's task reads)."""
    if repo_id == "OALL/ACVA":
        return {
            "question": f"هل العبارة رقم {i} عن {config_name} صحيحة؟",
            "answer": "صح" if i % 2 == 0 else "خطأ",
        }
    if repo_id == "OALL/AlGhafa-Arabic-LLM-Benchmark-Native":
        return _alghafa(i, 2 if "truefalse" in config_name else 4)
    if repo_id in ("OALL/Arabic_EXAMS", "OALL/Arabic_MMLU"):
        return _mcq(i, config_name if config_name != "default" else "Islamic_Studies")
    if repo_id == "MBZUAI/ArabicMMLU":
        options = {f"Option {k}": (f"الخيار {k}" if k <= 3 + i % 2 else None) for k in range(1, 6)}
        return {
            "ID": i,
            "Source": "stand-in",
            "Country": "Egypt" if i % 2 else None,
            "Group": "STEM",
            "Subject": config_name.split(" (")[0],
            "Level": "High" if i % 2 else None,
            "Question": f"ما الإجابة الصحيحة عن السؤال {i}؟",
            "Context": f"سياق السؤال {i}" if i % 3 == 0 else None,
            "Answer Key": "ABC"[i % 3],
            **options,
        }
    # the translated sets
    if config_name == "boolq_ar":
        return {"question": f"هل السؤال {i} صحيح؟", "passage": f"مقطع {i}", "answer": i % 2 == 0}
    if config_name == "copa_ext_ar":
        return {
            "premise": f"حدث الأمر {i}",
            "choice1": f"السبب الأول {i}",
            "choice2": f"السبب الثاني {i}",
            "question": "cause" if i % 2 else "effect",
            "label": i % 2,
        }
    if config_name == "hellaswag_okapi_ar":
        endings = [f"نهاية {k} [en] للسياق {i}" for k in range(4)]
        return {"ctx": f"سياق [latin] رقم {i}", "endings": str(endings), "label": i % 4}
    if config_name == "sciq_ar":
        return {
            "question": f"سؤال علمي {i}",
            "support": f"نص داعم {i}",
            "distractor1": f"خطأ أول {i}",
            "distractor2": f"خطأ ثان {i}",
            "distractor3": f"خطأ ثالث {i}",
            "correct_answer": f"الصواب {i}",
        }
    if config_name == "toxigen_ar":
        return {"text": f"عبارة {i}", "toxicity_ai": float(i % 5), "toxicity_human": 2.5}
    return _alghafa(i)


def oall_table(repo_id: str, config_name: str, rows: int = 3, start: int = 0) -> pa.Table:
    return pa.Table.from_pylist([oall_row(repo_id, config_name, start + i) for i in range(rows)])


def add_oall(cache: Path, entries: dict[str, dict], rows: int = 3) -> dict[str, str]:
    """Every benchmark repository of `entries` (the profile's hub_data of the OALL sets and
    ArabicMMLU: repo_id, configs, splits), a few rows per config and split."""
    commits = {}
    for h in entries.values():
        configs = {
            c: {s: oall_table(h["repo_id"], c, rows, 100 * k) for k, s in enumerate(h["splits"])}
            for c in h["configs"]
        }
        commits[h["repo_id"]] = add_repo(cache, h["repo_id"], dataset_files(configs), "dataset")
    return commits


# ------------------------------------------------------------------------- everything


def paper_hub_data() -> dict[str, dict]:
    paper = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text(encoding="utf-8"))
    return paper.get("hub_data") or {}


def add_paper_data(cache: Path) -> dict[str, str]:
    """Every dataset of the paper profile's hub_data in the stand-in cache: repo id -> commit
    (refs/main). Models (and the tokenizer entry, a model repository) come from
    tests/standin_models.add_paper_models."""
    entries = paper_hub_data()
    datasets = {k: h for k, h in entries.items() if h.get("repo_type", "dataset") == "dataset"}
    commits = {INSTAR: add_instar(cache)["latest"]}
    benchmarks = {k: h for k, h in datasets.items() if h["repo_id"] != INSTAR}
    commits.update(add_oall(cache, benchmarks))
    return commits
