"""The validation gate in the real pipeline: the Data Docs that `dvc repro` built, as a browser
renders them, and what `dvc repro` does when validation fails (`shard` never runs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import dvc, run, stages_run

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Offline, quiet, no state shared between runs. The host rule makes every CDN asset of the
# page fail at once instead of waiting on a network that is not there.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
]
PASSED_GREEN = (30, 126, 52)  # the "passed" status word of stages/expectations.OFFLINE_CSS


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the Data Docs test needs Debian's chromium "
            "(.ci/run installs it; by hand: apt-get install -y chromium)"
        )
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    proc = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


class Rows(HTMLParser):
    """Every table row of a page: per cell, its text and the classes of its icons."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[dict]] = []
        self._open: list[list[dict]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._open.append([])
        elif tag in ("td", "th") and self._open:
            self._open[-1].append({"text": "", "icons": []})
        elif tag == "i":
            for row in self._open:  # an icon in a nested table also belongs to the outer cell
                if row:
                    row[-1]["icons"].append(dict(attrs).get("class", ""))

    def handle_endtag(self, tag):
        if tag == "tr" and self._open:
            self.rows.append(self._open.pop())

    def handle_data(self, data):
        for row in self._open:
            if row:
                row[-1]["text"] += data


def rendered_rows(dom: str) -> dict[str, list[dict]]:
    """Expectation rows by the check name their sentence starts with ("name: ...")."""
    parser = Rows()
    parser.feed(dom)
    by_name = {}
    for cells in parser.rows:
        if len(cells) == 3:
            text = " ".join(cells[1]["text"].split())
            m = re.match(r"([a-z_]+(?::[\w-]+)?): ", text)
            if m:
                by_name[m.group(1)] = [dict(c, text=" ".join(c["text"].split())) for c in cells]
    return by_name


def text_of(dom: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split()) + " "


def validation_page(docs: Path, suite: str) -> Path:
    (page,) = docs.glob(f"validations/{suite}/validate/*/*.html")
    return page


def test_the_data_docs_of_dvc_repro_show_every_expectation_and_its_result(pipeline, tmp_path):
    docs = pipeline / "reports/validation"
    metrics = json.loads((pipeline / "metrics/validation.json").read_text())
    success = metrics["expectation_success"]
    assert metrics["expectations_evaluated"] == len(success) > 40
    seen = {}
    for suite in ("record_contract", "instar"):
        dom = chromium(validation_page(docs, suite), tmp_path, "--dump-dom").stdout
        assert "Expectation Validation Result" in dom
        rows = rendered_rows(dom)
        assert rows, f"no expectation rows rendered in the {suite} page"
        seen |= rows
        evaluated = len(rows)
        assert f"Evaluated Expectations {evaluated} " in text_of(dom)
    assert set(seen) == set(success), "the page and metrics/validation.json disagree"
    for name, cells in seen.items():
        status, expectation, observed = cells
        icon = " ".join(status["icons"])
        assert ("fa-check-circle" in icon) == success[name], (name, icon)
        assert ("fa-times" in icon) == (not success[name]), (name, icon)
        assert observed["text"], f"{name}: no observed value shown"
    # Observed values are the real ones, as metrics/validation.json counts them.
    assert seen["row_count"][2]["text"] == str(metrics["records_out"])
    assert "%" in seen["task_share:classification"][2]["text"]
    assert "Median" in seen["chars_quantiles:output"][2]["text"]
    assert (
        "at most 80% of rows have task classification"
        in seen["task_share:classification"][1]["text"]
    )

    index = chromium(docs / "index.html", tmp_path, "--dump-dom").stdout
    assert "record_contract" in index and "instar" in index

    shot = tmp_path / "validation.png"
    chromium(
        validation_page(docs, "instar"), tmp_path, "--window-size=1280,2400", f"--screenshot={shot}"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    assert any(rgb == PASSED_GREEN for _, rgb in colours), "no 'passed' status was rendered"


def set_param(repo: Path, key: str, value: str) -> None:
    params = repo / "params.yaml"
    text, n = re.subn(rf"(?m)^(  {key}:) [^#\n]+?(\s*#|$)", rf"\1 {value}\2", params.read_text())
    assert n == 1, key
    params.write_text(text)


def test_a_failed_expectation_stops_dvc_repro_before_shard(pipeline_copy):
    set_param(pipeline_copy, "max_task_share", "0.3")
    # --force-downstream: were validate to pass, shard and everything after it would run.
    proc = dvc(pipeline_copy, "repro", "--force-downstream", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert stages_run(proc.stdout) == {"validate"}, out[-3000:]
    assert "task_share:classification" in out and "at most 30%" in out
    assert not (pipeline_copy / "data/validated/instar.parquet").exists()
    metrics = json.loads((pipeline_copy / "metrics/validation.json").read_text())
    assert metrics["passed"] is False
    assert metrics["expectation_success"]["task_share:classification"] is False
    page = validation_page(pipeline_copy / "reports/validation", "instar").read_text()
    rows = rendered_rows(page)
    assert "fa-times" in " ".join(rows["task_share:classification"][0]["icons"])
    assert (pipeline_copy / "reports/validation/index.html").is_file()


def test_bad_records_from_a_source_are_quarantined_and_stop_the_pipeline(pipeline_copy):
    src = pipeline_copy / "data/sources/handwritten.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    for row in rows[:20]:
        row["task"] = "poetry"  # a label outside the taxonomy, from a source
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    proc = dvc(pipeline_copy, "repro", check=False)
    ran = stages_run(proc.stdout)
    assert proc.returncode != 0
    assert {"ingest@handwritten", "dedup", "validate"} <= ran and "shard" not in ran, ran
    assert "task:isin" in proc.stdout + proc.stderr
    quarantine = pq.read_table(pipeline_copy / "data/quarantine/validate.parquet").to_pylist()
    assert len(quarantine) == 20
    assert all(q["rule"].startswith("task:isin") and q["value"] == "poetry" for q in quarantine)
    metrics = json.loads((pipeline_copy / "metrics/validation.json").read_text())
    assert metrics["quarantined"] == 20 and metrics["invalid_fraction"] > 0.01
    assert metrics["expectation_success"]["record_contract"] is False
    assert not (pipeline_copy / "data/validated/instar.parquet").exists()


def test_a_validate_params_change_reruns_validation_and_nothing_else(pipeline_copy):
    proc = dvc(pipeline_copy, "exp", "run", "--set-param", "validate.max_task_share=0.9")
    assert stages_run(proc.stdout) == {"validate"}


def test_running_validation_leaves_no_gx_files_in_the_git_work_tree(pipeline_copy):
    dvc(pipeline_copy, "repro", "--force", "--single-item", "validate")
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], pipeline_copy).stdout
    changed = {line[3:] for line in status.splitlines()}
    assert changed <= {"dvc.lock"}, changed  # the Data Docs' new hash; nothing of GX's
    assert not (pipeline_copy / "gx").exists()
    assert not list((pipeline_copy / "reports").glob(".gx-*"))
    assert "up to date" in dvc(pipeline_copy, "status").stdout
    shutil.rmtree(pipeline_copy / "reports/validation")
    assert "deleted" in dvc(pipeline_copy, "status").stdout  # the Data Docs are DVC's to track
