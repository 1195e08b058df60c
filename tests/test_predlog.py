"""The prediction log: records written as hour-partitioned Parquet or JSON Lines and read back.

Every test that makes a log through `make_log` runs once per file format; the JSON Lines runs
stand for an environment without pyarrow (a serving image), chosen by the constructor's flag.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipway.errors import InvalidInputError
from shipway.serving import predlog
from shipway.serving.predlog import PredictionLog, join_feedback, read_feedback, read_predictions

T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


@pytest.fixture
def base_url(tmp_path: Path) -> str:
    return (tmp_path / "artifacts").as_uri()


SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl.gz"}


@pytest.fixture(params=["parquet", "jsonl"])
def log_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _parse(path: Path) -> int:
    """Rows in a log file of either format (raises on a partial or corrupt file)."""
    if path.name.endswith(".parquet"):
        return int(pq.read_table(path).num_rows)
    return len(gzip.decompress(path.read_bytes()).decode().splitlines())


@pytest.fixture
def make_log(base_url: str, log_format: str) -> Iterator[Callable[..., PredictionLog]]:
    logs: list[PredictionLog] = []

    def make(url: str = base_url, **kwargs: Any) -> PredictionLog:
        kwargs.setdefault("format", log_format)
        log = PredictionLog(url, **kwargs)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _record(log: PredictionLog, n: int, *, prefix: str = "r", at: datetime = T0) -> None:
    log.record(
        "churn",
        1,
        [f"{prefix}{i}" for i in range(n)],
        {"x": list(range(n))},
        [i % 2 for i in range(n)],
        time=at,
    )


def test_records_round_trip_with_typed_columns_and_hour_partitions(
    make_log: Callable[..., PredictionLog], base_url: str, tmp_path: Path, log_format: str
) -> None:
    log = make_log()
    log.start()
    log.record(
        "churn",
        3,
        ["a", "b"],
        {"age": [31, 47], "income": [1.5, None], "city": ["Oslo", "Lima"]},
        ["no", "yes"],
        probabilities=[[0.9, 0.1], [0.2, 0.8]],
        classes=["no", "yes"],
        time=T0,
    )
    log.record("churn", 3, ["c"], {"age": [22]}, ["no"], time=T0 + timedelta(hours=1))
    log.record("churn", 4, ["d"], {"age": [50]}, ["yes"], time=T0 + timedelta(days=1))
    log.flush()

    root = tmp_path / "artifacts"
    dirs = sorted({str(Path(f).parent) for f in _files(root)})
    assert dirs == [
        "predictions/model=churn/version=3/date=2024-05-01/hour=10",
        "predictions/model=churn/version=3/date=2024-05-01/hour=11",
        "predictions/model=churn/version=4/date=2024-05-02/hour=10",
    ]
    assert all(Path(f).name.startswith("part-") for f in _files(root))
    assert all(f.endswith(SUFFIX[log_format]) for f in _files(root))
    assert log.written_rows == 4 and log.dropped == 0 and log.write_errors == 0

    df = read_predictions(base_url, "churn", version=3)
    assert list(df.columns) == [
        "prediction_id",
        "time",
        "model",
        "version",
        "input.age",
        "input.income",
        "input.city",
        "prediction",
        "proba.no",
        "proba.yes",
    ]
    assert df["prediction_id"].tolist() == ["a", "b", "c"]
    assert df["time"].tolist() == [T0, T0, T0 + timedelta(hours=1)]
    assert str(df["time"].dtype) == "datetime64[us, UTC]"
    assert df["version"].dtype == np.int64
    assert set(df["model"]) == {"churn"} and df["version"].tolist() == [3, 3, 3]
    assert df["input.age"].tolist() == [31, 47, 22]
    assert df["input.age"].dtype == np.int64
    assert df["input.income"].iloc[0] == 1.5 and df["input.income"].iloc[1:].isna().all()
    assert df["input.city"].iloc[:2].tolist() == ["Oslo", "Lima"]
    assert df["prediction"].tolist() == ["no", "yes", "no"]
    assert df["proba.yes"].iloc[:2].tolist() == [0.1, 0.8]
    assert pd.isna(df["proba.yes"].iloc[2])

    everything = read_predictions(base_url, "churn")
    assert everything["prediction_id"].tolist() == ["a", "b", "c", "d"]
    assert everything["version"].tolist() == [3, 3, 3, 4]


def test_numpy_values_and_probabilities_without_classes(
    make_log: Callable[..., PredictionLog], base_url: str
) -> None:
    log = make_log()
    log.record(
        "iris",
        1,
        np.array(["p0", "p1"]),
        {"f": np.array([0.5, 1.5]), "k": np.array([1, 2], dtype=np.int32)},
        np.array([2, 0]),
        probabilities=np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]]),
        time=T0,
    )
    log.flush()

    df = read_predictions(base_url, "iris")
    assert df["prediction_id"].tolist() == ["p0", "p1"]
    assert df["input.f"].tolist() == [0.5, 1.5]
    assert df["input.k"].tolist() == [1, 2]
    assert df["prediction"].tolist() == [2, 0]
    assert [c for c in df.columns if c.startswith("proba.")] == ["proba.0", "proba.1", "proba.2"]
    assert df["proba.2"].tolist() == [0.7, 0.1]


def test_odd_inputs_are_stored_and_malformed_records_counted_without_killing_the_writer(
    make_log: Callable[..., PredictionLog],
    base_url: str,
    caplog: pytest.LogCaptureFixture,
    log_format: str,
) -> None:
    log = make_log()
    log.start()
    log.record(
        "odd",
        1,
        ["a", "b", "c"],
        {
            "mixed": [1, "two", None],
            "empty_dicts": [{}, {}, None],
            "objects": [object(), None, object()],
            "huge": [2**70, 1, None],
            "nones": [None, None, None],
        },
        [1, "cat", None],
        time=T0,
    )
    with caplog.at_level(logging.ERROR, logger="shipway.serving.predlog"):
        log.record("odd", 1, ["d", "e"], {"mixed": [1]}, [0, 1], time=T0)  # 1 input for 2 ids
        log.record("odd", 1, ["f"], {}, [0], probabilities=[[0.5]], classes=["a", "b"], time=T0)
        log.flush()
    assert log.write_errors == 2
    assert "malformed record" in caplog.text
    log.record("odd", 1, ["g"], {"mixed": [5]}, [7], time=T0 + timedelta(minutes=1))
    log.flush()

    df = read_predictions(base_url, "odd")
    assert df["prediction_id"].tolist() == ["a", "b", "c", "g"]
    assert df["input.mixed"].tolist()[:2] == ["1", "two"] and pd.isna(df["input.mixed"][2])
    assert df["input.huge"].tolist()[:2] == [str(2**70), "1"]
    assert df["input.objects"].iloc[0].startswith("<object object")
    assert df["input.nones"].iloc[:3].isna().all()
    assert df["prediction"].tolist()[:2] == ["1", "cat"] and pd.isna(df["prediction"][2])
    assert df["prediction"][3] == 7
    # Parquet cannot store an empty struct, so it keeps the text; JSON keeps the objects.
    empty = ["{}", "{}"] if log_format == "parquet" else [{}, {}]
    assert df["input.empty_dicts"].tolist()[:2] == empty
    assert log.written_rows == 4


def test_sample_rate_zero_writes_nothing_and_half_writes_about_half(
    make_log: Callable[..., PredictionLog], base_url: str, tmp_path: Path
) -> None:
    none = make_log(sample_rate=0.0)
    none.start()
    _record(none, 1000)
    none.flush()
    assert not (tmp_path / "artifacts").exists()
    assert read_predictions(base_url, "churn").empty
    assert none.dropped == 0 and none.written_rows == 0

    half = make_log(sample_rate=0.5, flush_rows=100_000)
    half.start()
    n = 10_000
    for chunk in range(10):
        _record(half, n // 10, prefix=f"c{chunk}-")
    half.flush()
    df = read_predictions(base_url, "churn")
    # Binomial(10_000, 0.5): sd 50, so +-300 (6 sd) essentially never fails by chance.
    assert abs(len(df) - n / 2) < 300
    assert half.written_rows == len(df) and half.dropped == 0
    # Sampled rows keep their own inputs and predictions.
    row = df["prediction_id"].str.rsplit("-", n=1).str[1].astype(int)
    assert (df["input.x"] == row).all() and (df["prediction"] == row % 2).all()


def test_full_queue_drops_and_calls_on_drop_without_blocking(
    make_log: Callable[..., PredictionLog], base_url: str
) -> None:
    drops: list[int] = []
    log = make_log(max_queue=2, on_drop=drops.append)  # no thread: nothing drains the queue
    began = time.monotonic()
    for i in range(5):
        _record(log, 3, prefix=f"q{i}-")
    log.record_feedback("churn", [("q0-0", 1)], time=T0)
    assert time.monotonic() - began < 5.0  # a blocking put would never return: no thread drains
    assert drops == [3, 3, 3, 1]
    assert log.dropped == 10

    log.flush()  # with no thread, flush writes the queue itself
    assert read_predictions(base_url, "churn")["prediction_id"].tolist() == [
        "q0-0",
        "q0-1",
        "q0-2",
        "q1-0",
        "q1-1",
        "q1-2",
    ]
    assert read_feedback(base_url, "churn").empty


def test_close_flushes_is_idempotent_and_later_records_are_dropped(
    make_log: Callable[..., PredictionLog], base_url: str
) -> None:
    drops: list[int] = []
    log = make_log(flush_interval_s=3600, on_drop=drops.append)
    log.start()
    _record(log, 7)
    log.record_feedback("churn", [("r1", "yes")], time=T0)
    log.close()
    log.close()

    assert len(read_predictions(base_url, "churn")) == 7
    assert read_feedback(base_url, "churn")["label"].tolist() == ["yes"]
    _record(log, 2)
    assert drops == [2] and log.dropped == 2


def test_writes_on_interval_and_on_row_count_without_flush(
    make_log: Callable[..., PredictionLog], tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"

    def wait_for_files() -> list[str]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (files := _files(root) if root.exists() else []):
            time.sleep(0.02)
        return files

    by_time = make_log(flush_interval_s=0.1)
    by_time.start()
    _record(by_time, 1)
    assert len(wait_for_files()) == 1
    by_time.close()

    by_rows = make_log(flush_interval_s=3600, flush_rows=10)
    by_rows.start()
    _record(by_rows, 4, prefix="small")
    time.sleep(0.2)
    assert len(_files(root)) == 1  # 4 rows wait for the hour-long interval
    _record(by_rows, 6, prefix="big")
    deadline = time.monotonic() + 10
    while len(_files(root)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_files(root)) == 2


def test_write_failures_are_counted_and_logged_and_the_writer_survives(
    make_log: Callable[..., PredictionLog], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log wants a directory")
    log = make_log(blocker.as_uri())
    log.start()
    with caplog.at_level(logging.ERROR, logger="shipway.serving.predlog"):
        _record(log, 3)
        log.flush()
        _record(log, 3, at=T0 + timedelta(hours=2))
        log.flush()
    assert log.write_errors == 2 and log.written_rows == 0
    assert "could not write 3 rows" in caplog.text
    assert log._thread is not None and log._thread.is_alive()


def test_concurrent_reader_never_sees_a_partial_file(
    make_log: Callable[..., PredictionLog], base_url: str, tmp_path: Path, log_format: str
) -> None:
    log = make_log(flush_interval_s=0.005, flush_rows=50)
    log.start()
    stop = threading.Event()
    problems: list[BaseException] = []
    parsed: set[Path] = set()
    counts: list[int] = []
    root = tmp_path / "artifacts"

    def scan_new_files() -> None:  # parses every file the moment it becomes visible
        while not stop.is_set():
            try:
                for path in root.rglob(f"part-*{SUFFIX[log_format]}"):
                    if path not in parsed:
                        _parse(path)
                        parsed.add(path)
            except BaseException as exc:
                problems.append(exc)
                return

    def read_all() -> None:
        while not stop.is_set():
            try:
                counts.append(len(read_predictions(base_url, "churn")))
            except BaseException as exc:
                problems.append(exc)
                return

    readers = [threading.Thread(target=scan_new_files), threading.Thread(target=read_all)]
    for thread in readers:
        thread.start()
    rng = np.random.default_rng(0)
    try:
        for i in range(60):
            # Incompressible 10 kB per row, so each file takes a while to write.
            pad = [rng.bytes(5000).hex() for _ in range(50)]
            ids = [f"{i}-{j}" for j in range(50)]
            log.record("churn", 1, ids, {"pad": pad}, [0] * 50, time=T0 + timedelta(minutes=i))
            time.sleep(0.002)
        log.flush()
    finally:
        stop.set()
        for thread in readers:
            thread.join(30)
    assert problems == []
    assert len(parsed) > 10 and len(counts) > 1
    assert all(c % 50 == 0 for c in counts) and counts == sorted(counts)  # whole files only
    assert len(read_predictions(base_url, "churn")) == 60 * 50
    assert not list(root.rglob(".part-*"))  # no temporary file left behind


def test_feedback_join_takes_the_latest_label_and_keeps_label_types(
    make_log: Callable[..., PredictionLog], base_url: str
) -> None:
    log = make_log()
    log.start()
    log.record("churn", 1, ["a", "b", "c", "d"], {"x": [1, 2, 3, 4]}, [1, 0, 1, 0], time=T0)
    log.record_feedback("churn", [("a", 0), ("b", 0)], time=T0 + timedelta(minutes=5))
    log.record_feedback("churn", [("a", 1)], time=T0 + timedelta(hours=3))  # a correction
    log.record_feedback("other", [("c", 1)], time=T0 + timedelta(minutes=5))
    log.flush()

    feedback = read_feedback(base_url, "churn")
    assert feedback["prediction_id"].tolist() == ["a", "b", "a"]
    assert feedback["label"].tolist() == [0, 0, 1]
    assert feedback["time"].tolist() == [T0 + timedelta(minutes=m) for m in (5, 5, 180)]

    joined = join_feedback(read_predictions(base_url, "churn"), feedback)
    assert joined["prediction_id"].tolist() == ["a", "b", "c", "d"]
    assert joined["label"].iloc[:2].tolist() == [1, 0]
    assert joined["label"].iloc[2:].isna().all()
    assert joined["feedback_time"].iloc[0] == T0 + timedelta(hours=3)
    assert (joined["prediction"] == joined["label"]).tolist() == [True, True, False, False]

    # Labels are stored as JSON, so 1 and "1" and structured labels stay distinct.
    log.record_feedback("typed", [("p", "1"), ("q", 1), ("r", [1, 2]), ("s", None)], time=T0)
    log.flush()
    assert read_feedback(base_url, "typed")["label"].tolist() == ["1", 1, [1, 2], None]


def test_time_filters_read_only_overlapping_partitions(
    make_log: Callable[..., PredictionLog], base_url: str, tmp_path: Path, log_format: str
) -> None:
    log = make_log()
    log.start()
    for h in range(4):
        _record(log, 2, prefix=f"h{h}-", at=T0 + timedelta(hours=h))  # 10:15, 11:15, ...
    log.record_feedback("churn", [("h0-0", 1)], time=T0)
    log.record_feedback("churn", [("h3-0", 0)], time=T0 + timedelta(hours=3))
    log.flush()
    # Unreadable files in hours 10 and 13 prove those partitions are skipped, not filtered.
    root = tmp_path / "artifacts"
    for kind in ("predictions/model=churn/version=1", "feedback/model=churn"):
        for hour in ("10", "13"):
            bad = f"part-bad{SUFFIX[log_format]}"
            (root / kind / "date=2024-05-01" / f"hour={hour}" / bad).write_text("x")

    start, end = T0 + timedelta(minutes=45), T0 + timedelta(hours=2, minutes=45)  # [11:00, 13:00)
    df = read_predictions(base_url, "churn", start=start, end=end)
    assert df["prediction_id"].tolist() == ["h1-0", "h1-1", "h2-0", "h2-1"]
    assert read_feedback(base_url, "churn", start=start, end=end).empty

    # Within an hour, rows are filtered by time too; naive datetimes mean UTC.
    naive = datetime(2024, 5, 1, 11, 20)
    assert read_predictions(base_url, "churn", start=start, end=naive)["prediction_id"].size == 2
    assert read_predictions(base_url, "churn", start=naive, end=end)["prediction_id"].size == 2
    assert read_predictions(base_url, "churn", version=2, start=start).empty
    with pytest.raises((pa.ArrowInvalid, gzip.BadGzipFile)):  # planted files read without filter
        read_predictions(base_url, "churn")


def test_reading_nothing_gives_empty_frames_with_the_base_columns(base_url: str) -> None:
    df = read_predictions(base_url, "missing")
    assert df.empty
    assert list(df.columns) == ["prediction_id", "time", "model", "version", "prediction"]
    fb = read_feedback(base_url, "missing")
    assert fb.empty and list(fb.columns) == ["prediction_id", "label", "time"]
    joined = join_feedback(df, fb)
    assert joined.empty and {"label", "feedback_time"} <= set(joined.columns)


def test_round_trip_on_s3(s3_bucket_url: str, log_format: str) -> None:
    with PredictionLog(s3_bucket_url, format=log_format) as log:
        log.record("churn", 2, ["a", "b"], {"x": [1.0, 2.0]}, ["no", "yes"], time=T0)
        log.record("churn", 2, ["c"], {"x": [3.0]}, ["no"], time=T0 + timedelta(hours=1))
        log.record_feedback("churn", [("b", "yes")], time=T0)
        log.flush()
        assert log.written_rows == 4 and log.write_errors == 0

        fs = fsspec.filesystem("s3")
        fs.invalidate_cache()
        keys = sorted(fs.find(s3_bucket_url))
        prefix = s3_bucket_url.removeprefix("s3://")
        parents = sorted({k.removeprefix(prefix + "/").rsplit("/", 1)[0] for k in keys})
        assert parents == [
            "feedback/model=churn/date=2024-05-01/hour=10",
            "predictions/model=churn/version=2/date=2024-05-01/hour=10",
            "predictions/model=churn/version=2/date=2024-05-01/hour=11",
        ]
        assert all(k.rsplit("/", 1)[1].startswith("part-") for k in keys)
        assert all(k.endswith(SUFFIX[log_format]) for k in keys)

        df = read_predictions(s3_bucket_url, "churn", start=T0 + timedelta(minutes=50))
        assert df["prediction_id"].tolist() == ["c"] and df["input.x"].tolist() == [3.0]
        joined = join_feedback(
            read_predictions(s3_bucket_url, "churn"), read_feedback(s3_bucket_url, "churn")
        )
        assert joined["label"].tolist()[1] == "yes"
        assert (joined["prediction"] == joined["label"]).tolist() == [False, True, False]


def test_invalid_settings_are_refused(base_url: str) -> None:
    with pytest.raises(InvalidInputError, match="sample_rate"):
        PredictionLog(base_url, sample_rate=1.5)
    with pytest.raises(InvalidInputError, match="max_queue"):
        PredictionLog(base_url, max_queue=0)


def _mixed_record(log: PredictionLog, ids: list[str], at: datetime) -> None:
    n = len(ids)
    log.record(
        "mix",
        1,
        ids,
        {"age": list(range(n)), "income": [1.5] * (n - 1) + [None], "city": ["Oslo"] * n},
        ["no", "yes"][:n],
        probabilities=[[0.25, 0.75]] * n,
        classes=["no", "yes"],
        time=at,
    )


def test_both_formats_in_one_partition_read_as_one_frame_with_the_same_types(
    base_url: str, tmp_path: Path
) -> None:
    with PredictionLog(base_url, format="parquet") as parquet_log:
        _mixed_record(parquet_log, ["p0", "p1"], T0)
        parquet_log.record_feedback("mix", [("p0", 1), ("j1", "yes")], time=T0)
    with PredictionLog(base_url, format="jsonl") as jsonl_log:
        _mixed_record(jsonl_log, ["j0", "j1"], T0 + timedelta(minutes=1))
        jsonl_log.record_feedback("mix", [("j0", [1, 2]), ("p1", None)], time=T0)

    hour = tmp_path / "artifacts/predictions/model=mix/version=1/date=2024-05-01/hour=10"
    assert sorted(p.name.split(".", 1)[1] for p in hour.iterdir()) == ["jsonl.gz", "parquet"]

    df = read_predictions(base_url, "mix")
    assert df["prediction_id"].tolist() == ["p0", "p1", "j0", "j1"]
    assert df["input.age"].tolist() == [0, 1, 0, 1] and df["input.age"].dtype == np.int64
    assert df["input.income"].tolist()[::2] == [1.5, 1.5] and df["input.income"][1::2].isna().all()
    assert df["prediction"].tolist() == ["no", "yes", "no", "yes"]
    assert df["proba.yes"].tolist() == [0.75] * 4
    assert str(df["time"].dtype) == "datetime64[us, UTC]" and df["version"].dtype == np.int64

    # Each format alone gives the same columns and dtypes.
    only = {
        fmt: read_predictions(base_url, "mix").iloc[rows].reset_index(drop=True)
        for fmt, rows in (("parquet", slice(0, 2)), ("jsonl", slice(2, 4)))
    }
    assert list(only["parquet"].columns) == list(only["jsonl"].columns)
    feedback = read_feedback(base_url, "mix")
    assert sorted(feedback["prediction_id"]) == ["j0", "j1", "p0", "p1"]
    labels = dict(zip(feedback["prediction_id"], feedback["label"], strict=True))
    assert labels == {"p0": 1, "j1": "yes", "j0": [1, 2], "p1": None}


def test_each_format_alone_gives_the_same_frame(tmp_path: Path) -> None:
    frames = {}
    for fmt in ("parquet", "jsonl"):
        url = (tmp_path / fmt).as_uri()
        with PredictionLog(url, format=fmt) as log:  # type: ignore[arg-type]
            _mixed_record(log, ["a", "b"], T0)
        frames[fmt] = read_predictions(url, "mix")
    pd.testing.assert_frame_equal(frames["parquet"], frames["jsonl"])


def test_without_pyarrow_auto_writes_json_lines_and_parquet_is_refused(
    base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert PredictionLog(base_url).format == "parquet"  # pyarrow is installed here
    with PredictionLog(base_url, format="parquet") as log:
        _record(log, 1, prefix="pq")
    monkeypatch.setattr(predlog, "pyarrow_available", lambda: False)
    with PredictionLog(base_url) as log:
        assert log.format == "jsonl"
        _record(log, 1, prefix="js")
    with pytest.raises(InvalidInputError, match="needs pyarrow"):
        PredictionLog(base_url, format="parquet")
    with pytest.raises(InvalidInputError, match="Unknown prediction log format"):
        PredictionLog(base_url, format="csv")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="pyarrow is not installed to read it"):
        read_predictions(base_url, "churn")
    monkeypatch.undo()
    assert sorted(read_predictions(base_url, "churn")["prediction_id"]) == ["js0", "pq0"]


_NO_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # as in the serving image: `import pyarrow` raises ImportError
import shipway.cli, shipway.cli.serve, shipway.serving.server, shipway.serving.app
from shipway.packaging import bundle
from shipway.serving.predlog import PredictionLog, read_feedback, read_predictions
url = sys.argv[1]
with PredictionLog(url) as log:
    assert log.format == "jsonl", log.format
    log.record("m", 1, ["a", "b"], {"x": [1.5, 2.5]}, [0, 1], time=None)
    log.record_feedback("m", [("a", 0)])
assert read_predictions(url, "m")["input.x"].tolist() == [1.5, 2.5]
assert read_feedback(url, "m")["label"].tolist() == [0]
assert sys.modules["pyarrow"] is None
assert not [m for m in sys.modules if m.startswith("pyarrow.")], "pyarrow submodule imported"
print("ok")
"""


def test_the_serve_path_imports_and_logs_without_pyarrow(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_PYARROW, (tmp_path / "log").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
