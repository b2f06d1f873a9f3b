"""Prompts of the local benchmark sets, copied from lm-eval's OALL v1 tasks
(lm_eval/tasks/arabic_leaderboard_complete/*/utils.py, lm-eval 0.4.13) so that a local item
is asked exactly as the leaderboard task asks one of its own. Only the fields differ: our
AlGhafa-style rows carry an `id`, which the original would have taken for a choice."""

from __future__ import annotations

MCQ_INSTRUCTION = "الأسئلة التالية هي أسئلة متعددة الإختيارات مع الجواب الصحيح"
LETTERS = ["A", "B", "C", "D"]
LETTERS_AR = ["أ", "ب", "ج", "د"]
TRUE_FALSE = ["صح", "خطأ"]


def _alghafa(doc: dict) -> dict:
    choices = [doc[f"sol{i}"] for i in range(1, 5) if doc.get(f"sol{i}")]
    query = f"{MCQ_INSTRUCTION}\n\nالسؤال: {doc['query']}\n"
    query += "".join(f"{i}) {c}\n" for i, c in enumerate(choices))
    return {"prompt": query + "الإجابة:", "choices": choices, "gold": int(doc["label"])}


def _acva(doc: dict) -> dict:
    return {
        "prompt": f"السؤال: {doc['question']}\nالإجابة:",
        "choices": TRUE_FALSE,
        "gold": TRUE_FALSE.index(doc["answer"].strip()),
    }


def _mmlu(doc: dict) -> dict:
    topic = doc["subject"].replace("_", " ")
    query = f"{MCQ_INSTRUCTION} حول {topic}. \n\n{doc['question']}\n"
    query += "".join(f"{k}. {doc[x]}\n" for k, x in zip(LETTERS_AR, LETTERS, strict=True))
    return {
        "prompt": query + "الإجابة:",
        "choices": LETTERS_AR,
        "gold": LETTERS.index(doc["answer"].strip()),
    }


def alghafa_docs(dataset):
    return dataset.map(_alghafa)


def acva_docs(dataset):
    return dataset.map(_acva)


def mmlu_docs(dataset):
    return dataset.map(_mmlu)
