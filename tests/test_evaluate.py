"""Evaluation pieces that run without the pipeline: local lm-eval tasks, metric names,
Arabic ROUGE-L, the contamination check, the benchmark files themselves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instar.console import StageError
from instar.evaluation import harness as benchmarks
from instar.evaluation.textmetrics import ArabicTokenizer, rouge_l
from stages.contamination import check, find, questions
from stages.evaluate import deltas, headline, plot_rows, weights_id
from tests.conftest import ROOT

BENCH = ROOT / "data/benchmarks"


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_benchmark_files_follow_the_oall_schemas():
    alghafa, acva, mmlu = (read(BENCH / f"{n}.jsonl") for n in ("alghafa", "acva", "mmlu"))
    for rows in (alghafa, acva, mmlu):
        assert len(rows) >= 60 and len({r["id"] for r in rows}) == len(rows)
    assert all(
        r["label"] in (0, 1, 2, 3) and all(r[f"sol{i}"] for i in range(1, 5)) for r in alghafa
    )
    assert {r["answer"] for r in acva} == {"صح", "خطأ"}
    assert all(r["answer"] in "ABCD" and len(r["answer"]) == 1 for r in mmlu)


def test_rouge_l_keeps_arabic_where_the_default_tokenizer_drops_it():
    from rouge_score.rouge_scorer import RougeScorer

    ref, pred = "عاصمة المغرب هي الرباط", "الرباط هي عاصمة المملكة المغربية"
    # Longest common subsequence: one word of 4 (reference) and of 5 (prediction).
    assert rouge_l([pred], [ref])[0] == pytest.approx(2 * (1 / 4) * (1 / 5) / (1 / 4 + 1 / 5))
    assert rouge_l(["عاصمة المغرب الرباط"], [ref])[0] == pytest.approx(2 * (3 / 4) / (1 + 3 / 4))
    assert rouge_l([ref], [ref])[0] == pytest.approx(1.0)
    assert rouge_l(["شيء مختلف تماما"], [ref])[0] == 0
    # rouge-score's own tokenizer deletes every non-Latin letter: nothing left to compare.
    assert RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure == 0
    # Diacritics and letter variants do not split a word in two.
    assert ArabicTokenizer().tokenize("مدرسةٌ إلى") == ArabicTokenizer().tokenize("مدرسه الي")


def test_rouge_l_equals_rouge_scores_own_on_every_pair_of_shipped_answers():
    import json
    import random

    from rouge_score.rouge_scorer import RougeScorer

    rows = [json.loads(line) for line in (ROOT / "data/sources/handwritten.jsonl").open()]
    outputs = [r["output"] for r in rows if r.get("output")]
    pairs = [tuple(random.Random(n).sample(outputs, 2)) for n in range(300)]
    pairs += [(o, o[: len(o) // 2]) for o in outputs[:50]] + [("", outputs[0])]
    scorer = RougeScorer(["rougeL"], tokenizer=ArabicTokenizer())
    theirs = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in pairs]
    ours = rouge_l([p for p, _ in pairs], [r for _, r in pairs])
    assert ours == theirs  # the same values (rouge-score's 0 for an empty side is an int)
    assert all(type(x) is float for x in ours)
    assert len(set(theirs)) > 50


def test_local_tasks_load_offline_with_absolute_data_files(tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(tmp_path)  # relative paths in the YAMLs must not depend on cwd
    include = benchmarks.include_dir(ROOT / "lm_eval_tasks/instar", tmp_path / "tasks")
    text = (include / "instar_acva.yaml").read_text()
    assert f"test: {(BENCH / 'acva.jsonl').resolve()}" in text
    benchmarks.go_offline()
    manager = TaskManager(include_path=str(include))
    tasks = manager.load(["instar_alghafa", "instar_acva", "instar_mmlu"])["tasks"]
    for name, n, first in (
        ("alghafa", 4, "الأسئلة التالية"),
        ("acva", 2, "السؤال:"),
        ("mmlu", 4, "الأسئلة التالية"),
    ):
        task = tasks[f"instar_{name}"]
        docs = list(task.test_docs())
        assert len(docs) == len(read(BENCH / f"{name}.jsonl"))
        prompt = task.doc_to_text(docs[0])
        assert prompt.startswith(first) and prompt.endswith("الإجابة:")
        assert len(task.doc_to_choice(docs[0])) == n
    acva = read(BENCH / "acva.jsonl")
    docs = list(tasks["instar_acva"].test_docs())
    assert [d["gold"] for d in docs] == [["صح", "خطأ"].index(r["answer"]) for r in acva]


def fake_results() -> dict:
    """The shape of simple_evaluate's result for a group of two subtasks of unequal size."""
    return {
        "results": {
            "grp": {"acc,none": 0.7, "acc_norm,none": 0.8},
            "a": {"acc,none": 1.0, "acc_norm,none": 1.0},
            "b": {"acc,none": 0.25, "acc_norm,none": 0.4},
        },
        "n-samples": {
            "a": {"effective": 30, "original": 30},
            "b": {"effective": 10, "original": 10},
        },
    }


