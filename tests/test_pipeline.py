"""The whole default pipeline, run once per session by the `pipeline` fixture (conftest)."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from instar.records.readers import read_rows
from instar.records.storage import file_digest
from instar.text.arabic import normalise
from tests.conftest import dvc, run, stages_run

pytestmark = pytest.mark.slow


def params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def instar(repo: Path, split: str | None = None) -> list[dict]:
    splits = [split] if split else ["train", "validation", "test"]
    return [
        r
        for s in splits
        for f in sorted((repo / "data/instar" / s).glob("*.parquet"))
        for r in rows(f)
    ]


@pytest.fixture(scope="module")
def own(pipeline, tmp_path_factory) -> Path:
    """This module's copy for dvc commands: DVC takes its repository lock even when nothing
    runs, and other workers read the shared pipeline meanwhile."""
    dest = tmp_path_factory.mktemp("own") / "repo"
    shutil.copytree(pipeline, dest, symlinks=True)
    return dest


def test_every_declared_output_is_there(pipeline):
    p = params(pipeline)
    for s in p["sources"]:
        for path in (
            f"data/raw/{s}.parquet",
            f"data/clean/{s}.parquet",
            f"data/quarantine/ingest/{s}.parquet",
            f"data/quarantine/clean/{s}.parquet",
        ):
            assert (pipeline / path).is_file(), path
        assert json.loads((pipeline / f"metrics/clean/{s}.json").read_text())["records_out"] > 0
    for t in p["text_sources"]:  # read by generate, never ingested as such
        assert not (pipeline / f"data/raw/{t}.parquet").exists()
    for path in (
        "data/dedup/instar.parquet",
        "data/validated/instar.parquet",
        "data/quarantine/dedup.parquet",
        "data/quarantine/validate.parquet",
        "data/instar/manifest.json",
        "data/instar/README.md",
        "reports/summary.md",
    ):
        assert (pipeline / path).is_file(), path
    for split in ("train", "validation", "test"):
        assert list((pipeline / "data/instar" / split).glob("*.parquet")), split
    for m in p["models"]:
        base, adapter = pipeline / "models" / m / "base", pipeline / "models" / m / "adapter"
        for f in ("config.json", "model.safetensors", "tokenizer.json", "base.json"):
            assert (base / f).is_file(), base / f
        for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
            assert (adapter / f).is_file(), adapter / f
        assert not list(adapter.rglob("*.bin")) and not list(base.rglob("*.bin"))
        assert (pipeline / f"metrics/eval/{m}.json").is_file()
        assert (pipeline / f"dvclive/{m}/plots/metrics/train/loss.tsv").is_file()
    for png in (
        "reports/perplexity.png",
        "reports/train_loss.png",
        "reports/benchmarks.png",
        "data/instar/card/task_mix.png",
        "data/instar/card/source_mix.png",
        "data/instar/card/lengths.png",
    ):
        assert (pipeline / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_repro_runs_nothing_and_status_is_clean(own):
    again = dvc(own, "repro")
    assert stages_run(again.stdout) == set()
    status = dvc(own, "status")
    assert "up to date" in status.stdout


def lock_hashes(text: str) -> dict[tuple[str, str, str], str]:
    """(stage, deps|outs, path) -> md5 of a dvc.lock, the timings under metrics/perf/ left out."""
    return {
        (stage, kind, entry["path"]): entry.get("md5")
        for stage, body in yaml.safe_load(text)["stages"].items()
        for kind in ("deps", "outs")
        for entry in body.get(kind, [])
        if not entry["path"].startswith("metrics/perf/")
    }


def test_the_clones_repro_reproduces_the_committed_lock(pipeline):
    """The suite's pipeline is a fresh clone's `dvc repro`: every hash it locked is the
    committed one (a commit that changes code or data must carry the lock it produces)."""
    committed = lock_hashes(run(["git", "show", "HEAD~1:dvc.lock"], pipeline).stdout)
    built = lock_hashes((pipeline / "dvc.lock").read_text(encoding="utf-8"))
    differ = sorted(
        f"{' '.join(key)}: {committed.get(key)} -> {built.get(key)}"
        for key in committed.keys() | built.keys()
        if committed.get(key) != built.get(key)
    )
    assert not differ, "dvc.lock differs from the committed one:\n" + "\n".join(differ)


# What `dvc exp show` lists (dvc.yaml's side: tests/test_metrics_declared.py): at most 60
# metric columns for the default profile's two models.
TOTALS_KEYS = 3
METRIC_COLUMNS = 60


def flat_keys(d: dict) -> int:
    return sum(flat_keys(v) if isinstance(v, dict) else 1 for v in d.values())


def test_dvc_metrics_show_lists_train_eval_and_the_totals_only(pipeline, own):
    shown = json.loads(dvc(own, "metrics", "show", "--json").stdout)
    [data] = [rev["data"] for rev in shown.values()]
    models = params(pipeline)["models"]
    expected = [f"metrics/train/{m}.json" for m in models]
    expected += [f"metrics/eval/{m}.json" for m in models]
    assert sorted(data) == sorted([*expected, "metrics/data.json"])
    # The evaluation fingerprint's strings come on top (README, "Evaluation"): `--only-changed`
    # hides them until a setting that moves scores changes.
    fingerprints = {f: v["data"].pop("fingerprint", {}) for f, v in data.items()}
    assert all(fingerprints[f"metrics/eval/{m}.json"] for m in models)
    assert all(isinstance(x, str) for fp in fingerprints.values() for x in fp.values())
    keys = {f: flat_keys(v["data"]) for f, v in data.items()}
    assert keys["metrics/data.json"] <= TOTALS_KEYS
    assert sum(keys.values()) <= METRIC_COLUMNS, keys


def test_the_per_source_counts_are_still_read_by_path(pipeline, own):
    paths = [
        f"metrics/{g}/{s}.json" for s in params(pipeline)["sources"] for g in ("ingest", "clean")
    ]
    paths += ["metrics/dedup.json", "metrics/validation.json", "metrics/generate.json"]
    shown = json.loads(dvc(own, "metrics", "show", *paths, "--json").stdout)
    [data] = [rev["data"] for rev in shown.values()]
    assert sorted(data) == sorted(paths)
    assert all(v["data"] for v in data.values())


def test_dvc_exp_show_lists_eval_and_train_before_the_totals(own):
    header = dvc(own, "exp", "show", "--csv").stdout.splitlines()[0].split(",")
    metric_cols = [c for c in header if c.startswith("metrics/") and ":" in c]
    assert metric_cols, header[:20]
    assert all(c.startswith(("metrics/train/", "metrics/eval/")) for c in metric_cols)
    first_param = min(i for i, c in enumerate(header) if c.startswith("models."))
    totals = [i for i, c in enumerate(header) if c.startswith("data.")]
    assert (
        totals
        and all(header.index(c) < min(totals) for c in metric_cols)
        and max(totals) < first_param
    )


def test_counts_add_up_from_ingest_to_shard(pipeline):
    def metric(path):
        return json.loads((pipeline / path).read_text())

    def quarantined(path):
        return pq.ParquetFile(pipeline / path).metadata.num_rows

    clean_out = 0
    for s in params(pipeline)["sources"]:
        ingested = metric(f"metrics/ingest/{s}.json")["records"]
        c = metric(f"metrics/clean/{s}.json")
        assert (
            c["records_in"]
            == ingested
            == pq.ParquetFile(pipeline / f"data/raw/{s}.parquet").metadata.num_rows
        )
        assert c["records_in"] == c["records_out"] + quarantined(
            f"data/quarantine/clean/{s}.parquet"
        )
        clean_out += c["records_out"]
    d = metric("metrics/dedup.json")
    assert d["records_in"] == clean_out
    assert d["records_in"] == d["records_out"] + quarantined("data/quarantine/dedup.parquet")
    v = metric("metrics/validation.json")
    assert v["records_in"] == d["records_out"]
    assert v["records_in"] == v["records_out"] + quarantined("data/quarantine/validate.parquet")
    manifest = metric("data/instar/manifest.json")
    assert manifest["records"] == v["records_out"] == len(instar(pipeline))
    totals = metric("metrics/data.json")  # the dataset metrics `dvc exp show` lists
    assert totals["data.records"] == v["records_out"]
    assert totals["data.duplicates"] == d["duplicates"]
    assert totals["data.quarantined"] == v["quarantined"] + sum(
        metric(f"metrics/{g}/{s}.json")["quarantined"]
        for s in params(pipeline)["sources"]
        for g in ("ingest", "clean")
    )


def test_every_record_points_back_to_its_raw_row(pipeline):
    from collections import Counter

    from instar.params.clean import CleanParams
    from instar.records.schema import make_record
    from stages.clean import normalise_record

    p = params(pipeline)
    clean_params = CleanParams(**p["clean"])
    records = instar(pipeline)
    assert len({r["id"] for r in records}) == len(records)
    for name, src in p["sources"].items():
        raw = {i: row for i, row in read_rows(pipeline / src["path"], src["format"])}
        mine = [r for r in records if r["source"] == name]
        assert mine, name
        for r in mine:
            row = raw[r["source_row"]]
            if src["kind"] in ("instructions", "records"):
                # The raw row, cleaned as clean cleans it, is this very record.
                again = make_record(
                    instruction=row["instruction"],
                    output=row["output"],
                    input=row.get("input") or "",
                    source=name,
                    source_row=r["source_row"],
                    origin="collected",
                    task="open_qa",
                )
                assert normalise_record(again, clean_params, Counter())["id"] == r["id"]
            else:  # a task item: its text is somewhere in the rendered prompt
                text = row.get("text") or row.get("context")
                assert normalise(text) in r["instruction"] + "\n" + r["input"]


def test_the_sample_defects_are_quarantined_with_their_rules(pipeline):
    rules = Counter()
    for path in (pipeline / "data/quarantine").rglob("*.parquet"):
        for r in rows(path):
            if r["source"] == "web_sample":
                rules[(r["stage"], r["rule"].split(":")[0])] += 1
    for expected in [
        ("ingest", "malformed JSON"),
        ("clean", "language"),
        ("clean", "arabic_ratio"),
        ("clean", "empty_output"),
        ("clean", "short_output"),
        ("dedup", "exact_duplicate"),
        ("dedup", "near_duplicate"),
    ]:
        assert rules[expected] >= 1, (expected, rules)
    kept = [r for r in instar(pipeline) if r["source"] == "web_sample"]
    text = " ".join(r["instruction"] + r["input"] + r["output"] for r in kept)
    assert "<p>" not in text and "&nbsp;" not in text and "@example" not in text
    assert "[EMAIL]" in text and "[PHONE]" in text and "[URL]" in text
    assert (pipeline / "reports/dedup_examples.md").read_text().count("## Cluster") >= 2


def test_published_columns_survive_in_meta(pipeline):
    sample = [r for r in instar(pipeline) if r["source"] == "instar_sample"]
    metas = [json.loads(r["meta"]) for r in sample]
    assert all(set(m) == {"source", "uuid"} for m in metas)
    assert {r["origin"] for r in sample} == {"collected", "synthetic"}


def test_generate_runs_from_the_shipped_cache_and_its_records_reach_the_dataset(pipeline):
    m = json.loads((pipeline / "metrics/generate.json").read_text())
    assert m["prompts"] > 0 and m["cache_hits"] == m["prompts"] and m["cache_hit_rate"] == 1.0
    assert m["teacher_calls"] == m["prompts_asked"] == m["tokens_in"] == m["tokens_out"] == 0
    assert m["failures"] == 0 and m["records"] == m["prompts"]
    teacher = params(pipeline)["generate"]["model"]
    records = instar(pipeline)
    synthetic = [r for r in records if r["source"] == "synthetic"]
    assert len(synthetic) == m["records"]  # all pass clean, dedup and validate
    assert {r["origin"] for r in synthetic} == {"synthetic"}
    metas = [json.loads(r["meta"]) for r in synthetic]
    assert {x["teacher_model"] for x in metas} == {teacher}
    assert {x["prompt_id"] for x in metas} == {f"v1/{t}" for t in m["records_by_task"]}
    assert Counter(r["task"] for r in synthetic) == Counter(m["records_by_task"])
    # Every record of one paragraph is in one split (its group), never across two.
    by_group = {}
    for split in ("train", "validation", "test"):
        for r in instar(pipeline, split):
            if r["source"] == "synthetic":
                by_group.setdefault(json.loads(r["meta"])["group"], set()).add(split)
    assert all(len(s) == 1 for s in by_group.values())
    # The answers cache is a persisted output: there, its header only (no teacher answered).
    cache = (pipeline / params(pipeline)["generate"]["cache"]).read_text().splitlines()
    assert [json.loads(line) for line in cache] == [{"instar_answers_cache": 1}]


def test_manifest_and_dataset_card_agree_with_the_shards(pipeline):
    manifest = json.loads((pipeline / "data/instar/manifest.json").read_text())
    for name, info in manifest["shards"].items():
        assert file_digest(pipeline / "data/instar" / name) == info["sha256"]
    for split, counts in manifest["splits"].items():
        assert counts["records"] == len(instar(pipeline, split))
        assert sum(counts["by_task"].values()) == counts["records"]
    card = (pipeline / "data/instar/README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    # English: the output language of params.yaml's `translation` task, which has records
    assert header["language"] == ["ar", "en"] and header["license"] == "apache-2.0"
    assert "translation" in header["task_categories"]
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]} == {
        s: c["records"] for s, c in manifest["splits"].items()
    }
    assert "## Tasks" in card and "classification" in card
    # clean's language counts, added up over the sources, in the manifest and the card
    sums: dict[str, Counter] = {}
    for s in params(pipeline)["sources"]:
        m = json.loads((pipeline / f"metrics/clean/{s}.json").read_text())
        for key in ("system_prompts_by_language", "dropped_language_by_published_source"):
            sums.setdefault(key, Counter()).update(m[key])
    assert manifest["clean_languages"] == {k: dict(v) for k, v in sums.items()}
    dropped = sums["dropped_language_by_published_source"]
    assert dropped["web_sample"] > 0  # its Persian, Urdu and English rows
    assert f"| web_sample | {dropped['web_sample']} |" in card
    systems = sums["system_prompts_by_language"]
    assert systems["arabic"] > 0 and f"| arabic | {systems['arabic']} |" in card


def test_a_translation_task_with_english_outputs_goes_from_its_source_to_the_shards(pipeline):
    from instar.text.language import language_names

    task = params(pipeline)["tasks"]["translation"]
    assert task["output_language"] == "english"
    lines = (pipeline / "data/sources/translation.jsonl").read_text(encoding="utf-8").splitlines()
    raw = [json.loads(line) for line in lines]
    shards = [r for r in instar(pipeline) if r["source"] == "translation"]
    assert sorted(r["source_row"] for r in shards) == list(range(len(raw)))  # none dropped
    assert {r["task"] for r in shards} == {"translation"}
    assert {r["output"] for r in shards} == {r["output"] for r in raw}
    languages = ("arabic", "persian", "urdu", "english")
    assert set(language_names([r["output"] for r in shards], languages)) == {"english"}
    assert set(language_names([r["input"] for r in shards], languages)) == {"arabic"}
    # clean's language rule read them as English and dropped none
    clean = json.loads((pipeline / "metrics/clean/translation.json").read_text())
    assert clean["records_out"] == len(raw) and clean["dropped"]["language"] == 0
    card = (pipeline / "data/instar/README.md").read_text(encoding="utf-8")
    row = f"| `translation` | {task['name_en']} | {task['name_ar']} | english |"
    assert row in card


def test_phrasings_of_one_labelled_item_share_a_split(pipeline):
    where: dict[str, set] = {}
    for split in ("train", "validation", "test"):
        for r in instar(pipeline, split):
            group = json.loads(r["meta"]).get("group")
            if group:
                where.setdefault(group, set()).add(split)
    assert where and all(len(s) == 1 for s in where.values())


def test_adapters_lower_test_perplexity_and_the_report_shows_every_model(pipeline):
    summary = (pipeline / "reports/summary.md").read_text()
    for m in params(pipeline)["models"]:
        ev = json.loads((pipeline / f"metrics/eval/{m}.json").read_text())
        base = json.loads((pipeline / f"metrics/eval_base/{m}.json").read_text())
        assert ev["instar_test.perplexity"] < base["instar_test.perplexity"]
        assert ev["delta.instar_test.loss"] < 0
        tr = json.loads((pipeline / f"metrics/train/{m}.json").read_text())
        assert tr["last_logged_loss"] < tr["first_logged_loss"]
        assert f"| {m} | base |" in summary and f"| {m} | + InstAr adapter |" in summary


def test_every_evaluation_carries_its_fingerprint_base_and_adapter_alike(pipeline):
    for m in params(pipeline)["models"]:
        fp = {
            f: json.loads((pipeline / f"metrics/{f}/{m}.json").read_text())["fingerprint"]
            for f in ("eval", "eval_base", "eval_adapter")
        }
        assert fp["eval"] == fp["eval_adapter"]
        assert fp["eval_base"]["adapter"] == "none" and fp["eval"]["adapter"] != "none"
        same = {k: v for k, v in fp["eval"].items() if k != "adapter"}
        assert same == {k: v for k, v in fp["eval_base"].items() if k != "adapter"}
        assert same["base"].startswith("local:") and same["device"] == "cpu"
        assert same["batch_size"] == str(params(pipeline)["evaluate"]["benchmarks"]["batch_size"])


def test_adapter_reloads_with_peft_and_changes_the_logits(pipeline):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, adapter_dir = pipeline / "models/tiny/base", pipeline / "models/tiny/adapter"
    tok = AutoTokenizer.from_pretrained(adapter_dir)
    ids = tok("ما عاصمة المغرب؟", return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter_dir)
        after = tuned(ids).logits
    assert not torch.allclose(before, after)


def test_chat_templates_match_the_real_models(pipeline):
    from transformers import AutoTokenizer

    from instar.modeling.chat import supports_system, to_messages

    rec = {
        "system": "أجب بإيجاز.",
        "instruction": "ما عاصمة مصر؟",
        "input": "",
        "output": "القاهرة.",
    }
    llama = AutoTokenizer.from_pretrained(pipeline / "models/tiny/base")
    gemma = AutoTokenizer.from_pretrained(pipeline / "models/tiny-gemma/base")
    assert supports_system(llama) and not supports_system(gemma)
    text = gemma.apply_chat_template(to_messages(rec, False), tokenize=False)
    assert text.startswith("<bos><start_of_turn>user\nأجب بإيجاز.\n\nما عاصمة مصر؟<end_of_turn>")
    text = llama.apply_chat_template(to_messages(rec, True), tokenize=False)
    assert "<|start_header_id|>system<|end_header_id|>\n\nأجب بإيجاز.<|eot_id|>" in text
