"""The matrix rows whose changes rerun the evaluations and no training (tests/matrix.py):
a change reruns exactly the stages it touches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.matrix import EVALUATION_ROWS, check_row, matrix_copy

pytestmark = [pytest.mark.slow, pytest.mark.long]


@pytest.fixture(scope="module")
def matrix_repo(pipeline, request, tmp_path_factory) -> Path:
    return matrix_copy(request, tmp_path_factory)


@pytest.mark.parametrize(
    "what,change,expected", EVALUATION_ROWS, ids=[m[0] for m in EVALUATION_ROWS]
)
def test_a_change_reruns_exactly_the_stages_it_touches(matrix_repo, what, change, expected):
    check_row(matrix_repo, what, change, expected)
