"""`reproduce()`: make a recorded run again from what it recorded, and compare the results.

    report = shipway.reproduce(run_id)        # `shipway runs reproduce RUN_ID`
    report.reproduced, report.differences, report.causes

The recorded commit is checked out into a temporary `git worktree`, so uncommitted changes of
a dirty run are deliberately left out. Each dataset logged with the `path` it was read from is
written back there (relative to the repository) from its stored copy, verified by content hash.
The recorded script then runs with the same arguments (so the same `--seed`, if it takes one)
from the same directory, with `python` (by default this interpreter) and this client's store
(or team server: the stored data, the models and the new run then all go through it; the code
is checked out on this machine), and its run is tagged `reproduces=<run id>`.

Every param, metric and dataset the run recorded is compared with the new run's, and each model
logged by both runs predicts on the run's evaluation data (else its training data): a metric or
an output further apart than `tolerance` is a difference. The environment (commit, Python,
packages, seed) is compared too; it does not decide the verdict, it explains it: a difference
comes with the likely causes the records point at, most likely first.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipway.blobs import get_blob
from shipway.client import Client, get_client
from shipway.errors import IntegrityError, InvalidInputError, NotFoundError, ShipwayError
from shipway.records import DatasetInfo, RunInfo, _Record
from shipway.tracking.compare import RESULTS, Check, compare, likely_causes, read_lock
from shipway.tracking.datasets import content_hash
from shipway.tracking.run import DATASET_PATH_TAG, REPRODUCES_ENV, get_run, list_runs

"""Through a team server, the reproduction is looked for among this many newest runs (one
page of the server's list)."""


@dataclass(frozen=True)
class ReproduceReport(_Record):
    """What `reproduce()` ran and found: `reproduced` unless a result check differs."""

    run_id: str
    new_run_id: str | None
    commit: str
    python: str
    command: list[str]
    """The script (relative to `workdir`) and its arguments, as recorded."""
    workdir: str
    """Where the command ran, relative to the repository root."""
    tolerance: float
    exit_code: int
    checks: list[Check]
    causes: list[str]
    """Why the results may differ, most likely first; shown as caveats when they do not."""
    restored: list[str]
    """Files written back into the worktree, relative to the repository root."""
    worktree: str | None = None
    """The worktree, when kept."""
    output: str = ""
    """The end of the script's output, when it failed."""

    @property
    def differences(self) -> list[Check]:
        return [c for c in self.checks if c.kind in RESULTS and c.verdict == "differs"]

    @property
    def reproduced(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "reproduced": self.reproduced}


def reproduce(
    run_id: str,
    *,
    tolerance: float = 1e-6,
    client: Client | None = None,
    python: str | Path | None = None,
    keep: bool = False,
) -> ReproduceReport:
    """Run `run_id` again from its recorded commit, data and command; compare the results."""
    client = client or get_client()
    if tolerance < 0:
        raise InvalidInputError(f"The tolerance must be 0 or more, not {tolerance}.")
    run = get_run(run_id, client=client)
    git = run.environment.get("git") or {}
    commit = git.get("commit")
    if not commit:
        raise InvalidInputError(
            f"Run {run.id[:12]} recorded no git commit (it did not run in a git working tree), "
            "so there is no code to reproduce it from.",
            "Commit the training code and train from the repository; those runs can be reproduced.",
        )
    repo = _repository(run, commit)
    root = Path(git.get("repository") or repo)
    argv, workdir = _entrypoint(run, root)
    python = str(python or sys.executable)
    if os.sep in python:  # a path, maybe relative to here: the script runs elsewhere
        python = os.path.abspath(python)
    tmp = Path(tempfile.mkdtemp(prefix="shipway-reproduce-"))
    worktree = tmp / (root.name or "worktree")
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(worktree), commit)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        restored, problems = _restore(run, root, worktree, client)
        before = set(_reproductions(run, client))
        proc = _run(python, argv, worktree / workdir, _child_env(run, client))
        new = _new_run(run, before, client)
        new_lock = read_lock(new, client) if new else _interpreter_lock(python)
        checks = compare(run, new, tolerance, client, read_lock(run, client), new_lock)
        failed = proc.returncode != 0 or new is None or new.status != "finished"
        failure = f"exit {proc.returncode}: {_tail(proc, 1) or 'no output'}" if failed else None
        causes = likely_causes(run, checks, problems, failure)
    finally:
        if not keep:
            _remove_worktree(repo, worktree)
            shutil.rmtree(tmp, ignore_errors=True)
    return ReproduceReport(
        run_id=run.id,
        new_run_id=new.id if new else None,
        commit=commit,
        python=python,
        command=argv,
        workdir=workdir,
        tolerance=tolerance,
        exit_code=proc.returncode,
        checks=checks,
        causes=causes,
        restored=restored,
        worktree=str(worktree) if keep else None,
        output=_tail(proc, 20) if failed else "",
    )


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ShipwayError(f"Could not run git in {repo}: {exc}.") from None
    if proc.returncode != 0:
        raise ShipwayError(
            f"git {' '.join(args[:2])} failed in {repo}: "
            + (proc.stderr.strip() or f"exit {proc.returncode}")
        )
    return proc.stdout


