"""scripts/gpu_eval.py as a fresh GPU clone runs it: no models/tiny/base there, so the
config-built model's tokenizer is the paper model's, at the profile's pin, from the HF cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.hubstub import add_folder
from tests.standin_models import save_standin
from tests.test_train import records

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 640}  # fmt: skip


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty working directory (no built models) and an empty stand-in HF cache."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work, cache


def pinned_profile(work: Path, commit: str | None) -> Path:
    params = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text())
    params["models"]["llamar-8b"]["base"]["revision"] = commit
    path = work / "paper.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True))
    return path


def run_args(profile: Path, out: Path) -> list[str]:
    return ["run", "--from-config", "llama3-8b", "--config-overrides", json.dumps(SMALL),
            "--profile", str(profile), "--device", "cpu", "--limit", "2", "--batch-size", "2",
            "--out", str(out)]  # fmt: skip


def test_from_config_without_the_tokenizer_says_what_to_pass(fresh):
    from scripts.gpu_eval import main

    work, _ = fresh
    with pytest.raises(SystemExit) as e:
        main(run_args(pinned_profile(work, "0" * 40), work / "out.json"))
    assert f"{LLAMA3}@{'0' * 40}" in str(e.value) and "--tokenizer" in str(e.value)


@pytest.mark.slow
def test_from_config_uses_the_pinned_paper_tokenizer_from_the_hf_cache(
    fresh, tmp_path, monkeypatch
):
    from scripts.gpu_eval import main

    work, cache = fresh
    texts = [t for r in records(16) for t in r.values() if t]
    monkeypatch.chdir(ROOT)  # the chat templates are read from the project
    commit = add_folder(cache, LLAMA3, save_standin(LLAMA3, texts, tmp_path / "standin"))
    monkeypatch.chdir(work)
    out = work / "out.json"
    main(run_args(pinned_profile(work, commit), out))
    result = json.loads(out.read_text())
    assert result["base.oall.acva.items"] == result["oall.acva.items"] == 2
    assert "delta.oall.acva.acc_norm" in result
