"""Code dependencies are derived, not kept by hand: each stage's dvc.yaml deps list exactly
the project files its imports run, and imports run one way (scripts -> stages -> instar)."""

from __future__ import annotations

from pathlib import Path

import yaml

from instar.imports import closure, imported
from scripts.code_deps import differences, entry, stages
from tests.conftest import ROOT


def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def test_every_stage_lists_exactly_the_files_its_imports_run():
    found = differences(dvc_yaml())
    lines = [
        f"{stage}: {'lacks' if f in missing else 'lists, but does not import,'} {f}"
        for stage, (missing, extra) in found.items()
        for f in missing + extra
    ]
    assert not lines, "run `python -m scripts.code_deps --write`:\n" + "\n".join(lines)


def test_the_closure_follows_imports_in_functions_relative_ones_and_package_inits(tmp_path):
    files = {
        "stages/__init__.py": "import instar\n",
        "stages/s.py": "from instar import a\n",
        "instar/__init__.py": "",
        "instar/a.py": "import os\n\ndef f():\n    from instar.sub import c\n    return c\n",
        "instar/sub/__init__.py": "",
        "instar/sub/c.py": "from . import d\nfrom .e import thing\n",
        "instar/sub/d.py": "",
        "instar/sub/e.py": "thing = 1\n",
        "instar/unused.py": "",
        "stages/other.py": "import instar.unused\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert set(closure("stages.s", tmp_path)) == set(files) - {
        "instar/unused.py",
        "stages/other.py",
    }


def test_a_dep_list_that_misses_or_adds_a_file_is_named():
    doc = dvc_yaml()
    clean = doc["stages"]["clean"]["do"]
    clean["deps"].remove("instar/text/repetition.py")
    clean["deps"].append("instar/teacher.py")
    assert differences(doc) == {"clean": (["instar/text/repetition.py"], ["instar/teacher.py"])}


def test_every_module_in_stages_is_the_cmd_of_a_stage():
    modules = {f"stages.{p.stem}" for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__"}
    cmds = {entry(body["cmd"]) for body in stages(dvc_yaml()).values()}
    assert modules == cmds


def _project_imports(path: Path, package: str) -> set[str]:
    return {n for n in imported(path, package) if n.split(".")[0] in ("stages", "scripts")}


def test_no_library_module_imports_a_stage_or_a_script():
    for path in (ROOT / "instar").rglob("*.py"):
        package = ".".join(path.relative_to(ROOT).parent.parts)
        assert not _project_imports(path, package), path


def test_no_stage_imports_another_stage():
    for path in (ROOT / "stages").glob("*.py"):
        assert not _project_imports(path, "stages") - {"stages"}, path
