import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instar.params.dedup import DedupParams
from instar.records.paths import clean_path
from instar.records.schema import RECORD_SCHEMA, make_record
from stages.dedup import EXAMPLES, OUT, QUARANTINE, dedup

WORDS = (
    "النيل نهر طويل يجري في مصر والسودان ويصب في البحر المتوسط بعد رحلة طويلة عبر الصحراء "
    "وقد قامت على ضفافه حضارات عظيمة منذ آلاف السنين واعتمد عليه الناس في الزراعة والنقل "
    "والصيد وما زال شريان الحياة لملايين البشر حتى اليوم"
).split()


def text(seed: int, n: int = 60) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def rec(source, row, output, instruction="اكتب فقرة عن نهر النيل.", meta=None):
    return make_record(
        instruction=instruction,
        output=output,
        source=source,
        source_row=row,
        origin="collected",
        task="generation",
        meta=meta,
    )


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def go(by_source: dict[str, list[dict]], **params):
        for source, records in by_source.items():
            clean_path(source).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(records, schema=RECORD_SCHEMA), clean_path(source))
        metrics = dedup(list(by_source), DedupParams(**params))
        kept = {(r["source"], r["source_row"]) for r in pq.read_table(OUT).to_pylist()}
        dropped = {(r["source"], r["source_row"]): r for r in pq.read_table(QUARANTINE).to_pylist()}
        return metrics, kept, dropped

    return go


def test_exact_and_normalised_duplicates_keep_the_first_by_source_order_then_row(run):
    a = text(1)
    metrics, kept, dropped = run(
        {
            "first": [rec("first", 5, a)],
            "second": [
                rec("second", 0, a),
                rec("second", 1, a.replace("النيل", "ﺍﻟﻨﻴﻞ", 1).replace("النيل", "النّيـــل")),
            ],
        }
    )
    assert kept == {("first", 5)}
    assert {k: v["rule"] for k, v in dropped.items()} == {
        ("second", 0): "exact_duplicate",
        ("second", 1): "exact_duplicate",
    }
    survivor = rec("first", 5, a)["id"]
    assert all(v["value"].startswith(survivor) for v in dropped.values())
    assert metrics["duplicate_pairs"] == {"first|second": 2}
    assert metrics["clusters_by_source_pair"] == {"first|second": 1}  # one survivor


def test_diacritics_tatweel_and_letter_variants_are_exact_duplicates(run):
    a = "ذهبت إلى المدرسة صباحا مع أخي الأكبر ثم عدنا إلى البيت مساء."
    b = "ذَهَبْتُ الى المدرسه صباحـــا مع اخي الاكبر، ثم عدنا الى البيت مساءً!"
    _, kept, dropped = run({"s": [rec("s", 0, a), rec("s", 1, b)]})
    assert kept == {("s", 0)} and dropped[("s", 1)]["rule"] == "exact_duplicate"


def test_a_few_words_changed_is_a_near_duplicate_with_its_jaccard(run):
    a = text(2, 80)
    toks = a.split()
    toks[10], toks[40] = "البحر", "الصحراء"
    del toks[60]
    metrics, kept, dropped = run({"s": [rec("s", 0, a), rec("s", 1, " ".join(toks))]})
    assert kept == {("s", 0)}
    assert dropped[("s", 1)]["rule"] == "near_duplicate"
    jaccard = float(dropped[("s", 1)]["value"].split("jaccard ")[1].rstrip(")"))
    assert 0.7 <= jaccard < 1
    assert metrics["near_duplicates"] == 1 and metrics["exact_duplicates"] == 0


def test_different_answers_to_one_template_question_all_stay(run):
    records = [rec("s", i, text(100 + i)) for i in range(30)]
    metrics, kept, _ = run({"s": records})
    assert len(kept) == 30 and metrics["duplicates"] == 0


def test_phrasings_of_one_labelled_item_are_not_near_duplicates_of_each_other(run):
    context = text(7, 70)
    q1 = rec(
        "qa",
        0,
        "القاهرة",
        instruction=f"اقرأ النص ثم أجب: ما العاصمة؟ {context}",
        meta={"group": "qa:1"},
    )
    q2 = rec(
        "qa",
        0,
        "القاهرة",
        instruction=f"النص: {context} السؤال: ما العاصمة؟",
        meta={"group": "qa:1"},
    )
    metrics, _, _ = run({"qa": [q1, q2]})
    assert metrics["records_out"] == 2
    q3 = rec(
        "qb",
        0,
        "القاهرة",
        instruction=f"اقرأ النص ثم أجب: ما العاصمة؟ {context}",
        meta={"group": "qb:9"},
    )
    _, kept, dropped = run({"qa": [q1], "qb": [q3]})
    assert len(kept) == 1 and dropped  # another item's copy is still a duplicate


def test_near_dedup_can_be_turned_off(run):
    a = text(3, 80)
    b = a.replace(a.split()[5], "البحر", 1)
    _, kept, _ = run({"s": [rec("s", 0, a), rec("s", 1, b)]}, near={"enabled": False})
    assert len(kept) == 2


def test_counts_add_up_and_the_examples_report_shows_clusters(run):
    a, b = text(4), text(5)
    metrics, kept, dropped = run({"s": [rec("s", 0, a), rec("s", 1, a), rec("s", 2, b)]})
    assert metrics["records_in"] == metrics["records_out"] + metrics["duplicates"] == 3
    assert json.loads(json.dumps(metrics))["by_source"]["s"] == {
        "in": 3,
        "out": 2,
        "exact_duplicate": 1,
        "near_duplicate": 0,
    }
    report = EXAMPLES.read_text()
    assert "## Cluster 1" in report and "| kept | s:0 |" in report and "| exact | s:1 |" in report
