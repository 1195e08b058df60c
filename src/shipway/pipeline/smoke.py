"""The `smoke` stage: sample requests against a deployed environment, as a client would send
them: rows of the live version's held-out data, one per request, to `/predict`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from shipway.client import Client
from shipway.deploy.records import get_deployment
from shipway.errors import ConflictError
from shipway.pipeline.evaluate import held_out
from shipway.pipeline.spec import SmokeOptions
from shipway.registry.registry import get_model_version

__all__ = ["smoke"]


def smoke(o: SmokeOptions, client: Client, say: Callable[[str], None]) -> list[dict[str, Any]]:
    dep = get_deployment(o.environment, client=client)
    if dep.live_version is None or not dep.agent_alive:
        raise ConflictError(
            f"{o.environment} is not serving (status {dep.status}).",
            "Deploy it first (a deploy stage before smoke).",
        )
    version = get_model_version(f"models:/{dep.model}/{dep.live_version}", client=client)
    inputs = [c["name"] for c in (version.signature or {}).get("inputs", [])]
    frame, _ = held_out(version, "evaluation", Path.cwd(), client)
    rows = frame[inputs].head(o.requests)
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows.to_dict(orient="records")
    ]
    while len(records) < o.requests:  # fewer held-out rows than requests: go round again
        records += records[: o.requests - len(records)]
    errors, latencies = 0, []
    with httpx.Client(base_url=dep.url, timeout=30) as http:
        for record in records:
            started = time.perf_counter()
            try:
                r = http.post("/predict", json=[record])
            except httpx.TransportError as exc:
                errors += 1
                say(f"request failed: {exc}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if r.status_code != 200:
                errors += 1
                say(f"{r.status_code}: {r.text[:200]}")
    rate = errors / len(records)
    p99 = sorted(latencies)[max(0, math.ceil(0.99 * len(latencies)) - 1)] if latencies else None
    say(f"{len(records)} requests to {dep.url}: {errors} failed, p99 {p99 or 0:.1f} ms")
    checks = [
        _check("error_rate", rate <= o.max_error_rate, rate, f"<= {o.max_error_rate:g}",
               f"{errors} of {len(records)} requests failed"),
    ]  # fmt: skip
    if o.max_p99_ms is not None:
        ok = p99 is not None and p99 <= o.max_p99_ms
        checks.append(_check("p99_ms", ok, p99, f"<= {o.max_p99_ms:g}", f"p99 {p99 or 0:.1f} ms"))
    return checks


def _check(name: str, passed: bool, value: Any, bound: str, detail: str) -> dict[str, Any]:
    verdict = "meets" if passed else "is not"
    return {"name": name, "passed": passed, "value": value, "bound": bound,
            "detail": f"{detail} ({name} {verdict} {bound})"}  # fmt: skip