def test_group_scores_are_unweighted_with_lm_evals_weighted_mean_named_apart():
    out = benchmarks.benchmark_metrics("acva", "grp", fake_results())
    assert out["oall.acva.acc_norm"] == pytest.approx(0.7)  # (1.0 + 0.4) / 2
    assert out["oall.acva.acc_norm_lmeval_weighted"] == 0.8
    assert out["oall.acva.items"] == 40
    single = benchmarks.benchmark_metrics(
        "x", "a", {"results": {"a": {"acc,none": 0.5}}, "n-samples": {"a": {"effective": 3}}}
    )
    assert single == {"oall.x.items": 3, "oall.x.acc": 0.5}  # no acc_norm, no weighted key


def test_overall_means_unweighted_over_benchmarks_and_weighted_over_items():
    per = {
        "p": {"oall.p.acc_norm": 1.0, "_leaf.p1.acc_norm": 1.0},
        "q": {"oall.q.acc_norm": 0.0, "_leaf.q1.acc_norm": 0.0},
    }
    out = benchmarks.overall(per, {"p": {"p1": 30}, "q": {"q1": 10}})
    assert out["oall.mean_unweighted.acc_norm"] == 0.5
    assert out["oall.mean_size_weighted.acc_norm"] == 0.75


def test_the_headline_keeps_scores_and_drops_counts_and_plain_acc_beside_acc_norm():
    scores = {
        "oall.acva.acc": 0.4, "oall.acva.acc_norm": 0.5, "oall.acva.items": 70,
        "oall.x.acc": 0.3, "oall.x.items": 3,  # a task without acc_norm keeps acc
        "oall.mean_unweighted.acc": 0.35, "oall.mean_unweighted.acc_norm": 0.5,
        "instar_test.loss": 2.0, "instar_test.perplexity": 7.4, "instar_test.tokens": 900,
        "instar_test.records": 12, "instar_test.generated": 4, "instar_test.chrf": 10.0,
    }  # fmt: skip
    assert headline(scores) == {
        "oall.acva.acc_norm": 0.5,
        "oall.x.acc": 0.3,
        "oall.mean_unweighted.acc_norm": 0.5,
        "instar_test.loss": 2.0,
        "instar_test.perplexity": 7.4,
        "instar_test.chrf": 10.0,
    }


def test_deltas_are_adapter_minus_base_for_scores_only():
    base = {"oall.acva.acc_norm": 0.5, "oall.acva.items": 70, "instar_test.perplexity": 10.0}
    adapter = {"oall.acva.acc_norm": 0.6, "oall.acva.items": 70, "instar_test.perplexity": 4.0}
    assert deltas(adapter, base) == {
        "delta.oall.acva.acc_norm": pytest.approx(0.1),
        "delta.instar_test.perplexity": -6.0,
    }
    rows = plot_rows(adapter, base, ["acva"])
    assert [(r["variant"], r["acc_norm"]) for r in rows] == [("base", 0.5), ("adapter", 0.6)]


def test_request_cache_file_follows_the_weights(tmp_path):
    (tmp_path / "adapter").mkdir()
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"one")
    first = weights_id([tmp_path / "adapter"], "fp32")
    weights.write_bytes(b"two")
    assert weights_id([tmp_path / "adapter"], "fp32") != first


