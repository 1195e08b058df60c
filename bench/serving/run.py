# ruff: noqa: RUF001  (the tables print the multiplication sign)
"""Serving benchmark: Shipway against MLflow, BentoML and a bare HTTP floor, side by side.

    /work/main/.venv/bin/python bench/serving/run.py [--duration 10] [--connections 1,16,64]
                                                     [--only shipway,floor] [--warmup 2]
                                                     [--rounds 3]

One run, one server after another on this machine: the quickstart model (examples/credit) is
trained in a temporary SHIPWAY_HOME and the same fitted pipeline is exported to the peers. Each
server is started, checked by hand (one request must answer 200 with the pipeline's own
probability), warmed up, then driven by `wrk --latency` with one applicant per request in its
native format, at each connection count; then it is stopped (its whole process group) and its
port checked free. `--rounds N` runs the whole line-up N times: the table shows each cell's
median, and each ratio is the median of the rounds' own ratios, so one slow spell of a shared
machine moves neither. Prints a table and Shipway's ratios; writes
bench/results/serving-<ts>.json.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import envs
import wrk as wrklib
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PEERS = HERE / "peers"
RESULTS = ROOT / "bench" / "results"
PROJECT_BIN = Path(sys.executable).parent  # the project venv: run.py runs from it

console = Console(width=None if sys.stdout.isatty() else 120)

SHIPWAY_ROWS = ("shipway", "shipway-2w", "shipway-inproc", "shipway-constant")
ALL = [*SHIPWAY_ROWS, "mlflow", "bentoml", "floor"]
DEFAULT = ALL
QUIET_ENV = {
    "DO_NOT_TRACK": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


@dataclass
class Server:
    key: str
    label: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    ready_path: str  # GET until 200
    predict_path: str
    body: bytes
    notes: str = ""
    version: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ---- processes and ports ---------------------------------------------------------------------

_running: list[Server] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the group, in MB."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ...
                total += int((entry / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return round(total / 1e6, 1)


def group_size(pgid: int) -> int:
    n = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                    n += 1
    return n


def start(server: Server, logs: Path) -> None:
    if port_in_use(server.port):
        raise RuntimeError(f"port {server.port} is already in use")
    server.log_path = logs / f"{server.key}.log"
    log = server.log_path.open("wb")
    server.proc = subprocess.Popen(
        server.cmd,
        cwd=server.cwd,
        env=server.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so that stopping it gets every child
    )
    log.close()
    _running.append(server)


def stop(server: Server, timeout: float = 30.0) -> dict[str, Any]:
    """SIGTERM the server's process group, SIGKILL what is left after `timeout`; wait until
    the port is free."""
    proc = server.proc
    if proc is None:
        return {}
    pgid = proc.pid
    started = time.monotonic()
    killed = False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    while group_alive(pgid) and time.monotonic() - started < timeout:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)
        if proc.poll() is not None and not group_alive(pgid):
            break
    if group_alive(pgid):
        killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    deadline = time.monotonic() + 15
    while port_in_use(server.port) and time.monotonic() < deadline:
        time.sleep(0.2)
    if port_in_use(server.port):
        raise RuntimeError(f"{server.label}: port {server.port} still answers after stopping")
    if server in _running:
        _running.remove(server)
    server.proc = None
    return {
        "stop_seconds": round(time.monotonic() - started, 2),
        "needed_sigkill": killed,
        "exit_code": proc.returncode,
    }


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            stop(server, timeout=5)


# ---- HTTP by hand ----------------------------------------------------------------------------


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(server: Server, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.label} exited with {server.proc.returncode}")
        with contextlib.suppress(OSError):
            status, _ = http("GET", server.base + server.ready_path, timeout=2)
            if status == 200:
                return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"{server.label} was not ready after {timeout:g} s")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def check_by_hand(server: Server, expected: float | None) -> dict[str, Any]:
    """One request: it must answer 200, and a model server must give the pipeline's probability."""
    started = time.perf_counter()
    status, body = http("POST", server.base + server.predict_path, server.body)
    elapsed = time.perf_counter() - started
    text = body.decode(errors="replace")
    check = {"status": status, "response": text[:500], "seconds": round(elapsed, 4)}
    if status != 200:
        raise RuntimeError(f"{server.label}: by-hand request answered {status}: {text[:300]}")
    if expected is not None:
        found = any(abs(n - expected) < 1e-6 for n in _numbers(json.loads(body)))
        check["probability_matches"] = found
        if not found:
            raise RuntimeError(
                f"{server.label}: answer lacks P(default)={expected:.6f}: {text[:300]}"
            )
    return check


