"""Model classes for test_flavors/test_registry: they must live in a real, importable module file.

The python-function flavour stores a model class as the source of its module file, so this
file is copied into the stored model and executed again at load time: keep it self-contained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sklearn.preprocessing import StandardScaler

from shipway import PythonModel

SETSTATE_CALLS: list[str] = []
"""Appended to whenever a CustomScaler is rebuilt from a file: a refused load leaves it empty."""


class CustomScaler(StandardScaler):
    """A scikit-learn estimator subclass defined outside scikit-learn: skops must not trust it."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        SETSTATE_CALLS.append(type(self).__qualname__)
        super().__setstate__(state)


class ThresholdModel(PythonModel):
    """Labels rows 'high'/'low' from `x * factor + offset` against `threshold`.

    `factor` and `threshold` are constructor params; `offset` is read from the artefact file
    named "offset" by `load_context`, so every part of the pyfunc contract shows in the output.
    """

    offset = 0.0

    def load_context(self, artifacts: dict[str, Path]) -> None:
        self.offset = float(Path(artifacts["offset"]).read_text())

    def preprocess(self, data: Any) -> Any:
        return data["x"].to_numpy(dtype=float) * float(self.params["factor"])

    def predict(self, data: Any) -> Any:
        return data + self.offset

    def postprocess(self, predictions: Any) -> Any:
        threshold = float(self.params["threshold"])
        return ["high" if p >= threshold else "low" for p in predictions]
