"""scikit-learn models, persisted with skops: loading never executes arbitrary code.

skops refuses types it does not trust by default (for example the tree predictors inside
HistGradientBoosting). At save time we record exactly those types; at load time we trust them
only if the file is byte-for-byte the one we saved (its digest is checked by the artefact store)
and every one of them lives in a library we ship with, never an arbitrary module.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from shipway.errors import UntrustedModelError

FILE = "model.skops"
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")


def is_sklearn_model(model: object) -> bool:
    return any(c.__module__.startswith("sklearn.") for c in type(model).__mro__)


def save(model: object, directory: Path) -> dict[str, Any]:
    import skops.io as sio

    path = directory / FILE
    sio.dump(model, path)
    untrusted = sorted(sio.get_untrusted_types(file=path))
    return {"file": FILE, "trusted_types": untrusted}


def requirements() -> list[str]:
    names = ["scikit-learn", "skops", "numpy", "scipy", "pandas"]
    return [f"{n}=={metadata.version(n)}" for n in names]


def load(directory: Path, config: dict[str, Any]) -> Any:
    import skops.io as sio

    path = directory / config.get("file", FILE)
    try:
        found = set(sio.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises zipfile/json/key errors on garbage
        raise UntrustedModelError(
            f"{path.name} is not a valid skops model file ({type(exc).__name__}: {exc}).",
            "Register the model again with shipway.register_model().",
        ) from exc
    recorded = set(config.get("trusted_types", []))
    unexpected = sorted(found - recorded)
    foreign = sorted(t for t in found if not t.startswith(TRUSTED_PREFIXES))
    if unexpected or foreign:
        bad = ", ".join(sorted(set(unexpected) | set(foreign)))
        raise UntrustedModelError(
            f"{path.name} holds untrusted types: {bad}; refusing to load it.",
            "Only scikit-learn, numpy and scipy types recorded when the model was saved are "
            "trusted.",
        )
    try:
        return sio.load(path, trusted=sorted(found))
    except Exception as exc:
        raise UntrustedModelError(
            f"{path.name} could not be loaded by skops ({type(exc).__name__}: {exc})."
        ) from exc
