"""One Evidently data-drift report in a fresh process, with Evidently's defaults.

    bench/.venvs/evidently/bin/python evidently_job.py REFERENCE.parquet CURRENT.parquet OUT.json

Run by run.py with the Evidently venv (envs.py). Reads both windows, runs
``Report([DataDriftPreset()], include_tests=True)`` (the tests carry Evidently's own per-column
drift verdicts) and writes the timings, the peak resident memory, each column's method, score
and verdict, and the column types Evidently inferred to OUT.json.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

_start = time.perf_counter()

import evidently  # noqa: E402  (imports are part of what is timed)
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from evidently import Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

METHODS = {  # Evidently's display names, as Shipway names its tests
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "ztest",
    "PSI": "psi",
}


def read(path: Path) -> pd.DataFrame:
    # The Shipway job's reader options: column by column, each released once converted.
    return pq.read_table(path, pre_buffer=False).to_pandas(self_destruct=True, split_blocks=True)


def columns(snapshot: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    by_metric: dict[str, dict[str, Any]] = {}
    dataset: dict[str, Any] = {}
    for m in snapshot["metrics"]:
        config = m["config"]
        if config["type"].endswith("ValueDrift"):
            method = str(config.get("method"))
            by_metric[m["id"]] = {
                "column": config["column"],
                "method": METHODS.get(method, method),
                "statistic": m["value"],
                "threshold": config.get("threshold"),
                "drifted": None,
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            dataset = {"n_drifted": m["value"]["count"], "share_drifted": m["value"]["share"]}
    for t in snapshot["tests"]:
        metric = by_metric.get(t["metric_config"]["metric_id"])
        if metric is not None and t["id"] == "drift":
            metric["drifted"] = t["status"] == "FAIL"
        elif t["metric_config"]["params"]["type"].endswith("DriftedColumnsCount"):
            dataset["dataset_drifted"] = t["status"] == "FAIL"
    return {m.pop("column"): m for m in by_metric.values()}, dataset


def memory(field: str) -> float:
    """This process's resident memory (VmRSS) or its peak since it started (VmHWM), in MB.

    Not ``getrusage``: on Linux its ``ru_maxrss`` keeps the high-water mark of the memory the
    process had before ``exec``, which for a child started with ``vfork`` is its parent's.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(reference: Path, current: Path, out: Path) -> None:
    timings = {"import": time.perf_counter() - _start}
    t = time.perf_counter()
    ref = read(reference)
    cur = read(current)
    timings["read"] = time.perf_counter() - t
    rss_read = memory("VmRSS")
    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=cur, reference_data=ref
    )
    timings["report"] = time.perf_counter() - t
    t = time.perf_counter()
    data = snapshot.dict()
    timings["to_dict"] = time.perf_counter() - t
    per_column, dataset = columns(data)
    definition = getattr(getattr(snapshot, "context", None), "data_definition", None)
    result = {
        "tool": "evidently",
        "shape": list(ref.shape),
        "versions": {
            "evidently": evidently.__version__,
            "pandas": pd.__version__,
            "numpy": __import__("numpy").__version__,
            "scipy": __import__("scipy").__version__,
        },
        "timings": timings,
        "peak_rss_mb": memory("VmHWM"),
        "rss_mb_after": {"read": rss_read},
        "inferred": {
            "numerical": list(getattr(definition, "numerical_columns", None) or []),
            "categorical": list(getattr(definition, "categorical_columns", None) or []),
        },
        **dataset,
        "columns": per_column,
    }
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]))
