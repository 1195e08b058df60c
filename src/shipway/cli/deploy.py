"""`shipway deploy`, `shipway deployments list|show|down` and `shipway rollout ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from shipway.cli._output import JSON_OPTION, console, fmt, print_json, table

if TYPE_CHECKING:
    from shipway.deploy.records import DeploymentInfo
    from shipway.deploy.rollout import RolloutState

deployments = typer.Typer(help="Environments running on this machine.", no_args_is_help=True)
rollout = typer.Typer(help="Canary releases with automatic rollback.", no_args_is_help=True)

STATUS_STYLE = {
    "running": "green",
    "starting": "yellow",
    "updating": "yellow",
    "failed": "red",
    "stopped": "dim",
    "paused": "yellow",
    "promoted": "green",
    "aborted": "red",
}
ENV_OPT = typer.Option(..., "--env", "-e", help="Environment name, e.g. staging.")


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def deploy(
    uri: str = typer.Argument(..., help="models:/NAME/VERSION or models:/NAME@ALIAS."),
    env: str = ENV_OPT,
    replicas: int | None = typer.Option(None, min=1, help="Model server replicas (default 1)."),
    port: int | None = typer.Option(None, help="The environment's port (default 8100)."),
    host: str = typer.Option("127.0.0.1", help="Interface the gateway listens on."),
    runtime: str = typer.Option("process", help="process, or container (the built image)."),
    wait: float = typer.Option(300, help="Seconds to wait for the version to be live."),
) -> None:
    """Deploy a model version to an environment; a running one is rolled over without errors."""
    from shipway.deploy.control import deploy as run

    with console.status(f"Deploying {uri} to {env} ..."):
        dep = run(
            uri,
            env,
            replicas=replicas,
            port=port,
            host=host,
            runtime=runtime,
            wait_s=wait,
            progress=lambda m: console.print(f"  {m}", highlight=False),
        )
    console.print(
        f"[green]models:/{dep.model}/{dep.live_version}[/] is live in [bold]{env}[/] at "
        f"{dep.url} ({dep.replicas} replica(s), {dep.runtime})."
    )


@deployments.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """List environments and what runs in them."""
    from shipway.deploy.records import list_deployments

    deps = list_deployments()
    if as_json:
        print_json([d.to_dict() | {"url": d.url} for d in deps])
        return
    # Below 100 columns the url loses its scheme, the date its year, and a stopped agent is
    # said in the status cell, so that every cell stays whole at 80.
    wide = console.width >= 100
    columns = ["environment", "live", "replicas", "url", "status", "since"]
    columns += ["agent"] if wide else []
    rows = []
    for d in deps:
        status = _status(d.status)
        if not wide and not d.agent_alive:
            status += "\n[dim]no agent[/]"
        cells = {
            "environment": d.environment,
            "live": f"{d.model}/{d.live_version if d.live_version is not None else '-'}",
            "replicas": d.replicas,
            "url": d.url if wide else d.url.removeprefix("http://"),
            "status": status,
            "since": d.since.strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M"),
            "agent": f"pid {d.agent_pid}" if d.agent_alive else "[dim]not running[/]",
        }
        rows.append([cells[c] for c in columns])
    table("Deployments", columns, rows, no_wrap=[c for c in columns if c != "status"],
          compact=True)  # fmt: skip


@deployments.command()
def show(
    env: str = typer.Argument(..., help="Environment name."), as_json: bool = JSON_OPTION
) -> None:
    """Show an environment: tracks, weights, replicas and their health, the latest rollout."""
    from shipway.deploy.records import get_deployment, latest_rollout

    dep = get_deployment(env)
    ro = latest_rollout(env)
    if as_json:
        print_json(
            dep.to_dict()
            | {"url": dep.url, "rollout": ro.model_dump(mode="json") if ro else None}
        )
        return
    _describe(dep)
    if ro is not None:
        _describe_rollout(ro)


def _describe(dep: DeploymentInfo) -> None:
    console.print(
        f"[bold]{dep.environment}[/]: models:/{dep.model}/{dep.live_version} {_status(dep.status)}"
        f" at {dep.url}, since {fmt(dep.since)} ({dep.runtime})"
    )
    if dep.message:
        console.print(f"  {dep.message}", highlight=False)
    rows = []
    for track in ("stable", "canary"):
        info = dep.observed.get(track)
        if not info:
            continue
        weight = dep.observed.get("weights", {}).get(track)
        for r in info["replicas"]:
            rows.append(
                (track, info["version"], weight, r["id"], r["url"], _status(r["state"]),
                 r["restarts"], r["last_error"])
            )  # fmt: skip
    if rows:
        table(
            None,
            ["track", "version", "weight %", "replica", "url", "state", "restarts", "last error"],
            rows,
            no_wrap=["replica", "url"],
        )


@deployments.command()
def down(env: str = typer.Argument(..., help="Environment name.")) -> None:
    """Stop an environment: drain its replicas, stop them and the gateway."""
    from shipway.deploy.control import down as run

    with console.status(f"Stopping {env} ..."):
        run(env)
    console.print(f"Stopped {env}.")


@deployments.command()
def up(env: str = typer.Argument(..., help="Environment name.")) -> None:
    """Start a stopped environment again, from its records."""
    from shipway.deploy.control import up as run

    with console.status(f"Starting {env} ..."):
        dep = run(env)
    console.print(f"models:/{dep.model}/{dep.live_version} is live in {env} at {dep.url}.")


@deployments.command("agent", hidden=True)
def agent(env: str = ENV_OPT) -> None:
    """Run an environment's agent in the foreground (`shipway deploy` starts it for you)."""
    import logging

    from shipway.deploy.agent import run_agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_agent(env)


