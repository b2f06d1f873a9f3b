from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instar.params.clean import CleanParams
from instar.params.tasks import PUBLISHED
from instar.params.tasks import load as load_tasks
from instar.records.paths import clean_path, quarantine_path, raw_path
from instar.records.schema import RECORD_SCHEMA, make_record, record_id
from instar.text.arabic import arabic_enough, arabic_ratio, dedup_key, has_letters, normalise
from instar.text.repetition import (
    duplicate_line_fraction,
    duplicate_ngram_fraction,
    tandem_copies,
    tandem_shares,
)
from instar.text.scrub import scrub_pii, strip_markup
from stages.clean import clean, judge, normalise_record

P = CleanParams(
    min_output_words=3,
    max_length={"unit": "words", "limit": 200},
    repetition={"min_words": 30},
)
# The published taxonomy (label tasks: classification, closed_qa, extraction) and two of a
# user's own: English translations, and code answers whose language is not read.
TASKS = load_tasks(
    {
        "tasks": {
            **PUBLISHED,
            "translation": {
                "name_ar": "ترجمة",
                "name_en": "Translation",
                "output_language": "english",
            },
            "code": {"name_ar": "برمجة", "name_en": "Code", "output_language": "any"},
        }
    }
)
ANSWER = "عاصمة مصر هي مدينة القاهرة الواقعة على ضفاف النيل."


def rec(instruction="ما عاصمة مصر؟", output=ANSWER, task="open_qa", **kw):
    return make_record(
        instruction=instruction,
        output=output,
        source="s",
        source_row=0,
        origin="collected",
        task=task,
        **kw,
    )


def verdict(record, params=P):
    (v,) = judge([normalise_record(record, params, Counter())], params, TASKS)
    return v


# Training normalisation ------------------------------------------------------------------


def test_training_text_loses_tatweel_invisibles_and_presentation_forms():
    assert normalise("العـــربية") == "العربية"
    assert normalise("\ufeffمرحبا\u200f بكم\u200b\u061c") == "مرحبا بكم"
    assert normalise("\ufefb") == "\u0644\u0627"  # lam-alef ligature -> lam, alef
    assert normalise("  سطر   أول  \r\n\n\n\nسطر ثان ") == "سطر أول\n\nسطر ثان"


def test_latin_digits_and_code_survive_unchanged():
    text = "اكتب print(x²) في Python 3.11 ثم ﬁle.txt، والعدد ٣٤ كما هو: مَدْرَسَةٌ"
    assert normalise(text) == text  # NFKC would have made x2 and file.txt
    assert normalise("مَدْرَسَةٌ", keep_diacritics=False) == "مدرسة"


# Dedup key -------------------------------------------------------------------------------


def test_dedup_key_folds_what_people_type_interchangeably():
    assert dedup_key("إلى المدرسةِ!") == dedup_key("الى المدرسه")
    assert dedup_key("مستشفى") == dedup_key("مستشفي")
    assert dedup_key("كتاب") == dedup_key("کتاب")  # Persian keheh
    assert dedup_key("عدد ٣٤") == dedup_key("عدد 34")
    assert dedup_key("Hello, World") == "hello world"
    assert dedup_key("قال") != dedup_key("قل")


def test_arabic_ratio_counts_letters_only():
    assert arabic_ratio("مرحبا 123 !!!") == 1.0
    assert arabic_ratio("hello") == 0.0
    assert 0.4 < arabic_ratio("مرحبا hello") < 0.6


def test_arabic_enough_judges_the_letters_arabic_ratio_counts():
    assert arabic_enough("42 !!", 0.5) and arabic_enough("", 0.5)  # nothing to judge
    assert arabic_enough("مرحبا 123", 0.5) and not arabic_enough("hello", 0.5)
    # "½" is a letter to the ratio (a share of 0), so it is judged, as clean judges it.
    assert has_letters("½") and not arabic_enough("½", 0.5)


# Scrubbing -------------------------------------------------------------------------------


def test_markup_is_stripped_and_entities_decoded_but_comparisons_survive():
    text, n = strip_markup("<p>مرحبا بكم.</p><p>نص &amp; آخر&nbsp;</p><br/>")
    assert n == 7  # five tags, two entities
    assert normalise(text) == "مرحبا بكم.\n\nنص & آخر"
    code = "إذا كان a < b و x<3 فاطبع '<3'"
    assert strip_markup(code) == (code, 0)


