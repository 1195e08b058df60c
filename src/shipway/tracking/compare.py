"""Comparing a run with its reproduction: the results within a tolerance, the environment to
explain a difference.

Results are the run's status, params (exactly), metrics (absolute difference), datasets (content
hash) and each model's outputs on the run's evaluation data (else its training data): the
largest absolute difference between the two models' probabilities (or predictions), or, for
outputs that are not numbers, how many of them differ. Identical model files need no prediction.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from shipway.blobs import get_blob
from shipway.client import Client
from shipway.errors import ShipwayError
from shipway.records import RunInfo, _Record
from shipway.tracking.run import DATASET_PATH_TAG

RESULTS = ("run", "param", "metric", "dataset", "output")
"""Kinds of check that decide whether a run reproduced; "environment" checks explain."""
MAX_ROWS = 10_000
"""Rows of the evaluation data the models predict on."""


@dataclass(frozen=True)
class Check(_Record):
    """A recorded value against the reproduction's, with a verdict: "same", "differs", or
    "unchecked" when they could not be compared (`detail` says why). `kind` is one of
    `RESULTS` or "environment" (commit, python, packages, seed)."""

    kind: str
    name: str
    recorded: Any
    new: Any
    difference: float | None = None
    verdict: str = "same"
    detail: str | None = None


def compare(
    run: RunInfo,
    new: RunInfo | None,
    tolerance: float,
    client: Client,
    recorded_lock: dict[str, str],
    new_lock: dict[str, str],
) -> list[Check]:
    status = new.status if new else None
    checks = [Check("run", "status", run.status, status, verdict=_same(run.status == status))]
    if new is not None:
        checks += _params(run, new) + _metrics(run, new, tolerance) + _datasets(run, new)
        checks += _outputs(run, new, tolerance, client)
    return checks + _environment(run, new, recorded_lock, new_lock)


def _same(equal: bool) -> str:
    return "same" if equal else "differs"


def _params(run: RunInfo, new: RunInfo) -> list[Check]:
    checks = []
    for key in sorted(run.params.keys() | new.params.keys()):
        a, b = run.params.get(key), new.params.get(key)
        checks.append(Check("param", key, a, b, None, _same(a == b)))
    return checks


def _metrics(run: RunInfo, new: RunInfo, tolerance: float) -> list[Check]:
    checks = []
    for key in sorted(run.metrics.keys() | new.metrics.keys()):
        a, b = run.metrics.get(key), new.metrics.get(key)
        gap = _gap(a, b) if a is not None and b is not None else None
        checks.append(Check("metric", key, a, b, gap, _same(gap is not None and gap <= tolerance)))
    return checks


def _gap(a: float, b: float) -> float:
    if a == b:
        return 0.0
    gap = abs(a - b)
    return gap if gap == gap else math.inf  # NaN: not comparable, so not within tolerance


def _datasets(run: RunInfo, new: RunInfo) -> list[Check]:
    recorded = {d.name: d.content_hash for d in run.datasets}
    made = {d.name: d.content_hash for d in new.datasets}
    checks = []
    for name in sorted(recorded.keys() | made.keys()):
        a, b = recorded.get(name), made.get(name)
        checks.append(Check("dataset", name, _short(a), _short(b), None, _same(a == b)))
    return checks


def _short(digest: str | None) -> str | None:
    return digest[:12] if digest else None


def _outputs(run: RunInfo, new: RunInfo, tolerance: float, client: Client) -> list[Check]:
    frame, source = _evaluation_data(run, client)
    checks = []
    for name, digest in sorted(run.models.items()):
        other = new.models.get(name)
        label = f"{name} on {source}" if source else name
        row = ("output", label, _short(digest), _short(other))
        if other is None:
            checks.append(Check(*row, None, "differs", "the new run logged no such model"))
        elif other == digest:
            checks.append(Check(*row, 0.0, "same", "identical model files"))
        elif frame is None:
            checks.append(Check(*row, None, "unchecked", "the run logged no data to predict on"))
        else:
            try:
                gap = _outputs_gap(_load(digest, client), _load(other, client), frame)
            except Exception as exc:  # a model may fail to load or predict in any way
                checks.append(Check(*row, None, "unchecked", f"could not predict: {exc}"))
            else:
                checks.append(Check(*row, gap, _same(gap <= tolerance)))
    return checks


def _load(manifest_digest: str, client: Client) -> Any:
    """A logged model, from the client's artefact store, or through the team server into this
    machine's blob cache (where `load_model` keeps what it downloads)."""
    from shipway.flavors import load_from_manifest

    if client.remote:
        from shipway.artifacts import ArtifactStore
        from shipway.remote.registry import fetch_model

        cache = ArtifactStore((client.settings.home / "cache" / "blobs").as_uri())
        fetch_model(client.remote, cache, manifest_digest)
        return load_from_manifest(cache, manifest_digest)
    return load_from_manifest(client.artifacts, manifest_digest)


def _evaluation_data(run: RunInfo, client: Client) -> tuple[Any, str | None]:
    """The run's evaluation dataset, else its training dataset, else any (first rows)."""
    import pandas as pd

    by_role = {d.role: d for d in run.datasets}
    dataset = by_role.get("evaluation") or by_role.get("training")
    dataset = dataset or (run.datasets[0] if run.datasets else None)
    if dataset is None:
        return None, None
    data = get_blob(client, dataset.blob_digest)
    frame = pd.read_parquet(io.BytesIO(data)).head(MAX_ROWS)
    return frame, f"'{dataset.name}' ({len(frame)} rows)"