def log_problems(path: Path | None) -> list[str]:
    """Lines of a server's log that look like errors (tracebacks, ERROR, 5xx access lines)."""
    if path is None or not path.exists():
        return []
    hits = []
    for line in path.read_text(errors="replace").splitlines():
        low = line.lower()
        if "traceback" in low or " error" in low or "exception" in low or '" 50' in line:
            hits.append(line.strip()[:300])
    return hits


# ---- preparing the model and the servers ---------------------------------------------------


def prepare(workdir: Path, need_mlflow: bool) -> dict[str, Any]:
    home = workdir / "shipway-home"
    env = {**os.environ, "SHIPWAY_HOME": str(home)}
    console.print("[bold]Preparing the quickstart model[/] (generate.py, train.py) in", home)
    subprocess.run([sys.executable, str(HERE / "prepare.py"), str(workdir)], env=env, check=True)
    prepared = json.loads((workdir / "prepared.json").read_text())
    examples = json.loads((workdir / "examples.json").read_text())
    prepared.update(examples=examples, shipway_home=str(home))
    if need_mlflow:
        py = envs.ensure_venv("mlflow", log=console.print)
        console.print("[bold]Logging the same pipeline to MLflow[/] (cloudpickle)")
        out = subprocess.run(
            [str(py), str(PEERS / "mlflow_log.py"), str(workdir)],
            env=mlflow_env(workdir),
            cwd=workdir,  # MLflow's default artifact root is ./mlruns
            check=True,
            capture_output=True,
            text=True,
        )
        prepared["mlflow_uri"] = out.stdout.strip().splitlines()[-1]
        console.print("  MLflow model:", prepared["mlflow_uri"])
    return prepared


def peer_env(peer: str) -> dict[str, str]:
    bin_dir = envs.venv_python(peer).parent
    return {
        **os.environ,
        **QUIET_ENV,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(bin_dir.parent),
    }


def mlflow_env(workdir: Path) -> dict[str, str]:
    return {**peer_env("mlflow"), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}


