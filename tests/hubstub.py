"""A stand-in for the Hugging Face hub: repositories written straight into an HF cache folder
in the hub's own layout, so the code that reads the hub runs unchanged with HF_HUB_OFFLINE=1.

  <cache>/<models|datasets>--<org>--<name>/
      blobs/<sha256>                         the files' bytes
      snapshots/<commit>/<path> -> blobs     one folder per commit, links into blobs
      refs/<branch>                          the commit a branch points at

`huggingface_hub` (hf_hub_download, snapshot_download, scan_cache_dir) and transformers'
`from_pretrained(repo_id, revision=commit)` read this offline as they read a real cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def commit_of(repo_id: str, files: dict[str, bytes]) -> str:
    """A 40-hex commit id derived from the content, so the same files give the same pin."""
    h = hashlib.sha1(repo_id.encode())
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return h.hexdigest()


def add_repo(
    cache: Path,
    repo_id: str,
    files: dict[str, bytes],
    repo_type: str = "model",
    commit: str | None = None,
    branch: str = "main",
) -> str:
    """Write one commit of a repository into the HF cache `cache` (HF_HUB_CACHE); returns
    the commit. Several commits of one repo can be added; `branch` then points at the last."""
    commit = commit or commit_of(repo_id, files)
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    for rel, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / branch).write_text(commit)
    return commit


def add_folder(cache: Path, repo_id: str, src: Path, repo_type: str = "model", **kw) -> str:
    """A local folder (a saved model, say) as one commit of `repo_id`."""
    files = {str(p.relative_to(src)): p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()}
    return add_repo(cache, repo_id, files, repo_type, **kw)
