"""Params `hub_data` and `tokenizers`: hub repositories as files."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from instar.params.core import Revision, Section, check_name


class HubDataParams(Section):
    """A hub repository that `hub@<name>` turns into files under data/hub/<name>/ (params
    `hub_data.<name>`): a dataset's configs and splits as Parquet, or a model's files."""

    SECTION: ClassVar[str] = "hub_data"  # a named section: hub_data.<name>

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
            check_name(split, "split")
        return self


class TokenizerParams(HubDataParams):
    """A tokenizer's files that `tokenizer@<name>` copies from its pinned hub commit into
    data/tokenizers/<name>/ (params `tokenizers.<name>`), for clean's token limit: a DVC
    output, so a clone's `dvc pull` needs neither the hub nor an HF cache to count tokens."""

    SECTION: ClassVar[str] = "tokenizers"  # a named section: tokenizers.<name>

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
