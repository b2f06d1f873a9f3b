import json

import pyarrow as pa
import pytest

from instar.params.tasks import PUBLISHED
from instar.records.schema import (
    FIELDS,
    RECORD_SCHEMA,
    group_key,
    make_record,
    normalise_task,
    record_id,
)


def rec(**kw):
    base = dict(
        instruction="ما عاصمة المغرب؟",
        output="الرباط.",
        source="s",
        source_row=3,
        origin="collected",
        task="open_qa",
    )
    return make_record(**{**base, **kw})


def test_record_has_exactly_the_schema_fields_and_fits_the_arrow_schema():
    r = rec(meta={"uuid": "u-1"})
    assert tuple(r) == FIELDS
    table = pa.Table.from_pylist([r], schema=RECORD_SCHEMA)
    assert table.num_rows == 1 and table.schema == RECORD_SCHEMA


def test_id_is_stable_across_invisible_differences():
    a = record_id("ما عاصمة المغرب؟", "", "الرباط.")
    assert a == record_id("  ما   عاصمة المغرب؟ ", "", "الرباط.\n")
    # NFKC folds Arabic presentation forms to the letters they show.
    assert record_id("\ufefb", "", "x") == record_id("\u0644\u0627", "", "x")
    assert len(a) == 32 and int(a, 16) >= 0


def test_id_changes_with_any_of_instruction_input_output():
    base = record_id("سؤال", "نص", "جواب")
    assert (
        len(
            {
                base,
                record_id("سؤال آخر", "نص", "جواب"),
                record_id("سؤال", "نص آخر", "جواب"),
                record_id("سؤال", "نص", "جواب آخر"),
            }
        )
        == 4
    )
    # The separator keeps fields apart: moving text between fields is a different record.
    assert record_id("أ ب", "", "ج") != record_id("أ", "ب", "ج")


def test_id_does_not_depend_on_lineage_or_labels():
    assert rec(source="a", source_row=1)["id"] == rec(source="b", source_row=9)["id"]
    assert rec(task="closed_qa")["id"] == rec()["id"]


@pytest.mark.parametrize(
    "raw,slug",
    [
        ("Closed QA", "closed_qa"),
        ("open-qa", "open_qa"),
        ("Text Completion", "text_completion"),
        ("rewriting", "rewrite"),
        ("Brainstorming", "brainstorming"),
        ("classification", "classification"),
    ],
)
def test_task_names_of_published_data_map_onto_the_taxonomy(raw, slug):
    assert normalise_task(raw) == slug
    assert slug in PUBLISHED


def test_group_key_keeps_phrasings_of_an_item_together_and_is_content_based_otherwise():
    a = rec(meta={"group": "sentiment:abc"}, instruction="صنف المشاعر")
    b = rec(meta={"group": "sentiment:abc"}, instruction="ما المشاعر في النص؟")
    assert group_key(a) == group_key(b) == "sentiment:abc"
    c = rec()
    assert group_key(c) == c["id"]
    assert group_key(rec(source_row=1)) == group_key(rec(source_row=2))


def test_meta_is_a_json_object_string_with_arabic_kept_readable():
    r = rec(meta={"source": "مجموعة", "uuid": "1"})
    assert json.loads(r["meta"]) == {"source": "مجموعة", "uuid": "1"}
    assert "مجموعة" in r["meta"]
