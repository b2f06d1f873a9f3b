"""The matrix rows whose changes retrain a model (tests/matrix.py):
a change reruns exactly the stages it touches."""

from __future__ import annotations

import pytest

from tests.matrix import TRAINING_ROWS, row_tests

pytestmark = [pytest.mark.slow, pytest.mark.long]


matrix_repo, test_a_change_reruns_exactly_the_stages_it_touches = row_tests(TRAINING_ROWS)
