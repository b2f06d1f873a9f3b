"""Params `generate`: the teacher, its backends and sampling."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from instar.params.core import Section, check_name


class OpenAIParams(Section):
    """An OpenAI-compatible chat-completions endpoint (vLLM, TGI, Ollama, llama.cpp, hosted)."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="up to /v1, no trailing path")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key; null: send none"
    )
    concurrency: Annotated[int, Field(ge=1)] = Field(8, description="requests in flight at most")
    max_retries: Annotated[int, Field(ge=0)] = Field(5, description="retries after the first try")
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    backoff_s: Annotated[float, Field(gt=0)] = Field(1.0, description="first backoff ceiling")
    max_backoff_s: Annotated[float, Field(gt=0)] = 60.0
    json_mode: bool = Field(
        True, description='send response_format {"type": "json_object"} (vLLM, OpenAI, Ollama)'
    )


class TransformersTeacherParams(Section):
    """A local model folder, generated in batches on this machine."""

    batch_size: Annotated[int, Field(ge=1)] = 8
    device: str = Field("cpu", description="cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class SamplingParams(Section):
    temperature: Annotated[float, Field(ge=0)] = 0.7
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.95
    max_tokens: Annotated[int, Field(ge=1)] = 1024
    seed: int | None = Field(0, description="sampling seed where the backend takes one")


class GenerateParams(Section):
    """Synthetic instructions: a teacher reads paragraphs and writes instruction records."""

    SECTION: ClassVar[str] = "generate"

    text_sources: list[str] = Field(description="keys of `text_sources` to sample from")
    paragraphs: Annotated[int, Field(ge=1)] = Field(description="how many paragraphs to pick")
    quotas: dict[str, Annotated[float, Field(gt=0)]] = Field(
        description="seed task -> weight; the picked paragraphs are split in these proportions"
    )
    seed: int = 0
    min_words: Annotated[int, Field(ge=1)] = Field(30, description="shorter paragraphs are skipped")
    max_words: Annotated[int, Field(ge=1)] = Field(800, description="longer ones are skipped")
    max_scan: int | None = Field(
        None, description="read at most this many paragraphs of each source; null: all"
    )
    templates: str = Field("templates/generate", description="folder of prompt template versions")
    template_version: str = Field("v1", description="subfolder of `templates`")
    backend: Literal["authors", "openai", "transformers"] = Field(
        description="authors: only answers already in the cache (the project's own); "
        "openai or transformers: a teacher is asked for what the cache lacks"
    )
    model: str = Field(
        description="teacher: the served model id (openai), a local folder (transformers), "
        "or a name (authors); part of the cache key and of each record's meta"
    )
    offline: bool = Field(False, description="never call the teacher: a cache miss is an error")
    cache: str = Field(
        "data/generate_cache/answers.jsonl",
        description="the answers cache a teacher's answers are appended to (a DVC persist output)",
    )
    shipped_cache: str | None = Field(
        "data/generate_cache/authors.jsonl",
        description="answers kept in git, read only (the project's own, for the sample)",
    )
    openai: OpenAIParams = OpenAIParams()
    transformers: TransformersTeacherParams = TransformersTeacherParams()
    sampling: SamplingParams = SamplingParams()

    @model_validator(mode="after")
    def _consistent(self):
        if self.paragraphs < len(self.quotas):
            raise ValueError("paragraphs must be at least the number of tasks in quotas")
        if self.min_words > self.max_words:
            raise ValueError("min_words is above max_words")
        check_name(self.template_version, "template_version")
        return self
