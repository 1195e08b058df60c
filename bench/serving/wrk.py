"""Driving `wrk`: a POST script carrying one fixed body, and parsing its `--latency` report."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def write_lua(path: Path, body: bytes, content_type: str = "application/json") -> Path:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("body contains the Lua long-string terminator")
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
        f"wrk.body = [==[{text}]==]\n"
    )
    return path


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(output: str) -> dict[str, Any]:
    """requests/s, latency percentiles (ms), request count, non-2xx and socket errors."""
    out: dict[str, Any] = {
        "rps": None,
        "latency_ms": {},
        "requests": None,
        "non2xx": 0,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        out["rps"] = float(m.group(1))
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M):
        out["latency_ms"][f"p{pct}"] = round(_ms(value, unit), 4)
    if m := re.search(r"^\s+Latency\s+([\d.]+)(us|ms|s|m|h)", output, re.M):
        out["latency_ms"]["mean"] = round(_ms(m.group(1), m.group(2)), 4)
    if m := re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output):
        out["requests"] = int(m.group(1))
        out["elapsed_s"] = round(_ms(m.group(2), m.group(3)) / 1000, 3)
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        out["non2xx"] = int(m.group(1))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        out["socket_errors"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    return out


def run(
    wrk: str,
    url: str,
    lua: Path,
    *,
    connections: int,
    duration_s: float,
    threads: int = 2,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    cmd = [
        wrk,
        f"-t{max(1, min(threads, connections))}",  # wrk needs connections >= threads
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    result = parse(proc.stdout)
    result["command"] = " ".join(cmd)
    result["raw"] = proc.stdout
    return result
