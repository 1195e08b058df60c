"""Log the exported pipeline to MLflow (run in the mlflow venv).

    MLFLOW_TRACKING_URI=sqlite:///WORKDIR/mlflow.db python mlflow_log.py WORKDIR

MLflow 3's scikit-learn flavour saves with skops by default and refuses to load
HistGradientBoosting models that way (`TreePredictor` is untrusted), so the model is logged with
serialization_format="cloudpickle", as a MLflow user with this model would. The signature is
inferred from 50 training rows. Prints the model URI to serve on the last line.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature


def main(workdir: Path) -> int:
    with (workdir / "model.pkl").open("rb") as fh:
        pipeline = pickle.load(fh)
    examples = json.loads((workdir / "examples.json").read_text())
    frame = pd.DataFrame(examples["rows"], columns=examples["columns"])
    signature = infer_signature(frame, pipeline.predict_proba(frame))
    # Artefacts inside WORKDIR, not in MLflow's default ./mlruns of the current directory.
    name = "credit-bench"
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=(workdir / "mlflow-artifacts").as_uri())
    mlflow.set_experiment(name)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="cloudpickle",
            signature=signature,
            input_example=frame.head(5),
            pyfunc_predict_fn="predict_proba",
        )
    print(info.model_uri)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
