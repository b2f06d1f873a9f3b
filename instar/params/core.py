"""Typed params: one pydantic model per params.yaml section, checked when a stage starts.

params.yaml is the single source of truth; these models only give its keys types, defaults
and documentation, and turn a typo into a clear error before any work is done.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PARAMS_FILE = Path("params.yaml")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# A hub revision must be a commit: a branch or tag can move under the same params.
Revision = Annotated[
    str | None,
    Field(pattern=r"^[0-9a-f]{40}$", description="a 40-hex commit hash; null until pinned"),
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(name: str, what: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"{what} name {name!r} may use only letters, digits, '-' and '_' (it becomes a path)"
        )
    return name


class HubDataset(Section):
    """A dataset on the Hugging Face hub, pinned to a commit."""

    repo_id: str
    revision: Revision = None
    config: str | None = None
    split: str = "train"


class ColumnSet(Section):
    """One published layout of a source: exactly these columns, read with this mapping."""

    found: list[str] = Field(description="the source's columns, all of them (any order)")
    columns: dict[str, str] = Field(
        default_factory=dict, description="record field -> source column for this layout"
    )


class SourceParams(Section):
    """One raw source that `ingest` turns into records (params `sources.<name>`)."""

    kind: Literal["instructions", "task", "records"] = Field(
        "instructions",
        description="instructions: mapped column by column; task: labelled items phrased by "
        "templates; records: a parquet already in the record schema (the `generate` output), "
        "taken as it is with its origin and meta",
    )
    format: Literal["jsonl", "csv", "parquet"]
    path: str = Field(
        description="the file DVC tracks; a hub dataset's is hub@<name>'s Parquet, "
        "data/hub/<name>/<config>/<split>.parquet (params `hub_data`)"
    )
    origin: Literal["collected", "synthetic"] = "collected"
    origin_column: str | None = Field(None, description="column whose values give the origin")
    origin_map: dict[str, Literal["collected", "synthetic"]] = Field(
        default_factory=dict, description="value of origin_column -> origin; others: `origin`"
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="record field (or template placeholder) -> source column; identity if absent",
    )
    column_sets: list[ColumnSet] = Field(
        default_factory=list,
        description="the layouts a source has had (a hub set's columns change between "
        "commits): its columns must be one set exactly, whose mapping replaces `columns`; "
        "empty: any columns, mapped by `columns`",
    )
    meta_columns: list[str] = Field(
        default_factory=list, description="source columns kept verbatim in `meta`"
    )
    default_task: str = Field("open_qa", description="task of rows that have no task column")
    template: str | None = Field(None, description="kind task: the entry of the templates file")
    on_error: Literal["fail", "quarantine"] = "fail"

    @model_validator(mode="before")
    @classmethod
    def _no_hub_format(cls, data):
        if isinstance(data, dict) and data.get("format") == "hf":
            raise ValueError(
                "a source is read from a file: list the hub dataset in `hub_data` (hub@<name> "
                "writes it as Parquet under data/hub/<name>/) and read that with format parquet"
            )
        return data

    @model_validator(mode="after")
    def _kind_fields(self):
        if self.kind == "task" and not self.template:
            raise ValueError("a source of kind 'task' needs `template`")
        if self.column_sets and self.format == "jsonl":
            raise ValueError("column_sets need a format whose columns are known up front")
        if self.kind == "records" and self.format != "parquet":
            raise ValueError("a source of kind 'records' must be format 'parquet'")
        return self


class TextSourceParams(Section):
    """Paragraphs read by the generation stage (params `text_sources.<name>`)."""

    kind: Literal["text"] = "text"
    format: Literal["jsonl", "csv", "parquet", "hf"]
    path: str | None = Field(None, description="the file DVC tracks (not for format hf)")
    hf: HubDataset | None = Field(None, description="format hf: streamed from the hub")
    text_column: str = "text"
    id_column: str | None = Field(
        None, description="column naming a paragraph in lineage; null: its row number"
    )

    @model_validator(mode="after")
    def _where(self):
        if self.format == "hf" and self.hf is None:
            raise ValueError("a text source of format 'hf' needs `hf: {repo_id, revision, split}`")
        if self.format != "hf" and not self.path:
            raise ValueError(f"a text source of format {self.format!r} needs `path`")
        return self


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
        from instar.records.schema import TASKS

        unknown = sorted(set(self.quotas) - set(TASKS))
        if unknown:
            raise ValueError(f"quotas: unknown tasks {unknown} (known: {', '.join(TASKS)})")
        if self.paragraphs < len(self.quotas):
            raise ValueError("paragraphs must be at least the number of tasks in quotas")
        if self.min_words > self.max_words:
            raise ValueError("min_words is above max_words")
        _check_name(self.template_version, "template_version")
        return self


class IngestParams(Section):
    batch_size: Annotated[int, Field(gt=0)] = 2048
    templates: str = Field("templates/tasks.yaml", description="Arabic phrasings for task sources")
    phrasings_per_item: Annotated[int, Field(ge=1)] = 2
    seed: int = 0


class LengthLimit(Section):
    """The too-long rule, in words, or in tokens of a named tokenizer (hub id or folder)."""

    unit: Literal["words", "tokens"] = "words"
    limit: Annotated[int, Field(gt=0)] = 2048
    tokenizer: str | None = Field(None, description="needed for unit tokens")
    revision: Revision = None

    @model_validator(mode="after")
    def _tokenizer(self):
        if self.unit == "tokens" and not self.tokenizer:
            raise ValueError("max_length.unit 'tokens' needs max_length.tokenizer")
        return self

    @property
    def from_hub(self) -> bool:
        return self.unit == "tokens" and is_hub_id(self.tokenizer)


def is_hub_id(name: str) -> bool:
    """A hub repository id rather than a local folder. A folder under data/ is a stage's
    output (tokenizer@<name>) that a fresh clone has yet to make or pull."""
    return not (Path(name).exists() or Path(name).parts[:1] == ("data",))


class LanguageParams(Section):
    """Language identification (lingua) among the candidate languages."""

    languages: tuple[str, ...] = ("arabic", "persian", "urdu", "english")
    min_arabic_confidence: Annotated[float, Field(ge=0, le=1)] = 0.5
    min_words: Annotated[int, Field(ge=1)] = Field(
        8, description="a prompt or output shorter than this is judged with the other part"
    )


class RepetitionParams(Section):
    """Gopher-style repetition rules, for outputs of at least `min_words` words."""

    min_words: Annotated[int, Field(ge=1)] = 50
    max_duplicate_line_fraction: Annotated[float, Field(ge=0, le=1)] = 0.304
    max_top_ngram_fraction: dict[int, float] = Field(
        default_factory=lambda: {2: 0.197, 3: 0.172, 4: 0.146}
    )
    max_duplicate_ngram_fraction: dict[int, float] = Field(
        default_factory=lambda: {5: 0.165, 6: 0.154, 7: 0.143, 8: 0.131, 9: 0.120, 10: 0.109}
    )


class CleanParams(Section):
    batch_size: Annotated[int, Field(gt=0)] = 2048
    keep_diacritics: bool = True
    strip_markup: bool = True
    scrub_pii: bool = Field(True, description="e-mails, URLs, phones -> [EMAIL] [URL] [PHONE]")
    min_output_words: Annotated[int, Field(ge=1)] = 3
    min_output_words_by_task: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="per-task minimum, e.g. a label of one word"
    )
    min_instruction_words: Annotated[int, Field(ge=1)] = 2
    max_length: LengthLimit = LengthLimit()
    min_arabic_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5
    language: LanguageParams = LanguageParams()
    repetition: RepetitionParams = RepetitionParams()
    non_arabic_output_tasks: list[str] = Field(
        default_factory=list,
        description="tasks whose output is not Arabic (translation into English, code): "
        "the language rules then read the instruction and input only",
    )


class NearDedupParams(Section):
    """MinHash LSH (datasketch) over word n-grams of the dedup key."""

    enabled: bool = True
    ngram: Annotated[int, Field(ge=1)] = 3
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 128
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.7
    seed: int = 1


class DedupParams(Section):
    batch_size: Annotated[int, Field(gt=0)] = 4096
    workers: Annotated[int, Field(ge=1)] = Field(2, description="processes computing signatures")
    near: NearDedupParams = NearDedupParams()
    examples: Annotated[int, Field(ge=0)] = 20


Share = Annotated[float, Field(ge=0, le=1)]
Chars = Annotated[int, Field(ge=0)]
ShareRange = tuple[Share, Share]
CharRange = tuple[Chars, Chars]
# A quantile's bounds; null is "no bound" (a high quantile usually needs only a max).
QuantileRange = tuple[Chars | None, Chars | None]
# Percentiles by name (p50, p95), not 0.5-style keys: DVC flattens params with dots, and
# "validate.chars_quantiles.output.0.5" would be ambiguous in `dvc params diff` and `-S`.
Percentile = Annotated[str, Field(pattern=r"^p[1-9][0-9]?$")]
TextField = Literal["instruction", "input", "output", "system"]


def _check_ranges(ranges: dict[str, tuple], where: str) -> None:
    for key, (lo, hi) in ranges.items():
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{where}{key}: [{lo}, {hi}] has min above max")


class FieldChars(Section):
    """Per record: [min, max] characters of each text field (a record check)."""

    instruction: CharRange = (2, 32_000)
    input: CharRange = (0, 32_000)
    output: CharRange = (1, 32_000)
    system: CharRange = (0, 8_000)

    @model_validator(mode="after")
    def _ordered(self):
        _check_ranges(self.model_dump(), "chars.")
        return self


class ValidateParams(Section):
    """The gate before training. Record checks (pandera) run on every row: failing rows go to
    quarantine. Dataset expectations (great-expectations) run on the rows that pass, and any
    failure stops the pipeline; their Data Docs go to reports/validation/."""

    min_rows: Annotated[int, Field(ge=0)] = Field(
        1, description="dataset: fewer valid rows than this stops the pipeline"
    )
    max_invalid_fraction: Share = Field(
        0.01, description="a larger share of rows failing a record check stops the pipeline"
    )
    min_arabic_ratio: Share = Field(
        0.5,
        description="record: Arabic letters / all letters, of the instruction and of the output "
        "(each on its own; a text without letters, such as a number, passes)",
    )
    non_arabic_output_tasks: list[str] = Field(
        default_factory=list,
        description="record: tasks whose output need not be Arabic (code, translation into "
        "another language); their output skips the Arabic-ratio check, the instruction does not",
    )
    chars: FieldChars = FieldChars()
    max_task_share: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="dataset: no task may be more than this share of the rows"
    )
    min_source_share: Share = Field(
        0.0, description="dataset: each source in params `sources` gives at least this share"
    )
    source_share: dict[str, ShareRange] = Field(
        default_factory=dict,
        description="dataset: [min, max] share of named sources (their min replaces "
        "min_source_share)",
    )
    synthetic_share: ShareRange = Field(
        (0.0, 1.0), description="dataset: [min, max] share of rows of origin `synthetic`"
    )
    max_empty_share: dict[Literal["input", "system", "topic"], Share] = Field(
        default_factory=lambda: {"input": 0.9},
        description="dataset: the largest share of rows whose field is empty",
    )
    chars_quantiles: dict[TextField, dict[Percentile, QuantileRange]] = Field(
        default_factory=lambda: {"instruction": {"p50": (10, 2000)}, "output": {"p50": (2, 4000)}},
        description="dataset: per field, percentile (p50, p95, ...) -> [min, max] characters; "
        "null for no bound",
    )

    @model_validator(mode="after")
    def _consistent(self):
        from instar.records.schema import TASKS

        unknown = sorted(set(self.non_arabic_output_tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"non_arabic_output_tasks: unknown tasks {unknown}")
        _check_ranges(self.source_share, "source_share.")
        _check_ranges({"": self.synthetic_share}, "synthetic_share")
        for field, quantiles in self.chars_quantiles.items():
            _check_ranges(quantiles, f"chars_quantiles.{field}.")
        return self


class ShardParams(Section):
    validation_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    salt: str = Field("instar-v1", description="changing it reshuffles every split")
    rows_per_shard: Annotated[int, Field(gt=0)] = 100_000

    @model_validator(mode="after")
    def _fractions(self):
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError("validation_fraction + test_fraction must leave rows for train")
        return self


class HubDataParams(Section):
    """A hub repository that `hub@<name>` turns into files under data/hub/<name>/ (params
    `hub_data.<name>`): a dataset's configs and splits as Parquet, or a model's files."""

    repo_id: str
    revision: Revision = None
    repo_type: Literal["dataset", "model"] = "dataset"
    configs: list[str] = Field(
        default_factory=lambda: ["default"],
        description="dataset: the configs (subsets) of the card to read, one folder each",
    )
    splits: list[str] = Field(
        default_factory=lambda: ["train"], description="dataset: the splits of every config"
    )
    files: list[str] = Field(
        default_factory=list,
        description="glob patterns of the repository's files to fetch (allow_patterns); empty: "
        "all. A model repository needs them (a tokenizer's files, not its weights)",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.repo_type == "model" and not self.files:
            raise ValueError("a hub_data entry of repo_type model needs `files` patterns")
        if self.repo_type == "dataset" and not (self.configs and self.splits):
            raise ValueError("a hub_data dataset needs `configs` and `splits`")
        for what, names in (("configs", self.configs), ("splits", self.splits)):
            if len(set(names)) != len(names):
                raise ValueError(f"{what} lists a name twice")
        for split in self.splits:
            _check_name(split, "split")
        return self


class TokenizerParams(HubDataParams):
    """A tokenizer's files that `tokenizer@<name>` copies from its pinned hub commit into
    data/tokenizers/<name>/ (params `tokenizers.<name>`), for clean's token limit: a DVC
    output, so a clone's `dvc pull` needs neither the hub nor an HF cache to count tokens."""

    repo_type: Literal["model"] = "model"
    files: list[str] = Field(
        default_factory=lambda: list(TOKENIZER_FILES),
        description="glob patterns of the tokenizer's files (never the weights)",
    )


