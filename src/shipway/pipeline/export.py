"""CI exporters: the pipeline of `shipway.yaml` as a GitHub Actions workflow or a `.gitlab-ci.yml`.

Each stage becomes one job that runs it with `shipway pipeline run --only STAGE --trigger ci`.
The runner continues the newest pipeline run of the commit, so a job finds what the jobs before
it handed on (the candidate version, the image tag), provided every job reaches the same Shipway
store: each job checks for the SHIPWAY_* settings first and fails at once without them. The first
job runs `--from STAGE --to STAGE` instead, so each CI run starts a pipeline run of its own.

Every job starts from a fresh checkout, so the files a stage declares as `outputs:` travel to the
later jobs as CI artefacts. The image is built once: the job of the `build` stage also runs the
`push` stages, because an image can only be pushed from the engine that built it.

`when:` becomes a job condition, so CI does not start a job Shipway would skip. Where CI cannot
say exactly what a glob says, the condition is broader, never narrower: Shipway checks `when:`
again itself and records the skip.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from shipway.durations import parse_duration
from shipway.errors import ConflictError, InvalidInputError
from shipway.pipeline.spec import (
    DeployOptions,
    GateOptions,
    PipelineSpec,
    PromoteOptions,
    Stage,
    load_spec,
)

__all__ = [
    "DEFAULT_INSTALL",
    "DEFAULT_OUTPUT",
    "TARGETS",
    "Target",
    "export",
    "export_project",
    "target_of",
    "write_export",
]

Target = Literal["github", "gitlab"]
TARGETS: tuple[Target, ...] = ("github", "gitlab")
DEFAULT_OUTPUT: dict[Target, str] = {
    "github": ".github/workflows/shipway.yml",
    "gitlab": ".gitlab-ci.yml",
}
DEFAULT_INSTALL = "pip install 'shipway[pipeline]'"
"""Unpinned: users pin theirs, ``--install "pip install 'shipway[pipeline]==X.Y'"``."""

STORE = ("SHIPWAY_TRACKING_URI", "SHIPWAY_TOKEN", "SHIPWAY_DATABASE_URL", "SHIPWAY_ARTIFACT_URL")
"""A team server (the first two) or PostgreSQL + S3 (the last two): the store all jobs share."""
MARGIN_MINUTES = 5
"""Added to a stage's timeout for the job's setup, so Shipway's deadline (recorded) comes first."""
_STORE_CHECK = """\
if [ -z "$SHIPWAY_TRACKING_URI$SHIPWAY_DATABASE_URL" ]; then
  echo "{mark}No Shipway store: set SHIPWAY_TRACKING_URI and SHIPWAY_TOKEN (or SHIPWAY_DATABASE_URL and SHIPWAY_ARTIFACT_URL) as {where}, so that every job reaches the same store."
  exit 1
fi
"""  # noqa: E501
_ARTIFACT = "shipway-outputs-"
_GITLAB_RESERVED = {
    "after_script", "before_script", "cache", "default", "image", "include", "pages", "services",
    "spec", "stages", "types", "variables", "workflow",
}  # fmt: skip


def target_of(name: str) -> Target:
    """``name`` as a CI target, or an error listing the targets."""
    if name not in TARGETS:
        raise InvalidInputError(
            f"Unknown CI target '{name}'.", f"Export to one of: {', '.join(TARGETS)}."
        )
    return name


# -- the plan: which job runs which stages --------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    name: str
    stages: tuple[Stage, ...]
    """One stage, or a build stage with the push stages that follow it."""
    first: bool

    @property
    def stage(self) -> Stage:
        return self.stages[0]

    @property
    def builds(self) -> bool:
        return any(s.kind == "build" for s in self.stages)

    def command(self) -> str:
        if self.first and len(self.stages) == 1:
            chosen = f"--from {self.stage.name} --to {self.stage.name}"
        else:
            chosen = " ".join(f"--only {s.name}" for s in self.stages)
        return f"shipway pipeline run {chosen} --trigger ci"

    def environment(self) -> str | None:
        if self.stage.kind in ("gate", "deploy", "promote"):
            options = self.stage.parsed_options()
            assert isinstance(options, GateOptions | DeployOptions | PromoteOptions)
            return options.environment
        return None

    def env(self) -> dict[str, str]:
        return {k: v for s in self.stages for k, v in s.env.items()}

    def timeout_minutes(self) -> int | None:
        """The stages' timeouts (a gate waits its own timeout) plus a margin; None: no limit."""
        seconds = 0.0
        for stage in self.stages:
            limit = stage.timeout
            if limit is None and stage.kind == "gate":
                limit = cast(GateOptions, stage.parsed_options()).timeout
            if limit is None:
                return None
            seconds += parse_duration(limit, "timeout").total_seconds()
        return math.ceil(seconds / 60) + MARGIN_MINUTES

    def outputs(self, workdir: str) -> list[str]:
        return [_join(workdir, o) for s in self.stages for o in s.outputs]


