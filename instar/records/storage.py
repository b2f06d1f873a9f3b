"""Atomic Parquet and JSON writes, atomic folder swaps, batched reads and file digests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from instar.records.schema import RECORD_SCHEMA

_UMASK = os.umask(0)
os.umask(_UMASK)
# Files are hashed in blocks: shards and weight files need not fit in memory.
BLOCK = 1 << 20


@contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temp path beside `path`; rename over it only if the block succeeds.

    A killed stage leaves the old output (or none), never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would make outputs unreadable to others
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace_dir(new: str | Path, path: str | Path) -> None:
    """Put the finished tree `new` (on the same file system, beside `path`) where `path` is.

    The new tree goes in by one rename of the whole folder, so `path` is never a mix of old
    and new files: at any moment it is the whole old tree, absent, or the whole new tree.
    rename(2) replaces an empty folder only, so the old tree is first renamed aside to
    `.<name>.old`, then the new one renamed in, then the old removed. A crash between the
    two renames leaves no `path`, the old tree whole at `.<name>.old` and the new at `new`;
    DVC then finds the output missing and reruns the stage, whose next swap removes both.
    """
    new, path = Path(new), Path(path)
    os.chmod(new, 0o777 & ~_UMASK)  # a mkdtemp folder's 0700 would hide the output
    old = path.with_name(f".{path.name}.old")
    _remove(old)
    if path.exists() or path.is_symlink():
        path.rename(old)
    try:
        new.rename(path)
    except BaseException:
        if old.exists():
            old.rename(path)
        raise
    _remove(old)


@contextmanager
def atomic_dir(path: str | Path, carry: Iterable[str] = ()):
    """Yield an empty folder `.<name>.tmp` beside `path` to build a folder output in; it
    replaces `path` (replace_dir) only if the block succeeds. If the block raises, or the
    stage is killed, `path` is left as it was (a killed run's folder goes at the next one).

    `carry`: names in the old tree that are not the build's (DVC's .gitignore beside
    per-file outputs), copied into the new tree so that the swap keeps them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        for name in carry:
            src, dest = path / name, tmp / name
            if dest.exists() or not (src.exists() or src.is_symlink()):
                continue
            if src.is_dir() and not src.is_symlink():
                shutil.copytree(src, dest, symlinks=True)
            else:
                shutil.copy2(src, dest, follow_symlinks=False)
        replace_dir(tmp, path)
    finally:
        _remove(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class RecordWriter:
    """Streams records into Parquet in row groups of `batch_size`, each file written
    atomically: one file at `path`, or with `rows_per_file` rolling shards
    `path/part-00000.parquet`, `part-00001.parquet`, ... (at least one, empty when no row
    came, so DVC tracks a stable output).

    The row groups are part of the file's bytes: a stage leaves `batch_size` at its default
    and never passes its params' batch size (a memory knob), so that it cannot change them."""

    def __init__(
        self,
        path: str | Path,
        schema: pa.Schema = RECORD_SCHEMA,
        batch_size: int = 4096,
        rows_per_file: int | None = None,
    ):
        self.path, self.schema, self.batch_size = Path(path), schema, batch_size
        self.rows_per_file = rows_per_file
        self.rows = 0
        self.files: list[Path] = []
        self._buf: list[dict[str, Any]] = []
        self._ctx = None
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0

    def __enter__(self) -> RecordWriter:
        self._open()
        return self

    def _open(self) -> None:
        path = self.path
        if self.rows_per_file is not None:
            path = self.path / f"part-{len(self.files):05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(path)
        self._ctx = atomic_path(path, ".parquet")
        self._writer = pq.ParquetWriter(self._ctx.__enter__(), self.schema, compression="zstd")
        self._in_file = 0

    def _close(self, exc_type=None, exc=None, tb=None) -> None:
        self._writer.close()
        self._ctx.__exit__(exc_type, exc, tb)

    def write(self, rec: dict[str, Any]) -> None:
        if self.rows_per_file is not None and self._in_file >= self.rows_per_file:
            self._flush()
            self._close()
            self._open()
        self._buf.append(rec)
        self._in_file += 1
        if len(self._buf) >= self.batch_size:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        """A whole table into the current file (no rolling: for a single-file writer)."""
        self._flush()
        self._writer.write_table(table.select(self.schema.names).cast(self.schema))
        self.rows += table.num_rows
        self._in_file += table.num_rows

    def _flush(self) -> None:
        if self._buf:
            self._writer.write_table(pa.Table.from_pylist(self._buf, schema=self.schema))
            self.rows += len(self._buf)
            self._buf = []

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._flush()
        self._close(exc_type, exc, tb)


def iter_records(path: str | Path, batch_size: int = 4096, columns=None) -> Iterator[dict]:
    """Records of a Parquet file, one batch in memory at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
        yield from batch.to_pylist()


def iter_many(paths: Iterable[str | Path], batch_size: int = 4096) -> Iterator[dict]:
    for p in paths:
        yield from iter_records(p, batch_size)


def count_rows(path: str | Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def hash_into(h, path: str | Path):
    """Feed the bytes of `path` into the running hash `h` and return it: a run key or a
    tree's identity is one hash over many files, so the caller owns `h`."""
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file. `algorithm` is a hashlib name, or "git_sha1": the git blob
    id (`git hash-object`), which the hub reports for files not stored in LFS. The names
    are those of a pin's fields (`sha256`, `git_sha1`), so a pin's kind is passed as is."""
    path = Path(path)
    if algorithm == "git_sha1":
        h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    else:
        h = hashlib.new(algorithm)
    return hash_into(h, path).hexdigest()
