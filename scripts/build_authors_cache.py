"""Build data/generate_cache/authors.jsonl, the shipped answers cache, from the answers
people wrote in data/generate_cache/authors.yaml.

The cache key holds the rendered prompt, so rerun this after editing the prompt templates,
the sampling params or the picks (`generate.paragraphs`, `seed`, `quotas`); the stage
itself never needs it. Every picked prompt must have an answer, and every answer a prompt.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import yaml

from instar.params.generate import GenerateParams
from stages.generate import build_prompts

SOURCE = Path("data/generate_cache/authors.yaml")


def build(source: Path = SOURCE) -> int:
    params = GenerateParams.load()
    if params.backend != "authors" or not params.shipped_cache:
        raise SystemExit("generate.backend must be 'authors' with a shipped_cache to build it")
    answers = {(a["doc"], a["task"]): a for a in yaml.safe_load(source.read_text("utf-8"))}
    prompts = build_prompts(params, Counter())
    lines, missing = [], []
    for p in prompts:
        a = answers.pop((p.paragraph.doc, p.task), None)
        if a is None:
            missing.append(f"{p.paragraph.doc}/{p.task}")
            continue
        answer = {
            "instruction": a["instruction"],
            "input": p.paragraph.text if a["input"] == "@paragraph" else a["input"],
            "output": a["output"],
        }
        entry = {
            "key": p.key,
            "backend": params.backend,
            "model": params.model,
            "prompt_id": p.prompt_id,
            "paragraph_id": p.paragraph.doc,
            "answer": json.dumps(answer, ensure_ascii=False),
            "tokens_in": 0,
            "tokens_out": 0,
        }
        lines.append(json.dumps(entry, ensure_ascii=False, sort_keys=True))
    if missing or answers:
        raise SystemExit(
            f"{source}: no answer for {missing}; answers without a prompt: {sorted(answers)}"
        )
    out = Path(params.shipped_cache)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: {len(lines)} answers")
    return len(lines)


def main() -> None:
    argparse.ArgumentParser(
        prog="python -m scripts.build_authors_cache", description=__doc__
    ).parse_args()
    build()


if __name__ == "__main__":
    main()