def test_personal_data_becomes_placeholders_and_numbers_stay():
    text, counts = scrub_pii(
        "راسلني على user.name@example.com أو +966 50 123 4567 أو 0501234567، "
        "والموقع https://example.com/x?y=1 ، في عام 2024 بلغ السعر 1,500,000 ريال."
    )
    assert counts == {"email": 1, "url": 1, "phone": 2}
    assert "[EMAIL]" in text and "[URL]" in text and text.count("[PHONE]") == 2
    assert "2024" in text and "1,500,000" in text


def test_scrub_counts_reach_the_metrics_and_the_record_is_kept():
    c = Counter()
    r = normalise_record(rec(output=ANSWER + " للتواصل: a@b.co <b>شكرا</b>"), P, c)
    assert c["email"] == 1 and c["markup"] == 2 and c["records_scrubbed"] == 1
    assert verdict(rec(output=ANSWER + " للتواصل: a@b.co")) is None
    assert r["id"] == record_id(r["instruction"], r["input"], r["output"])


# Rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record,rule",
    [
        (rec(output=""), "empty_output"),
        (rec(output="\u200f "), "empty_output"),
        (rec(output="القاهرة طبعا"), "short_output"),
        (rec(instruction="القاهرة؟"), "short_instruction"),
        (rec(output=" ".join(["كلمة"] * 250)), "too_long"),
        (
            rec(
                instruction="What is the capital of Egypt?",
                output="The capital is Cairo, on the Nile.",
            ),
            "arabic_ratio",
        ),
        (
            rec(
                instruction="پایتخت مصر کجاست و چرا این شهر مهم است؟",
                output="پایتخت مصر قاهره است و این شهر بسیار بزرگ و زیبا است.",
            ),
            "language",
        ),
        (
            rec(
                instruction="مصر کا دارالحکومت کون سا شہر ہے اور کیوں؟",
                output="مصر کا دارالحکومت قاہرہ ہے اور یہ بہت بڑا شہر ہے۔",
            ),
            "language",
        ),
        (
            rec(output="\n".join(["النيل أطول نهر في العالم ويمر بمصر."] * 8)),
            "repetition:tandem_lines",
        ),
        (  # a model's loop: one sentence again and again on one line
            rec(output=ANSWER + " " + "وهي مدينة كبيرة جدا " * 12),
            "repetition:tandem_share",
        ),
        (  # a loop that counts: each copy differs in its number, so no copy is exact
            rec(output=ANSWER + " " + " ".join(f"ثم الخطوة رقم {n} من الخطوات" for n in range(9))),
            "repetition:tandem_excess",
        ),
        (
            rec(instruction="عاصمة مصر هي القاهرة", output="عاصمةُ مصرَ هي القاهرة."),
            "instruction_equals_output",
        ),
    ],
)
def test_each_rule_catches_its_case(record, rule):
    v = verdict(record)
    assert v is not None and v[0] == rule


def test_an_answer_without_letters_passes_the_ratio_rule():
    assert (
        verdict(
            rec(
                instruction="في أي عام انتهت الحرب العالمية الثانية؟",
                output="1945",
                task="closed_qa",
            )
        )
        is None
    )


def test_labels_may_be_one_word_where_the_task_says_so():
    assert (
        verdict(
            rec(instruction="صنف المشاعر: الخدمة رائعة", output="إيجابي", task="classification")
        )
        is None
    )
    assert verdict(rec(output="إيجابي"))[0] == "short_output"


def test_mixed_arabic_english_and_code_is_kept():
    r = rec(
        instruction="اشرح الفرق بين list و tuple في Python مع مثال.",
        output="القائمة list قابلة للتعديل مثل x = [1, 2]، أما tuple فثابتة مثل y = (1, 2).",
    )
    assert verdict(r) is None


def test_an_output_of_a_named_language_is_judged_as_that_language():
    r = rec(
        instruction="ترجم الجملة التالية إلى الإنجليزية.",
        input="يزرع الفلاحون القمح في الشتاء ويحصدونه في أول الصيف.",
        output="Farmers sow wheat in winter and harvest it at the start of summer.",
        task="translation",
    )
    assert verdict(r) is None
    # the same English answer to an Arabic task is dropped by the script ratio
    assert verdict({**r, "task": "open_qa"})[0] == "arabic_ratio"
    # an answer left in Arabic, or put into Persian, is no English translation: the language
    # rule (lingua chooses among clean.language.languages, so only a candidate is told apart)
    left = verdict({**r, "output": "يزرع الفلاحون القمح في الشتاء ويحصدونه في أول الصيف."})
    persian = verdict(
        {**r, "output": "کشاورزان گندم را در زمستان می‌کارند و در تابستان برداشت می‌کنند."}
    )
    for v in (left, persian):
        assert v[0] == "language" and float(v[1]) < P.language.min_arabic_confidence
    # the prompt must still be Arabic
    english_prompt = {**r, "instruction": "Translate the following sentence.", "input": ""}
    assert verdict(english_prompt)[0] == "arabic_ratio"