def train_split(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    table = pa.table(
        {k: [r.get(k, "") for r in rows] for k in ("id", "instruction", "input", "output")}
    )
    pq.write_table(table, folder / "part-0.parquet")
    return folder


def test_contamination_finds_normalised_questions_in_training_fields(tmp_path):
    bench = tmp_path / "acva.jsonl"
    bench.write_text(
        "\n".join(
            json.dumps({"id": i, "question": q}, ensure_ascii=False)
            for i, q in enumerate(
                [
                    "عاصمة المملكة المغربية هي مدينة الرباط.",  # inside an instruction
                    "الشمس نجم",  # short: exact only; appears inside a longer text
                    "القمر كوكب",  # short and an exact input
                    "سؤال لا يوجد في التدريب أبدا على الإطلاق",
                ]
            )
        )
    )
    train = train_split(
        tmp_path / "train",
        [
            {
                "id": "r1",
                "instruction": "صحح العبارة: عاصمةُ المملكة المغربيّة هي مدينة الرباط",
                "output": "نعم",
            },
            {"id": "r2", "instruction": "هل الشمس نجم أم كوكب؟", "output": "نجم"},
            {"id": "r3", "instruction": "أجب", "input": "القمرُ كوكب!", "output": "خطأ"},
        ],
    )
    hits = find(questions(bench, "question"), train, min_words=5)
    assert [(h["id"], h["train_id"], h["match"]) for h in hits] == [
        (0, "r1", "contained"),
        (2, "r3", "exact"),
    ]


def test_a_benchmark_s_test_files_come_from_its_task_yamls_groups_and_tags_expanded():
    import yaml

    from instar.evaluation.taskfiles import benchmark_files

    assert benchmark_files("instar_acva", "lm_eval_tasks/instar") == [
        Path("data/benchmarks/acva.jsonl")
    ]
    # A group of groups of tags (ArabicMMLU): every subject's test file, read off the YAMLs
    # here without lm-eval (the template they include holds no data_files).
    folder = ROOT / "lm_eval_tasks/oall/arabicmmlu"
    expected = {
        yaml.safe_load(f.read_text())["dataset_kwargs"]["data_files"]["test"]
        for f in folder.glob("arabicmmlu_*.yaml")
    }
    found = benchmark_files("local_arabicmmlu", "lm_eval_tasks/oall")
    assert len(found) == len(expected) >= 40 and {str(f) for f in found} == expected
    with pytest.raises(StageError, match="no task, group or tag 'nope'"):
        benchmark_files("nope", "lm_eval_tasks/oall")
    with pytest.raises(StageError, match="no local task folder"):
        benchmark_files("instar_acva", None)


def test_contamination_checks_the_evaluated_benchmarks_by_name_jsonl_and_parquet(
    tmp_path, monkeypatch
):
    from instar.params.contamination import ContaminationParams
    from instar.params.evaluate import BenchmarkParams

    monkeypatch.chdir(tmp_path)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": 7, "q": "القمر كوكب"}) + "\n")
    pq.write_table(pa.table({"text": ["الشمس نجم", "سؤال آخر"]}), tmp_path / "b.parquet")
    for name, path in (("t_a", "a.jsonl"), ("t_b", "b.parquet")):
        kind = "json" if path.endswith("jsonl") else "parquet"
        (tasks / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: {kind}\ndataset_kwargs:\n  data_files:\n"
            f"    test: {path}\noutput_type: multiple_choice\ntest_split: test\n"
            "doc_to_text: x\ndoc_to_target: 0\ndoc_to_choice: [a]\n"
        )
    train = train_split(
        tmp_path / "train",
        [{"id": "r1", "instruction": "القمرُ كوكب", "output": "x"},
         {"id": "r2", "instruction": "الشمس نجم", "output": "y"}],
    )  # fmt: skip
    bench = BenchmarkParams(tasks={"one": "t_a", "two": "t_b"}, include_path=str(tasks))
    metrics, hits = check(ContaminationParams(fields={"one": "q", "two": "text"}), bench, train)
    assert metrics == {
        "contamination.items_checked": 3,
        "contamination.items_in_train": 2,
        "contamination.one.items_in_train": 1,
        "contamination.two.items_in_train": 1,
    }
    assert [(h["benchmark"], h["id"], h["train_id"]) for h in hits] == [
        ("one", 7, "r1"),
        ("two", 1, "r2"),
    ]
    with pytest.raises(StageError, match=r"\['three'\] not in evaluate.benchmarks.tasks"):
        check(ContaminationParams(fields={"three": "q"}), bench, train)
    with pytest.raises(StageError, match=r"b.parquet: no column 'q'"):
        check(ContaminationParams(fields={"two": "q"}), bench, train)


def test_contamination_may_name_only_benchmarks_that_evaluation_scores():
    from instar.params.core import cross_section_problems

    params = {
        "evaluate": {"benchmarks": {"tasks": {"acva": "instar_acva"}}},
        "contamination": {"fields": {"acva": "question", "mmlu": "question"}},
    }
    (problem,) = cross_section_problems(params)
    assert "contamination.fields" in problem and "['mmlu']" in problem
    params["contamination"]["fields"].pop("mmlu")
    assert cross_section_problems(params) == []


def test_paper_profile_runs_oall_v1_tasks_zero_shot_without_chat_template():
    from lm_eval.tasks import TaskManager

    from scripts.gpu_eval import bench_params, benchmark_data, dataset_repos

    profile = ROOT / "profiles/paper.yaml"
    params = bench_params(profile, {})
    assert params.num_fewshot == 0 and params.apply_chat_template is False
    assert len(params.tasks) == 15 and "local_arabicmmlu" in params.tasks.values()
    # The local tasks read nothing from the hub: only the Parquet files of data/hub/ ...
    manager = TaskManager(include_path=str(ROOT / params.include_path))
    assert dataset_repos(manager, list(params.tasks.values())) == {"parquet"}
    # ... of the profile's hub_data entries for these repositories (`gpu_eval fetch`'s list)
    assert {h["repo_id"] for h in benchmark_data(profile, params).values()} == {
        "MBZUAI/ArabicMMLU",
        "OALL/ACVA",
        "OALL/AlGhafa-Arabic-LLM-Benchmark-Native",
        "OALL/AlGhafa-Arabic-LLM-Benchmark-Translated",
        "OALL/Arabic_EXAMS",
        "OALL/Arabic_MMLU",
    }


# --- the evaluation fingerprint -----------------------------------------------------------


def test_a_task_s_files_are_its_yaml_and_the_utils_beside_it_and_their_hash_follows_them(
    tmp_path,
):
    from instar.evaluation.fingerprint import files_hash, task_files

    shutil.copytree(ROOT / "lm_eval_tasks/instar", tmp_path / "tasks")
    files = task_files(tmp_path / "tasks", "instar_acva")
    assert [f.name for f in files] == ["instar_acva.yaml", "utils.py"]
    # the group's YAML names the group, not the tasks that share its folder
    group = {f.name for f in task_files(tmp_path / "tasks", "instar_oall")}
    assert "instar_oall.yaml" in group and "instar_acva.yaml" not in group
    before = files_hash(files, tmp_path)
    with (tmp_path / "tasks/utils.py").open("a") as f:
        f.write("# a prompt edit\n")
    assert files_hash(files, tmp_path) != before


def test_the_fingerprint_is_strings_and_flags_settings_but_not_the_adapter():
    import lm_eval

    from instar.evaluation.fingerprint import KEY, differences, fingerprint
    from instar.params.evaluate import BenchmarkParams

    def fp(**kw):
        bench = BenchmarkParams(**kw.pop("bench", {}))
        args = {"dtype": "bf16", "quantization": "none", "chat_template": "{{ x }}",
                "base": "abc", "adapter": "a1", "device": "cuda"} | kw  # fmt: skip
        return {KEY: fingerprint(bench, ROOT, **args)}

    now = fp()
    assert all(isinstance(v, str) for v in now[KEY].values())
    # the harness's own idea of its version, not the installed metadata the code reads
    assert now[KEY]["lm_eval"] == lm_eval.__version__
    assert now[KEY]["chat_template"] == "not applied"
    assert {"tasks.acva", "tasks.alghafa", "tasks.mmlu"} <= set(now[KEY])
    applied = {t: fp(bench={"apply_chat_template": True}, chat_template=t)[KEY]["chat_template"]
               for t in ("{{ x }}", "{{ y }}")}  # fmt: skip
    assert all(len(h) == 12 for h in applied.values()) and len(set(applied.values())) == 2
    assert differences(now, fp(adapter="a2")) == []  # another adapter is what runs compare
    assert differences(fp(bench={"batch_size": 8}, quantization="4bit"), now) == [
        "batch_size: 16 -> 8",
        "quantization: none -> 4bit",
    ]
    assert differences(now, {"oall.acva.acc_norm": 0.5}) == []  # a run from before them
