"""The built-in stages and shell stages: each takes the stage's context and returns an Outcome.

Stages hand things on through ``ctx.values``: ``train`` sets the candidate (``model``,
``version``, ``uri``), ``build`` the ``image``, ``push`` the ``pushed`` reference, ``deploy``
the ``url`` of an environment. A shell stage sees them as ``SHIPWAY_PIPELINE_*`` variables and
may add its own by writing ``key=value`` lines to the file ``$SHIPWAY_OUTPUTS`` (as GitHub
Actions' ``$GITHUB_OUTPUT``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from shipway.client import Client
from shipway.errors import NotFoundError, ShipwayError
from shipway.pipeline import spec as s

__all__ = ["BUILTIN_RUNNERS", "Outcome", "StageContext", "run_stage"]

@dataclasses.dataclass
class Outcome:
    passed: bool
    detail: str | None = None
    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    waiting: bool = False


@dataclasses.dataclass
class StageContext:
    spec: s.PipelineSpec
    stage: s.Stage
    values: dict[str, Any]
    log: IO[str]
    client: Client
    deadline: float | None = None
    run_id: str | None = None
    outputs_file: Path | None = None

    @property
    def directory(self) -> Path:
        return self.spec.directory

    def say(self, line: str) -> None:
        self.log.write(line.rstrip("\n") + "\n")
        self.log.flush()

    def environ(self) -> dict[str, str]:
        env = self.client.child_env(**self.stage.env)
        for key, value in self.values.items():
            env[f"SHIPWAY_PIPELINE_{key.upper()}"] = str(value)
        if self.run_id:
            env["SHIPWAY_PIPELINE_RUN"] = self.run_id
        if self.outputs_file is not None:
            env["SHIPWAY_OUTPUTS"] = str(self.outputs_file)
        return env

    def sh(self, command: str | list[str]) -> int:
        """Run ``command`` in the project folder, its output into the stage's log; the exit
        code. Past the stage's deadline the whole process group is killed (exit code 124)."""
        self.say(f"$ {command if isinstance(command, str) else ' '.join(command)}")
        proc = subprocess.Popen(
            command,
            shell=isinstance(command, str),
            cwd=self.directory,
            env=self.environ(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a timeout kills the command's children too
        )
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.say("(killed: the stage ran past its timeout)")
            return 124
        except BaseException:  # Ctrl-C: take the command down with us
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise

    def candidate(self) -> str:
        """The version the pipeline works on: what `train` made in this pipeline run, or (a
        stage run on its own) the newest version of the pipeline's model."""
        if "uri" in self.values:
            return str(self.values["uri"])
        from shipway.registry.registry import list_versions

        versions = list_versions(self.spec.model, client=self.client)
        if not versions:
            raise NotFoundError(
                f"No version of '{self.spec.model}' to work on.",
                "Run the train stage first: `shipway pipeline run --to train`.",
            )
        newest = versions[-1]
        self.say(f"no version from a train stage in this run: using the newest, {newest.uri}")
        self.values.update(model=newest.name, version=newest.version, uri=newest.uri)
        return newest.uri


def _command(ctx: StageContext, command: str | list[str], what: str) -> Outcome:
    code = ctx.sh(command)
    return Outcome(code == 0, None if code == 0 else f"{what} exited with {code}")


# -- stages -----------------------------------------------------------------------------------


def run_shell(ctx: StageContext, _: Any) -> Outcome:
    assert ctx.stage.run is not None
    outcome = _command(ctx, ctx.stage.run, "the command")
    if ctx.outputs_file is not None and ctx.outputs_file.exists():
        for line in ctx.outputs_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip():
                ctx.values[key.strip()] = value.strip()
    return outcome


def run_test(ctx: StageContext, o: s.TestOptions) -> Outcome:
    return _command(ctx, o.command, "the tests")


def run_lint(ctx: StageContext, o: s.LintOptions) -> Outcome:
    code = ctx.sh([sys.executable, "-m", "ruff", "check", *o.paths])
    return Outcome(code == 0, None if code == 0 else "ruff found problems (see the log)")


def run_train(ctx: StageContext, o: s.TrainOptions) -> Outcome:
    from shipway.registry.registry import list_versions

    before = {v.version for v in _versions(ctx.spec.model, ctx.client)}
    code = ctx.sh(o.command)
    if code != 0:
        return Outcome(False, f"the training command exited with {code}")
    made = [v for v in list_versions(ctx.spec.model, client=ctx.client) if v.version not in before]
    if not made:
        return Outcome(
            False,
            f"the training command registered no new version of '{ctx.spec.model}' "
            "(it should call shipway.register_model)",
        )
    version = made[-1]
    ctx.values.update(model=version.name, version=version.version, uri=version.uri)
    run = f", run {version.run_id[:12]}" if version.run_id else ""
    return Outcome(True, f"registered {version.uri}{run}")


def _versions(model: str, client: Client) -> list[Any]:
    from shipway.registry.registry import list_versions

    try:
        return list_versions(model, client=client)
    except NotFoundError:  # the first training registers the model
        return []


def run_validate(ctx: StageContext, o: s.ValidateOptions) -> Outcome:
    from shipway.pipeline.validate import validate

    uri = ctx.candidate()
    checks, evaluation = validate(uri, o, ctx.directory, ctx.client)
    for check in checks:
        ctx.say(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}")
    if evaluation is not None:
        ctx.values["metrics"] = json.dumps(evaluation.metrics, sort_keys=True)
    failed = [c for c in checks if not c.passed]
    detail = failed[0].detail if failed else f"{len(checks) - 1} checks passed for {uri}"
    if len(failed) > 1:
        detail += f" (and {len(failed) - 1} more failed check(s))"
    return Outcome(not failed, detail, [c.to_dict() for c in checks])


def run_build(ctx: StageContext, o: s.BuildOptions) -> Outcome:
    from shipway.packaging.build import build_image
    from shipway.packaging.engines import EngineConfig, find_engine

    uri = ctx.candidate()
    engine = find_engine(EngineConfig.load(ctx.directory, name=o.engine))
    ctx.say(f"building {uri} with {engine.name}")
    if o.base:
        result = build_image(uri, engine, base_image=o.base, client=ctx.client)
    else:
        result = build_image(uri, engine, client=ctx.client)
    ctx.values["image"] = result.image.tag
    size = result.image.size_bytes / 1e6
    return Outcome(True, f"built {result.image.tag} ({size:.0f} MB) in {result.seconds:.1f} s")


def run_push(ctx: StageContext, o: s.PushOptions) -> Outcome:
    from shipway.packaging.build import push_built, push_model_beside
    from shipway.packaging.engines import EngineConfig, find_engine
    from shipway.packaging.images import list_images

    uri = ctx.candidate()
    engine = find_engine(EngineConfig.load(ctx.directory))
    wanted = ctx.values.get("image")
    images = [i for i in list_images(uri, client=ctx.client) if wanted in (None, i.tag)]
    if not images:
        return Outcome(False, f"no image of {uri} was built: run the build stage first")
    info = push_built(uri, engine, images[-1], o.registry, insecure=o.insecure, client=ctx.client)
    ctx.values["pushed"] = str(info.pushed_ref)
    model = push_model_beside(uri, str(info.pushed_ref), insecure=o.insecure, client=ctx.client)
    ctx.values["pushed_model"] = model
    beside = f"its SBOM and the model ({model[:19]}) beside it"
    return Outcome(True, f"pushed {info.pushed_ref}, {beside}")


def run_deploy(ctx: StageContext, o: s.DeployOptions) -> Outcome:
    uri = ctx.candidate()
    if o.target == "kubernetes":
        return _command(
            ctx,
            [sys.executable, "-m", "shipway.cli", "k8s", "apply", uri, "--env", o.environment],
            "shipway k8s apply",
        )
    from shipway.deploy.control import deploy

    info = deploy(
        uri,
        o.environment,
        replicas=o.replicas,
        port=o.port,
        runtime=o.runtime,
        image=ctx.values.get("image") if o.runtime == "container" else None,
        client=ctx.client,
        progress=ctx.say,
    )
    ctx.values[f"url_{o.environment}"] = info.url
    return Outcome(True, f"{uri} serves {o.environment} at {info.url}")


def run_smoke(ctx: StageContext, o: s.SmokeOptions) -> Outcome:
    from shipway.pipeline.smoke import smoke

    checks = smoke(o, ctx.client, ctx.say)
    failed = [c for c in checks if not c["passed"]]
    detail = failed[0]["detail"] if failed else "; ".join(c["detail"] for c in checks)
    return Outcome(not failed, detail, checks)


def run_gate(ctx: StageContext, o: s.GateOptions) -> Outcome:
    from shipway.pipeline.gate import gate

    return gate(ctx.candidate(), o, ctx.client, ctx.say, ctx.deadline)


def run_promote(ctx: StageContext, o: s.PromoteOptions) -> Outcome:
    from shipway.pipeline.promote import promote

    return promote(ctx.candidate(), o, ctx.client, ctx.say)


def run_security(ctx: StageContext, o: s.SecurityOptions) -> Outcome:
    from shipway.pipeline.security import scan

    checks = scan(o, ctx.directory, ctx.sh, ctx.say)
    failed = [c for c in checks if not c["passed"]]
    detail = failed[0]["detail"] if failed else "; ".join(c["detail"] for c in checks)
    return Outcome(not failed, detail, checks)


BUILTIN_RUNNERS: dict[str, Callable[[StageContext, Any], Outcome]] = {
    "run": run_shell,
    "test": run_test,
    "lint": run_lint,
    "security": run_security,
    "train": run_train,
    "validate": run_validate,
    "build": run_build,
    "push": run_push,
    "deploy": run_deploy,
    "smoke": run_smoke,
    "gate": run_gate,
    "promote": run_promote,
}


def run_stage(ctx: StageContext) -> Outcome:
    """Run one stage; a Shipway error (a user mistake, or a refusal) fails the stage with its
    message instead of escaping, so the pipeline records it and reports it in one line."""
    options = ctx.stage.parsed_options() if ctx.stage.uses else None
    try:
        return BUILTIN_RUNNERS[ctx.stage.kind](ctx, options)
    except ShipwayError as exc:
        ctx.say(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""))
        return Outcome(False, exc.message)