def test_an_output_of_language_any_is_not_read_by_the_language_rules():
    r = rec(
        instruction="اكتب دالة بلغة بايثون تعيد مجموع قائمة من الأعداد.",
        output="def total(xs):\n    return sum(xs)",
        task="code",
    )
    assert verdict(r) is None
    assert verdict({**r, "task": "open_qa"})[0] == "arabic_ratio"


def test_a_task_output_language_must_be_a_language_clean_can_tell():
    from instar.params.tasks import language_problems

    assert language_problems(TASKS, P.language.languages) == []
    problems = language_problems(TASKS, ("arabic", "persian"))
    assert len(problems) == 1 and "tasks.translation.output_language 'english'" in problems[0]


def test_repetition_rules_leave_short_answers_alone():
    short = "نعم نعم نعم نعم نعم"  # 5 words: far below repetition.min_words
    assert verdict(rec(output=short)) is None
    toks = ("أ ب ج د هـ و ز ح " * 6).split()
    assert duplicate_ngram_fraction(toks, 5) > 0.9
    assert duplicate_ngram_fraction("واحد اثنان ثلاثة أربعة خمسة ستة".split(), 5) == 0
    assert duplicate_line_fraction("أ\nب\nأ\nأ") == 0.5


def test_tandem_copies_number_each_copy_of_a_back_to_back_run():
    import numpy as np

    ids = np.array([7, 1, 2, 3, 1, 2, 3, 1, 2, 3, 9])
    assert tandem_copies(ids, 8, 0)[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
    # the same span spread out, with other words between its uses, is no copy
    assert tandem_copies(np.array([1, 2, 3, 4, 5, 1, 2, 3, 6, 7, 1, 2, 3]), 8, 0)[0].max() == 0
    # one item in five may drift, for spans of 5 or more
    drift = np.array([1, 2, 3, 4, 5, 1, 2, 3, 4, 6, 1, 2, 3, 4, 7])
    exact, loose = tandem_copies(drift, 8, 0, 5)
    assert exact.max() == 0 and loose.max() == 2


def test_a_formula_through_a_long_text_is_no_loop_but_gopher_counts_it():
    formula = "صلى الله عليه وسلم"
    sayings = [
        "إنما الأعمال بالنيات وإنما لكل امرئ ما نوى",
        "من حسن إسلام المرء تركه ما لا يعنيه",
        "لا يؤمن أحدكم حتى يحب لأخيه ما يحب لنفسه",
        "الدين النصيحة قلنا لمن قال لله ولكتابه ولرسوله",
        "اتق الله حيثما كنت وأتبع السيئة الحسنة تمحها",
        "الطهور شطر الإيمان والحمد لله تملأ الميزان",
    ]
    text = " ".join(f"قال رسول الله {formula}: {s}." for s in sayings)
    assert tandem_shares(text, 64, 3) == (0.0, 0.0)
    assert duplicate_ngram_fraction(text.split(), 5) > 0.4  # the Gopher share sees a loop
    gopher = {"repetition": {"min_words": 30, "max_duplicate_ngram_fraction": {5: 0.165}}}
    web = CleanParams(**{**P.model_dump(), **gopher})
    assert verdict(rec(output=text)) is None
    assert verdict(rec(output=text), web).rule == "repetition:duplicate_5gram"


def test_a_good_record_passes_and_its_id_follows_the_cleaned_text():
    r = normalise_record(rec(instruction="ما عاصمـــة مصر؟"), P, Counter())
    assert judge([r], P) == [None]
    assert r["id"] == rec()["id"]


def test_counts_add_up_and_every_drop_is_quarantined_with_rule_and_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = [rec(), rec(output=""), rec(instruction="What is it?", output="It is fine, really.")]
    raw_path("s").parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records, schema=RECORD_SCHEMA), raw_path("s"))
    m = clean("s", P)
    assert m["records_in"] == 3 == m["records_out"] + m["quarantined"]
    assert m["dropped"]["empty_output"] == 1 and m["dropped"]["arabic_ratio"] == 1
    q = pq.read_table(quarantine_path("clean", "s")).to_pylist()
    assert sorted((r["rule"], r["value"]) for r in q) == [
        ("arabic_ratio", "0.0"),
        ("empty_output", ""),
    ]
    assert all(r["stage"] == "clean" and r["source"] == "s" for r in q)
    assert pq.read_table(clean_path("s")).num_rows == 1


