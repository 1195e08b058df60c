"""A python-function model that answers every row with one fixed answer, at no cost.

Served by Shipway beside the real model, it shows what the server itself costs per request
(parsing, validation against the same 19-column signature, batching, the prediction log,
metrics, the answer), apart from the model's own time: the row to hold against the HTTP floor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import shipway


class ConstantModel(shipway.PythonModel):
    """`label` and `proba` (one probability per class) for every row."""

    def predict(self, data: Any) -> Any:
        return np.full(len(data), self.params["label"])

    def predict_proba(self, data: Any) -> Any:
        return np.tile(np.asarray(self.params["proba"], dtype=float), (len(data), 1))
