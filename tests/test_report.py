"""report's fingerprint check: each model's rows flagged where the settings that move
scores differ from the last committed run's (git HEAD), the fields named."""

from __future__ import annotations

import json
import subprocess

from stages import report

FP = {"lm_eval": "0.4.13", "batch_size": "16", "dtype": "bf16", "adapter": "a1"}


def files(**fingerprints) -> dict[str, dict]:
    """One model `m`'s eval and eval_base files, with the given fingerprints."""
    scores = {"oall.acva.acc_norm": 0.5, "instar_test.perplexity": 12.0}
    return {
        folder: {**scores, **({"fingerprint": fp} if fp else {})}
        for folder, fp in fingerprints.items()
    }


def write(repo, contents: dict[str, dict]) -> None:
    for folder, data in contents.items():
        path = repo / "metrics" / folder / "m.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def changes(repo, monkeypatch, committed: dict, now: dict) -> dict:
    git(repo, "init", "-q")
    write(repo, committed)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    write(repo, now)
    monkeypatch.chdir(repo)
    return report.fingerprint_changes({"m": now["eval"]}, {"m": now["eval_base"]})


def test_a_changed_setting_flags_the_model_s_rows_and_names_the_field(tmp_path, monkeypatch):
    other = {**FP, "batch_size": "8", "adapter": "a2"}
    found = changes(
        tmp_path, monkeypatch, files(eval=FP, eval_base=FP), files(eval=other, eval_base=FP)
    )
    assert found == {("m", "+ InstAr adapter"): ["batch_size: 16 -> 8"]}  # not the adapter
    now = files(eval=other, eval_base=FP)
    text = report.summary("t", {"m": now["eval"]}, {"m": now["eval_base"]}, {}, {}, found)
    assert "| m | + InstAr adapter (fingerprint changed) |" in text
    assert "| m | base |" in text and "- m, + InstAr adapter: batch_size: 16 -> 8" in text


def test_another_adapter_or_a_run_before_fingerprints_flags_nothing(tmp_path, monkeypatch):
    new_adapter = {**FP, "adapter": "a2"}
    old = files(eval=None, eval_base=None)  # the committed run has no fingerprint
    assert changes(tmp_path, monkeypatch, old, files(eval=new_adapter, eval_base=FP)) == {}
    text = report.summary("t", {"m": old["eval"]}, {"m": old["eval_base"]}, {}, {}, {})
    assert "fingerprint" not in text


def test_outside_git_there_is_no_committed_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report.committed(tmp_path / "metrics/eval/m.json") == {}
