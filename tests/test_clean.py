import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.arabic import arabic_ratio, dedup_key, normalise
from stages.clean import clean, clean_path, first_failure, normalise_record
from stages.config import CleanParams
from stages.ingest import quarantine_path, raw_path
from stages.schema import RECORD_SCHEMA, make_record, record_id

P = CleanParams(min_output_words=2, min_instruction_words=2, max_words=40, min_arabic_ratio=0.5)


def rec(instruction="ما عاصمة مصر؟", output="عاصمة مصر هي القاهرة.", **kw):
    return make_record(
        instruction=instruction,
        output=output,
        source="s",
        source_row=0,
        origin="collected",
        task="open_qa",
        **kw,
    )


def test_training_normalisation_removes_tatweel_invisibles_and_folds_presentation_forms():
    assert normalise("العـــربية") == "العربية"
    assert normalise("\ufeffمرحبا\u200f بكم\u200b") == "مرحبا بكم"
    assert normalise("\ufef7") == "\u0644\u0623"  # presentation form of lam-alef with hamza
    assert normalise("  سطر   أول  \r\n\n\n\nسطر ثان ") == "سطر أول\n\nسطر ثان"


def test_training_normalisation_keeps_diacritics_latin_digits_and_code_unless_asked():
    text = "اكتب print(x) في Python 3.11 ثم اضغط Enter: مَدْرَسَةٌ"
    assert normalise(text) == text
    assert normalise("مَدْرَسَةٌ", keep_diacritics=False) == "مدرسة"


def test_dedup_key_folds_variants_that_people_type_interchangeably():
    assert dedup_key("إلى المدرسةِ!") == dedup_key("الى المدرسه")
    assert dedup_key("مستشفى") == dedup_key("مستشفي")
    assert dedup_key("كتاب") == dedup_key("کتاب")  # Persian keheh
    assert dedup_key("Hello, World") == "hello world"
    assert dedup_key("قال") != dedup_key("قل")


def test_arabic_ratio_counts_letters_only():
    assert arabic_ratio("مرحبا 123 !!!") == 1.0
    assert arabic_ratio("hello") == 0.0
    assert 0.4 < arabic_ratio("مرحبا hello") < 0.6


@pytest.mark.parametrize(
    "record,rule",
    [
        (rec(output=""), "empty_output"),
        (rec(output="القاهرة"), "short_output"),
        (rec(instruction="القاهرة؟"), "short_instruction"),
        (rec(output=" ".join(["كلمة"] * 50)), "too_long"),
        (rec(instruction="What is the capital?", output="The capital is Cairo."), "arabic_ratio"),
        (
            rec(instruction="العاصمة هي القاهرة", output="العاصمة هي القاهرة."),
            "instruction_equals_output",
        ),
    ],
)
def test_each_rule_catches_its_case(record, rule):
    assert first_failure(normalise_record(record, P), P)[0] == rule


def test_a_good_record_passes_and_its_id_follows_the_cleaned_text():
    r = normalise_record(rec(instruction="ما عاصمـــة مصر؟"), P)
    assert first_failure(r, P) is None
    assert r["id"] == record_id(r["instruction"], r["input"], r["output"])
    assert r["id"] == rec()["id"]


def test_counts_add_up_and_every_drop_is_quarantined_with_rule_and_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = [rec(), rec(output=""), rec(instruction="What is it?", output="It is fine.")]
    raw_path("s").parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records, schema=RECORD_SCHEMA), raw_path("s"))
    m = clean("s", P)
    assert m["records_in"] == 3 == m["records_out"] + m["quarantined"]
    assert m["dropped"]["empty_output"] == 1 and m["dropped"]["arabic_ratio"] == 1
    q = pq.read_table(quarantine_path("clean", "s")).to_pylist()
    assert sorted(r["rule"] for r in q) == ["arabic_ratio", "empty_output"]
    assert all(r["stage"] == "clean" and r["value"] != "" or r["rule"] == "empty_output" for r in q)
    assert pq.read_table(clean_path("s")).num_rows == 1
