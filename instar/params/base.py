"""Params `models.<m>.base`: the model adapters are trained on."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from instar.params.core import Revision, Section, entry, validate


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


def load_base(model: str, params: dict[str, Any] | None = None) -> BaseModelParams:
    """models.<model>.base alone: base@ reads no other key of the model (nor its model)."""
    base = (entry("models", model, params) or {}).get("base")
    return validate(BaseModelParams, base, f"models.{model}.base")
