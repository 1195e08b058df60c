# ruff: noqa: RUF001  (the tables print the multiplication sign)
"""Drift benchmark: Shipway's report path at a million rows, then Evidently side by side.

    /work/main/.venv/bin/python bench/drift/run.py [--rows 1000000] [--columns 100]
                                                   [--compare-rows 200000] [--compare-columns 50]
                                                   [--repeat 3] [--skip-evidently]

1. Scale: writes a seeded reference and current window (80% numeric, 20% string columns, a few
   columns shifted; see data.py) as Parquet to a temporary folder, then runs the full report
   path (read the reference, profile it, read the current window, quality, drift) in a fresh
   process of the project venv, --repeat times. Targets: report under 10 s, peak memory under
   2 GB.
2. Comparison: at a size Evidently finishes, runs Shipway and Evidently's DataDriftPreset (its
   own venv, bench/.venvs/evidently, made on first use) each in its own process on the same
   files; prints the speed ratio (target: Shipway at least 50x faster), the columns whose drift
   verdicts differ and the largest difference between statistics of the same test.

Prints Rich tables and writes bench/results/drift-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import data
import envs
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "bench" / "results"
REPORT_TARGET_S = 10.0
MEMORY_TARGET_MB = 2048.0
RATIO_TARGET = 50.0
JS_TO_BASE_E = math.sqrt(math.log(2))
"""Shipway's Jensen-Shannon distance is in base 2, Evidently's in base e: d_e = d_2 * sqrt(ln 2)."""

console = Console(width=None if sys.stdout.isatty() else 120)


def run_job(python: Path, script: str, folder: Path, tag: str) -> dict[str, Any]:
    """Run one job in a fresh process; add its wall time and peak memory as the kernel saw them."""
    out = folder / f"{tag}.json"
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            str(python),
            str(HERE / script),
            str(folder / "reference.parquet"),
            str(folder / "current.parquet"),
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "DO_NOT_TRACK": "true"},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(out.read_text())
    # ru_maxrss also counts the parent's memory at vfork time: kept for reference only; the
    # job reports its own peak (VmHWM) as peak_rss_mb.
    result.update(
        wall_s=wall, rusage_maxrss_mb=usage.ru_maxrss / 1024, loadavg_1m_before=round(load, 2)
    )
    return result


def write_data(folder: Path, rows: int, numeric: int, categorical: int, seed: int) -> None:
    """Generate the windows in a child process: this process stays small, and so do the jobs'
    memory figures (a child started by vfork inherits its parent's high-water mark)."""
    args = [str(x) for x in (folder, rows, numeric, categorical, seed)]
    subprocess.run([sys.executable, str(HERE / "data.py"), *args], check=True)


def best(runs: list[dict[str, Any]], key: str) -> float:
    return min(r["timings"][key] for r in runs)


def scale(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    folder = workdir / "scale"
    folder.mkdir()
    numeric, categorical = split(args.columns)
    console.rule(f"[bold]Scale[/]: {args.rows:,} rows × {args.columns} columns")
    started = time.perf_counter()
    write_data(folder, args.rows, numeric, categorical, args.seed)
    console.print(f"  data written in {time.perf_counter() - started:.1f} s")
    runs = []
    for i in range(args.repeat):
        run = run_job(Path(sys.executable), "shipway_job.py", folder, f"shipway-{i}")
        t = run["timings"]
        console.print(
            f"  run {i + 1}: profile {t['profile']:.2f} s, quality {t['quality']:.2f} s, "
            f"drift {t['drift']:.2f} s = report {t['report']:.2f} s; "
            f"process {run['wall_s']:.1f} s, peak {run['peak_rss_mb']:,.0f} MB "
            f"(load {run['loadavg_1m_before']})"
        )
        runs.append(run)
    return {"rows": args.rows, "numeric": numeric, "categorical": categorical, "runs": runs}


def compare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    python = envs.ensure_venv(log=console.print)
    folder = workdir / "compare"
    folder.mkdir()
    numeric, categorical = split(args.compare_columns)
    console.rule(
        f"[bold]Side by side[/]: {args.compare_rows:,} rows × {args.compare_columns} columns"
    )
    write_data(folder, args.compare_rows, numeric, categorical, args.seed)
    shipway = [
        run_job(Path(sys.executable), "shipway_job.py", folder, f"shipway-{i}")
        for i in range(args.repeat)
    ]
    console.print(f"  Shipway: report {[round(r['timings']['report'], 3) for r in shipway]} s")
    evidently = run_job(python, "evidently_job.py", folder, "evidently")
    console.print(f"  Evidently: report {evidently['timings']['report']:.1f} s")
    return {
        "rows": args.compare_rows,
        "numeric": numeric,
        "categorical": categorical,
        "shipway": shipway,
        "evidently": evidently,
        "agreement": agreement(shipway[0], evidently),
    }


def agreement(shipway: dict[str, Any], evidently: dict[str, Any]) -> dict[str, Any]:
    """Columns whose verdicts differ, and the largest gap between statistics of one test."""
    differ = []
    gaps: dict[str, dict[str, Any]] = {}
    for name, theirs in evidently["columns"].items():
        mine = shipway["columns"][name]
        if mine["drifted"] != theirs["drifted"]:
            differ.append({"column": name, "shipway": mine, "evidently": theirs})
        if mine["method"] != theirs["method"] or mine["statistic"] is None:
            continue
        ours = mine["statistic"] * (JS_TO_BASE_E if mine["method"] == "jensenshannon" else 1)
        gap = abs(ours - theirs["statistic"])
        test = mine["method"] + (" (Shipway pools the tail)" if mine.get("tail_pooled") else "")
        if gap > gaps.get(test, {}).get("gap", -1):
            gaps[test] = {
                "gap": gap,
                "column": name,
                "shipway": ours,
                "evidently": theirs["statistic"],
            }
    same = sum(
        shipway["columns"][n]["method"] == e["method"] for n, e in evidently["columns"].items()
    )
    return {
        "differ": differ,
        "largest_gaps": gaps,
        "same_method": same,
        "columns": len(evidently["columns"]),
    }


def split(columns: int) -> tuple[int, int]:
    categorical = columns // 5
    return columns - categorical, categorical


def show(results: dict[str, Any]) -> None:
    table = Table(
        title=f"Shipway's report path, best of {results['settings']['repeat']} "
        f"({os.cpu_count()} cores)"
    )
    for col in ("size", "profile s", "quality s", "drift s", "report s", "process s", "peak MB"):
        table.add_column(col, justify="left" if col == "size" else "right")
    rows = []
    if "scale" in results:
        rows.append((results["scale"]["runs"], results["scale"]))
    if "compare" in results:
        rows.append((results["compare"]["shipway"], results["compare"]))
    for runs, part in rows:
        table.add_row(
            f"{part['rows']:,} × {part['numeric'] + part['categorical']}",
            *(f"{best(runs, k):.2f}" for k in ("profile", "quality", "drift", "report")),
            f"{min(r['wall_s'] for r in runs):.1f}",
            f"{max(r['peak_rss_mb'] for r in runs):,.0f}",
        )
    console.print(table)
    if "scale" in results:
        runs = results["scale"]["runs"]
        report, peak = best(runs, "report"), max(r["peak_rss_mb"] for r in runs)
        console.print(
            f"Targets at {results['scale']['rows']:,} rows: report {report:.2f} s "
            f"(< {REPORT_TARGET_S:g} s: {'met' if report < REPORT_TARGET_S else 'NOT met'}), "
            f"peak {peak:,.0f} MB (< {MEMORY_TARGET_MB:,.0f} MB: "
            f"{'met' if peak < MEMORY_TARGET_MB else 'NOT met'})"
        )
    if "compare" not in results:
        return
    cmp = results["compare"]
    ev = cmp["evidently"]
    ship_report = best(cmp["shipway"], "report")
    ship_wall = min(r["wall_s"] for r in cmp["shipway"])
    ratio, wall_ratio = ev["timings"]["report"] / ship_report, ev["wall_s"] / ship_wall
    versus = Table(
        title=f"Side by side on {cmp['rows']:,} rows × "
        f"{cmp['numeric'] + cmp['categorical']} columns"
    )
    for col in ("tool", "report s", "process s", "peak MB", "drifted columns"):
        versus.add_column(col, justify="left" if col == "tool" else "right")
    n_ship = sum(c["drifted"] for c in cmp["shipway"][0]["columns"].values())
    n_ev = sum(bool(c["drifted"]) for c in ev["columns"].values())
    versus.add_row(
        "Shipway (profile + quality + drift)",
        f"{ship_report:.3f}",
        f"{ship_wall:.1f}",
        f"{cmp['shipway'][0]['peak_rss_mb']:,.0f}",
        str(n_ship),
    )
    versus.add_row(
        f"Evidently {ev['versions']['evidently']} (DataDriftPreset)",
        f"{ev['timings']['report']:.1f}",
        f"{ev['wall_s']:.1f}",
        f"{ev['peak_rss_mb']:,.0f}",
        str(n_ev),
    )
    console.print(versus)
    console.print(
        f"Shipway is [bold]{ratio:.0f}×[/] faster on the report "
        f"(target ≥ {RATIO_TARGET:g}×: {'met' if ratio >= RATIO_TARGET else 'NOT met'}), "
        f"{wall_ratio:.1f}× on the whole process (imports and reading included)."
    )
    cmp["ratio_report"], cmp["ratio_process"] = ratio, wall_ratio
    agree = cmp["agreement"]
    differ = Table(
        title=f"Verdicts that differ ({len(agree['differ'])} of {agree['columns']}; "
        f"same test on {agree['same_method']})"
    )
    for col in ("column", "change", "Shipway", "Evidently"):
        differ.add_column(col)
    for d in agree["differ"]:
        differ.add_row(
            d["column"],
            data.SHIFTS.get(d["column"], "unchanged"),
            verdict(d["shipway"]),
            verdict(d["evidently"]),
        )
    console.print(differ if agree["differ"] else "No verdict differs.")
    gaps = Table(
        title="Largest difference between the two tools' statistics, same test "
        "(Jensen-Shannon in base e for both)"
    )
    for col in ("test", "column", "Shipway", "Evidently", "difference"):
        gaps.add_column(col, justify="left" if col in ("test", "column") else "right")
    for method, g in agree["largest_gaps"].items():
        gaps.add_row(
            method, g["column"], f"{g['shipway']:.5f}", f"{g['evidently']:.5f}", f"{g['gap']:.2e}"
        )
    console.print(gaps)


def verdict(col: dict[str, Any]) -> str:
    stat = col["statistic"]
    text = "-" if stat is None else f"{stat:.4f}"
    return f"{'drift' if col['drifted'] else 'no drift'} ({col['method']} {text})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=100, help="a fifth of them strings (100)")
    parser.add_argument("--compare-rows", type=int, default=200_000)
    parser.add_argument("--compare-columns", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="Shipway runs per size (3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the Parquet files and outputs")
    args = parser.parse_args(argv)
    if (
        min(args.rows, args.compare_rows, args.repeat) < 1
        or min(args.columns, args.compare_columns) < 5
    ):
        parser.error("rows and --repeat must be positive, columns at least 5")

    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-drift-"))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "benchmark": "drift",
        "started": stamp,
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {**vars(args), "shifts": data.SHIFTS},
    }
    if os.getloadavg()[0] > 0.5:
        console.print(
            f"[yellow]The machine is busy (load {os.getloadavg()[0]:.2f}): timings will be "
            "noisy; look at the best of the repeats and re-run when it is quiet.[/]"
        )
    try:
        if not args.skip_scale:
            results["scale"] = scale(args, workdir)
        if not args.skip_evidently:
            results["compare"] = compare(args, workdir)
    finally:
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if "scale" in results or "compare" in results:
            show(results)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"drift-{stamp}.json"
        out.write_text(json.dumps(results, indent=1))
        console.print(f"Raw results: {out.relative_to(ROOT)}")
        if args.keep:
            console.print(f"Work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
