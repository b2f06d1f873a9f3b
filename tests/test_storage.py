"""instar/records/storage.py: the one file hasher."""

from __future__ import annotations

import hashlib
import os
import subprocess

from instar.records.storage import BLOCK, file_digest, hash_into


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