def test_system_prompts_by_language_and_language_drops_by_published_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    english = "You are a helpful assistant. Answer the user's question carefully."
    arabic = "أنت مساعد مفيد يجيب عن أسئلة المستخدم بدقة ووضوح."
    answer_en = "The capital of Egypt is Cairo, a large city on the river Nile."
    records = [
        rec(system=english, meta={"source": "alpaca_ar"}),
        rec(system=english, output=answer_en, meta={"source": "alpaca_ar"}),
        rec(system=english, output=answer_en, meta={"source": "dolly_ar"}),
        rec(system=arabic, meta={"source": "dolly_ar"}),
        rec(output=answer_en),  # no published source: this pipeline's own name counts
        rec(),
        rec(  # Persian in Arabic script: language ID, not the script, drops it
            instruction="پایتخت مصر کجاست و چرا این شهر مهم است؟",
            output="پایتخت مصر قاهره است و این شهر بسیار بزرگ و زیبا است.",
            meta={"source": "dolly_ar"},
        ),
    ]
    raw_path("s").parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records, schema=RECORD_SCHEMA), raw_path("s"))
    m = clean("s", P)
    assert m["system_prompts_by_language"] == {"arabic": 1, "english": 3, "none": 3}
    assert m["dropped_language_by_published_source"] == {"alpaca_ar": 1, "dolly_ar": 2, "s": 1}
    assert m["dropped"]["arabic_ratio"] == 3 and m["dropped"]["language"] == 1
    assert m["records_out"] == 3


def test_too_long_can_count_tokens_of_a_named_tokenizer(tmp_path):
    from instar.modeling.build import build_tokenizer

    texts = ["ما عاصمة مصر؟ عاصمة مصر هي القاهرة."] * 20
    build_tokenizer(iter(texts), vocab_size=300, template="llama3").save_pretrained(tmp_path)
    words_limit = CleanParams(max_length={"unit": "words", "limit": 12})
    tokens_limit = CleanParams(
        max_length={"unit": "tokens", "limit": 12, "tokenizer": str(tmp_path)}
    )
    r = rec(output="عاصمة مصر هي مدينة القاهرة.")  # 8 words, more than 12 byte-level tokens
    assert verdict(r, words_limit) is None
    drop = verdict(r, tokens_limit)
    assert drop.rule == "too_long" and drop.value > 12


# Per-source overrides ---------------------------------------------------------------------


def test_a_source_s_clean_override_merges_nested_keys_and_is_checked_as_the_section():
    from instar.params.clean import for_source
    from instar.params.core import ParamsError

    params = {"clean": {"min_output_words": 3, "repetition": {"min_words": 30}}}
    got = for_source("poems", {"repetition": {"enabled": False}}, params)
    assert got.repetition.enabled is False and got.repetition.min_words == 30  # kept
    assert got.min_output_words == 3 and for_source("other", {}, params).repetition.enabled
    with pytest.raises(ParamsError, match=r"sources\.poems\.clean\.min_output_word"):
        for_source("poems", {"min_output_word": 1}, params)
    with pytest.raises(ParamsError, match=r"sources\.poems\.clean\.min_arabic_ratio"):
        for_source("poems", {"min_arabic_ratio": 2}, params)


def test_repetition_off_for_a_source_keeps_the_formulas_the_rule_would_drop():
    from instar.params.clean import for_source

    refrain = "\n".join(["يا ليل الصب متى غده أقيام الساعة موعده"] * 12)
    r = rec(output=refrain)
    assert verdict(r).rule == "repetition:tandem_lines"
    off = for_source("poems", {"repetition": {"enabled": False}}, {"clean": P.model_dump()})
    assert verdict(r, off) is None


def test_check_all_names_a_source_s_bad_override():
    from instar.params.checks import check_all

    problems = check_all({"sources": {"s": {"format": "jsonl", "path": "s.jsonl",
                                            "clean": {"bogus": 1}}}})  # fmt: skip
    assert any("sources.s.clean.bogus" in p for p in problems), problems


def test_the_batch_size_is_a_memory_knob_and_leaves_the_bytes_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = [rec(instruction=f"ما عاصمة مصر؟ السؤال {i}") for i in range(150)]
    records += [rec(output="")] * 10
    raw_path("s").parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records, schema=RECORD_SCHEMA), raw_path("s"))
    outputs = []
    for size in (16, 2048):
        clean("s", P.model_copy(update={"batch_size": size}))
        outputs.append([clean_path("s").read_bytes(), quarantine_path("clean", "s").read_bytes()])
    assert outputs[0] == outputs[1]
