import hashlib
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from instar.params.shard import ShardParams
from instar.records.paths import clean_languages_path
from instar.records.schema import RECORD_SCHEMA, make_record
from instar.records.storage import write_json
from stages import shard as shard_mod

PARAMS = ShardParams(validation_fraction=0.1, test_fraction=0.2, salt="t", rows_per_shard=50)


def test_split_of_is_deterministic_and_follows_the_fractions():
    keys = [f"k{i}" for i in range(20_000)]
    first = [shard_mod.split_of(k, PARAMS) for k in keys]
    assert first == [shard_mod.split_of(k, PARAMS) for k in keys]
    share = {s: n / len(keys) for s, n in Counter(first).items()}
    assert abs(share["test"] - 0.2) < 0.015
    assert abs(share["validation"] - 0.1) < 0.015
    assert abs(share["train"] - 0.7) < 0.015


def test_salt_reshuffles():
    other = PARAMS.model_copy(update={"salt": "u"})
    keys = [f"k{i}" for i in range(2000)]
    moved = sum(shard_mod.split_of(k, PARAMS) != shard_mod.split_of(k, other) for k in keys)
    assert moved > 500


def records(source: str, n: int, groups: int | None = None) -> list[dict]:
    return [
        make_record(
            instruction=f"سؤال رقم {i} من {source}",
            output=f"جواب {i}",
            source=source,
            source_row=i,
            origin="collected",
            task="open_qa",
            meta={"group": f"{source}:{i % groups}"} if groups else None,
        )
        for i in range(n)
    ]


def run_shard(tmp_path, monkeypatch, recs) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "data/validated/instar.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(recs, schema=RECORD_SCHEMA), path)
    # what shard reads of clean: the source names and their language counts (for the card)
    sources = sorted({r["source"] for r in recs})
    write_json("data/source_list.json", {"sources": sources})
    for s in sources:
        counts = {"none": sum(r["source"] == s for r in recs)}
        write_json(clean_languages_path(s), {"system_prompts_by_language": counts})
    shard_mod.shard(PARAMS)
    where = {}
    for split in shard_mod.SPLITS:
        for f in sorted((tmp_path / "data/instar" / split).glob("*.parquet")):
            for r in pq.read_table(f).to_pylist():
                where[r["id"]] = split
    return where


def test_adding_a_source_moves_no_existing_record(tmp_path, monkeypatch):
    a = records("a", 300)
    before = run_shard(tmp_path, monkeypatch, a)
    after = run_shard(tmp_path, monkeypatch, a + records("b", 300))
    assert len(after) == 600
    assert all(after[i] == s for i, s in before.items())


def test_a_rerun_swaps_the_splits_in_whole_and_keeps_dvc_s_gitignore(tmp_path, monkeypatch):
    out = tmp_path / "data/instar"
    out.mkdir(parents=True)
    (out / ".gitignore").write_text("/train\n")
    (out / "train").mkdir()
    (out / "train/part-00099.parquet").write_text("a shard of an older run")
    run_shard(tmp_path, monkeypatch, records("a", 50))
    assert (out / ".gitignore").read_text() == "/train\n"
    assert not (out / "train/part-00099.parquet").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([".gitignore", *shard_mod.OUTPUTS])
    inputs = ["clean_languages", "source_list.json", "validated"]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["instar", *inputs])


def test_all_phrasings_of_one_item_land_in_one_split(tmp_path, monkeypatch):
    recs = records("sent", 400, groups=40)
    where = run_shard(tmp_path, monkeypatch, recs)
    by_group: dict[str, set] = {}
    for r in recs:
        by_group.setdefault(r["meta"], set()).add(where[r["id"]])
    assert len(by_group) == 40
    assert all(len(s) == 1 for s in by_group.values())
    assert len({next(iter(s)) for s in by_group.values()}) > 1  # not all in one split


def test_shards_roll_at_rows_per_shard_and_manifest_hashes_them(tmp_path, monkeypatch):
    import json

    run_shard(tmp_path, monkeypatch, records("a", 200))
    manifest = json.loads((tmp_path / "data/instar/manifest.json").read_text())
    assert manifest["records"] == 200
    train_files = sorted((tmp_path / "data/instar/train").glob("*.parquet"))
    assert len(train_files) >= 2
    for name, info in manifest["shards"].items():
        f = tmp_path / "data/instar" / name
        assert info["rows"] == pq.ParquetFile(f).metadata.num_rows <= PARAMS.rows_per_shard
        assert info["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert sum(manifest["splits"][s]["records"] for s in shard_mod.SPLITS) == 200