# What AutoTokenizer.from_pretrained reads of a repository, in either format.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
)  # fmt: skip


class PinnedFile(Section):
    """One file of a pinned hub model, as `profile pin` read it: the hub gives a sha256 for
    files stored with LFS and the git blob id (sha1 of "blob <size>\\0" + bytes) for others."""

    name: str
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    git_sha1: str | None = Field(None, pattern=r"^[0-9a-f]{40}$")

    @model_validator(mode="after")
    def _one_hash(self):
        if (self.sha256 is None) == (self.git_sha1 is None):
            raise ValueError(f"pinned file {self.name!r} needs exactly one of sha256, git_sha1")
        return self


class BaseModelParams(Section):
    """How a model's base weights come to be (params `models.<name>.base`)."""

    kind: Literal["config", "hub"]
    architecture: Literal["llama", "gemma"] | None = None
    config: dict[str, Any] = Field(default_factory=dict, description="kind config: model config")
    vocab_size: Annotated[int, Field(gt=256)] = 4000
    seed: int = 0
    repo_id: str | None = None
    revision: Revision = None
    # A list, not a mapping, so that a profile overlay replaces it whole (mappings merge).
    files: list[PinnedFile] = Field(
        default_factory=list,
        description="kind hub: the files of `revision` that loading reads, with their hashes; "
        "written by `profile pin`, checked by base@ against the HF cache before use",
    )
    license: str | None = None
    chat_template: Literal["llama3", "gemma"] | None = None

    @model_validator(mode="after")
    def _kind_fields(self):
        if self.kind == "config" and not (self.architecture and self.chat_template):
            raise ValueError("a model of kind 'config' needs `architecture` and `chat_template`")
        if self.kind == "hub" and not (self.repo_id and self.license):
            raise ValueError("a hub model needs `repo_id` and `license` (and a pinned `revision`)")
        return self


