"""Profiles: the default one is params.yaml; others live in profiles/<name>.yaml.

check NAME   validate the profile and say what this machine lacks to run it
pin NAME     write the commit of every hub repository the profile names into
             profiles/NAME.yaml, with each hub model's file list and hashes; asks the hub,
             or with HF_HUB_OFFLINE=1 reads the local HF cache (its refs/main) instead
run NAME     run it as the DVC experiment NAME (-n for another name) in this workspace, then
             put params.yaml, dvc.lock and the default outputs back; a stopped run resumes
             when rerun, and an experiment that exists with the same params is not run again
restore      put the workspace back after a stopped run that will not be resumed

Overlays: a profile that starts with `extends: <profile>` holds only the keys it changes and
is merged onto its base (which may extend another in turn). Mappings merge key by key at
every depth, so overriding a nested key leaves its siblings as the base has them; lists and
scalars replace the base's value whole. `pin` of an overlay writes the pins into the overlay
and never into its base.
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from instar.console import StageError, console, parser, run
from instar.hub import is_offline
from instar.modeling.build import loaded_files
from instar.modeling.loading import needs_cuda
from instar.params import core as config
from instar.params.checks import check_all
from instar.params.clean import CleanParams, is_hub_id
from instar.params.generate import GenerateParams
from instar.params.sources import TextSourceParams
from instar.params.train import ModelParams
from instar.records.storage import file_digest, write_json, write_text

PROFILES = Path("profiles")
# An interrupted `run` leaves this behind: the next run of the same profile resumes it.
STATE = Path(".dvc/tmp/instar-profile-run.json")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def profile_path(name: str) -> Path:
    if name == "default":
        return config.PARAMS_FILE
    try:
        path = PROFILES / f"{config.check_name(name, 'profile')}.yaml"
    except ValueError as e:
        raise StageError(str(e)) from None
    if not path.exists():
        known = ", ".join(["default", *sorted(p.stem for p in PROFILES.glob("*.yaml"))])
        raise StageError(f"no profile {name!r} (known: {known})")
    return path


# ---------------------------------------------------------------------------- overlays


def _roundtrip():
    """ruamel in round-trip mode: comments, key order and quotes survive a load and dump."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.width = 4096  # never re-wrap a line people wrote
    rt.preserve_quotes = True
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return rt


def merge(base: dict, over: Mapping) -> dict:
    """`over` onto `base`, in place: mappings merge, anything else replaces."""
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def load_profile(name: str, roundtrip: bool = False, _seen: tuple[str, ...] = ()) -> dict:
    """The profile with its `extends` chain merged in (plain dicts, or ruamel's with comments)."""
    if name in _seen:
        raise StageError(f"profiles extend each other in a circle: {' -> '.join(_seen + (name,))}")
    text = profile_path(name).read_text(encoding="utf-8")
    doc = (_roundtrip().load(text) if roundtrip else yaml.safe_load(text)) or {}
    base = doc.pop("extends", None)
    if base is None:
        return doc
    if base == "default":  # params.yaml is what `run` overwrites: it cannot be a base
        raise StageError(f"profile {name!r} extends default: extend a file in profiles/ instead")
    return merge(load_profile(base, roundtrip, (*_seen, name)), doc)


def _extends(name: str) -> bool:
    return "extends" in (yaml.safe_load(profile_path(name).read_text(encoding="utf-8")) or {})


# ---------------------------------------------------------------------------- pins


@dataclass(frozen=True)
class Pin:
    """One hub repository a profile names: `where` is the mapping holding its `revision`."""

    where: tuple[str, ...]
    repo_id: str
    repo_type: str  # model or dataset
    files: bool  # a model's weights: pin its file list too


def pins(params: dict) -> list[Pin]:
    """Every hub revision of a profile, models first (their pins carry the file lists)."""
    found = []
    for key, m in (params.get("models") or {}).items():
        base = m.get("base") or {}
        if base.get("kind") == "hub" and base.get("repo_id"):
            found.append(Pin(("models", key, "base"), base["repo_id"], "model", True))
    limit = (params.get("clean") or {}).get("max_length") or {}
    tok = limit.get("tokenizer")
    if limit.get("unit") == "tokens" and tok and is_hub_id(tok):
        found.append(Pin(("clean", "max_length"), tok, "model", False))
    for key, s in (params.get("text_sources") or {}).items():
        if s.get("format") == "hf" and (s.get("hf") or {}).get("repo_id"):
            found.append(Pin(("text_sources", key, "hf"), s["hf"]["repo_id"], "dataset", False))
    for section, default_kind in FETCHED.items():
        for key, h in (params.get(section) or {}).items():
            if isinstance(h, Mapping) and "repo_id" in h and "revision" in h:
                kind = h.get("repo_type") or default_kind
                found.append(Pin((section, key), h["repo_id"], kind, False))
    return found


