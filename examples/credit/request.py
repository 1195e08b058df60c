"""Send applicants to a running model server and summarise the latency.

Usage (from this folder, with `shipway serve models:/credit@champion --port 8765` running)::

    python request.py --url http://127.0.0.1:8765 --requests 300 --concurrency 8
    python request.py --data data/credit_drift.parquet --feedback   # drifted traffic + labels

With ``--feedback`` the true labels of the data go back to the server's ``/feedback``, as they
would once loans default or not, so monitoring can measure the model's accuracy.
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

from train import CATEGORICAL, LABEL, NUMERIC


def applicants(path: Path, n: int) -> tuple[list[dict[str, Any]], list[int]]:
    """``n`` applicants (JSON-ready records) and whether each defaulted."""
    sample = pd.read_parquet(path).sample(n, replace=True, random_state=1)
    rows = sample[NUMERIC + CATEGORICAL].astype(object).to_dict(orient="records")
    plain = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in rows]
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in plain]
    return records, [int(v) for v in sample[LABEL]]


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


async def drive(
    url: str,
    rows: list[dict[str, Any]],
    labels: list[int] | None,
    concurrency: int,
    duration: float | None = None,
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    defaults = 0
    feedback: list[dict[str, Any]] = []
    queue: asyncio.Queue[tuple[dict[str, Any], int | None]] = asyncio.Queue()
    for i, row in enumerate(rows):
        queue.put_nowait((row, None if labels is None else labels[i]))
    async with httpx.AsyncClient(timeout=30) as client:
        await wait_ready(client, url)

        async def worker() -> None:
            nonlocal defaults
            while not queue.empty():
                row, label = queue.get_nowait()
                if duration is not None:  # keep the traffic going: the row goes round again
                    if time.perf_counter() - began > duration:
                        break
                    queue.put_nowait((row, label))
                started = time.perf_counter()
                response = await client.post(f"{url}/predict", json=[row])
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    body = response.json()
                    defaults += body["predictions"][0]
                    if label is not None:
                        feedback.append({"prediction_id": body["ids"][0], "label": label})

        started = began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        if feedback:
            sent = await client.post(f"{url}/feedback", json={"labels": feedback})
            statuses[sent.status_code] = statuses.get(sent.status_code, 0) + 1
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed, "defaults": defaults}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--data", type=Path, default=Path("data/credit.parquet"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--feedback", action="store_true", help="send the true labels back")
    parser.add_argument("--duration", type=float, help="send for this many seconds instead")
    args = parser.parse_args(argv)

    rows, labels = applicants(args.data, args.requests)
    result = asyncio.run(
        drive(args.url, rows, labels if args.feedback else None, args.concurrency, args.duration)
    )
    ms = sorted(x * 1000 for x in result["latencies"])

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p / 100 * len(ms)))]

    table = Table(title=f"{len(ms)} single-row requests, {args.concurrency} at a time")
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
    if args.feedback:
        print(f"Sent {args.requests} labels to {args.url}/feedback.")
    return 0 if set(result["statuses"]) <= {200, 202} else 1


if __name__ == "__main__":
    raise SystemExit(main())
