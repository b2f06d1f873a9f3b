"""Hub repositories at their pinned commit, as files the pipeline owns: what hub@<name>
(params `hub_data`, under data/hub/<name>/) and tokenizer@<name> (params `tokenizers`, under
data/tokenizers/<name>/, apart so that clean depends on tokenizers only) write.

A dataset becomes one Parquet file per config and split, data/hub/<name>/<config>/<split>.parquet,
read from the HF cache (huggingface_hub's snapshot_download, which works offline when the
commit is cached) and never through `datasets.load_dataset` on a hub id (datasets 5.2 raises
in offline mode before it reads the hub cache). Which files make a config's split is what the
dataset card says (its `configs:` metadata), resolved by datasets' own local-folder builder.
A model repository (a tokenizer, say) becomes a copy of the files its patterns allow.

The commit is in the params, so it is in dvc.lock; the outputs are DVC outputs, so `dvc push`
stores them and a clone's `dvc pull` needs no hub. data/hub/<name>/hub.json records what was
read (repo, commit, configs, splits, rows and columns).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from instar.console import StageError, console
from instar.params.hub import HubDataParams
from instar.records.storage import RecordWriter, write_json

ROOTS = {"hub_data": Path("data/hub"), "tokenizers": Path("data/tokenizers")}
MANIFEST = "hub.json"
READERS = (".parquet", ".jsonl", ".json", ".csv")


def out_dir(name: str, section: str = "hub_data") -> Path:
    return ROOTS[section] / name


def config_dir(config_name: str) -> str:
    """A config name as one path part: hub config names may hold spaces and brackets
    ("Biology (High School)"), which a data_files line of a task YAML cannot."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", config_name).strip("_") or "default"


def split_path(name: str, config_name: str, split: str) -> Path:
    return out_dir(name) / config_dir(config_name) / f"{split}.parquet"


def is_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, read now (a profile run may unset it)."""
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def snapshot(name: str, h: HubDataParams, section: str = "hub_data") -> Path:
    """The cached snapshot of the pinned commit (downloaded first when online)."""
    if h.revision is None:
        raise StageError(
            f"{section}.{name}.revision is not pinned to a commit: run `python -m scripts.profiles "
            "pin <profile>` (it pins every hub repository of the profile)"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                h.repo_id,
                repo_type=h.repo_type,
                revision=h.revision,
                allow_patterns=h.files or None,
            )
        )
    except LocalEntryNotFoundError:
        from huggingface_hub import constants

        where = "HF_HUB_OFFLINE=1 and it is not" if is_offline() else "the hub is unreachable and"
        raise StageError(
            f"{section}.{name}: {h.repo_type} {h.repo_id}@{h.revision}: {where} in the HF cache "
            f"{constants.HF_HUB_CACHE}; fetch it where the hub is reachable (unset "
            "HF_HUB_OFFLINE), or `dvc pull` this stage's outputs"
        ) from None


def data_files(snap: Path, config_name: str) -> dict[str, list[Path]]:
    """split -> the files of `config_name`, as the dataset card's `configs:` metadata (or,
    without one, datasets' folder conventions) lays them out, in a stable order."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(str(snap), name=config_name)
    except ValueError as e:  # an unknown config: datasets lists the known ones
        raise StageError(f"{snap}: {e}") from None
    files = builder.config.data_files or {}
    return {str(split): sorted(Path(f) for f in paths) for split, paths in files.items()}


def _batches(path: Path, batch_size: int):
    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)
    elif path.suffix in (".jsonl", ".json"):
        import pyarrow.json as pj

        yield from pj.read_json(path).to_batches(batch_size)
    elif path.suffix == ".csv":
        import pyarrow.csv as pc

        yield from pc.read_csv(path).to_batches(batch_size)
    else:
        raise StageError(f"{path}: cannot read {path.suffix} files (only {', '.join(READERS)})")


def write_split(files: list[Path], dest: Path, batch_size: int = 8192) -> tuple[int, list[str]]:
    """The files of one split as one Parquet file, their rows in file order. The schema is the
    first file's (with its metadata, pandas' and datasets' included): same input, same bytes."""
    if not files:
        raise StageError(f"{dest}: no data files")
    first = files[0]
    schema = (
        pq.read_schema(first) if first.suffix == ".parquet" else next(_batches(first, 1)).schema
    )
    with RecordWriter(dest, schema=schema, batch_size=batch_size) as out:
        for f in files:
            for batch in _batches(f, batch_size):
                out.write_table(pa.Table.from_batches([batch]))
    return out.rows, schema.names


def fetch_dataset(name: str, h: HubDataParams, snap: Path) -> dict:
    configs: dict[str, dict] = {}
    dirs: dict[str, str] = {}
    for config_name in h.configs:
        folder = config_dir(config_name)
        if folder in dirs:
            raise StageError(
                f"hub_data.{name}: configs {dirs[folder]!r} and {config_name!r} share the "
                f"folder name {folder!r}"
            )
        dirs[folder] = config_name
        found = data_files(snap, config_name)
        absent = [s for s in h.splits if s not in found]
        if absent:
            raise StageError(
                f"hub_data.{name}: {h.repo_id}@{h.revision[:12]} config {config_name!r} has no "
                f"split {absent[0]!r} (it has: {', '.join(found) or 'none'})"
            )
        splits = {}
        for split in h.splits:
            rows, columns = write_split(found[split], split_path(name, config_name, split))
            splits[split] = {"rows": rows, "columns": columns}
        configs[config_name] = {"folder": folder, "splits": splits}
    return configs


def fetch_files(name: str, h: HubDataParams, snap: Path, folder: Path) -> list[str]:
    """A model repository's files that `files` allows, copied as they are. A cached snapshot
    may hold more (the weights, fetched for training): the patterns filter again here."""
    from huggingface_hub.utils import filter_repo_objects

    cached = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file())
    names = []
    for rel in filter_repo_objects(cached, allow_patterns=h.files):
        path = snap / rel
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)  # follows the cache's symlink to the blob
        names.append(str(rel))
    if not names:
        raise StageError(f"{folder}: no cached file of {h.repo_id} matches its `files` patterns")
    return names


def fetch(name: str, h: HubDataParams, section: str = "hub_data") -> dict:
    snap = snapshot(name, h, section)
    folder = out_dir(name, section)
    if folder.exists():  # a DVC output: what a previous run left is not part of this one
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest = {"repo_id": h.repo_id, "repo_type": h.repo_type, "revision": h.revision}
    if h.repo_type == "dataset":
        manifest["configs"] = fetch_dataset(name, h, snap)
        rows = sum(s["rows"] for c in manifest["configs"].values() for s in c["splits"].values())
        what = f"{len(h.configs)} configs x {len(h.splits)} splits, {rows} rows"
    else:
        manifest["files"] = fetch_files(name, h, snap, folder)
        what = f"{len(manifest['files'])} files"
    write_json(folder / MANIFEST, manifest)
    stage = "hub" if section == "hub_data" else "tokenizer"
    console.print(f"{stage}@{name}: {h.repo_id}@{h.revision[:12]} -> {folder} ({what})")
    return manifest
