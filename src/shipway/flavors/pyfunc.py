"""The generic "python function" flavour: a class with `predict`, stored as source, never pickled.

The class's module file is copied into the model and imported at load time; the model is
rebuilt as `cls(**params)` from JSON parameters and then handed its artefact files. A class
defined in `__main__` is refused, because importing a script would run it.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar

from shipway.errors import InvalidInputError, UntrustedModelError


class PythonModel:
    """Subclass this: implement `predict`, optionally `preprocess`, `postprocess`, `load_context`.

    Keyword arguments given to the constructor are stored (as JSON) and passed again on load.
    """

    requirements: ClassVar[list[str]] = []

    def __init__(self, **params: Any) -> None:
        self.params = params

    def load_context(self, artifacts: dict[str, Path]) -> None:
        """Called after loading with the local paths of the model's artefact files."""

    def preprocess(self, data: Any) -> Any:
        return data

    def predict(self, data: Any) -> Any:
        raise NotImplementedError

    def postprocess(self, predictions: Any) -> Any:
        return predictions


def save(model: PythonModel, directory: Path) -> dict[str, Any]:
    cls = type(model)
    if cls.__module__ == "__main__":
        raise InvalidInputError(
            f"{cls.__name__} is defined in the script being run (__main__).",
            "Move the class into its own module file and import it, so it can be loaded again.",
        )
    source = inspect.getsourcefile(cls)
    if source is None:
        raise InvalidInputError(f"Cannot find the source file of {cls.__qualname__}.")
    code = directory / "code"
    code.mkdir()
    module_file = f"{cls.__module__.rsplit('.', 1)[-1]}.py"
    shutil.copyfile(source, code / module_file)
    try:
        params = json.loads(json.dumps(getattr(model, "params", {})))
    except TypeError as exc:
        raise InvalidInputError(
            f"The parameters of {cls.__name__} must be JSON values: {exc}.",
            "Pass large or binary state as artifacts={'name': path} instead.",
        ) from exc
    return {"module_file": f"code/{module_file}", "class": cls.__qualname__, "params": params}


def load(directory: Path, config: dict[str, Any], artifacts: dict[str, Path]) -> PythonModel:
    path = directory / config["module_file"]
    name = f"shipway_model_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UntrustedModelError(f"Cannot import the model code at {path}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    obj: Any = module
    for part in config["class"].split("."):
        obj = getattr(obj, part)
    model = obj(**config.get("params", {}))
    model.load_context(artifacts)
    return model  # type: ignore[no-any-return]
