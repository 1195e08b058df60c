"""Generate a synthetic credit-risk data set for the Shipway examples.

Each row is a loan applicant; the label ``default`` (0/1) is drawn from a
logistic function of the applicant's features plus noise, so a simple model can
learn it (ROC AUC around 0.8) but not perfectly. ``gender`` is a sensitive
attribute that does not enter the label formula; it is there for fairness
checks. ``--drift`` produces a shifted population (lower income, higher debt,
more unemployment, a few percent of missing ``income``) to exercise drift
monitoring. Nothing is downloaded; output is deterministic for a given seed.

Usage (from this folder)::

    python generate.py                       # 5000 rows -> data/credit.parquet
    python generate.py --drift --out data/credit_drift.parquet
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

EMPLOYMENT = ["salaried", "self_employed", "unemployed", "retired"]
HOUSING = ["own", "rent", "mortgage"]
GENDER = ["female", "male", "nonbinary"]
AGE_BANDS = ["18-24", "25-34", "35-49", "50-64", "65+"]
PURPOSE = ["car", "home", "education", "business", "personal"]
REGION = ["north", "south", "east", "west"]
_AGE_BAND_EDGES = [17, 24, 34, 49, 64, 200]

# Share of ``income`` values blanked out in a drifted data set.
DRIFT_MISSING_INCOME = 0.04


def generate(rows: int, seed: int, drift: bool) -> pd.DataFrame:
    """Return ``rows`` synthetic applicants; identical output for identical arguments."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)

    age = np.clip(np.round(rng.normal(42.0, 13.0, rows)), 18, 85).astype("int64")

    # Employment depends on age: retirement becomes likely after 60.
    retired_p = np.clip((age - 56) / 14.0, 0.0, 0.9)
    base = np.array([0.70, 0.17, 0.13]) if drift else np.array([0.78, 0.14, 0.08])
    working_p = (1.0 - retired_p)[:, None] * base[None, :]
    probs = np.column_stack([working_p, retired_p])
    employment_idx = (rng.random(rows)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    employment_idx = np.minimum(employment_idx, len(EMPLOYMENT) - 1)
    employment = np.asarray(EMPLOYMENT)[employment_idx]

    max_months = (age - 18) * 12
    months_employed = np.minimum(rng.gamma(1.6, 40.0, rows), max_months).astype("int64")
    months_employed[employment == "unemployed"] = 0

    income_scale = {"salaried": 1.0, "self_employed": 1.1, "unemployed": 0.35, "retired": 0.6}
    scale = np.vectorize(income_scale.__getitem__)(employment)
    experience = 1.0 + 0.25 * np.tanh((age - 25) / 15.0)
    income = rng.lognormal(np.log(42_000.0), 0.45, rows) * scale * experience
    if drift:
        income *= 0.8
    income = np.round(income, 2)

    debt_ratio = rng.beta(3.0, 5.0, rows) if drift else rng.beta(2.0, 6.0, rows)
    debt_ratio = np.round(debt_ratio, 4)
    credit_lines = rng.poisson(4.0, rows).astype("int64")

    own_p = np.clip((age - 25) / 60.0, 0.05, 0.6)
    mortgage_p = np.where(age < 65, 0.35, 0.1)
    rent_p = np.clip(1.0 - own_p - mortgage_p, 0.05, None)
    housing_probs = np.column_stack([own_p, rent_p, mortgage_p])
    housing_probs /= housing_probs.sum(axis=1, keepdims=True)
    housing_idx = (rng.random(rows)[:, None] > np.cumsum(housing_probs, axis=1)).sum(axis=1)
    housing = np.asarray(HOUSING)[np.minimum(housing_idx, len(HOUSING) - 1)]

    gender = rng.choice(GENDER, size=rows, p=[0.49, 0.48, 0.03])

    # The loan and the rest of the credit file, from a second stream so that the columns
    # above stay as they were.
    more = np.random.default_rng([seed, 1])
    loan_amount = np.round(more.lognormal(np.log(12_000.0), 0.6, rows), 2)
    loan_term_months = more.choice([12, 24, 36, 48, 60], size=rows).astype("int64")
    savings = np.round(more.lognormal(np.log(8_000.0), 1.0, rows) * (0.5 if drift else 1.0), 2)
    late_payments = more.poisson(0.7 if drift else 0.4, rows).astype("int64")
    utilization = np.round(more.beta(2.0, 5.0, rows), 4)
    inquiries = more.poisson(1.0, rows).astype("int64")
    years_at_address = np.minimum(more.gamma(2.0, 3.0, rows), age - 17).astype("int64")
    dependents = more.poisson(0.8, rows).astype("int64")
    open_accounts = (credit_lines + more.poisson(1.5, rows)).astype("int64")
    has_cosigner = more.random(rows) < 0.12
    purpose = more.choice(PURPOSE, size=rows, p=[0.3, 0.2, 0.1, 0.15, 0.25])
    region = more.choice(REGION, size=rows)

    logit = (
        -1.85
        - 1.1 * (np.log(income) - np.log(40_000.0))
        + 4.5 * (debt_ratio - 0.25)
        - 0.02 * (age - 40)
        - 0.006 * (months_employed - 60)
        + 0.08 * (credit_lines - 4)
        + 0.9 * (employment == "unemployed")
        + 0.35 * (employment == "self_employed")
        + 0.3 * (housing == "rent")
        - 0.2 * (housing == "own")
        + rng.normal(0.0, 0.3, rows)
        + 0.35 * late_payments
        + 1.2 * (utilization - 0.3)
        + 0.1 * (inquiries - 1)
        - 0.4 * has_cosigner
        + 0.25 * (purpose == "business")
        + 0.15 * (np.log(loan_amount) - np.log(12_000.0))
        - 0.05 * (np.log(savings) - np.log(8_000.0))
    )
    default = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    income_out = income.astype("float64")
    if drift:
        income_out[rng.random(rows) < DRIFT_MISSING_INCOME] = np.nan

    return pd.DataFrame(
        {
            "age": age,
            "income": income_out,
            "debt_ratio": debt_ratio.astype("float64"),
            "credit_lines": credit_lines,
            "months_employed": months_employed,
            "employment": pd.Categorical(employment, categories=EMPLOYMENT),
            "housing": pd.Categorical(housing, categories=HOUSING),
            "loan_amount": loan_amount.astype("float64"),
            "loan_term_months": loan_term_months,
            "savings": savings.astype("float64"),
            "late_payments_12m": late_payments,
            "credit_utilization": utilization.astype("float64"),
            "inquiries_6m": inquiries,
            "years_at_address": years_at_address,
            "dependents": dependents,
            "open_accounts": open_accounts,
            "has_cosigner": has_cosigner,
            "purpose": pd.Categorical(purpose, categories=PURPOSE),
            "region": pd.Categorical(region, categories=REGION),
            "gender": pd.Categorical(gender, categories=GENDER),
            "age_band": pd.cut(age, bins=_AGE_BAND_EDGES, labels=AGE_BANDS),
            "default": default,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=5000, help="number of rows (default 5000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--drift", action="store_true", help="shift distributions and add missing income values"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/credit.parquet"),
        help="output parquet file, relative to the current directory (default data/credit.parquet)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    df = generate(rows=args.rows, seed=args.seed, drift=args.drift)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, engine="pyarrow", index=False)
    print(f"wrote {len(df)} rows to {out} (default rate {df['default'].mean():.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
