"""The DVC promise, checked with real runs: a change reruns exactly the stages it touches.
The rows are in tests/matrix.py; this module runs those that rerun no model stage, and
tests/test_reevaluation.py and tests/test_retraining.py run the rest."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT
from tests.matrix import (
    DATA_ROWS,
    EVALUATION_ROWS,
    MATRIX,
    TRAINING_ROWS,
    importers,
    row_tests,
    source_names,
)

pytestmark = pytest.mark.slow


matrix_repo, test_a_change_reruns_exactly_the_stages_it_touches = row_tests(DATA_ROWS)


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


def test_each_row_is_in_the_group_its_reruns_name():
    """The groups say what a row costs, and the modules are scheduled by it."""
    names = source_names(ROOT)

    def kinds(expected) -> set[str]:  # the kinds of stage a row reruns: train, evaluate, ...
        return {stage.split("@")[0] for stage in expected(names)}

    model_stages = {"base", "train", "evaluate_base", "evaluate"}
    for what, _, expected in DATA_ROWS:
        assert not kinds(expected) & model_stages, what
    for what, _, expected in EVALUATION_ROWS:
        assert "evaluate" in kinds(expected) and "train" not in kinds(expected), what
    for what, _, expected in TRAINING_ROWS:
        assert "train" in kinds(expected), what