def _outputs_gap(recorded: Any, new: Any, frame: Any) -> float:
    import numpy as np

    def outputs(model: Any) -> Any:
        inputs = [c.name for c in model.signature.inputs] if model.signature else list(frame)
        data = frame[inputs]
        return np.asarray(model.predict_proba(data) if model.has_proba else model.predict(data))

    a, b = outputs(recorded), outputs(new)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    try:
        x, y = a.astype("float64"), b.astype("float64")
    except (TypeError, ValueError):  # labels, not numbers: how many differ
        return float(np.count_nonzero(a != b))
    gaps = np.where(np.isnan(x) & np.isnan(y), 0.0, np.abs(x - y))
    return float(np.nan_to_num(gaps, nan=math.inf).max())


def _environment(
    run: RunInfo, new: RunInfo | None, recorded_lock: dict[str, str], new_lock: dict[str, str]
) -> list[Check]:
    env, made = run.environment, new.environment if new else {}
    git = env.get("git") or {}
    commit = _short(git.get("commit")) or "-"
    new_commit = _short((made.get("git") or {}).get("commit"))
    dirty = bool(git.get("dirty"))
    shown = commit + (" + uncommitted changes" if dirty else "")
    same_code = not dirty and new_commit in (None, commit)
    checks = [Check("environment", "commit", shown, new_commit, None, _same(same_code))]
    if new is not None:
        py = (env.get("runtime") or {}).get("python")
        new_py = (made.get("runtime") or {}).get("python")
        checks.append(Check("environment", "python", py, new_py, None, _same(py == new_py)))
    if recorded_lock and new_lock:
        changes = package_changes(recorded_lock, new_lock)
        locked, installed = f"{len(recorded_lock)} locked", f"{len(new_lock)} installed"
        verdict, detail = _same(not changes), _listed(changes) or None
        checks.append(
            Check("environment", "packages", locked, installed, len(changes), verdict, detail)
        )
    seed, new_seed = _seed(env), _seed(made)
    if seed is None:
        why = "the run recorded no seed"
        checks.append(Check("environment", "seed", None, new_seed, None, "unchecked", why))
    else:
        checks.append(Check("environment", "seed", seed, new_seed, None, _same(seed == new_seed)))
    return checks


def _seed(environment: dict[str, Any]) -> Any:
    return ((environment.get("seeds") or {}).get("set") or {}).get("seed")


def read_lock(run: RunInfo, client: Client) -> dict[str, str]:
    """The run's package lock as {name: version}; empty when it is not stored."""
    digest = (run.environment.get("packages") or {}).get("lock_digest")
    if not digest:
        return {}
    try:
        text = get_blob(client, digest).decode()
    except (ShipwayError, OSError, UnicodeDecodeError):
        return {}
    return dict(line.split("==", 1) for line in text.splitlines() if "==" in line)


def package_changes(recorded: dict[str, str], new: dict[str, str]) -> list[str]:
    """`name old -> new`, `+name==version` (added), `-name==version` (gone)."""
    changes = []
    for name in sorted(recorded.keys() | new.keys(), key=str.lower):
        a, b = recorded.get(name), new.get(name)
        if a == b:
            continue
        changes.append(
            f"{name} {a} -> {b}" if a and b else f"+{name}=={b}" if b else f"-{name}=={a}"
        )
    return changes


def _listed(items: list[str], limit: int = 8) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def likely_causes(
    run: RunInfo, checks: list[Check], problems: list[str], failure: str | None
) -> list[str]:
    """What the records say may have made the results differ, most likely first."""
    causes = [f"the script failed ({failure})"] if failure else []
    causes += [f"the data could not be restored: {p}" for p in problems]
    with_path = any(k.startswith(DATASET_PATH_TAG) for k in run.tags)
    if failure and run.datasets and not with_path:
        causes.append(
            "the data could not be restored: no dataset was logged with the path it was read "
            "from (run.log_dataset(df, name, path=...))"
        )
    env = run.environment
    git = env.get("git") or {}
    if git.get("dirty"):
        untracked = git.get("untracked_files")
        causes.append(
            f"the tree was dirty when recorded (diff digest {_short(git.get('diff_digest'))}"
            + (f", {untracked} untracked files" if untracked else "")
            + f"): those changes are not in commit {_short(git.get('commit'))}"
        )
    differs = {c.name: c for c in checks if c.kind == "environment" and c.verdict == "differs"}
    seeds = env.get("seeds") or {}
    if "set" not in seeds:
        found = {k: v for k, v in (seeds.get("found") or {}).items() if k != "PYTHONHASHSEED"}
        causes.append(
            "no seed was recorded: the run called neither start_run(seed=...) nor "
            "run.set_seed()" + (f" (its models fixed {found})" if found else "")
        )
    elif "seed" in differs:
        causes.append(f"the seed differs: {differs['seed'].recorded} -> {differs['seed'].new}")
    if "packages" in differs:
        causes.append(
            f"packages differ from the recorded lock (not pinned): {differs['packages'].detail}"
        )
    if "python" in differs:
        causes.append(f"Python differs: {differs['python'].recorded} -> {differs['python'].new}")
    data = [
        c.name + ("" if f"{DATASET_PATH_TAG}{c.name}" in run.tags else " (made or read anew)")
        for c in checks
        if c.kind == "dataset" and c.verdict == "differs"
    ]
    if data:
        causes.append(f"the data differs: {', '.join(data)}")
    if not causes and any(c.kind in RESULTS and c.verdict == "differs" for c in checks):
        causes.append(
            "nothing recorded explains it: look for nondeterminism the seed does not cover "
            "(threads, GPU kernels, unordered iteration) or a tolerance tighter than the "
            "arithmetic"
        )
    return causes