def _plan(spec: PipelineSpec) -> list[_Job]:
    groups: list[list[Stage]] = []
    for stage in spec.stages:
        builder = next((g for g in reversed(groups) if g[0].kind == "build"), None)
        if stage.kind == "push" and builder is not None:
            builder.append(stage)
        else:
            groups.append([stage])
    return [_Job(g[0].name, tuple(g), i == 0) for i, g in enumerate(groups)]


def _join(workdir: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, path))


# -- branch globs --------------------------------------------------------------------------------

_GLOB = re.compile(r"[*?\[]")


def _github_branch(pattern: str) -> str | None:
    """A GitHub expression true on the branches ``pattern`` matches (or a few more); None when
    every branch passes. Expressions have no globs: equality, startsWith and endsWith."""
    ref = "github.ref_name"
    glob = _GLOB.search(pattern)
    if glob is None:
        return f"{ref} == {_quote(pattern)}"
    head, rest = pattern[: glob.start()], pattern[glob.start() :]
    tail = rest[1:] if rest.startswith("*") and not _GLOB.search(rest[1:]) else None
    checks = [f"startsWith({ref}, {_quote(head)})"] if head else []
    if tail:
        checks.append(f"endsWith({ref}, {_quote(tail)})")
    return " && ".join(checks) or None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _github_filter(pattern: str) -> str:
    """``pattern`` as an `on.push.branches` filter (there `*` stops at `/`; in fnmatch, not)."""
    return re.sub(r"\*+", "**", pattern).replace("+", "\\+")


def _regex(pattern: str) -> str:
    """An fnmatch glob as an RE2 regular expression for GitLab's `=~ /.../`."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        end = pattern.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out += ".*"
        elif char == "?":
            out += "."
        elif end != -1:
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out += "[" + body.replace("\\", "\\\\").replace("/", "\\/") + "]"
            i = end
        else:
            out += "\\" + char if char in "\\.^$+?()[]{}|/" else char
        i += 1
    return out


# -- GitHub Actions ------------------------------------------------------------------------------


def _github(spec: PipelineSpec, jobs: list[_Job], workdir: str, install: str, python: str) -> Any:
    branches = [s.when.branch for s in spec.stages]
    push: dict[str, Any] = {}
    if all(branches):
        push["branches"] = sorted({_github_filter(p) for b in branches for p in b})
    doc: dict[str, Any] = {
        "name": f"Shipway pipeline ({spec.model})",
        "on": {"push": push, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {"contents": "read"},
        # Two CI runs of one commit would continue each other's pipeline run.
        "concurrency": {"group": f"shipway-{spec.model}-${{{{ github.sha }}}}"},
        "env": {name: f"${{{{ secrets.{name} }}}}" for name in STORE},
    }
    if workdir != ".":
        doc["defaults"] = {"run": {"working-directory": workdir}}
    doc["jobs"] = out = {}
    guarded = produced = False
    for i, job in enumerate(jobs):
        body: dict[str, Any] = {"runs-on": "ubuntu-latest"}
        if i:
            body["needs"] = [jobs[i - 1].name]
        condition = _github_condition(job.stage)
        # After a skipped job, every later job is skipped unless its condition says otherwise;
        # failure() still sees a failure anywhere before it.
        parts = ["!cancelled()", "!failure()"] if guarded else []
        if condition:
            parts.append(f"({condition})" if guarded and " || " in condition else condition)
        if parts:
            body["if"] = "${{ " + " && ".join(parts) + " }}"
        guarded = guarded or condition is not None
        if (environment := job.environment()) is not None:
            body["environment"] = environment
        if (minutes := job.timeout_minutes()) is not None:
            body["timeout-minutes"] = minutes
        env = {v: f"${{{{ secrets.{v} || vars.{v} }}}}" for v in job.stage.when.env}
        if env := {**env, **job.env()}:
            body["env"] = env
        body["steps"] = _github_steps(job, workdir, install, python, fetch=produced)
        produced = produced or bool(job.outputs(workdir))
        out[job.name] = body
    return doc


def _github_condition(stage: Stage) -> str | None:
    """The stage's branches; `when.env` cannot be a job condition (secrets are not there)."""
    checks = [_github_branch(p) for p in stage.when.branch]
    if not checks or None in checks:
        return None
    return " || ".join(f"({c})" if " && " in c else c for c in checks if c)


