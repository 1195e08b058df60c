"""The exported pipeline as a BentoML 1.4 service with adaptive batching (run in the bentoml venv).

    BENCH_WORKDIR=WORKDIR bentoml serve bentoml_service:Credit --port PORT

Request: {"data": [{"age": 41, ...}]} (records, BentoML's DataFrame input); answer: the
predict_proba rows. Batching: BENCH_BENTO_MAX_BATCH (default 64, as Shipway) and
BENCH_BENTO_MAX_LATENCY_MS. BentoML's max_latency_ms is a latency budget, not a batch window:
a request that the dispatcher expects to miss it is refused with 503, so a tight budget measures
load shedding rather than serving.

BentoML 1.4.40's `PandasDataFrameContainer.get_batch_size` returns `batch.shape` (a tuple)
instead of the row count, which kills the batch dispatcher's warm-up ("Error in training
optimizer ... unsupported operand type(s) for +: 'int' and 'tuple'") and leaves requests hanging.
Unless BENCH_BENTO_NO_PATCH is set, the one-line fix is applied here, in the worker, before any
request is dispatched.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
import pandas as pd
from bentoml.validators import DataframeSchema

WORKDIR = Path(os.environ["BENCH_WORKDIR"])
COLUMNS = json.loads((WORKDIR / "examples.json").read_text())["columns"]
MAX_BATCH = int(os.environ.get("BENCH_BENTO_MAX_BATCH", "64"))
MAX_LATENCY_MS = int(os.environ.get("BENCH_BENTO_MAX_LATENCY_MS", "60000"))


def _patch_dataframe_batch_size() -> None:
    from bentoml._internal.runner.container import PandasDataFrameContainer

    def get_batch_size(cls: type, batch: pd.DataFrame | pd.Series, batch_dim: int) -> int:
        assert batch_dim == 0, "PandasDataFrameContainer does not support batch_dim other than 0"
        return int(batch.shape[0])

    probe = pd.DataFrame({"a": [1, 2]})
    if PandasDataFrameContainer.get_batch_size(probe, 0) != 2:  # only while the bug is there
        PandasDataFrameContainer.get_batch_size = classmethod(get_batch_size)  # type: ignore[assignment]


if not os.environ.get("BENCH_BENTO_NO_PATCH"):
    _patch_dataframe_batch_size()


@bentoml.service(name="credit", workers=1)
class Credit:
    def __init__(self) -> None:
        with (WORKDIR / "model.pkl").open("rb") as fh:
            self.model = pickle.load(fh)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def predict(
        self, data: Annotated[pd.DataFrame, DataframeSchema(orient="records", columns=COLUMNS)]
    ) -> np.ndarray:
        return self.model.predict_proba(data[COLUMNS])