def version_in(python: Path, dist: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def make_servers(
    keys: list[str], workdir: Path, prep: dict[str, Any], args: argparse.Namespace
) -> list[Server]:
    ex = prep["examples"]
    applicant = ex["applicant"]
    records = json.dumps([applicant], separators=(",", ":")).encode()
    servers: list[Server] = []
    shipway_env = {**os.environ, "SHIPWAY_HOME": prep["shipway_home"]}
    shipway_version = md.version("shipway")
    for key in keys:
        port = free_port()
        if key in SHIPWAY_ROWS:
            workers = 2 if key == "shipway-2w" else 1
            uri = prep["constant_uri"] if key == "shipway-constant" else prep["uri"]
            cmd = [str(PROJECT_BIN / "shipway"), "serve", uri, "--port", str(port)]
            if workers > 1:
                cmd += ["--workers", str(workers)]
            where = ""
            if key == "shipway-inproc":
                cmd += ["--in-process"]
                where = ", model in-process"
            elif key == "shipway-constant":
                where = ", constant-answer model"
            servers.append(
                Server(
                    key,
                    f"Shipway ({workers} worker{'s' if workers > 1 else ''}{where})",
                    cmd,
                    shipway_env,
                    ROOT,
                    port,
                    "/v2/health/ready",
                    "/predict",
                    records,
                    notes="shipway serve defaults: batching 64 rows / 5 ms, prediction log on",
                    version=shipway_version,
                )
            )
        elif key == "mlflow":
            cmd = [
                str(envs.venv_python("mlflow").parent / "mlflow"),
                "models",
                "serve",
                "-m",
                prep["mlflow_uri"],
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ]
            body = {
                "dataframe_split": {
                    "columns": ex["columns"],
                    "data": [[applicant[c] for c in ex["columns"]]],
                }
            }
            servers.append(
                Server(
                    key,
                    "MLflow",
                    cmd,
                    mlflow_env(workdir),
                    workdir,
                    port,
                    "/health",
                    "/invocations",
                    json.dumps(body, separators=(",", ":")).encode(),
                    notes="mlflow models serve defaults (1 worker, no batching), cloudpickle",
                    version=version_in(envs.venv_python("mlflow"), "mlflow"),
                )
            )
        elif key == "bentoml":
            env = {
                **peer_env("bentoml"),
                "BENCH_WORKDIR": str(workdir),
                "BENTOML_HOME": str(workdir / "bentoml-home"),
                "BENCH_BENTO_MAX_BATCH": str(args.bentoml_max_batch),
                "BENCH_BENTO_MAX_LATENCY_MS": str(args.bentoml_max_latency_ms),
            }
            cmd = [
                str(envs.venv_python("bentoml").parent / "bentoml"),
                "serve",
                "bentoml_service:Credit",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            servers.append(
                Server(
                    key,
                    "BentoML",
                    cmd,
                    env,
                    PEERS,
                    port,
                    "/readyz",
                    "/predict",
                    json.dumps({"data": [applicant]}, separators=(",", ":")).encode(),
                    notes=(
                        f"1 worker, adaptive batching max_batch_size={args.bentoml_max_batch}, "
                        f"max_latency_ms={args.bentoml_max_latency_ms}"
                    ),
                    version=version_in(envs.venv_python("bentoml"), "bentoml"),
                )
            )
        elif key == "floor":
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "floor_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--http",
                "httptools",
                "--loop",
                "uvloop",
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
            ]
            servers.append(
                Server(
                    key,
                    "HTTP floor",
                    cmd,
                    {**os.environ},
                    PEERS,
                    port,
                    "/predict",  # GET answers 405 until POST is tried; see check below
                    "/predict",
                    records,
                    notes="Starlette + uvicorn (httptools, uvloop), 1 worker, constant JSON",
                    version=f"starlette {md.version('starlette')}, uvicorn {md.version('uvicorn')}",
                )
            )
    return servers


# ---- the run ---------------------------------------------------------------------------------


def bench_server(
    server: Server, args: argparse.Namespace, wrk: str, workdir: Path, expected: float
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "label": server.label,
        "version": server.version,
        "notes": server.notes,
        "command": " ".join(server.cmd),
        "request": server.body.decode(),
        "url": server.base + server.predict_path,
        "runs": [],
    }
    console.rule(f"[bold]{server.label}[/] {server.version}")
    start(server, workdir / "logs")
    try:
        if server.key == "floor":
            # No health route: the floor is ready once it answers a POST.
            deadline = time.monotonic() + args.start_timeout
            while True:
                with contextlib.suppress(OSError):
                    if http("POST", server.base + "/predict", b"{}", timeout=2)[0] == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the floor did not start")
                time.sleep(0.2)
            record["ready_seconds"] = None
        else:
            record["ready_seconds"] = round(wait_ready(server, args.start_timeout), 2)
        check = check_by_hand(server, None if server.key == "floor" else expected)
        record["check"] = check
        assert server.proc is not None
        console.print(
            f"  ready in {record['ready_seconds']} s; by hand: {check['status']} "
            f"in {check['seconds'] * 1000:.1f} ms: {check['response'][:120]}"
        )
        lua = wrklib.write_lua(workdir / f"{server.key}.lua", server.body)
        url = server.base + server.predict_path
        if args.warmup > 0:
            warm = wrklib.run(
                wrk,
                url,
                lua,
                connections=max(args.connections),
                duration_s=args.warmup,
                threads=args.threads,
            )
            record["warmup"] = {k: warm[k] for k in ("rps", "requests", "non2xx", "socket_errors")}
            warm_errors = warm["non2xx"] + sum(warm["socket_errors"].values())
            console.print(
                f"  warm-up: {warm['rps'] or 0:.0f} req/s at c={max(args.connections)}"
                + (f", [yellow]{warm_errors} errors[/]" if warm_errors else "")
            )
        for conns in args.connections:
            load = os.getloadavg()[0]
            result = wrklib.run(
                wrk, url, lua, connections=conns, duration_s=args.duration, threads=args.threads
            )
            result.update(connections=conns, loadavg_1m_before=round(load, 2))
            result["server_rss_mb"] = group_rss_mb(server.proc.pid)
            result["server_processes"] = group_size(server.proc.pid)
            record["runs"].append(result)
            lat = result["latency_ms"]
            console.print(
                f"  c={conns:<3} {result['rps'] or 0:>9.1f} req/s  "
                f"p50 {lat.get('p50', float('nan')):.2f} ms  "
                f"p99 {lat.get('p99', float('nan')):.2f} ms  non-2xx {result['non2xx']}  "
                f"socket errors {sum(result['socket_errors'].values())}"
            )
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.label} died under load (exit {server.proc.returncode})"
                )
        # The server must still answer after the load.
        record["check_after"] = check_by_hand(server, None if server.key == "floor" else expected)
    except Exception as exc:
        record["error"] = str(exc)
        console.print(f"  [red]{server.label} failed:[/] {exc}")
        if server.log_path and server.log_path.exists():
            tail = server.log_path.read_text(errors="replace").splitlines()[-15:]
            console.print("  log tail:\n    " + "\n    ".join(tail))
    finally:
        record["stop"] = stop(server)
        record["log_problems"] = log_problems(server.log_path)[:20]
        if record["log_problems"]:
            console.print(
                f"  [yellow]{len(record['log_problems'])} suspicious log line(s)[/], "
                f"e.g. {record['log_problems'][0][:160]}"
            )
        console.print(
            f"  stopped in {record['stop'].get('stop_seconds')} s"
            + (" (SIGKILL needed)" if record["stop"].get("needed_sigkill") else "")
        )
    return record


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One record per server: the last round's, with each cell's median req/s and latencies
    over the rounds (and every round's req/s under `rps_rounds`)."""
    merged: dict[str, Any] = {}
    for key in rounds[-1]:
        records = [r[key] for r in rounds if key in r]
        record = dict(records[-1])
        runs = []
        for run in record["runs"]:
            cells = [
                c for rec in records for c in rec["runs"] if c["connections"] == run["connections"]
            ]
            cell = dict(run)
            rps = [c["rps"] for c in cells if c["rps"]]
            cell["rps"] = statistics.median(rps) if rps else None
            cell["rps_rounds"] = rps
            cell["latency_ms"] = {
                q: statistics.median(c["latency_ms"][q] for c in cells if q in c["latency_ms"])
                for q in run["latency_ms"]
            }
            cell["non2xx"] = sum(c["non2xx"] for c in cells)
            runs.append(cell)
        record["runs"] = runs
        if any("error" in rec for rec in records):
            record["error"] = next(rec["error"] for rec in records if "error" in rec)
        merged[key] = record
    return merged


def _rps(record: dict[str, Any] | None, conns: int) -> float | None:
    """A server's req/s at `conns` connections in one round's record (None if not measured)."""
    runs = record.get("runs", []) if record else []
    return next((c["rps"] for c in runs if c["connections"] == conns), None)


def _round_ratios(rounds: list[dict[str, Any]], mine: str, theirs: str, conns: int) -> list[float]:
    """mine/theirs in each round where both were measured, each pair from the same round."""
    pairs = [(_rps(r.get(mine), conns), _rps(r.get(theirs), conns)) for r in rounds]
    return [a / b for a, b in pairs if a and b]


def report(results: dict[str, Any]) -> None:
    servers = results["servers"]
    table = Table(
        title=f"Serving one applicant per request "
        f"({results['settings']['duration_s']:g} s per cell, {os.cpu_count()} cores"
        + (f"; medians of {len(results['rounds'])} rounds" if len(results["rounds"]) > 1 else "")
        + ")"
    )
    for col, just in [
        ("server", "left"),
        ("conns", "right"),
        ("req/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("errors", "right"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for rec in servers.values():
        if not rec["runs"]:
            table.add_row(rec["label"], "-", "[red]failed[/]", "", "", rec.get("error", "")[:40])
        for i, run in enumerate(rec["runs"]):
            sock = sum(run["socket_errors"].values())
            errors = f"{run['non2xx']}" + (f" (+{sock} socket)" if sock else "")
            table.add_row(
                rec["label"] if i == 0 else "",
                str(run["connections"]),
                f"{run['rps']:.0f}" if run["rps"] is not None else "-",
                fmt_ms(run["latency_ms"].get("p50")),
                fmt_ms(run["latency_ms"].get("p99")),
                errors if errors != "0" else "0",
            )
        table.add_section()
    console.print(table)

    rps = {
        k: {r["connections"]: r["rps"] for r in rec["runs"] if r["rps"]}
        for k, rec in servers.items()
    }
    mine = [k for k in SHIPWAY_ROWS if rps.get(k)]
    peers = [k for k in ("mlflow", "bentoml") if rps.get(k)]
    if not mine:
        return
    ratios = Table(title="Shipway's throughput: × each peer's, and share of the HTTP floor")
    ratios.add_column("Shipway row")
    ratios.add_column("conns", justify="right")
    for p in peers:
        ratios.add_column(f"× {servers[p]['label']}", justify="right")
    if rps.get("floor"):
        ratios.add_column("% of floor", justify="right")
    summary: dict[str, Any] = {}
    for k in mine:
        for i, conns in enumerate(results["settings"]["connections"]):
            mine_rps = rps[k].get(conns)
            row = [servers[k]["label"] if i == 0 else "", str(conns)]
            entry: dict[str, Any] = {}
            for p in peers:
                each = _round_ratios(results["rounds"], k, p, conns) if mine_rps else []
                ratio = statistics.median(each) if each else None
                entry[f"x_{p}"] = round(ratio, 3) if ratio else None
                row.append(f"{ratio:.2f}×" if ratio else "-")
            if rps.get("floor"):
                shares = _round_ratios(results["rounds"], k, "floor", conns) if mine_rps else []
                share = statistics.median(shares) if shares else None
                entry["share_of_floor"] = round(share, 3) if share else None
                if share and len(results["rounds"]) > 1:
                    entry["share_of_floor_rounds"] = [round(x, 3) for x in shares]
                    row.append(f"{share:.0%} ({min(shares):.0%}–{max(shares):.0%})")
                else:
                    row.append(f"{share:.0%}" if share else "-")
            summary.setdefault(k, {})[str(conns)] = entry
            ratios.add_row(*row)
        ratios.add_section()
    console.print(ratios)
    results["ratios"] = summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk cell (10)")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated (1,16,64)")
    parser.add_argument("--only", default=",".join(DEFAULT), help=f"servers, of {','.join(ALL)}")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per server (2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2; never above conns)")
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--bentoml-max-batch", type=int, default=64)
    parser.add_argument("--bentoml-max-latency-ms", type=int, default=60000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the whole line-up this many times (1); figures are each cell's median, ratios "
        "the median of each round's ratio (a shared machine drifts between servers)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, model)")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(ALL))
    if unknown or not keys or not args.connections or min(args.connections) < 1 or args.rounds < 1:
        parser.error(
            f"--only takes {','.join(ALL)}; --connections and --rounds positive integers"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    keys = [k for k in ALL if k in keys]

    wrk = envs.ensure_wrk(log=console.print)
    for peer in ("mlflow", "bentoml"):
        if peer in keys:
            envs.ensure_venv(peer, log=console.print)

    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-serving-"))
    (workdir / "logs").mkdir()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "benchmark": "serving",
        "started": stamp,
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "wrk": subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()[
                :1
            ],
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "servers": keys,
            "rounds": args.rounds,
        },
        "servers": {},
        "rounds": [],
    }
    if os.getloadavg()[0] > 0.5:
        console.print(
            f"[yellow]The machine is busy (load {os.getloadavg()[0]:.2f}): "
            "absolute figures will be "
            "noisy; compare the rows of this run only.[/]"
        )
    try:
        prep = prepare(workdir, need_mlflow="mlflow" in keys)
        results["model"] = {
            "uri": prep["uri"],
            "mlflow_uri": prep.get("mlflow_uri"),
            "applicant": prep["examples"]["applicant"],
            "expected_probabilities": prep["examples"]["expected_probabilities"],
            "versions": {d: md.version(d) for d in ("scikit-learn", "numpy", "pandas")},
        }
        expected = prep["examples"]["expected_probabilities"][-1]
        for n in range(args.rounds):
            if args.rounds > 1:
                console.rule(f"[bold]Round {n + 1} of {args.rounds}")
            results["rounds"].append({})
            for server in make_servers(keys, workdir, prep, args):
                record = bench_server(server, args, wrk, workdir, expected)
                results["rounds"][-1][server.key] = record
            results["servers"] = merge_rounds(results["rounds"])
    finally:
        _stop_all()
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"serving-{stamp}.json"
        if results["servers"]:
            report(results)
        out.write_text(json.dumps(results, indent=1))
        console.print(f"Raw results: {out.relative_to(ROOT)}")
        if args.keep:
            console.print(f"Work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [k for k, r in results["servers"].items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