class LoraParams(Section):
    """The adapter (params `models.<name>.lora`), as PEFT's LoraConfig takes it."""

    r: Annotated[int, Field(gt=0)] = 16
    alpha: Annotated[int, Field(gt=0)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: str | list[str] = Field(
        "all-linear", description="module names, or 'all-linear' (every linear but the head)"
    )
    use_rslora: bool = Field(False, description="scale by alpha/sqrt(r) instead of alpha/r")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (DoRA)")


class TrainParams(Section):
    """How an adapter is trained (params `models.<name>.train`)."""

    learning_rate: Annotated[float, Field(gt=0)] = 2e-4
    epochs: Annotated[float, Field(gt=0)] = 1
    max_steps: int = -1
    batch_size: Annotated[int, Field(gt=0)] = 8
    grad_accum: Annotated[int, Field(gt=0)] = 1
    max_length: Annotated[int, Field(gt=0)] = 512
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.03
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    quantization: Literal["none", "4bit"] = "none"
    logging_steps: Annotated[int, Field(gt=0)] = 5
    eval_steps: Annotated[int, Field(gt=0)] = 20
    save_steps: Annotated[int, Field(gt=0)] = Field(
        100, description="a resumable checkpoint every this many optimiser steps"
    )
    save_total_limit: Annotated[int, Field(gt=0)] = 2
    packing: bool = Field(
        False,
        description="pack examples into max_length rows (TRL bfd, padding-free: attention never "
        "crosses examples: flash-attention varlen on GPU, a block-diagonal mask with sdpa)",
    )
    gradient_checkpointing: bool = False
    seed: int = 0
    device: Literal["cpu", "cuda"] = "cpu"
    num_processes: Annotated[int, Field(gt=0)] = Field(
        1, description="> 1: the stage relaunches itself with `accelerate launch`"
    )
    distributed: Literal["ddp", "fsdp"] = "ddp"
    trust_remote_code: bool = False
    export_merged: bool = Field(
        False, description="also write models/<name>/merged/ (base + adapter, safetensors)"
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.quantization == "4bit" and self.distributed == "fsdp" and self.num_processes > 1:
            raise ValueError("4-bit QLoRA with FSDP is not supported here: use ddp")
        return self


class ModelParams(Section):
    base: BaseModelParams
    lora: LoraParams = LoraParams()
    train: TrainParams = TrainParams()


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
        "benchmarks/tasks", description="folder of local task YAMLs; null: lm-eval's own only"
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
            _check_name(name, "benchmark")
        if not self.tasks:
            raise ValueError("benchmarks.tasks is empty")
        return self


class GenerationParams(Section):
    """Greedy answers to the first `samples` test records, scored with chrF and ROUGE-L."""

    samples: Annotated[int, Field(ge=0)] = 16
    max_new_tokens: Annotated[int, Field(gt=0)] = 48
    batch_size: Annotated[int, Field(gt=0)] = 16


class EvaluateParams(Section):
    batch_size: Annotated[int, Field(gt=0)] = 8
    max_length: Annotated[int, Field(gt=0)] = 512
    limit: int | None = Field(None, description="evaluate only the first N test records")
    benchmarks: BenchmarkParams = BenchmarkParams()
    generation: GenerationParams = GenerationParams()


class ContaminationParams(Section):
    """Benchmark items whose normalised question text is in the training split."""

    files: dict[str, str] = Field(
        default_factory=lambda: {
            "data/benchmarks/alghafa.jsonl": "query",
            "data/benchmarks/acva.jsonl": "question",
            "data/benchmarks/mmlu.jsonl": "question",
        },
        description="benchmark file (jsonl) -> the field holding the question",
    )
    min_words: Annotated[int, Field(ge=1)] = Field(
        5,
        description="a shorter question counts only when a whole training field equals it; "
        "a longer one also when it occurs inside a training field",
    )


class ReportParams(Section):
    title: str = "InstAr pipeline report"


SECTIONS: dict[str, type[BaseModel]] = {
    "ingest": IngestParams,
    "clean": CleanParams,
    "dedup": DedupParams,
    "validate": ValidateParams,
    "shard": ShardParams,
    "generate": GenerateParams,
    "evaluate": EvaluateParams,
    "contamination": ContaminationParams,
    "report": ReportParams,
}
NAMED_SECTIONS: dict[str, type[BaseModel]] = {
    "sources": SourceParams,
    "text_sources": TextSourceParams,
    "models": ModelParams,
    "hub_data": HubDataParams,
    "tokenizers": TokenizerParams,
}


class ParamsError(SystemExit):
    """A params problem: one readable message, exit status 2 (printed by `console.run`)."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run stages from the repository root") from None


def _validate(model: type[BaseModel], data: Any, where: str):
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        lines = [
            f"  {where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        ]
        raise ParamsError(f"invalid {where} in params.yaml:\n" + "\n".join(lines)) from None


def section(name: str, params: dict[str, Any] | None = None):
    """The validated params section `name` (e.g. "clean")."""
    params = read_params() if params is None else params
    return _validate(SECTIONS[name], params.get(name), name)


def named(name: str, key: str, params: dict[str, Any] | None = None):
    """One validated entry of a named section, e.g. named("sources", "qa")."""
    params = read_params() if params is None else params
    entries = params.get(name) or {}
    if key not in entries:
        raise ParamsError(f"{name}.{key} is not in params.yaml (known: {', '.join(entries)})")
    _check_name(key, name.rstrip("s"))
    return _validate(NAMED_SECTIONS[name], entries[key], f"{name}.{key}")


def check_all(params: dict[str, Any] | None = None) -> list[str]:
    """Validate every section; return the problems (empty when all is well)."""
    params = read_params() if params is None else params
    problems: list[str] = []
    for name in SECTIONS:
        try:
            section(name, params)
        except ParamsError as e:
            problems.append(e.message)
    for name in NAMED_SECTIONS:
        for key in params.get(name) or {}:
            try:
                named(name, key, params)
            except (ParamsError, ValueError) as e:
                problems.append(getattr(e, "message", str(e)))
    # Two stages read "whose output is not Arabic"; a task in one list only would be kept by
    # clean and quarantined by validate (or the reverse).
    lists = {
        k: set((params.get(k) or {}).get("non_arabic_output_tasks") or ())
        for k in ("clean", "validate")
    }
    if lists["clean"] != lists["validate"]:
        problems.append(
            "clean.non_arabic_output_tasks and validate.non_arabic_output_tasks differ: "
            f"{sorted(lists['clean'])} vs {sorted(lists['validate'])}"
        )
    wanted = (params.get("generate") or {}).get("text_sources") or []
    unknown = [t for t in wanted if t not in (params.get("text_sources") or {})]
    if unknown:
        problems.append(f"generate.text_sources names unknown text sources: {unknown}")
    overlap = set(params.get("sources") or {}) & set(params.get("text_sources") or {})
    if overlap:
        problems.append(f"names used by both sources and text_sources: {sorted(overlap)}")
    return problems
