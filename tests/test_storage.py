"""instar/records/storage.py: the one file hasher and the one folder swap."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from instar.records import storage
from instar.records.storage import BLOCK, atomic_dir, file_digest, hash_into


def multi_block(tmp_path):
    # Not a multiple of the block: the last, short block must be hashed too.
    f = tmp_path / "weights.bin"
    f.write_bytes(os.urandom(2 * BLOCK + 12345))
    return f


def test_a_file_digest_is_hashlib_s_over_the_whole_file(tmp_path):
    f = multi_block(tmp_path)
    data = f.read_bytes()
    assert file_digest(f) == hashlib.sha256(data).hexdigest()
    assert file_digest(f, "md5") == hashlib.md5(data).hexdigest()


def test_hash_into_extends_the_running_hash(tmp_path):
    f = multi_block(tmp_path)
    h = hashlib.sha256(b"prefix")
    assert hash_into(h, f) is h
    assert h.hexdigest() == hashlib.sha256(b"prefix" + f.read_bytes()).hexdigest()


def test_a_git_blob_id_is_what_git_hash_object_computes(tmp_path):
    for f in (multi_block(tmp_path), tmp_path / "config.json", tmp_path / "empty"):
        if not f.exists():
            f.write_bytes(b'{"a": 1}\n' if f.suffix else b"")
        git = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True)
        assert file_digest(f, "git_sha1") == git.stdout.strip()


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def old_tree(tmp_path) -> Path:
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train/part-0.parquet").write_text("old shard")
    (out / "manifest.json").write_text("old manifest")
    (out / ".gitignore").write_text("/train\n/manifest.json\n")
    return out


def build_new(tmp: Path, fail_after: int | None = None) -> None:
    (tmp / "train").mkdir()
    for n, (name, text) in enumerate(
        [("train/part-0.parquet", "new shard"), ("train/part-1.parquet", "new shard 2"),
         ("manifest.json", "new manifest")]
    ):  # fmt: skip
        if n == fail_after:
            raise RuntimeError("killed mid-build")
        (tmp / name).write_text(text)


def test_a_swapped_folder_is_the_whole_new_tree_and_keeps_what_it_carries(tmp_path):
    out = old_tree(tmp_path)
    with atomic_dir(out, carry=[".gitignore", "absent"]) as tmp:
        assert tmp == tmp_path / ".out.tmp" and not any(tmp.iterdir())
        build_new(tmp)
    assert tree(out) == {
        ".gitignore": "/train\n/manifest.json\n",
        "manifest.json": "new manifest",
        "train/part-0.parquet": "new shard",
        "train/part-1.parquet": "new shard 2",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .tmp, no .old


@pytest.mark.parametrize("fail_after", [0, 1, 2])
def test_a_build_that_raises_leaves_the_old_tree_untouched(tmp_path, fail_after):
    out = old_tree(tmp_path)
    before = tree(out)
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        build_new(tmp, fail_after)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_rename_in_puts_the_old_tree_back(tmp_path, monkeypatch):
    out = old_tree(tmp_path)
    before = tree(out)
    real = Path.rename

    def rename(self, target):
        if self.name == ".out.tmp":
            raise OSError("disk gone")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError), atomic_dir(out) as tmp:
        build_new(tmp)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_what_a_killed_run_left_goes_at_the_next_and_a_first_run_needs_no_old_tree(tmp_path):
    (tmp_path / ".out.tmp").mkdir()
    (tmp_path / ".out.tmp/half.bin").write_text("half")
    (tmp_path / ".out.old").mkdir()  # a crash between the two renames
    with atomic_dir(tmp_path / "out") as tmp:
        build_new(tmp)
    assert tree(tmp_path / "out")["manifest.json"] == "new manifest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~storage._UMASK


def test_the_record_writer_rolls_files_of_at_most_rows_per_file_and_always_writes_one(tmp_path):
    import pyarrow.parquet as pq

    from instar.records.schema import make_record

    recs = [make_record(instruction=f"سؤال {i}", output="جواب", source="s", source_row=i,
                        origin="collected", task="open_qa") for i in range(7)]  # fmt: skip
    with storage.RecordWriter(tmp_path / "rolled", batch_size=2, rows_per_file=3) as w:
        for r in recs:
            w.write(r)
    assert [p.name for p in w.files] == [f"part-0000{i}.parquet" for i in range(3)]
    assert [pq.ParquetFile(p).metadata.num_rows for p in w.files] == [3, 3, 1]
    back = [r for p in w.files for r in pq.read_table(p).to_pylist()]
    assert [r["id"] for r in back] == [r["id"] for r in recs] and w.rows == 7
    assert sorted(os.listdir(tmp_path / "rolled")) == [p.name for p in w.files]  # no temp left

    with storage.RecordWriter(tmp_path / "none", rows_per_file=3) as empty:
        pass
    assert [pq.ParquetFile(p).metadata.num_rows for p in empty.files] == [0]
