"""The example's own tests: the pipeline's `test` stage runs them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generate import generate
from train import CATEGORICAL, LABEL, NUMERIC


def test_generated_data_has_every_feature_and_a_binary_label() -> None:
    df = generate(500, seed=1, drift=False)
    assert set(NUMERIC + CATEGORICAL + [LABEL]) <= set(df.columns)
    assert set(df[LABEL].unique()) <= {0, 1}


def test_drifted_data_differs_from_the_reference() -> None:
    normal = generate(2000, seed=1, drift=False)
    drifted = generate(2000, seed=1, drift=True)
    assert normal[NUMERIC].mean().round(3).to_dict() != drifted[NUMERIC].mean().round(3).to_dict()
