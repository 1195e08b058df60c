"""A model as stored: a manifest blob that names its flavour, signature and file blobs.

The manifest's digest is the model's identity; two saves of the same bytes are one model.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from shipway.artifacts import ArtifactStore
from shipway.errors import InvalidInputError, UntrustedModelError
from shipway.flavors import pyfunc, sklearn
from shipway.records import LoggedModel
from shipway.types import Signature, infer_signature

MANIFEST_FORMAT = 1


def _as_frame(data: Any) -> Any:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict | list):
        return pd.DataFrame(data)
    raise InvalidInputError(
        f"Expected a pandas DataFrame, a list of records or a dict of columns, got "
        f"{type(data).__name__}."
    )


class LoadedModel:
    """A model ready to predict, whatever its flavour."""

    def __init__(self, flavor: str, impl: Any, manifest: dict[str, Any], workdir: Any) -> None:
        self.flavor = flavor
        self.impl = impl
        self.manifest = manifest
        raw = manifest.get("signature")
        self.signature: Signature | None = Signature.from_dict(raw) if raw else None
        self._workdir = workdir  # keeps pyfunc code and artefact files alive with the model

    def predict(self, data: Any) -> Any:
        frame = _as_frame(data)
        if isinstance(self.impl, pyfunc.PythonModel):
            return self.impl.postprocess(self.impl.predict(self.impl.preprocess(frame)))
        return self.impl.predict(frame)

    @property
    def has_proba(self) -> bool:
        return callable(getattr(self.impl, "predict_proba", None))

    def predict_proba(self, data: Any) -> Any:
        if not self.has_proba:
            raise InvalidInputError(f"This {self.flavor} model does not predict probabilities.")
        return self.impl.predict_proba(_as_frame(data))


class _PyfuncPredictor:
    """Lets signature inference call a python-function model the way serving will."""

    def __init__(self, model: pyfunc.PythonModel) -> None:
        self.model = model

    def predict(self, data: Any) -> Any:
        return self.model.postprocess(self.model.predict(self.model.preprocess(data)))


def save_to_store(
    store: ArtifactStore,
    model: object,
    *,
    input_example: Any = None,
    requirements: list[str] | None = None,
    artifacts: dict[str, str | Path] | None = None,
    signature: Signature | None = None,
) -> LoggedModel:
    """Save `model` to the artefact store and return its manifest digest.

    The signature is `signature` when given, else inferred from `input_example`.
    """
    with tempfile.TemporaryDirectory(prefix="shipway-save-") as tmp:
        directory = Path(tmp)
        if sklearn.is_sklearn_model(model):
            flavor, config, reqs, predictor = (
                "sklearn",
                sklearn.save(model, directory),
                sklearn.requirements(),
                model,
            )
        elif isinstance(model, pyfunc.PythonModel):
            flavor, config = "python", pyfunc.save(model, directory)
            reqs = [*type(model).requirements]
            predictor = _PyfuncPredictor(model)
        else:
            raise InvalidInputError(
                f"Cannot save a {type(model).__module__}.{type(model).__qualname__}.",
                "Shipway saves scikit-learn estimators, and shipway.PythonModel subclasses for "
                "anything else.",
            )
        described = signature.to_dict() if signature is not None else None
        if described is None and input_example is not None:
            try:
                described = infer_signature(_as_frame(input_example), predictor).to_dict()
            except ValueError as exc:
                raise InvalidInputError(f"Cannot infer the model signature: {exc}") from exc
        files = {
            p.relative_to(directory).as_posix(): store.put_file(p)
            for p in sorted(directory.rglob("*"))
            if p.is_file()
        }
        extra: dict[str, str] = {}
        for name, path in (artifacts or {}).items():
            if not Path(path).is_file():
                raise InvalidInputError(f"Model artefact '{name}': no file at {path}.")
            extra[name] = store.put_file(path)
    manifest = {
        "format": MANIFEST_FORMAT,
        "flavor": flavor,
        "config": config,
        "files": files,
        "artifacts": extra,
        "signature": described,
        "requirements": sorted(set(reqs + list(requirements or []))),
        "python": platform.python_version(),
    }
    digest = store.put_bytes(json.dumps(manifest, sort_keys=True, indent=1).encode())
    return LoggedModel(manifest_digest=digest, flavor=flavor, signature=described)


def read_manifest(store: ArtifactStore, digest: str) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(store.get_bytes(digest))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UntrustedModelError(f"Model manifest {digest[:12]}... is not valid JSON.") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise UntrustedModelError(
            f"Model manifest {digest[:12]}... has format {manifest.get('format')!r}; this "
            f"Shipway reads format {MANIFEST_FORMAT}.",
            "Upgrade Shipway.",
        )
    return manifest


def load_from_manifest(store: ArtifactStore, digest: str) -> LoadedModel:
    """Fetch every file of the model (each digest verified) and load it."""
    manifest = read_manifest(store, digest)
    workdir = _Workdir()
    root = Path(workdir.name)
    try:
        for rel, file_digest in manifest["files"].items():
            store.download(file_digest, root / rel)
        artifacts = {
            name: store.download(d, root / "artifacts" / name)
            for name, d in manifest.get("artifacts", {}).items()
        }
        flavor = manifest["flavor"]
        impl: Any
        if flavor == "sklearn":
            impl = sklearn.load(root, manifest["config"])
        elif flavor == "python":
            impl = pyfunc.load(root, manifest["config"], artifacts)
        else:
            raise UntrustedModelError(f"Unknown model flavour '{flavor}'.", "Upgrade Shipway.")
    except BaseException:
        workdir.cleanup()  # a model that failed to load leaves no files behind
        raise
    return LoadedModel(flavor, impl, manifest, workdir)


class _Workdir:
    """A temporary directory removed with the model that uses it.

    Unlike `tempfile.TemporaryDirectory`, dropping it without calling `cleanup()` is the normal
    case here (a loaded model has no close), so it is removed silently, without a
    ResourceWarning.
    """

    def __init__(self) -> None:
        self.name = tempfile.mkdtemp(prefix="shipway-model-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.name, ignore_errors=True)

    def cleanup(self) -> None:
        self._finalizer()
