"""Make the quickstart model in a throwaway SHIPWAY_HOME and export it for the peers.

Run with the project venv's python and SHIPWAY_HOME set (run.py does both):

    python bench/serving/prepare.py WORKDIR

It runs examples/credit/generate.py and train.py (as a user would, in WORKDIR so that the
example folder is left alone), then loads the registered `credit` model back through Shipway and
writes into WORKDIR:

- model.pkl: the very fitted scikit-learn pipeline Shipway serves, pickled for MLflow and BentoML;
- examples.json: feature columns, 50 training rows (MLflow's input example) and the one applicant
  every server is asked about, plus the answer the pipeline itself gives for it;
- prepared.json: the model URI Shipway serves, and that of a constant-answer model with the same
  signature (peers/constant_model.py), which shows what the server itself costs.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "credit"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def main(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "credit.parquet"
    py = sys.executable
    subprocess.run([py, str(EXAMPLE / "generate.py"), "--out", str(data)], cwd=workdir, check=True)
    out = subprocess.run(
        [py, str(EXAMPLE / "train.py"), "--data", str(data)],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    )
    print(out.stdout.strip())
    uri = next(w for w in out.stdout.split() if w.startswith("models:/credit/"))

    import pandas as pd

    import shipway

    sys.path.insert(0, str(EXAMPLE))
    from train import CATEGORICAL, NUMERIC  # the quickstart's own feature list

    loaded = shipway.load_model(uri)
    pipeline = loaded.impl
    features = NUMERIC + CATEGORICAL
    frame = pd.read_parquet(data)[features]
    records = [
        {k: _plain(v) for k, v in row.items()}
        for row in frame.head(50).astype(object).to_dict(orient="records")
    ]
    applicant = records[0]
    proba = pipeline.predict_proba(frame.head(1))[0].tolist()
    with (workdir / "model.pkl").open("wb") as fh:
        pickle.dump(pipeline, fh, protocol=pickle.HIGHEST_PROTOCOL)
    (workdir / "examples.json").write_text(
        json.dumps(
            {
                "columns": features,
                "numeric": NUMERIC,
                "categorical": CATEGORICAL,
                "rows": records,
                "applicant": applicant,
                "expected_probabilities": proba,
                "classes": [_plain(c) for c in pipeline.classes_],
            },
            indent=1,
        )
    )
    # The same signature, a model that costs nothing: what the server itself costs.
    sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
    from constant_model import ConstantModel

    constant = ConstantModel(label=_plain(pipeline.predict(frame.head(1))[0]), proba=proba)
    constant_uri = shipway.register_model(
        constant, "credit-constant", input_example=frame.head(50)
    ).uri
    (workdir / "prepared.json").write_text(json.dumps({"uri": uri, "constant_uri": constant_uri}))
    print(f"exported {type(pipeline).__name__} from {uri}; applicant P(default)={proba[-1]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
