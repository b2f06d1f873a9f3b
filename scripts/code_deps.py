"""The code deps of every stage in dvc.yaml, derived from the imports (instar/imports.py).

    python -m scripts.code_deps            # list each stage's differences; exit 1 if any
    python -m scripts.code_deps --write    # rewrite them in dvc.yaml (other deps and comments kept)

A stage's code deps are the project files its `python -m stages.<name>` runs; its data deps
(files, folders, templates) are listed by hand and left as they are.
"""

from __future__ import annotations

import argparse
import io
import sys

from instar.imports import PACKAGES, ROOT, closure

DVC_YAML = ROOT / "dvc.yaml"


def is_code(dep: str) -> bool:
    return dep.endswith(".py") and dep.split("/", 1)[0] in PACKAGES


def entry(cmd: str) -> str:
    """The module of `python -m stages.x ...`."""
    words = cmd.split()
    if words[:2] != ["python", "-m"] or not words[2].startswith("stages."):
        raise ValueError(f"not a `python -m stages.<name>` command: {cmd!r}")
    return words[2]


def stages(doc) -> dict[str, dict]:
    """name -> the stage body (a foreach stage's `do`)."""
    return {name: s.get("do", s) for name, s in doc["stages"].items()}


def differences(doc) -> dict[str, tuple[list[str], list[str]]]:
    """stage -> (files its imports run that deps lack, code deps it does not import)."""
    out = {}
    for name, body in stages(doc).items():
        want = set(closure(entry(body["cmd"])))
        have = {d for d in body.get("deps", []) if isinstance(d, str) and is_code(d)}
        if want != have:
            out[name] = (sorted(want - have), sorted(have - want))
    return out


def write(doc) -> None:
    for body in stages(doc).values():
        deps = body.setdefault("deps", [])
        code = [i for i, d in enumerate(deps) if isinstance(d, str) and is_code(d)]
        first = code[0] if code else 0
        # a comment after a code dep introduces the lines below it: it stays after the code
        notes = getattr(deps, "ca", None) and [deps.ca.items.pop(i, None) for i in code]
        for i in reversed(code):
            del deps[i]
        paths = closure(entry(body["cmd"]))
        for i, path in enumerate(paths):
            deps.insert(first + i, path)
        for note in filter(None, notes or []):
            deps.ca.items[first + len(paths) - 1] = note


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m scripts.code_deps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    args = p.parse_args()
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    doc = rt.load(DVC_YAML.read_text(encoding="utf-8"))
    if args.write:
        write(doc)
        buf = io.StringIO()
        rt.dump(doc, buf)
        DVC_YAML.write_text(buf.getvalue(), encoding="utf-8")
        doc = rt.load(DVC_YAML.read_text(encoding="utf-8"))
    diff = differences(doc)
    for name, (missing, extra) in diff.items():
        for f in missing:
            print(f"{name}: imports {f}, which its deps do not list")
        for f in extra:
            print(f"{name}: lists {f}, which it does not import")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
