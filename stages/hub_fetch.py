"""Download a `format: hf` source's pinned hub snapshot to its local `path` (needs network).

DVC cannot hash what lives on the hub, so an hf source is read from a local snapshot that
DVC can track; this command makes that snapshot from the commit pinned in params and
records the commit beside it, and `ingest` refuses a snapshot of another commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stages import config
from stages.console import StageError, console, parser, run

MARKER = ".instar-snapshot.json"


def snapshot_marker(path: Path) -> dict | None:
    marker = path / MARKER
    return json.loads(marker.read_text()) if marker.exists() else None


def check_snapshot(name: str, src: config.SourceParams) -> None:
    """The local snapshot must exist and be of the pinned commit."""
    path, hf = Path(src.path), src.hf
    found = snapshot_marker(path)
    fetch = f"run `python -m stages.hub_fetch {name}` on a machine with hub access"
    if found is None:
        raise StageError(f"{path}: no hub snapshot of {hf.repo_id}; {fetch}")
    if hf.revision is None:
        raise StageError(f"sources.{name}.hf.revision is not pinned to a commit")
    if (found.get("repo_id"), found.get("revision")) != (hf.repo_id, hf.revision):
        raise StageError(
            f"{path}: snapshot is {found.get('repo_id')}@{found.get('revision')}, params pin "
            f"{hf.repo_id}@{hf.revision}; {fetch}"
        )


def fetch(name: str, src: config.SourceParams) -> Path:
    if src.format != "hf":
        raise StageError(f"sources.{name} is format {src.format!r}, not hf: nothing to fetch")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise StageError("HF_HUB_OFFLINE=1 is set (the default profile's setting); unset it")
    if src.hf.revision is None:
        raise StageError(f"sources.{name}.hf.revision is not pinned to a commit")
    from huggingface_hub import snapshot_download

    path = Path(src.path)
    snapshot_download(
        repo_id=src.hf.repo_id, repo_type="dataset", revision=src.hf.revision, local_dir=path
    )
    (path / MARKER).write_text(
        json.dumps({"repo_id": src.hf.repo_id, "revision": src.hf.revision}) + "\n"
    )
    console.print(f"{src.hf.repo_id}@{src.hf.revision[:12]} -> {path}")
    return path


def main() -> None:
    p = parser("hub_fetch", __doc__)
    p.add_argument("source", help="a key of `sources` with format: hf")
    p.add_argument(
        "--params",
        type=Path,
        default=config.PARAMS_FILE,
        help="params file (e.g. profiles/paper.yaml); default params.yaml",
    )
    args = p.parse_args()
    fetch(args.source, config.named("sources", args.source, config.read_params(args.params)))


if __name__ == "__main__":
    run(main)