def _github_steps(job: _Job, workdir: str, install: str, python: str, fetch: bool) -> Any:
    steps: list[dict[str, Any]] = [
        {"uses": "actions/checkout@v4", "with": {"fetch-depth": 0}},
        {"uses": "actions/setup-python@v5", "with": {"python-version": python}},
        {"name": "Check the Shipway store", "run": _store_check("::error::", "repository secrets")},
        {"name": "Install Shipway", "run": install},
    ]
    if fetch and any(s.inputs for s in job.stages):
        steps.append({
            "name": "Fetch the files earlier stages made",
            "uses": "actions/download-artifact@v4",
            "with": {"pattern": f"{_ARTIFACT}*", "merge-multiple": True, "path": workdir},
        })  # fmt: skip
    what = " (builds the image, the only job that does)" if job.builds else ""
    steps.append({"name": f"Stage {' + '.join(s.name for s in job.stages)}{what}",
                  "run": job.command()})  # fmt: skip
    if outputs := job.outputs(workdir):
        # shipway.yaml roots the artefact at the project folder, where the fetch unpacks it.
        steps.append({
            "name": "Keep the files this stage made",
            "uses": "actions/upload-artifact@v4",
            "with": {"name": f"{_ARTIFACT}{job.name}",
                     "path": "\n".join([_join(workdir, "shipway.yaml"), *outputs])},
        })  # fmt: skip
    return steps


def _store_check(mark: str, where: str) -> str:
    return _STORE_CHECK.replace("{mark}", mark).replace("{where}", where)


# -- GitLab CI -----------------------------------------------------------------------------------


def _gitlab(spec: PipelineSpec, jobs: list[_Job], workdir: str, install: str, python: str) -> Any:
    # No `needs:`: a job needing a job its rules left out stops GitLab from creating the pipeline,
    # and stage order already runs each stage after the one before, with its artefacts.
    before = [f"cd {workdir}"] if workdir != "." else []
    before += [_store_check("", "CI/CD variables"), install]
    doc: dict[str, Any] = {
        "stages": [job.stage.name for job in jobs],
        "default": {"image": f"python:{python}", "before_script": before},
    }
    for job in jobs:
        body: dict[str, Any] = {"stage": job.stage.name}
        rule = _gitlab_rule(job.stage)
        gate = job.stage.kind == "gate"
        if rule is not None:
            body["rules"] = [{"if": rule, "when": "manual"} if gate else {"if": rule}]
        elif gate:
            body["when"] = "manual"
        if gate:
            body["allow_failure"] = False  # later stages wait for the gate
        if (environment := job.environment()) is not None:
            # A gate deploys nothing; it names the environment so its protection applies.
            body["environment"] = (
                {"name": environment, "action": "prepare"} if gate else environment
            )
        if (minutes := job.timeout_minutes()) is not None:
            body["timeout"] = f"{minutes}m"
        variables: dict[str, Any] = {
            k: {"value": v, "expand": False} if "$" in v else v for k, v in job.env().items()
        }
        script = [job.command()]
        if job.builds:  # Docker in Docker: the runner must allow privileged services
            body["services"] = [{"name": "docker:dind", "command": ["--tls=false"]}]
            variables.update(DOCKER_HOST="tcp://docker:2375", DOCKER_TLS_CERTDIR="")
            script.insert(0, "apt-get update -qq && apt-get install -y -qq docker.io > /dev/null")
        if variables:
            body["variables"] = variables
        body["script"] = script
        if outputs := job.outputs(workdir):
            body["artifacts"] = {"paths": outputs}
        doc[_gitlab_name(job.name, doc)] = body
    return doc