def _describe_rollout(ro: RolloutState) -> None:
    steps = ", ".join(
        f"[bold]{s}[/]" if i == ro.step_index and ro.active else str(s)
        for i, s in enumerate(ro.steps)
    )
    console.print(
        f"Rollout {ro.id}: version {ro.stable_version} -> {ro.canary_version} "
        f"{_status(ro.status)}, canary at {ro.weight:g}%, steps {steps}, "
        f"failures {ro.failures}/{ro.failure_limit}"
    )
    if ro.reason:
        console.print(f"  {ro.reason}", highlight=False)
    if ro.history:
        table(
            None,
            ["step", "weight %", "verdict", "canary", "stable", "why"],
            [
                (
                    h["step"] + 1,
                    h["weight"],
                    _verdict(h),
                    _traffic(h["measurements"], "canary"),
                    _traffic(h["measurements"], "stable"),
                    "" if h["passed"] else "; ".join(h["reasons"]),
                )
                for h in ro.history[-10:]
            ],
        )


def _verdict(entry: dict[str, object]) -> str:
    if entry["inconclusive"]:
        return "[yellow]inconclusive[/]"
    return "[green]pass[/]" if entry["passed"] else "[bold red]FAIL[/]"


def _traffic(m: dict[str, float | None], track: str) -> str:
    """``812 req, 0.0% err, p99 21 ms`` from an analysis' measurements."""
    rate = m.get(f"{track}_error_rate")
    p99 = m.get(f"{track}_p99_ms")
    return (
        f"{fmt(m.get(f'{track}_requests'))} req, "
        + ("-" if rate is None else f"{rate:.1%}")
        + " err, p99 "
        + ("-" if p99 is None else f"{p99:.0f} ms")
    )


@rollout.command()
def start(
    uri: str = typer.Argument(..., help="The canary: models:/NAME/VERSION."),
    env: str = ENV_OPT,
    steps: str = typer.Option("10,25,50,100", help="Canary traffic % per step, or 'pause'."),
    interval: str = typer.Option("30s", help="Analysis interval per step: 30s, 2m ..."),
    failure_limit: int = typer.Option(1, min=1, help="Failed analyses that abort."),
    max_error_rate: float = typer.Option(0.05, help="Canary 5xx/timeout share that fails."),
    max_p99_ms: float | None = typer.Option(None, help="Absolute canary p99 bound (ms)."),
    max_p99_ratio: float = typer.Option(1.5, help="Else: canary p99 over stable p99 x this."),
    max_score_shift: float | None = typer.Option(None, help="Mean score move that fails."),
    min_requests: int = typer.Option(20, help="Fewer canary requests: inconclusive."),
    wait: bool = typer.Option(False, "--wait", help="Follow the rollout until it ends."),
) -> None:
    """Start a canary release: shift traffic step by step, analyse, promote or roll back."""
    from shipway.deploy.analysis import Checks
    from shipway.deploy.control import rollout_start, wait_rollout
    from shipway.deploy.rollout import parse_steps

    checks = Checks(
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms,
        max_p99_ratio=max_p99_ratio,
        max_score_shift=max_score_shift,
        min_requests=min_requests,
    )
    state = rollout_start(
        uri, env, steps=parse_steps(steps), interval_s=_seconds(interval),
        failure_limit=failure_limit, checks=checks,
    )  # fmt: skip
    console.print(
        f"Rollout {state.id}: version {state.stable_version} -> {state.canary_version} in "
        f"{env}, steps {steps}, every {interval}."
    )
    if wait:
        final = wait_rollout(env, state.id, on_change=_print_move)
        if final.status in ("failed", "aborted"):
            raise typer.Exit(1)


def _print_move(ro: RolloutState) -> None:
    if ro.status == "running" and ro.step_started is None:
        console.print("  starting the canary's replicas ...")
        return
    last = ro.history[-1] if ro.history else None
    verdict = ""
    if last is not None:
        verdict = " (last analysis: " + (
            "inconclusive" if last["inconclusive"] else ("pass" if last["passed"] else "FAIL")
        ) + ")"
    console.print(
        f"  {_status(ro.status)} step {ro.step_index + 1}/{len(ro.steps)}: canary at "
        f"{ro.weight:g}%{verdict}" + (f" - {ro.reason}" if ro.reason else ""),
        highlight=False,
    )


def _seconds(text: str) -> float:
    from shipway.durations import parse_duration

    return parse_duration(text, "interval").total_seconds()


@rollout.command()
def status(env: str = ENV_OPT, as_json: bool = JSON_OPTION) -> None:
    """Show the latest rollout of an environment."""
    from shipway.deploy.records import latest_rollout
    from shipway.errors import NotFoundError

    ro = latest_rollout(env)
    if ro is None:
        raise NotFoundError(f"No rollout has run in {env}.")
    if as_json:
        print_json(ro.model_dump(mode="json"))
        return
    _describe_rollout(ro)


@rollout.command()
def promote(
    env: str = ENV_OPT,
    full: bool = typer.Option(False, "--full", help="Skip the remaining steps."),
) -> None:
    """Resume a paused rollout (or, with --full, promote the canary now)."""
    from shipway.deploy.records import request_rollout

    rid = request_rollout(env, "promote-full" if full else "promote")
    console.print(f"Asked the agent of {env} to promote rollout {rid}.")


@rollout.command()
def abort(env: str = ENV_OPT) -> None:
    """Abort the running rollout: all traffic back to stable at once, the canary stopped."""
    from shipway.deploy.records import request_rollout

    rid = request_rollout(env, "abort")
    console.print(f"Asked the agent of {env} to abort rollout {rid}.")
