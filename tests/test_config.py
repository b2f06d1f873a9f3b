import pytest
import yaml

from instar.params.checks import check_all
from instar.params.clean import CleanParams
from instar.params.core import ParamsError
from instar.params.shard import ShardParams
from instar.params.sources import SourceParams
from instar.params.train import ModelParams


def test_repository_params_are_valid():
    assert check_all() == []


def test_unknown_key_is_named_with_its_path():
    with pytest.raises(ParamsError) as e:
        CleanParams.load({"clean": {"min_output_word": 3}})
    assert "clean.min_output_word" in e.value.message
    assert e.value.code == 2


def test_out_of_range_value_is_refused():
    with pytest.raises(ParamsError) as e:
        ShardParams.load({"shard": {"validation_fraction": 0.6, "test_fraction": 0.5}})
    assert "leave rows for train" in e.value.message


@pytest.mark.parametrize("name", ["../etc", "a b", "x/y", "ö"])
def test_source_names_are_checked_before_they_become_paths(name):
    params = {"sources": {name: {"format": "jsonl", "path": "x.jsonl"}}}
    with pytest.raises(ValueError, match="letters, digits"):
        SourceParams.named(name, params)


def test_a_new_instruction_source_needs_only_format_and_path():
    src = SourceParams.named(
        "big",
        {"sources": {"big": {"kind": "instructions", "format": "jsonl", "path": "raw.jsonl"}}},
    )
    assert src.default_task == "open_qa" and src.on_error == "fail" and src.origin == "collected"


def test_task_source_needs_a_template_and_hub_source_needs_its_pin():
    with pytest.raises(ParamsError, match="template"):
        SourceParams.named(
            "t", {"sources": {"t": {"kind": "task", "format": "csv", "path": "t.csv"}}}
        )
    with pytest.raises(ParamsError, match="hub_data"):
        SourceParams.named("h", {"sources": {"h": {"format": "hf", "path": "d"}}})


def test_hub_model_needs_repo_and_licence_and_a_commit_hash_revision():
    with pytest.raises(ParamsError, match="repo_id"):
        ModelParams.named("m", {"models": {"m": {"base": {"kind": "hub"}}}})
    with pytest.raises(ParamsError, match="0-9a-f"):
        ModelParams.named(
            "m",
            {
                "models": {
                    "m": {
                        "base": {
                            "kind": "hub",
                            "repo_id": "org/x",
                            "license": "l",
                            "revision": "main",
                        }
                    }
                }
            },
        )


def test_check_all_reports_every_problem_at_once():
    problems = check_all(
        {
            "clean": {"bogus": 1},
            "shard": {"salt": 3},
            "sources": {"a": {"format": "xml", "path": "a"}},
        }
    )
    text = "\n".join(problems)
    assert "clean.bogus" in text and "shard.salt" in text and "sources.a.format" in text


def test_tasks_named_elsewhere_must_be_in_the_taxonomy_and_their_languages_known_to_clean():
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    english = {"name_ar": "ترجمة", "name_en": "Translation", "output_language": "english"}
    assert check_all(params) == []
    params["tasks"] = {"open_qa": {"name_ar": "سؤال", "name_en": "QA"}, "translation": english}
    params["generate"]["quotas"] = {"open_qa": 1, "poetry": 1}
    params["sources"] = {
        "a": {"format": "jsonl", "path": "a.jsonl", "default_task": "summarization"},
        "b": {"format": "jsonl", "path": "b.jsonl", "default_task": "translation"},
    }
    params["clean"]["language"]["languages"] = ["arabic", "persian"]
    text = "\n".join(check_all(params))
    assert "generate.quotas names tasks that `tasks` lacks: ['poetry']" in text
    assert "sources.a.default_task names tasks that `tasks` lacks: ['summarization']" in text
    assert "sources.b" not in text
    assert "tasks.translation.output_language 'english' is not among" in text
    # without the section, the published taxonomy; a slug is its own normal form
    del params["tasks"]
    params["generate"]["quotas"] = {"summarization": 1, "summary": 1}
    assert "lacks: ['summary']" in "\n".join(check_all(params))
    assert any("write 'closed_qa'" in p for p in check_all({"tasks": {"Closed QA": english}}))