def _gitlab_rule(stage: Stage) -> str | None:
    checks = []
    if stage.when.branch and "*" not in stage.when.branch:
        alternatives = "|".join(_regex(p) for p in stage.when.branch)
        checks.append(f"$CI_COMMIT_BRANCH =~ /^({alternatives})$/")
    # Both halves: an unset variable is != "", and an empty one may pass a bare `$VAR` check.
    checks += [f'${v} != null && ${v} != ""' for v in stage.when.env]
    return " && ".join(checks) or None


def _gitlab_name(name: str, taken: dict[str, Any]) -> str:
    """The job's key: the stage's name unless GitLab reserves it (`image`, `variables`...)."""
    while name in _GITLAB_RESERVED or name in taken:
        name += "-job"
    return name


# -- the document --------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as CI documentation writes them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Scripts and path lists of several lines as literal blocks (`|`), as people write them."""
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


_BUILDERS: dict[Target, Callable[[PipelineSpec, list[_Job], str, str, str], Any]] = {
    "github": _github,
    "gitlab": _gitlab,
}


def export(
    spec: PipelineSpec,
    target: Target,
    *,
    workdir: str = ".",
    install: str = DEFAULT_INSTALL,
    python: str = "3.11",
) -> str:
    """``spec`` as a CI workflow for ``target`` (YAML). ``workdir`` is the project folder (where
    shipway.yaml is) relative to the repository root; jobs run there, after ``install``."""
    target = target_of(target)
    workdir = posixpath.normpath(workdir.replace(os.sep, "/"))
    if workdir.startswith(("/", "../")) or workdir == "..":
        raise InvalidInputError(
            f"The project folder '{workdir}' must lie inside the repository.",
            "Give it relative to the repository's root.",
        )
    jobs = _plan(spec)
    doc = _BUILDERS[target](spec, jobs, workdir, install, python)
    source = _join(workdir, "shipway.yaml")
    header = [
        f"# Written by `shipway pipeline export {target}` from {source}: export again after",
        "# changing the pipeline. One job per stage, each running it with `shipway pipeline run`;",
        "# the jobs share one Shipway store (SHIPWAY_TRACKING_URI and SHIPWAY_TOKEN), which is",
        "# how each finds the model version and image the jobs before it made.",
    ]
    builder = next((j for j in jobs if j.builds), None)
    if builder is not None:
        header.append(
            f"# The image is built once, by the job {builder.name} (which pushes it too); "
            "later jobs never build."
        )
    sections = [
        yaml.dump({key: value}, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
        for key, value in doc.items()
    ]
    return "\n".join(header) + "\n\n" + "\n".join(sections)


def export_project(
    directory: Path, target: str, *, install: str = DEFAULT_INSTALL
) -> tuple[str, Path]:
    """The export of the project in ``directory`` and where it goes by default: the root of its
    git repository (the current folder outside git), which is what CI checks out."""
    chosen = target_of(target)
    spec = load_spec(directory)
    root = repository_root(spec.directory) or Path.cwd().resolve()
    try:
        workdir = spec.directory.relative_to(root).as_posix()
    except ValueError:
        raise InvalidInputError(
            f"{spec.directory} is not inside {root}, the folder CI would check out.",
            "Run the export from the repository's root, or from the project's folder.",
        ) from None
    return export(spec, chosen, workdir=workdir, install=install), root / DEFAULT_OUTPUT[chosen]


def repository_root(directory: Path) -> Path | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=directory, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out).resolve() if out else None


def write_export(text: str, path: Path, *, force: bool = False) -> bool:
    """Write ``text`` to ``path`` whole or not at all; False when the file held it already. A
    different file is kept unless ``force``: it may hold the user's own edits."""
    if path.is_file():
        if path.read_text() == text:
            return False
        if not force:
            raise ConflictError(
                f"{path} exists and differs from the export.",
                "Pass --force to replace it, or --output - to print the export and compare.",
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
