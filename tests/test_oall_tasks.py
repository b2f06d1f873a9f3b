"""The OALL v1 sets and ArabicMMLU offline: local lm-eval tasks generated from lm-eval's own
(lm_eval_tasks/oall/, scripts/oall_tasks.py) that read hub@'s Parquet, and what they ask."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from instar import hub as hub_data
from instar.params.hub import HubDataParams
from scripts import oall_tasks
from tests.conftest import ROOT, env
from tests.hubstub import add_repo
from tests.standin_data import add_oall, dataset_files, oall_table, paper_hub_data

# Leaf tasks per group in the equivalence test: every group, its first config (the configs
# of one group share their YAML but for the name and data files).
PER_GROUP = 1


def test_the_committed_tasks_are_what_lm_evals_files_generate(tmp_path):
    oall_tasks.generate(tmp_path)
    assert oall_tasks.same_tree(tmp_path, ROOT / oall_tasks.OUT) == []
    # and nothing in them reads the hub
    for path in (ROOT / oall_tasks.OUT).rglob("*yaml"):
        text = path.read_text()
        assert "OALL/" not in text and "MBZUAI/" not in text, path
        assert "dataset_name" not in text, path


def test_the_paper_profile_fetches_exactly_the_configs_and_splits_the_tasks_read():
    entries = {k: v for k, v in paper_hub_data().items() if k in oall_tasks.ENTRIES.values()}
    assert entries == oall_tasks.hub_entries()
    configs = sum(len(e["configs"]) for k, e in entries.items() if k != "arabicmmlu")
    assert len(oall_tasks.GROUPS) == 15 and configs == 135  # OALL v1: 14 groups
    for name, h in entries.items():
        HubDataParams(**h)  # valid params
        folders = [hub_data.config_dir(c) for c in h["configs"]]
        assert len(set(folders)) == len(folders), name


def chosen(per_group: int = PER_GROUP) -> dict[str, list[str]]:
    """group -> the first leaf tasks of it (lm-eval's names)."""
    out = {}
    for group in oall_tasks.GROUPS:
        entries = oall_tasks.upstream((group,))
        out[group] = sorted(oall_tasks.leaves(entries))[:per_group]
    return out


def entries_for(leaves: list[str]) -> dict[str, dict]:
    """hub_data entries holding only the configs of `leaves`."""
    cfgs = oall_tasks.leaves(oall_tasks.upstream(tuple(leaves)))
    found: dict[str, dict] = {}
    for cfg in cfgs.values():
        name = oall_tasks.ENTRIES[cfg["dataset_path"]]
        e = found.setdefault(name, {"repo_id": cfg["dataset_path"], "configs": [], "splits": []})
        e["configs"].append(cfg.get("dataset_name") or "default")
        e["splits"] = sorted(set(e["splits"]) | set(oall_tasks.splits_of(cfg)))
    return found


def fake_hub_loader(monkeypatch, cache_rows: dict[tuple[str, str], dict]):
    """datasets.load_dataset as lm-eval's own tasks call it (a hub id), answered with the
    stand-in rows; any other call (the local tasks' `parquet`) is the real one."""
    import datasets

    real = datasets.load_dataset

    def load(path, name=None, **kw):
        if (path, name) in cache_rows:
            splits = cache_rows[(path, name)]
            as_sets = {s: datasets.Dataset.from_list(r) for s, r in splits.items()}
            return datasets.DatasetDict(as_sets)
        assert path == "parquet", f"a hub id reached load_dataset: {path}"
        return real(path, name=name, **kw)

    monkeypatch.setattr(datasets, "load_dataset", load)


def asked(task, docs) -> list[tuple]:
    """Prompt, choices and the gold choice of each doc. lm-eval's sciq shuffles its choices
    with an unseeded `random` (in `datasets.map`, which may run in another process): their
    order is not reproducible even within lm-eval, so for it the choices compare as a set."""
    out = []
    for d in docs:
        choices, gold = task.doc_to_choice(d), task.doc_to_target(d)
        gold = choices[gold] if isinstance(gold, int) else gold
        if "sciq" in task.config.task:
            choices = sorted(choices)
        out.append((task.doc_to_text(d), choices, gold))
    return out


def docs_of(task, which: str) -> list:
    random.seed(1234)  # sciq shuffles its choices with `random`: the same draw for both
    return list(getattr(task, which)())


def test_each_oall_group_asks_the_same_prompts_choices_and_golds_as_lm_evals_own(
    tmp_path, hub, monkeypatch
):
    from lm_eval.tasks import TaskManager, get_task_dict

    from instar.evaluation.harness import include_dir

    picks = chosen()
    leaves = [t for ts in picks.values() for t in ts]
    entries = entries_for(leaves)
    add_oall(hub, entries, rows=4)
    monkeypatch.chdir(tmp_path)
    for name, h in entries.items():  # the real path: the stand-in cache -> hub@ -> Parquet
        commit = (hub / f"datasets--{h['repo_id'].replace('/', '--')}/refs/main").read_text()
        hub_data.fetch(name, HubDataParams(**h, revision=commit))
    # the same rows for lm-eval's own tasks, as its hub loader would return them
    rows = {}
    for h in entries.values():
        for c in h["configs"]:
            rows[(h["repo_id"], c)] = {
                s: oall_table(h["repo_id"], c, 4, 100 * k).to_pylist()
                for k, s in enumerate(h["splits"])
            }
    fake_hub_loader(monkeypatch, rows)
    theirs = get_task_dict(leaves, TaskManager())  # lm-eval's own index: no include path
    local_dir = include_dir(ROOT / oall_tasks.OUT, tmp_path / "tasks", root=tmp_path)
    ours = get_task_dict(
        [oall_tasks.PREFIX + t for t in leaves], TaskManager(include_path=str(local_dir))
    )
    for group, ts in picks.items():
        assert ts, group
        for t in ts:
            up, local = theirs[t], ours[oall_tasks.PREFIX + t]
            for which in ("test_docs", "fewshot_docs"):
                want = asked(up, docs_of(up, which))
                assert len(want) == 4, (t, which)
                assert asked(local, docs_of(local, which)) == want, (group, t, which)


def test_defect_3_load_dataset_on_a_hub_id_fails_offline_and_hub_data_reads_the_cache(
    tmp_path, hub, monkeypatch
):
    """The old path (`datasets.load_dataset("OALL/...")` after `gpu_eval fetch` snapshots the
    hub cache) raises in offline mode; hub@ reads the same cache and the local task loads."""
    entry = {"repo_id": "OALL/ACVA", "configs": ["Algeria"], "splits": ["test", "validation"]}
    commit = add_oall(hub, {"oall_acva": entry})["OALL/ACVA"]
    old = subprocess.run(
        [
            sys.executable,
            "-c",
            "import datasets; datasets.load_dataset('OALL/ACVA', 'Algeria', split='test')",
        ],
        env={**env(), "HF_HUB_CACHE": str(hub), "HF_DATASETS_CACHE": str(tmp_path / "ds")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert old.returncode != 0 and "offline" in old.stderr.lower(), old.stderr[-2000:]
    # the new path: hub@ from the same cache, then lm-eval's local task reads its Parquet
    from lm_eval.tasks import TaskManager, get_task_dict

    from instar.evaluation.harness import include_dir

    monkeypatch.chdir(tmp_path)
    hub_data.fetch("oall_acva", HubDataParams(**entry, revision=commit))
    local_dir = include_dir(ROOT / oall_tasks.OUT, tmp_path / "tasks", root=tmp_path)
    name = oall_tasks.PREFIX + "arabic_leaderboard_acva_Algeria"
    task = get_task_dict([name], TaskManager(include_path=str(local_dir)))[name]
    docs = list(task.test_docs())
    assert len(docs) == 3 and task.doc_to_choice(docs[0]) == ["صح", "خطأ"]


def pinned_profile(tmp_path: Path, commit_of: dict[str, str]) -> Path:
    """The paper profile with one config per benchmark set and these commits pinned."""
    paper = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text())
    for h in paper["hub_data"].values():
        h["configs"] = h["configs"][:1]
        h["revision"] = commit_of.get(h["repo_id"])
    path = tmp_path / "profiles/paper.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(paper, allow_unicode=True))
    return path


def test_gpu_eval_fetch_takes_the_pinned_revision_not_main(tmp_path, hub, monkeypatch):
    from scripts import gpu_eval

    paper = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text())["hub_data"]
    small = {k: {**h, "configs": h["configs"][:1]} for k, h in paper.items() if k != "instar500k"}
    pinned = add_oall(hub, small, rows=2)  # the commits to pin ...
    acva = small["oall_acva"]
    newer = {c: {s: oall_table("OALL/ACVA", c, 5) for s in acva["splits"]} for c in acva["configs"]}
    main = add_repo(hub, "OALL/ACVA", dataset_files(newer), "dataset")  # ... and a newer main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # fetch sets it; put back afterwards
    unpinned = pinned_profile(tmp_path, {})
    params = gpu_eval.bench_params(unpinned, {})
    with pytest.raises(SystemExit, match="not pinned"):
        gpu_eval.fetch(tmp_path / "hf", unpinned, params)
    profile = pinned_profile(tmp_path, pinned)
    gpu_eval.fetch(tmp_path / "hf", profile, params)
    manifest = yaml.safe_load((tmp_path / "data/hub/oall_acva/hub.json").read_text())
    assert manifest["revision"] == pinned["OALL/ACVA"] != main
    assert manifest["configs"][acva["configs"][0]]["splits"]["test"]["rows"] == 2
    assert sorted(p.name for p in (tmp_path / "data/hub").iterdir()) == sorted(small)
