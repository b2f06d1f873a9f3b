"""The stand-in hub's datasets (tests/standin_data.py): the published schemas and quirks, and
a cache that the rehearsal profile pins and checks against offline."""

from __future__ import annotations

import shutil

import pytest

from scripts import profiles as profile
from tests.conftest import ROOT
from tests.standin_data import ENGLISH_SYSTEM, INSTAR, add_paper_data, instar_rows, instar_table


def test_the_standin_instar_has_the_published_sets_quirks():
    rows = instar_rows()
    table = instar_table(rows)
    assert "input" not in table.column_names and "__index_level_0__" in table.column_names
    assert len({r["source"] for r in rows}) >= 3
    english = sum(r["system"] == ENGLISH_SYSTEM for r in rows)
    assert english >= len(rows) // 5  # one English system prompt on many rows
    assert any(
        r["output"].isascii() and r["instruction"] and not r["instruction"].isascii() for r in rows
    )  # an English answer in an Arabic row


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_pin_rehearsal_offline_pins_every_hub_dataset_of_the_standin_cache(
    workspace, hub, monkeypatch
):
    from tests.standin_models import add_paper_models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commits = add_paper_data(hub)
    paper = profile.load_profile("paper")
    assert set(commits) == {h["repo_id"] for h in paper["hub_data"].values()}
    assert INSTAR in commits
    before = (workspace / "profiles/rehearsal.yaml").read_text()
    with pytest.raises(profile.StageError, match="meta-llama"):  # the models are not there yet
        profile.pin("rehearsal")
    assert (workspace / "profiles/rehearsal.yaml").read_text() == before
    with monkeypatch.context() as m:  # the models read the project's chat templates
        m.chdir(ROOT)
        add_paper_models(hub, [r["instruction"] for r in instar_rows()])
    profile.pin("rehearsal")
    params = profile.load_profile("rehearsal")
    for name, h in params["hub_data"].items():
        assert h["revision"] == commits[h["repo_id"]], name
    # all that check may still say on a CPU machine is the CUDA rule of another branch
    problems = [p for p in profile.missing(params) if "CUDA" not in p]
    assert problems == [], problems


def test_make_paper_stays_offline_when_the_hub_data_is_pulled_not_cached(workspace, hub):
    """A clone that `dvc pull`ed hub@'s outputs needs no HF cache for them: only what is
    neither cached nor here (of the pinned revision) counts as missing."""
    from instar.hub import MANIFEST, out_dir
    from instar.records.storage import write_json

    rev = "c" * 40
    params = {"hub_data": {"instar500k": {"repo_id": INSTAR, "revision": rev}}}
    assert profile.not_cached(params) == [f"{INSTAR}@{rev[:12]}"]
    write_json(out_dir("instar500k") / MANIFEST, {"repo_id": INSTAR, "revision": "d" * 40})
    assert profile.not_cached(params) == [f"{INSTAR}@{rev[:12]}"]  # another revision's
    write_json(out_dir("instar500k") / MANIFEST, {"repo_id": INSTAR, "revision": rev})
    assert profile.not_cached(params) == []
