"""Train a credit-default model on the generated data, tracked and registered with Shipway.

Usage (from this folder, after `python generate.py`)::

    python train.py                 # registers a new version of the model "credit"
    python train.py --learning-rate 0.1 --seed 11

Everything the run needs to be made again is recorded: the code commit, the data's content
hash, the environment, the seed, the parameters and the metrics; `shipway runs reproduce
RUN_ID` makes it again and compares.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import shipway
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

NUMERIC = [
    "age",
    "income",
    "debt_ratio",
    "credit_lines",
    "months_employed",
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
]
CATEGORICAL = ["employment", "housing", "purpose", "region"]
LABEL = "default"
SENSITIVE = "gender"  # logged with the data for fairness checks, never a feature


def build_model(learning_rate: float, max_iter: int, seed: int) -> Pipeline:
    # Gradient-boosted trees handle missing values (as in drifted data) without imputation.
    features = ColumnTransformer(
        [
            ("num", "passthrough", NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
        ]
    )
    clf = HistGradientBoostingClassifier(
        learning_rate=learning_rate, max_iter=max_iter, max_leaf_nodes=15, random_state=seed
    )
    return Pipeline([("features", features), ("clf", clf)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/credit.parquet"))
    parser.add_argument("--model-name", default="credit")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--max-iter", type=int, default=150)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"no data at {args.data}: run `python generate.py` first")

    df = pd.read_parquet(args.data)
    train, test = train_test_split(df, test_size=0.25, random_state=args.seed, stratify=df[LABEL])
    features = NUMERIC + CATEGORICAL

    with shipway.start_run(experiment="credit", seed=args.seed) as run:
        run.log_params(
            {
                "learning_rate": args.learning_rate,
                "max_iter": args.max_iter,
                "model": "hist_gradient_boosting",
                "features": ",".join(features),
            }
        )
        # The file as read, with its path: `shipway runs reproduce` puts it back there.
        run.log_dataset(df, name="credit", role="source", path=args.data)
        run.log_dataset(train, name="credit-train", role="training")
        run.log_dataset(test, name="credit-test", role="evaluation")
        model = build_model(args.learning_rate, args.max_iter, args.seed).fit(
            train[features], train[LABEL]
        )
        proba = model.predict_proba(test[features])[:, 1]
        predicted = model.predict(test[features])
        run.log_metrics(
            {
                "roc_auc": roc_auc_score(test[LABEL], proba),
                "accuracy": accuracy_score(test[LABEL], predicted),
                "f1": f1_score(test[LABEL], predicted),
            }
        )
        # The trees handle missing numbers natively: let the server accept them.
        signature = shipway.infer_signature(train[features].head(50), model)
        run.log_model(model, signature=signature.allow_missing(*NUMERIC))

    version = shipway.register_model(
        run, args.model_name, description="Probability that a loan applicant defaults."
    )
    metrics = shipway.get_run(run.id).metrics
    print(
        f"Registered {version.uri} from run {run.id[:12]}: "
        + ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