def _repository(run: RunInfo, commit: str) -> Path:
    """The recorded repository if it holds the commit, else the one around the current
    directory (another clone of the project)."""
    recorded = (run.environment.get("git") or {}).get("repository")
    candidates = [Path(recorded)] if recorded and Path(recorded).is_dir() else []
    try:
        here = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
        if here not in candidates:
            candidates.append(here)
    except ShipwayError:
        pass  # not in a git working tree
    for repo in candidates:
        try:
            _git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
        except ShipwayError:
            continue
        return repo
    where = " or ".join(str(c) for c in candidates) or "any repository here"
    gone = "" if not recorded or candidates[:1] == [Path(recorded)] else f" ({recorded} is gone)"
    raise NotFoundError(
        f"Commit {commit[:12]} of run {run.id[:12]} is not in {where}{gone}.",
        f"Fetch it into a clone of the project (git fetch origin {commit}) and run this from "
        "that clone.",
    )


def _entrypoint(run: RunInfo, root: Path) -> tuple[list[str], str]:
    """The recorded command (script path relative to the working directory, same arguments)
    and the working directory relative to the repository root ("." for the root)."""
    runtime = run.environment.get("runtime") or {}
    argv = [str(a) for a in runtime.get("argv") or []]
    cwd = Path(os.path.normpath(runtime.get("cwd") or root))
    script = Path(os.path.normpath(cwd / argv[0])) if argv else None
    if script is None or script.suffix != ".py" or root not in script.parents:
        raise InvalidInputError(
            f"Run {run.id[:12]} was not started by a Python script in {root} (its command was "
            f"{' '.join(argv) or 'not recorded'}), so Shipway cannot run it again.",
            "Train with `python path/to/train.py ...` from the repository.",
        )
    if cwd != root and root not in cwd.parents:
        cwd = root
    return [os.path.relpath(script, cwd), *argv[1:]], cwd.relative_to(root).as_posix()


def _restore(
    run: RunInfo, root: Path, worktree: Path, client: Client
) -> tuple[list[str], list[str]]:
    """Write each dataset logged with a path back there; (restored paths, problems)."""
    by_name = {d.name: d for d in run.datasets}
    restored: list[str] = []
    problems: list[str] = []
    for key, value in sorted(run.tags.items()):
        if not key.startswith(DATASET_PATH_TAG):
            continue
        name, source = key.removeprefix(DATASET_PATH_TAG), Path(value)
        dataset = by_name.get(name)
        if dataset is None:
            problems.append(f"'{name}' has a recorded path but no logged data")
        elif root not in source.parents:
            problems.append(f"'{name}' was read from {source}, outside the repository {root}")
        else:
            rel = source.relative_to(root)
            try:
                _write(dataset, worktree / rel, client)
            except (ShipwayError, OSError, ValueError) as exc:
                problems.append(f"'{name}' could not be written to {rel.as_posix()}: {exc}")
            else:
                restored.append(rel.as_posix())
    return restored, problems


def _write(dataset: DatasetInfo, dest: Path, client: Client) -> None:
    """The stored Parquet copy, verified by content hash, at `dest` as Parquet or CSV."""
    import pandas as pd

    data = get_blob(client, dataset.blob_digest)
    frame = pd.read_parquet(io.BytesIO(data))
    if content_hash(frame)[0] != dataset.content_hash:
        raise IntegrityError(f"its stored copy does not hash to {dataset.content_hash[:12]}")
    suffix = dest.suffix.lower()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".parquet", ".pq"):
        dest.write_bytes(data)
    elif suffix == ".csv":
        frame.to_csv(dest, index=False)
    else:
        raise InvalidInputError(f"Shipway restores Parquet and CSV files, not '{dest.name}'")


def _child_env(run: RunInfo, client: Client) -> dict[str, str]:
    """This environment, pointed at the client's store, asking for the `reproduces` tag and
    keeping the hash seed the run found."""
    env = client.child_env(**{REPRODUCES_ENV: run.id})
    found = (run.environment.get("seeds") or {}).get("found") or {}
    if "PYTHONHASHSEED" in found:
        env["PYTHONHASHSEED"] = str(found["PYTHONHASHSEED"])
    return env


def _run(
    python: str, argv: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [python, *argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise InvalidInputError(f"Cannot run {python} in {cwd}: {exc}.") from None


def _tail(proc: subprocess.CompletedProcess[str], lines: int) -> str:
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return "\n".join(text.splitlines()[-lines:])


def _reproductions(run: RunInfo, client: Client) -> list[str]:
    """The ids of the runs tagged `reproduces=<run id>` (here or through the server)."""
    return [r.id for r in list_runs(tag=f"reproduces={run.id}", limit=10_000, client=client)]


def _new_run(run: RunInfo, before: set[str], client: Client) -> RunInfo | None:
    """The first run tagged `reproduces=<run id>` that was not there before the launch,
    preferably in the same experiment. Comparing ids rather than start times keeps a server
    whose clock differs from this machine's out of it."""
    ids = [i for i in _reproductions(run, client) if i not in before]
    runs = sorted(
        (get_run(i, client=client) for i in ids),
        key=lambda r: (r.experiment != run.experiment, r.start_time),
    )
    return runs[0] if runs else None


def _interpreter_lock(python: str) -> dict[str, str]:
    """The packages installed for `python`, when the script recorded no run of its own."""
    code = "from shipway.tracking.capture import package_lock; print(*package_lock(), sep='\\n')"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split("==", 1) for line in proc.stdout.splitlines() if "==" in line)


def _remove_worktree(repo: Path, worktree: Path) -> None:
    try:
        _git(repo, "worktree", "remove", "--force", str(worktree))
    except ShipwayError:
        shutil.rmtree(worktree, ignore_errors=True)
        with contextlib.suppress(ShipwayError):
            _git(repo, "worktree", "prune")
