"""Send applicants to a running model server and summarise the latency.

Usage (from this folder, with `shipway serve models:/credit@champion --port 8765` running)::

    python request.py --url http://127.0.0.1:8765 --requests 300 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table
from train import CATEGORICAL, NUMERIC


def applicants(path: Path, n: int) -> list[dict[str, Any]]:
    frame = pd.read_parquet(path)[NUMERIC + CATEGORICAL].sample(n, replace=True, random_state=1)
    rows = frame.astype(object).to_dict(orient="records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows]


async def wait_ready(client: httpx.AsyncClient, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await client.get(f"{url}/v2/health/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the server at {url} did not become ready in {timeout:g} s")
        await asyncio.sleep(0.2)


async def drive(url: str, rows: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    defaults = 0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    async with httpx.AsyncClient(timeout=30) as client:
        await wait_ready(client, url)

        async def worker() -> None:
            nonlocal defaults
            while not queue.empty():
                row = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(f"{url}/predict", json=[row])
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    defaults += response.json()["predictions"][0]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed, "defaults": defaults}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--data", type=Path, default=Path("data/credit.parquet"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)

    result = asyncio.run(drive(args.url, applicants(args.data, args.requests), args.concurrency))
    ms = sorted(x * 1000 for x in result["latencies"])

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p / 100 * len(ms)))]

    table = Table(title=f"{args.requests} single-row requests, {args.concurrency} at a time")
    for col in (
        "requests/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "statuses",
        "predicted defaults",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        f"{len(ms) / result['elapsed']:.0f}",
        f"{pct(50):.1f}",
        f"{pct(90):.1f}",
        f"{pct(99):.1f}",
        f"{statistics.fmean(ms):.1f}",
        ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items())),
        str(result["defaults"]),
    )
    Console().print(table)
    return 0 if set(result["statuses"]) == {200} else 1


if __name__ == "__main__":
    raise SystemExit(main())