# The sections whose repositories a stage copies into the workspace (hub@, tokenizer@), with
# the repo_type an entry has by default.
FETCHED = {"hub_data": "dataset", "tokenizers": "model"}


def _at(params: Mapping, where: tuple[str, ...]) -> Mapping:
    for key in where:
        params = params[key]
    return params


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def snapshot(repo_id: str, repo_type: str, revision: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    folder = hub_cache() / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    return folder / "snapshots" / revision


def from_cache(pin_: Pin) -> tuple[str, list[dict] | None]:
    """The commit refs/main points at in the local HF cache, and sha256 of its cached files."""
    from huggingface_hub.file_download import repo_folder_name

    folder = hub_cache() / repo_folder_name(repo_id=pin_.repo_id, repo_type=pin_.repo_type)
    ref = folder / "refs" / "main"
    if not ref.is_file():
        raise LookupError(f"{pin_.repo_type} {pin_.repo_id}")
    commit = ref.read_text().strip()
    if not pin_.files:
        return commit, None
    snap = folder / "snapshots" / commit
    names = loaded_files(p.name for p in snap.iterdir() if p.is_file()) if snap.is_dir() else []
    if not names:
        raise LookupError(f"{pin_.repo_type} {pin_.repo_id}@{commit} (no model files cached)")
    return commit, [{"name": n, "sha256": file_digest(snap / n)} for n in names]


def from_hub(api, pin_: Pin) -> tuple[str, list[dict] | None]:
    """The hub's current commit (main), and the file list with the hashes the hub reports."""
    info = api.repo_info(pin_.repo_id, repo_type=pin_.repo_type, files_metadata=pin_.files)
    if not pin_.files:
        return info.sha, None
    files = []
    by_name = {s.rfilename: s for s in info.siblings or []}
    for name in loaded_files(by_name):
        s = by_name[name]
        if s.lfs is not None:
            files.append({"name": name, "sha256": s.lfs.sha256})
        elif s.blob_id:
            files.append({"name": name, "git_sha1": s.blob_id})
        else:
            raise StageError(f"the hub gave no hash for {pin_.repo_id}@{info.sha}: {name}")
    if not files:
        raise StageError(f"{pin_.repo_id}@{info.sha} has no safetensors or config files")
    return info.sha, files


def _mapping(doc, where: tuple[str, ...]):
    """The mapping at `where` in a round-trip document, made where an overlay lacks it."""
    from ruamel.yaml.comments import CommentedMap

    for key in where:
        if not isinstance(doc.get(key), Mapping):
            doc[key] = CommentedMap()
        doc = doc[key]
    return doc


def _write_pin(target, commit: str, files: list[dict] | None) -> None:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    target["revision"] = commit
    if files is None:
        return
    seq = CommentedSeq()
    for f in files:
        entry = CommentedMap(f)
        entry.fa.set_flow_style()  # one line a file
        seq.append(entry)
    if "files" in target:
        target["files"] = seq
    else:  # right under its revision
        target.insert(list(target).index("revision") + 1, "files", seq)


def pin(name: str) -> None:
    """Write the current commit of every hub repository (and each model's files) into the
    profile's own file: for an overlay, into the overlay."""
    path = profile_path(name)
    todo = pins(load_profile(name))
    if not todo:
        console.print(f"profile {name!r}: no hub repositories to pin")
        return
    if is_offline():
        console.print(
            f"HF_HUB_OFFLINE=1: pinning from the local HF cache {hub_cache()}, not the hub"
        )
        resolve = from_cache
    else:
        from huggingface_hub import HfApi

        resolve = functools.partial(from_hub, HfApi())

    resolved: dict[tuple[str, str, bool], tuple[str, list[dict] | None]] = {}
    absent = []
    for p in todo:
        key = (p.repo_type, p.repo_id, p.files)
        same_repo = resolved.get((p.repo_type, p.repo_id, True))  # one commit per repository
        if same_repo:
            resolved[key] = (same_repo[0], same_repo[1] if p.files else None)
        elif key not in resolved:
            try:
                resolved[key] = resolve(p)
            except LookupError as e:
                absent.append(str(e))
    if absent:
        raise StageError(
            f"HF_HUB_OFFLINE=1 and not in the HF cache {hub_cache()}: {', '.join(absent)}; "
            "pin where the hub is reachable (unset HF_HUB_OFFLINE), or fill the cache first"
        )
    rt = _roundtrip()
    doc = rt.load(path.read_text(encoding="utf-8"))
    for p in todo:
        commit, files = resolved[(p.repo_type, p.repo_id, p.files)]
        _write_pin(_mapping(doc, p.where), commit, files)
        extra = f", {len(files)} files" if files else ""
        console.print(f"{'.'.join(p.where)}: {p.repo_id}@{commit}{extra}", highlight=False)
    out = io.StringIO()
    rt.dump(doc, out)
    write_text(path, out.getvalue())


def fetched(section: str, name: str, revision: str) -> bool:
    """hub@<name>'s (or tokenizer@<name>'s) output is in the workspace (made here or `dvc
    pull`ed) for `revision`: what reads it needs no HF cache."""
    from instar.hub import MANIFEST, out_dir

    manifest = out_dir(name, section) / MANIFEST
    return manifest.is_file() and json.loads(manifest.read_text()).get("revision") == revision


def not_cached(params: dict, kinds: tuple[str, ...] = ("model", "dataset")) -> list[str]:
    """The pinned repo@revision (and pinned model files) of a profile that the HF cache lacks
    (a hub_data entry whose hub@ output of that revision is already here needs none)."""
    gaps = []
    for p in pins(params):
        if p.repo_type not in kinds:
            continue
        at = _at(params, p.where)
        rev = at.get("revision")
        if rev is None:
            gaps.append(f"{p.repo_id} (not pinned)")
            continue
        if p.where[0] in FETCHED and fetched(p.where[0], p.where[1], rev):
            continue
        snap = snapshot(p.repo_id, p.repo_type, rev)
        names = [f["name"] for f in at.get("files") or []] if p.files else []
        lacking = [n for n in names if not (snap / n).is_file()]
        if not snap.is_dir() or lacking:
            what = f" ({len(lacking)} of its files)" if snap.is_dir() else ""
            gaps.append(f"{p.repo_id}@{rev[:12]}{what}")
    return gaps


# ---------------------------------------------------------------------------- check


def missing(params: dict) -> list[str]:
    """Everything that stops this profile here, all at once."""
    problems = check_all(params)
    if problems:
        return problems
    models = {k: ModelParams.named(k, params) for k in params.get("models") or {}}
    needs_gpu = [k for k, m in models.items() if needs_cuda(m)]
    if needs_gpu:
        import torch

        if not torch.cuda.is_available():
            problems.append(f"models {', '.join(needs_gpu)} need a CUDA GPU; none is visible")
    for k, m in models.items():
        if m.base.kind == "hub" and m.base.revision is None:
            problems.append(f"models.{k}.base.revision is not pinned (run `profile pin`)")
        elif m.base.kind == "hub" and not m.base.files:
            problems.append(f"models.{k}.base.files are not pinned (run `profile pin`)")
    limit = CleanParams.load(params).max_length
    if limit.from_hub and limit.revision is None:
        problems.append("clean.max_length.revision of the hub tokenizer is not pinned")
    for k in params.get("text_sources") or {}:
        t = TextSourceParams.named(k, params)
        if t.format == "hf" and t.hf.revision is None:
            problems.append(f"text_sources.{k}.hf.revision is not pinned")
    for section in FETCHED:
        for k, h in (params.get(section) or {}).items():
            if isinstance(h, Mapping) and "repo_id" in h and h.get("revision") is None:
                problems.append(f"{section}.{k}.revision is not pinned (run `profile pin`)")
    gen = GenerateParams.load(params) if params.get("generate") else None
    if gen and gen.backend == "openai" and gen.openai.api_key_env:
        if not os.environ.get(gen.openai.api_key_env):
            problems.append(f"generate.openai.api_key_env: {gen.openai.api_key_env} is not set")
    if gen and gen.backend == "transformers" and not Path(gen.model).is_dir():
        problems.append(f"generate.model {gen.model!r} is not a local model folder")
    # Weights and tokenizers are read from the HF cache at every run (no DVC copy of them).
    gaps = [g for g in not_cached(params, ("model",)) if "not pinned" not in g]
    if gaps and is_offline():
        problems.append(
            f"HF_HUB_OFFLINE=1 and not in the HF cache: {', '.join(gaps)}; unset it "
            "(hub access, gated licences accepted) or fill the HF cache first"
        )
    return problems


def check_params(name: str, params: dict) -> None:
    problems = missing(params)
    if problems:
        raise StageError(f"profile {name!r} cannot run here:\n  - " + "\n  - ".join(problems))


def check(name: str) -> None:
    check_params(name, load_profile(name))
    console.print(f"profile {name!r}: ready")


# ---------------------------------------------------------------------------- run


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def exp_ref(exp: str) -> str | None:
    """The git ref of experiment `exp` on the current baseline (HEAD), if it exists."""
    from dvc.repo.experiments.refs import ExpRefInfo

    ref = str(ExpRefInfo(baseline_sha=_git("rev-parse", "HEAD").strip(), name=exp))
    found = subprocess.run(["git", "rev-parse", "-q", "--verify", ref], capture_output=True)
    return ref if found.returncode == 0 else None


def lock_outs(lock_text: str) -> set[str]:
    """The output paths a dvc.lock records (cached ones, metrics and plots alike)."""
    lock = yaml.safe_load(lock_text) or {}
    return {o["path"] for s in (lock.get("stages") or {}).values() for o in s.get("outs") or []}


def _managed(path: str, outs: set[str]) -> bool:
    """What a run writes: params, lock, the outputs and the .gitignore beside each."""
    if path in (str(config.PARAMS_FILE), "dvc.lock"):
        return True
    if Path(path).name == ".gitignore":
        return any(Path(o).parent == Path(path).parent for o in outs)
    return any(path == o or path.startswith(o.rstrip("/") + "/") for o in outs)


def restore_workspace(lock_text: str) -> None:
    """params.yaml, dvc.lock and the default outputs as HEAD has them. `lock_text` is the run's
    dvc.lock: what it names goes (it is in the experiment), other files stay as they are;
    checkpoints and lm-eval's request cache are not DVC-linked files and stay too."""
    outs = lock_outs(lock_text)
    status = _git("status", "--porcelain=v1", "-z", "-uall", "--no-renames").split("\0")
    back, drop = [], []
    for entry in filter(None, status):
        code, path = entry[:2], entry[3:]
        if not _managed(path, outs):
            continue
        in_head = subprocess.run(["git", "cat-file", "-e", f"HEAD:{path}"], capture_output=True)
        (back if in_head.returncode == 0 else drop).append(path)
        if code[0] == "A":  # staged by a stopped run
            _git("rm", "-q", "--cached", "--", path)
    if back:
        _git("checkout", "HEAD", "--", *back)
    for path in drop:
        Path(path).unlink(missing_ok=True)
    # Also removes the run's own cached outputs from the workspace (DVC's unused links).
    if subprocess.run(["dvc", "checkout", "-q"]).returncode != 0:
        console.print(
            "[yellow]dvc checkout could not bring back every default output (not in the "
            "cache?): `dvc pull` or `dvc repro` restores them[/]"
        )
    for out in sorted(outs - lock_outs(_git("show", "HEAD:dvc.lock")), reverse=True):
        for folder in [Path(out), *Path(out).parents][:-1]:  # empty folders it leaves
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _existing(exp: str, ref: str, params: dict) -> None:
    """Refuse unless experiment `exp` ran this very profile on this commit."""
    theirs = yaml.safe_load(_git("show", f"{ref}:{config.PARAMS_FILE}"))
    if theirs != params:
        raise StageError(
            f"experiment {exp!r} exists on this commit with other params: name a new one "
            f"(`python -m scripts.profiles run <profile> -n {exp}-2`, or `make paper "
            f"PROFILE=<profile> EXP={exp}-2`), or drop it with `dvc exp remove {exp}`"
        )
    outs = lock_outs(_git("show", f"{ref}:dvc.lock"))
    changed = _git("diff", "--name-only", ref).splitlines()  # its tracked files vs the workspace
    code = [p for p in changed if not _managed(p, outs)]
    if code:
        raise StageError(
            f"experiment {exp!r} exists on this commit but these files differ from the ones it "
            f"ran with: {', '.join(code)}; name a new experiment with -n"
        )


def _read_state() -> dict | None:
    return json.loads(STATE.read_text()) if STATE.exists() else None


def _hub_mode(params: dict) -> None:
    """Offline where every pin is already in the HF cache; otherwise online for this run."""
    if not is_offline():
        return
    gaps = not_cached(params)
    if not gaps:
        console.print("every pinned hub revision is in the HF cache: the run stays offline")
        return
    for var in OFFLINE_VARS:
        os.environ.pop(var, None)
    console.print(
        f"not in the HF cache: {', '.join(gaps)}; HF_HUB_OFFLINE is unset for this run so "
        "that they can come from the hub",
        highlight=False,
    )


def run_profile(name: str, exp_name: str | None, online_if_needed: bool = False) -> None:
    if name == "default":
        raise StageError("the default profile is params.yaml: use `dvc repro` or `make repro`")
    try:
        exp = config.check_name(exp_name or name, "experiment")
    except ValueError as e:
        raise StageError(str(e)) from None
    params = load_profile(name)
    state = _read_state()
    if state and (state["profile"], state["exp"]) != (name, exp):
        raise StageError(
            f"a stopped run of profile {state['profile']!r} (experiment {state['exp']!r}) holds "
            f"this workspace: rerun `python -m scripts.profiles run {state['profile']} -n "
            f"{state['exp']}` to finish it, or `python -m scripts.profiles restore` to drop it"
        )
    ref = exp_ref(exp)
    if ref:
        _existing(exp, ref, params)
        if state:  # stopped after DVC recorded the experiment, before the workspace was back
            restore_workspace(_git("show", f"{ref}:dvc.lock"))
            STATE.unlink()
        console.print(
            f"experiment {exp!r} exists on this commit with these params and this code: it is "
            f"current, nothing to run (`dvc exp show` lists it, `dvc exp apply {exp}` brings "
            "it into the workspace)"
        )
        return
    if state is None:  # what the run writes and then puts back must be as HEAD has it
        outs = lock_outs(_git("show", "HEAD:dvc.lock"))
        status = _git("status", "--porcelain=v1", "-z", "--untracked-files=no").split("\0")
        dirty = [e[3:] for e in filter(None, status) if _managed(e[3:], outs)]
        if dirty:
            raise StageError(
                f"uncommitted changes to {', '.join(dirty)}: the run puts params.yaml, dvc.lock "
                "and the default outputs back as HEAD has them afterwards; commit or undo them"
            )
    if online_if_needed:
        _hub_mode(params)
    check_params(name, params)
    if state is None:  # first, so that a kill from here on leaves a run to resume
        write_json(STATE, {"profile": name, "exp": exp})
        console.print(f"params.yaml holds profile {name!r} until the experiment is recorded")
    else:
        console.print(f"resuming the stopped run of profile {name!r} (experiment {exp!r})")
    if _extends(name):
        out = io.StringIO()
        _roundtrip().dump(load_profile(name, roundtrip=True), out)
        write_text(config.PARAMS_FILE, out.getvalue())
    else:
        write_text(config.PARAMS_FILE, profile_path(name).read_text(encoding="utf-8"))
    proc = subprocess.run(["dvc", "exp", "run", "-n", exp])
    if proc.returncode != 0:
        raise StageError(
            f"dvc exp run stopped (exit {proc.returncode}); the workspace keeps what finished: "
            f"rerun the same command to resume (finished stages are skipped, train@ resumes "
            "from its checkpoint), or `python -m scripts.profiles restore` to drop the run"
        )
    ref = exp_ref(exp)
    restore_workspace(_git("show", f"{ref}:dvc.lock") if ref else Path("dvc.lock").read_text())
    STATE.unlink()
    if ref is None:
        raise StageError(
            f"dvc exp run recorded no experiment {exp!r} (does the profile change "
            "anything?); the workspace is back as it was"
        )
    console.print(
        f"experiment {exp!r} recorded; params.yaml and the default outputs are back. "
        f"`dvc exp show` lists it, `dvc exp apply {exp}` brings it into the workspace"
    )


def restore() -> None:
    state = _read_state()
    if state is None:
        raise StageError("no stopped profile run to drop: the workspace is as `run` left it")
    restore_workspace(Path("dvc.lock").read_text() if Path("dvc.lock").exists() else "")
    STATE.unlink()
    console.print(
        f"dropped the stopped run of profile {state['profile']!r}: params.yaml and the default "
        "outputs are back (its finished stages stay in DVC's run cache and cache)"
    )


def main() -> None:
    p = parser("scripts.profiles", __doc__)
    p.add_argument("action", choices=["check", "pin", "run", "restore"])
    p.add_argument("name", nargs="?", help="default, or a file name in profiles/ without .yaml")
    p.add_argument("-n", "--exp-name", help="experiment name for `run` (default: the profile)")
    p.add_argument(
        "--online-if-needed",
        action="store_true",
        help="run: with HF_HUB_OFFLINE=1 set, stay offline when every pin is in the HF cache, "
        "else unset it for this run and say why (what `make paper` does)",
    )
    args = p.parse_args()
    if args.action != "restore" and not args.name:
        p.error(f"{args.action} needs a profile name")
    {
        "check": lambda: check(args.name),
        "pin": lambda: pin(args.name),
        "run": lambda: run_profile(args.name, args.exp_name, args.online_if_needed),
        "restore": restore,
    }[args.action]()


if __name__ == "__main__":
    run(main)
