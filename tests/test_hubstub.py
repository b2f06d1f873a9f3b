"""The stand-in hub is read by the real hub client code, offline, as a real cache is."""

from pathlib import Path

import pytest

from tests.hubstub import add_folder, add_repo


@pytest.fixture
def cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    hub = tmp_path / "hub"
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return hub


def test_offline_snapshot_download_finds_the_pinned_commit(cache):
    from huggingface_hub import scan_cache_dir, snapshot_download

    old = add_repo(cache, "org/set", {"a/test.jsonl": b'{"x": 1}\n'}, "dataset")
    new = add_repo(cache, "org/set", {"a/test.jsonl": b'{"x": 2}\n'}, "dataset")
    assert old != new
    path = snapshot_download("org/set", repo_type="dataset", revision=old, cache_dir=cache)
    data = Path(path) / "a/test.jsonl"
    assert data.read_text() == '{"x": 1}\n' and data.is_symlink()
    latest = snapshot_download("org/set", repo_type="dataset", cache_dir=cache)
    assert latest.endswith(new)
    repos = {(r.repo_id, r.repo_type) for r in scan_cache_dir(cache).repos}
    assert repos == {("org/set", "dataset")}


def test_a_saved_model_loads_by_hub_id_and_commit(cache, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "m")
    commit = add_folder(cache, "meta-llama/Meta-Llama-3-8B-Instruct", tmp_path / "m")
    net = AutoModelForCausalLM.from_pretrained(
        "meta-llama/Meta-Llama-3-8B-Instruct", revision=commit, cache_dir=cache
    )
    assert net.config.hidden_size == 16
    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(
            "meta-llama/Meta-Llama-3-8B-Instruct", revision="0" * 40, cache_dir=cache
        )


def test_standin_paper_models_are_what_trl_recognises_as_the_real_ones(cache):
    """The stand-ins ship the real templates (TRL swaps in its training variants only for
    templates it recognises byte for byte) and Llama 3's missing pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template

    from tests.standin_models import PAPER_MODELS, TRL_TEMPLATES, add_paper_models

    commits = add_paper_models(cache, ["نص عربي قصير للاختبار"] * 20)
    assert set(commits) == set(PAPER_MODELS)
    for repo_id, commit in commits.items():
        architecture, _, shipped = PAPER_MODELS[repo_id]
        tok = AutoTokenizer.from_pretrained(repo_id, revision=commit, cache_dir=cache)
        training = TRL_TEMPLATES / shipped.replace(".jinja", "_training.jinja")
        assert get_training_chat_template(tok) == training.read_text(encoding="utf-8")
        assert (tok.pad_token is None) == (architecture == "llama")
        net = AutoModelForCausalLM.from_pretrained(repo_id, revision=commit, cache_dir=cache)
        assert net.config.model_type == architecture
