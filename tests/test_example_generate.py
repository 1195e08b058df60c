"""Tests for the synthetic credit data generator in examples/credit/generate.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "credit" / "generate.py"
NUMERIC = ["age", "income", "debt_ratio", "credit_lines", "months_employed"]
CATEGORICAL = ["employment", "housing", "gender", "age_band"]
MORE_FEATURES = [
    "loan_amount",
    "loan_term_months",
    "savings",
    "late_payments_12m",
    "credit_utilization",
    "inquiries_6m",
    "years_at_address",
    "dependents",
    "open_accounts",
    "has_cosigner",
    "purpose",
    "region",
]


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("credit_generate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def baseline(gen: ModuleType) -> pd.DataFrame:
    return gen.generate(rows=5000, seed=7, drift=False)


@pytest.fixture(scope="module")
def drifted(gen: ModuleType) -> pd.DataFrame:
    return gen.generate(rows=5000, seed=7, drift=True)


def test_deterministic_for_a_seed(gen: ModuleType, baseline: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(gen.generate(rows=5000, seed=7, drift=False), baseline)
    other = gen.generate(rows=5000, seed=8, drift=False)
    assert not other["income"].equals(baseline["income"])


def test_columns_and_dtypes(baseline: pd.DataFrame) -> None:
    assert list(baseline.columns) == [
        *NUMERIC[:5],
        *CATEGORICAL[:2],
        *MORE_FEATURES,
        *CATEGORICAL[2:],
        "default",
    ]
    assert len(baseline) == 5000
    ints = ["age", "credit_lines", "months_employed", "default", "loan_term_months"]
    ints += ["late_payments_12m", "inquiries_6m", "years_at_address", "dependents"]
    for col in [*ints, "open_accounts"]:
        assert baseline[col].dtype == np.dtype("int64"), col
    for col in ["income", "debt_ratio", "loan_amount", "savings", "credit_utilization"]:
        assert baseline[col].dtype == np.dtype("float64"), col
    assert baseline["has_cosigner"].dtype == np.dtype("bool")
    expected_categories = {
        "employment": ["salaried", "self_employed", "unemployed", "retired"],
        "housing": ["own", "rent", "mortgage"],
        "gender": ["female", "male", "nonbinary"],
        "purpose": ["car", "home", "education", "business", "personal"],
        "region": ["north", "south", "east", "west"],
    }
    for col, categories in expected_categories.items():
        assert isinstance(baseline[col].dtype, pd.CategoricalDtype), col
        assert list(baseline[col].cat.categories) == categories
    assert isinstance(baseline["age_band"].dtype, pd.CategoricalDtype)
    assert set(baseline["default"].unique()) == {0, 1}
    assert not baseline.isna().any().any()


def test_value_ranges(baseline: pd.DataFrame) -> None:
    assert baseline["age"].between(18, 100).all()
    assert (baseline["income"] > 0).all()
    assert baseline["debt_ratio"].between(0, 1).all()
    assert (baseline["credit_lines"] >= 0).all()
    assert (baseline["months_employed"] >= 0).all()
    assert (baseline.loc[baseline["employment"] == "unemployed", "months_employed"] == 0).all()
    # age_band is derived from age: each band covers a contiguous, non-overlapping age range
    ranges = baseline.groupby("age_band", observed=True)["age"].agg(["min", "max"])
    assert (ranges["min"].iloc[1:].to_numpy() > ranges["max"].iloc[:-1].to_numpy()).all()


def test_default_rate_in_range(baseline: pd.DataFrame) -> None:
    assert 0.15 <= baseline["default"].mean() <= 0.25


def test_drift_shifts_distributions_and_adds_missing(
    baseline: pd.DataFrame, drifted: pd.DataFrame
) -> None:
    assert drifted["income"].mean() < 0.9 * baseline["income"].mean()
    assert drifted["debt_ratio"].mean() > baseline["debt_ratio"].mean() + 0.05
    unemployed = (drifted["employment"] == "unemployed").mean()
    assert unemployed > (baseline["employment"] == "unemployed").mean() + 0.02
    missing = drifted["income"].isna().mean()
    assert 0.01 <= missing <= 0.10
    assert not drifted.drop(columns="income").isna().any().any()
    assert list(drifted.dtypes) == list(baseline.dtypes)


def test_label_is_learnable(baseline: pd.DataFrame) -> None:
    X = baseline.drop(columns="default")
    y = baseline["default"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(X_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    assert auc > 0.7


def test_cli_main_writes_parquet(
    gen: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nested" / "drift.parquet"
    assert gen.main(["--rows", "300", "--seed", "3", "--drift", "--out", str(out)]) == 0
    written = pd.read_parquet(out)
    pd.testing.assert_frame_equal(written, gen.generate(rows=300, seed=3, drift=True))
    line = capsys.readouterr().out.strip()
    assert "300 rows" in line and str(out) in line and "default rate" in line


def test_script_runs_without_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    written = pd.read_parquet(tmp_path / "data" / "credit.parquet")
    assert len(written) == 5000
    assert "5000 rows" in result.stdout
