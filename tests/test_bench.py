"""The data stages on a corpus with known defects (bench.corpus), as `make bench` runs them."""

import json

import pytest

from bench.corpus import make
from bench.run import bench, noop_repro

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    corpus = make(6000, tmp / "corpus", seed=3)
    return bench(corpus, tmp / "results.json"), tmp / "results.json"


def test_what_ingest_clean_and_dedup_keep_scores_high_and_loses_no_group(result):
    res, _ = result
    q = res["quality"]
    assert q["score"] >= 0.98, q
    assert q["groups_lost"] <= 0.005 * q["groups"], q
    assert q["junk_kept"] == {} and q["scrub_missed"] == {} and q["scrub_lost"] == {}, q


def test_results_file_has_speed_and_memory_per_stage(result):
    res, path = result
    assert json.loads(path.read_text()) == res
    assert res["rows"] == 6000
    for stage in ("ingest", "clean", "dedup"):
        s = res["stages"][stage]
        assert s["records_per_second"] > 0 and 0 < s["peak_rss_mb"] < 3000
    assert res["peak_rss_mb"] == max(s["peak_rss_mb"] for s in res["stages"].values())


def test_a_no_op_repro_is_timed_and_runs_no_stage(pipeline_copy):
    res = noop_repro(pipeline_copy, runs=2)
    assert len(res["runs"]) == 2 and res["seconds"] in res["runs"]
    assert res["within_target"] == (res["seconds"] < res["target_seconds"])


def test_the_no_op_benchmark_fails_when_a_stage_always_reruns(pipeline_copy):
    dvc_yaml = pipeline_copy / "dvc.yaml"
    dvc_yaml.write_text(
        dvc_yaml.read_text().replace(
            "stages:\n",
            "stages:\n  tick:\n    cmd: date +%N > tick.txt\n    always_changed: true\n"
            "    outs: [tick.txt]\n",
            1,
        )
    )
    with pytest.raises(SystemExit, match="ran \\['tick'\\]"):
        noop_repro(pipeline_copy, runs=1)
