"""The DVC promise for changes that start in the data stages, checked with real runs: a
change reruns exactly the stages it touches (the rows are in tests/matrix.py; the rows that
start at the models, and experiments, are in tests/test_experiments.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.matrix import (
    DATA_ROWS,
    MATRIX,
    check_row,
    importers,
    matrix_copy,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def matrix_repo(pipeline, request, tmp_path_factory) -> Path:
    return matrix_copy(request, tmp_path_factory)


@pytest.mark.parametrize("what,change,expected", DATA_ROWS, ids=[m[0] for m in DATA_ROWS])
def test_a_change_reruns_exactly_the_stages_it_touches(matrix_repo, what, change, expected):
    check_row(matrix_repo, what, change, expected)


def test_the_code_rows_edit_what_they_say():
    assert importers("instar/text/repetition.py") == {"clean"}
    # train@, and what reads the model params below it (evaluation); base@ reads only its
    # own section's module (instar/params/base.py)
    assert importers("instar/params/train.py") == {"train", "evaluate_base", "evaluate"}


def test_the_matrix_covers_every_params_section():
    from tests.conftest import ROOT

    sections = set(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    touched = {change.section for _, change, _ in MATRIX}
    assert sections <= touched, f"no matrix row changes {sorted(sections - touched)}"
