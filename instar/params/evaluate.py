"""Params `evaluate`: test loss, benchmarks, generations."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from instar.params.core import Section, check_name


class BenchmarkParams(Section):
    """Benchmarks through lm-evaluation-harness (instar/evaluation/harness.py)."""

    tasks: dict[str, str] = Field(
        default_factory=lambda: {
            "alghafa": "instar_alghafa",
            "acva": "instar_acva",
            "mmlu": "instar_mmlu",
        },
        description="metric name -> lm-eval task or group (a group's subtasks are averaged)",
    )
    include_path: str | None = Field(
        "lm_eval_tasks/instar", description="folder of local task YAMLs; null: lm-eval's own only"
    )
    num_fewshot: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(gt=0)] | None = Field(None, description="items per task")
    batch_size: Annotated[int, Field(gt=0)] = 16
    apply_chat_template: bool = False
    request_cache: str | None = Field(
        ".cache/lm_eval", description="folder of lm-eval's request cache (null: off)"
    )

    @model_validator(mode="after")
    def _names(self):
        for name in self.tasks:
            check_name(name, "benchmark")
        if not self.tasks:
            raise ValueError("benchmarks.tasks is empty")
        return self


class GenerationParams(Section):
    """Greedy answers to the first `samples` test records, scored with chrF and ROUGE-L."""

    samples: Annotated[int, Field(ge=0)] = 16
    max_new_tokens: Annotated[int, Field(gt=0)] = 48
    batch_size: Annotated[int, Field(gt=0)] = 16


class EvaluateParams(Section):
    SECTION: ClassVar[str] = "evaluate"
    batch_size: Annotated[int, Field(gt=0)] = 8
    max_length: Annotated[int, Field(gt=0)] = 512
    limit: int | None = Field(None, description="evaluate only the first N test records")
    benchmarks: BenchmarkParams = BenchmarkParams()
    generation: GenerationParams = GenerationParams()
