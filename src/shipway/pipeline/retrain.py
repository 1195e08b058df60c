"""Retraining that publishes candidates: train on the newest data, compare, let the policy decide.

One retraining, recorded as a pipeline run (trigger ``retrain:<reason>``, so it shows in
`shipway pipeline list`) with four stages:

1. **train**: the training command on the newest data file; the new version is the candidate
   and gets the alias ``challenger``;
2. **compare**: candidate and champion on the candidate's held-out rows
   (:mod:`shipway.pipeline.compare`); the JSON goes into the run's context, the HTML report
   next to the run's logs and into the artefact store;
3. **approval**: a better candidate asks the environment's approval policy (``automatic`` rules
   decide at once, ``manual`` waits for a person, ``none`` lets it through); one that is not
   better asks a person (under a manual policy) and the report says why it did not ship itself;
4. **promote**: a canary into the environment (:mod:`shipway.pipeline.promote`); on promotion
   the champion alias moves to the candidate.

A retraining waiting for a person continues with :func:`resume` once the approval is given.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shipway.blobs import put_blob
from shipway.client import Client
from shipway.errors import ConflictError, InvalidInputError, NotFoundError
from shipway.pipeline import records
from shipway.pipeline.compare import Comparison, compare
from shipway.pipeline.records import StageRecord
from shipway.pipeline.retrain_report import write_report
from shipway.pipeline.retrain_spec import RetrainSpec, load_retrain_spec
from shipway.pipeline.stages import Outcome
from shipway.records import _Record
from shipway.store.store import utcnow

if TYPE_CHECKING:
    pass

__all__ = ["CHALLENGER", "RetrainResult", "data_hash", "newest_data", "resume", "retrain"]

CHALLENGER = "challenger"
Decision = Literal["promoted", "waiting", "rejected", "kept", "failed"]
_STATUS: dict[Decision, records.RunStatus] = {
    "promoted": "succeeded",
    "kept": "succeeded",
    "rejected": "succeeded",
    "waiting": "waiting",
    "failed": "failed",
}


@dataclasses.dataclass(frozen=True)
class RetrainResult(_Record):
    run_id: str
    model: str
    trigger: str
    data: str
    decision: Decision
    """promoted; waiting (for a person); rejected (by an automatic policy); kept (the champion
    stays, nobody to ask); failed (training, evaluation or the canary)."""
    summary: str
    reasons: list[str]
    candidate: str | None = None
    comparison: dict[str, Any] | None = None
    approval: str | None = None
    report: str | None = None


def newest_data(pattern: str, directory: Path) -> Path:
    """The most recently modified file ``pattern`` (a path or glob, relative to ``directory``)
    matches."""
    found = [Path(p) for p in glob.glob(str(directory / pattern), recursive=True)]
    files = [p for p in found if p.is_file()]
    if not files:
        raise NotFoundError(
            f"No training data matches '{pattern}' in {directory}.",
            "Put the newest data there, or give a file with --data.",
        )
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def data_hash(pattern: str, directory: Path) -> str | None:
    """One sha256 over the names and contents of the files ``pattern`` matches (None: none)."""
    files = sorted(p for p in glob.glob(str(directory / pattern), recursive=True))
    files = [p for p in files if Path(p).is_file()]
    if not files:
        return None
    total = hashlib.sha256()
    for name in files:
        total.update(Path(name).relative_to(directory).as_posix().encode() + b"\0")
        with open(name, "rb") as f:
            total.update(hashlib.file_digest(f, "sha256").digest())
    return total.hexdigest()


def training_command(command: str, data: Path, directory: Path) -> str:
    """``command`` with the data file in place of ``{data}``, or with ``--data FILE`` added."""
    shown = data.relative_to(directory) if data.is_relative_to(directory) else data
    quoted = shlex.quote(str(shown))
    if "{data}" in command:
        return command.replace("{data}", quoted)
    return f"{command} --data {quoted}"


def retrain(
    model: str,
    *,
    data: Path | None = None,
    trigger: str = "manual",
    directory: Path,
    client: Client,
    say: Callable[[str], None] = lambda _: None,
    spec: RetrainSpec | None = None,
    context: dict[str, Any] | None = None,
) -> RetrainResult:
    """Retrain ``model`` as ``shipway.yaml`` in ``directory`` says; what happened and why.

    ``context`` goes into the record (a drift alert's result id, say)."""
    spec = spec or load_retrain_spec(directory)
    if model != spec.model:
        raise InvalidInputError(
            f"{spec.directory / 'shipway.yaml'} retrains '{spec.model}', not '{model}'."
        )
    source = (data if data.is_absolute() else Path.cwd() / data) if data else None
    source = source or newest_data(spec.data, spec.directory)
    if not source.is_file():
        raise NotFoundError(f"No training data at {source}.")
    from shipway.pipeline.runner import branch_of
    from shipway.tracking.capture import git_state

    git = git_state(spec.directory)
    values: dict[str, Any] = {
        **(context or {}),
        "data": str(source),
        "data_hash": data_hash(spec.data_pattern, spec.directory),
    }
    run = records.start_run(
        model, commit=git.get("commit"), branch=branch_of(spec.directory),
        dirty=bool(git.get("dirty")), trigger=f"retrain:{trigger}", context=values, client=client,
    )  # fmt: skip
    job = _Job(spec, run.id, trigger, values, client, say)
    try:
        return job.run(source)
    except BaseException as exc:  # record it, then let it go on up
        records.finish_run(run.id, "failed", f"stopped: {exc}", client=client)
        raise


def resume(
    run_id: str, *, directory: Path, client: Client, say: Callable[[str], None] = lambda _: None
) -> RetrainResult:
    """Promote the candidate of a retraining that waited for a person, now it is approved."""
    from shipway.governance.approvals import check_approved
    from shipway.registry.registry import get_model_version

    run = records.get_pipeline_run(run_id, client=client)
    if not run.trigger.startswith("retrain:") or run.status != "waiting":
        raise ConflictError(
            f"Pipeline run {run.id} is no retraining waiting for an approval ({run.status}).",
            "List retrainings with `shipway pipeline list`.",
        )
    spec = load_retrain_spec(directory)
    version = get_model_version(str(run.context["uri"]), client=client)
    approved = check_approved(spec.policy.environment, version.name, version.version,
                              client=client)  # fmt: skip
    records.resume_run(run.id, client=client)
    job = _Job(spec, run.id, run.trigger.removeprefix("retrain:"), dict(run.context), client, say)
    job.comparison = run.context.get("comparison")
    job.approval = approved.id if approved else None
    by = approved.decided_by if approved else "nobody (no policy)"
    try:
        job._save(
            "approval", "gate", (time.monotonic(), utcnow()), Outcome(True, f"approved by {by}")
        )
        return job.ship(version.uri, f"approved by {by}")
    except BaseException as exc:
        records.finish_run(run.id, "failed", f"stopped: {exc}", client=client)
        raise


class _Job:
    """One retraining's steps, each saved as a stage of its pipeline run."""

    def __init__(
        self,
        spec: RetrainSpec,
        run_id: str,
        trigger: str,
        values: dict[str, Any],
        client: Client,
        say: Callable[[str], None],
    ) -> None:
        self.spec, self.run_id, self.trigger = spec, run_id, trigger
        self.values, self.client, self.say = values, client, say
        self.folder = client.settings.home / "pipelines" / run_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.comparison: dict[str, Any] | None = None
        self.approval: str | None = None

    def run(self, source: Path) -> RetrainResult:
        outcome, started = self._train(source)
        self._save("train", "train", started, outcome, log=self.folder / "train.log")
        if not outcome.passed:
            tail = (self.folder / "train.log").read_text(errors="replace").splitlines()[-5:]
            return self._finish("failed", f"training failed: {outcome.detail}", tail)
        uri = str(self.values["uri"])
        from shipway.registry.registry import set_alias

        set_alias(uri, CHALLENGER, client=self.client)
        self.say(f"{uri} is the {CHALLENGER}")

        t0 = time.monotonic(), utcnow()
        found = compare(uri, self.spec, self.client)
        self.comparison = found.to_dict()
        self.values["comparison"] = self.comparison
        detail = _verdict(found)
        self._save("compare", "validate", t0, Outcome(True, detail, self._checks(found)))
        self.say(detail)
        if not found.better:
            return self._hold(uri, found.reasons)
        return self._approve_and_ship(uri)

    # -- steps ----------------------------------------------------------------------------

    def _train(self, source: Path) -> tuple[Outcome, tuple[float, Any]]:
        from shipway.pipeline import spec as s
        from shipway.pipeline.stages import StageContext, run_train

        started = time.monotonic(), utcnow()
        command = training_command(self.spec.command, source, self.spec.directory)
        stage = s.Stage(name="train", uses="train", options={"command": command})
        pipeline = s.PipelineSpec(
            model=self.spec.model, stages=[stage], directory=self.spec.directory
        )
        self.say(f"training on {source}: {command}")
        with (self.folder / "train.log").open("w") as log:
            ctx = StageContext(pipeline, stage, self.values, log, self.client, run_id=self.run_id)
            outcome = run_train(ctx, s.TrainOptions(command=command))
        self.say(outcome.detail or "")
        return outcome, started

    def _approve_and_ship(self, uri: str) -> RetrainResult:
        from shipway.governance.approvals import get_policy, request_approval

        env = self.spec.policy.environment
        policy = get_policy(env, client=self.client)
        t0 = time.monotonic(), utcnow()
        if policy.mode == "none":
            self._save("approval", "gate", t0, Outcome(True, f"{env} needs no approval"))
            return self.ship(uri, f"better than the {self.spec.champion}")
        asked = request_approval(
            uri, env, comment=f"retraining {self.run_id}: {self._headline()}", client=self.client
        )
        self.approval = asked.id
        if asked.status == "approved":
            by = f"{asked.decided_by} ({asked.policy})" if asked.policy else asked.decided_by
            self._save("approval", "gate", t0, Outcome(True, f"approved by {by}"))
            return self.ship(uri, f"better than the {self.spec.champion}, approved by {by}")
        if asked.status == "pending":
            why = f"{env} needs a person's approval ({policy.mode} policy)"
            return self._wait(uri, asked.id, t0, [why])
        failed = [r.get("detail") for r in asked.evidence.get("rules", []) if not r.get("passed")]
        reasons = [f"the {env} policy rejected it: {d}" for d in failed] or [
            f"the {env} policy rejected it"
        ]
        self._save("approval", "gate", t0, Outcome(False, reasons[0]))
        return self._finish("rejected", f"{uri} stays {CHALLENGER}: {reasons[0]}", reasons)

    def _hold(self, uri: str, reasons: list[str]) -> RetrainResult:
        """Not better by the policy: a person decides, where the environment has one."""
        from shipway.governance.approvals import get_policy, request_approval

        env = self.spec.policy.environment
        policy = get_policy(env, client=self.client)
        t0 = time.monotonic(), utcnow()
        if policy.mode == "manual":
            asked = request_approval(
                uri, env, client=self.client,
                comment=f"retraining {self.run_id} did not promote it: {reasons[0]}",
            )  # fmt: skip
            self.approval = asked.id
            return self._wait(uri, asked.id, t0, reasons)
        hint = f"to ship it anyway: `shipway rollout start {uri} --env {env}`"
        self._save("approval", "gate", t0, Outcome(True, f"not requested ({policy.mode} policy)"))
        return self._finish("kept", f"{uri} stays {CHALLENGER}: {reasons[0]}; {hint}", reasons)

    def _wait(
        self, uri: str, approval: str, t0: tuple[float, Any], why: list[str]
    ) -> RetrainResult:
        then = f"then `shipway retrain {self.spec.model} --resume {self.run_id}`"
        step = f"approval {approval} is pending: `shipway approvals approve {approval}`, {then}"
        self._save("approval", "gate", t0, Outcome(False, step, waiting=True))
        self.say(step)
        return self._finish("waiting", f"{uri} waits for a person: {step}", why)

    def ship(self, uri: str, because: str) -> RetrainResult:
        """The canary, and on promotion the champion alias."""
        from shipway.pipeline.promote import promote
        from shipway.pipeline.spec import PromoteOptions
        from shipway.registry.registry import delete_alias, set_alias

        p = self.spec.policy
        options = PromoteOptions(
            environment=p.environment, steps=p.steps, interval=p.interval,
            max_error_rate=p.max_error_rate, max_p99_ms=p.max_p99_ms,
            prometheus_url=p.prometheus_url,
        )  # fmt: skip
        t0 = time.monotonic(), utcnow()
        outcome = promote(uri, options, self.client, self.say)
        self._save("promote", "promote", t0, outcome)
        if not outcome.passed:
            return self._finish("failed", outcome.detail or "the canary failed", [])
        champion = set_alias(uri, self.spec.champion, client=self.client)
        delete_alias(champion.name, CHALLENGER, client=self.client)
        summary = f"{uri} is the {self.spec.champion} ({because}): {outcome.detail}"
        return self._finish("promoted", summary, [])

    # -- records ----------------------------------------------------------------------------

    def _finish(self, decision: Decision, summary: str, reasons: list[str]) -> RetrainResult:
        result = RetrainResult(
            run_id=self.run_id, model=self.spec.model, trigger=self.trigger,
            data=str(self.values.get("data")), decision=decision, summary=summary,
            reasons=reasons, candidate=self.values.get("uri"), comparison=self.comparison,
            approval=self.approval,
        )  # fmt: skip
        report = self.folder / "retrain.html"
        write_report(result.to_dict(), self.spec.policy.metric, report)
        result = dataclasses.replace(result, report=str(report))
        self.values.update(decision=decision, reasons=reasons, report=str(report))
        stored = {"retrain.html": put_blob(self.client, report)}
        self._save("report", "report", (time.monotonic(), utcnow()),
                   Outcome(True, summary), artifacts=stored)  # fmt: skip
        records.finish_run(self.run_id, _STATUS[decision], summary, client=self.client)
        return result

    def _headline(self) -> str:
        checks = (self.comparison or {}).get("checks", [])
        metric = [c["detail"] for c in checks if c["name"] == self.spec.policy.metric]
        return metric[0] if metric else "a retrained candidate"

    @staticmethod
    def _checks(found: Comparison) -> list[dict[str, Any]]:
        return [c.to_dict() for c in found.checks]

    def _save(
        self,
        name: str,
        kind: str,
        started: tuple[float, Any],
        outcome: Outcome,
        *,
        log: Path | None = None,
        artifacts: dict[str, str] | None = None,
    ) -> None:
        status: records.StageStatus = (
            "passed" if outcome.passed else ("waiting" if outcome.waiting else "failed")
        )
        record = StageRecord(
            name=name, kind=kind, status=status, started_at=started[1],
            seconds=round(time.monotonic() - started[0], 3), detail=outcome.detail,
            checks=outcome.checks, artifacts=artifacts or {},
            outputs={k: v for k, v in self.values.items() if isinstance(v, str | int | float)},
            log=put_blob(self.client, log) if log is not None and log.exists() else None,
        )  # fmt: skip
        records.save_stage(self.run_id, record, self.values, client=self.client)


def _verdict(found: Comparison) -> str:
    if found.better:
        return "better: " + "; ".join(c.detail for c in found.checks if c.name != "schema")
    return "not better: " + "; ".join(found.reasons)
