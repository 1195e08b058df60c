"""The prediction log: every prediction the model server makes, as Parquet or JSON Lines files.

The server calls `PredictionLog.record` on the request path; it never blocks and never raises.
It samples rows, then hands the record to a bounded queue (a full queue drops the record and
reports it through `on_drop`). One background thread batches the queue and writes one Parquet
file per partition every `flush_interval_s` seconds, or sooner once `flush_rows` rows wait.

Files are Parquet when pyarrow can be imported, else gzip-compressed JSON Lines (`format="auto"`,
the default; `"parquet"` or `"jsonl"` choose one). Serving images leave pyarrow out (it is
about 150 MB installed), so they write JSON Lines; the readers read both, mixed in one partition.

Layout, under any fsspec URL (usually the artefact store's)::

    {base}/predictions/model={model}/version={version}/date=YYYY-MM-DD/hour=HH/part-{uuid}.parquet
    {base}/feedback/model={model}/date=YYYY-MM-DD/hour=HH/part-{uuid}.parquet

(`part-{uuid}.jsonl.gz` for JSON Lines.) Partitions are the UTC hour of the prediction (for
feedback, of the label's arrival). A file is written under a hidden temporary name
(`.part-{uuid}.parquet.tmp`) in its final directory and then moved into place, so a reader
never sees part of a file.

Prediction files hold `prediction_id` (string), `time` (timestamp[us, UTC]), `model`
(string), `version` (int64), `input.<name>` per input (its values' inferred Arrow type),
`prediction` (inferred type) and, when probabilities are given, `proba.<class>` (float64) per
class. A column whose values have no common Arrow type (mixed types, unknown objects) is
stored as strings (`str(value)`, nulls kept). Feedback files hold `prediction_id` (string),
`label` (the label as JSON text, so 1, "1" and 1.0 stay distinct; null for None) and `time`
(timestamp[us, UTC]); `read_feedback` decodes `label` back to Python values.

A JSON Lines file holds one object per row with the same keys; `time` is microseconds since
the epoch, and a column is kept as JSON values when they share a type (booleans, integers that
fit int64, numbers, strings, lists, objects) and stored as strings otherwise, as in Parquet.
"""

from __future__ import annotations

import gzip
import json
import logging
import queue
import random
import threading
import time as _time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import fsspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from shipway.errors import InvalidInputError

if TYPE_CHECKING:  # imported lazily: serving images do without pyarrow
    import pyarrow as pa

__all__ = [
    "PredictionLog",
    "join_feedback",
    "pyarrow_available",
    "read_feedback",
    "read_predictions",
]

logger = logging.getLogger(__name__)

Format = Literal["auto", "parquet", "jsonl"]
FORMATS = ("auto", "parquet", "jsonl")
_SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl.gz"}
_TIME_DTYPE = "datetime64[us, UTC]"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_INT64 = (-(2**63), 2**63 - 1)
# The columns of an empty result, with their dtypes (as Parquet gives them).
_PREDICTION_COLUMNS = {"prediction_id": "str", "time": _TIME_DTYPE, "model": "str",
                       "version": "int64", "prediction": "object"}  # fmt: skip
_FEEDBACK_COLUMNS = {"prediction_id": "str", "label": "str", "time": _TIME_DTYPE}


def pyarrow_available() -> bool:
    """True when pyarrow can be imported (then the log writes Parquet by default)."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, TypeError, ValueError, OverflowError)


Values = Sequence[Any] | npt.NDArray[Any]
"""One value per row: a sequence or a NumPy array (a 2-D array for probabilities)."""


# =============================================================================
# Queue items
# =============================================================================


@dataclass(frozen=True)
class _Predictions:
    model: str
    version: int
    time: datetime
    ids: list[Any]
    inputs: dict[str, list[Any]]
    predictions: list[Any]
    probabilities: list[Any] | None
    classes: list[Any] | None


@dataclass(frozen=True)
class _Feedback:
    model: str
    time: datetime
    items: list[Any]


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


class _Stop:
    pass


_Item = _Predictions | _Feedback | _Flush | _Stop


def _utc(moment: datetime | None) -> datetime:
    """`moment` in UTC (naive times are taken to be UTC already); now if None."""
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# =============================================================================
# The writer
# =============================================================================


class PredictionLog:
    """Buffered, sampled, never-blocking log of predictions and feedback (see the module)."""

    def __init__(
        self,
        base_url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        sample_rate: float = 1.0,
        max_queue: int = 10_000,
        flush_interval_s: float = 2.0,
        flush_rows: int = 1_000,  # bounds each write's GIL burst: p99 44 ms, not 98, at 64 conns
        on_drop: Callable[[int], None] | None = None,
        format: Format = "auto",
    ) -> None:
        if format not in FORMATS:
            raise InvalidInputError(
                f"Unknown prediction log format '{format}'.", f"Use one of {', '.join(FORMATS)}."
            )
        if format == "auto":
            format = "parquet" if pyarrow_available() else "jsonl"
        elif format == "parquet" and not pyarrow_available():
            raise InvalidInputError(
                "The Parquet prediction log needs pyarrow, which is not installed.",
                "pip install pyarrow, or use format='jsonl' (or 'auto').",
            )
        if not 0.0 <= sample_rate <= 1.0:
            raise InvalidInputError(f"sample_rate must be in [0, 1], not {sample_rate}.")
        if max_queue < 1 or flush_rows < 1 or flush_interval_s <= 0:
            raise InvalidInputError(
                "max_queue and flush_rows must be at least 1 and flush_interval_s positive."
            )
        self.format: Literal["parquet", "jsonl"] = format
        self.base_url = base_url.rstrip("/")
        self.fs, self.root = _open_fs(self.base_url, storage_options)
        self.sample_rate = sample_rate
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self.on_drop = on_drop
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=max_queue)
        self._rng = random.Random()
        self._counter_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._drain_lock = threading.Lock()  # one consumer at a time when there is no thread
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._written_rows = 0
        self._write_errors = 0
        # Writer-side state, touched only by the consumer (thread or synchronous drain).
        self._pending_predictions: list[_Predictions] = []
        self._pending_feedback: list[_Feedback] = []
        self._pending_rows = 0
        self._deadline: float | None = None

    # -- counters -------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Rows dropped because the queue was full or the log closed (sampled-out rows aren't)."""
        return self._dropped

    @property
    def written_rows(self) -> int:
        """Prediction and feedback rows written to storage."""
        return self._written_rows

    @property
    def write_errors(self) -> int:
        """Failed file writes plus records rejected as malformed (each is logged)."""
        return self._write_errors

    def _count(self, *, dropped: int = 0, written: int = 0, errors: int = 0) -> None:
        with self._counter_lock:
            self._dropped += dropped
            self._written_rows += written
            self._write_errors += errors

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the background writer thread (once; later calls do nothing)."""
        with self._state_lock:
            if self._closed:
                raise InvalidInputError("This prediction log is closed; create a new one.")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shipway-prediction-log", daemon=True
                )
                self._thread.start()

    def __enter__(self) -> PredictionLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self, timeout: float = 10) -> None:
        """Block until everything queued before this call is written.

        Without a running thread the caller writes the queue itself. Raises TimeoutError if
        the writer does not get there within `timeout` seconds.
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain()
            return
        done = threading.Event()
        deadline = _time.monotonic() + timeout
        try:
            self._queue.put(_Flush(done), timeout=timeout)
        except queue.Full:
            raise TimeoutError(f"Prediction log queue still full after {timeout}s.") from None
        if not done.wait(max(0.0, deadline - _time.monotonic())):
            raise TimeoutError(f"Prediction log not flushed within {timeout}s.")

    def close(self, timeout: float = 10) -> None:
        """Write what is queued and stop the thread; later records are dropped. Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain()
            return
        deadline = _time.monotonic() + timeout
        try:
            self._queue.put(_Stop(), timeout=timeout)
        except queue.Full:
            logger.warning("Prediction log: queue still full after %ss; not all written.", timeout)
            return
        thread.join(max(0.0, deadline - _time.monotonic()))
        if thread.is_alive():
            logger.warning("Prediction log: writer still busy after %ss at close.", timeout)

    # -- request path ---------------------------------------------------------

    def record(
        self,
        model: str,
        version: int,
        ids: Sequence[str] | npt.NDArray[Any],
        inputs: Mapping[str, Values],
        predictions: Values,
        probabilities: Sequence[Sequence[float]] | npt.NDArray[np.floating[Any]] | None = None,
        classes: Values | None = None,
        *,
        time: datetime | None = None,
    ) -> None:
        """Queue one call's predictions (row i: ids[i], inputs[c][i], predictions[i], ...).

        Never blocks and never raises: sampled-out rows vanish silently, a full queue (or a
        closed log) drops the record and calls `on_drop(rows)`, and a malformed record is
        logged and counted in `write_errors`. `time` defaults to now (naive means UTC).
        """
        try:
            n = len(ids)
            if n == 0 or self.sample_rate <= 0.0:
                return
            if self.sample_rate >= 1.0:
                rows: list[int] | None = None
            else:
                rate, rnd = self.sample_rate, self._rng.random
                rows = [i for i in range(n) if rnd() < rate]
                if not rows:
                    return

            def take(values: Values) -> list[Any]:
                if rows is None:
                    return list(values)
                if len(values) != n:
                    raise ValueError(f"{len(values)} values for {n} ids")
                return [values[i] for i in rows]

            item = _Predictions(
                model=str(model),
                version=int(version),
                time=_utc(time),
                ids=take(ids),
                inputs={str(name): take(col) for name, col in inputs.items()},
                predictions=take(predictions),
                probabilities=None if probabilities is None else take(probabilities),
                classes=None if classes is None else list(classes),
            )
        except Exception:
            logger.exception("Prediction log: malformed record for model %r ignored.", model)
            self._count(errors=1)
            return
        self._offer(item, len(item.ids))

    def record_feedback(
        self, model: str, items: Sequence[tuple[str, Any]], *, time: datetime | None = None
    ) -> None:
        """Queue labels as (prediction_id, label) pairs; never blocks or raises, not sampled."""
        try:
            item = _Feedback(model=str(model), time=_utc(time), items=list(items))
        except Exception:
            logger.exception("Prediction log: malformed feedback for model %r ignored.", model)
            self._count(errors=1)
            return
        if item.items:
            self._offer(item, len(item.items))

    def _offer(self, item: _Item, rows: int) -> None:
        if not self._closed:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
        self._count(dropped=rows)
        if self.on_drop is not None:
            try:
                self.on_drop(rows)
            except Exception:
                logger.debug("Prediction log: on_drop callback failed.", exc_info=True)

    # -- consumer -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                timeout = None
                if self._deadline is not None:
                    timeout = max(0.0, self._deadline - _time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    self._write_pending()
                    continue
                if self._handle(item):
                    return
            except Exception:  # never let the thread die
                logger.exception("Prediction log: writer loop error.")

    def _drain(self) -> None:
        """Consume the queue in the calling thread (used when no writer thread runs)."""
        with self._drain_lock:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._handle(item)
            self._write_pending()

    def _handle(self, item: _Item) -> bool:
        """Take one queue item; True when the writer should stop."""
        if isinstance(item, _Flush | _Stop):
            try:
                self._write_pending()
            finally:
                if isinstance(item, _Flush):
                    item.done.set()
            return isinstance(item, _Stop)
        if isinstance(item, _Predictions):
            self._pending_predictions.append(item)
            self._pending_rows += len(item.ids)
        else:
            self._pending_feedback.append(item)
            self._pending_rows += len(item.items)
        if self._deadline is None:
            self._deadline = _time.monotonic() + self.flush_interval_s
        if self._pending_rows >= self.flush_rows or _time.monotonic() >= self._deadline:
            self._write_pending()
        return False

    def _write_pending(self) -> None:
        predictions, self._pending_predictions = self._pending_predictions, []
        feedback, self._pending_feedback = self._pending_feedback, []
        self._pending_rows = 0
        self._deadline = None

        groups: dict[tuple[str, ...], list[Any]] = {}
        for p in predictions:
            key: tuple[str, ...] = ("predictions", p.model, str(p.version), *_hour_key(p.time))
            groups.setdefault(key, []).append(p)
        for f in feedback:
            key = ("feedback", f.model, *_hour_key(f.time))
            groups.setdefault(key, []).append(f)

        for key, records in groups.items():
            kind, model = key[0], key[1]
            if kind == "predictions":
                columns = self._prediction_columns(records)
                directory = (
                    f"{self.root}/predictions/model={_segment(model)}/version={key[2]}"
                    f"/date={key[3]}/hour={key[4]}"
                )
            else:
                columns = self._feedback_columns(records)
                directory = (
                    f"{self.root}/feedback/model={_segment(model)}/date={key[2]}/hour={key[3]}"
                )
            rows = len(columns["prediction_id"]) if columns else 0
            if columns is None or rows == 0:
                continue
            try:
                if self.format == "parquet":
                    data = _parquet_bytes(columns, feedback=kind == "feedback")
                else:
                    data = _jsonl_bytes(columns)
                self._write_file(directory, data)
            except Exception:
                logger.exception("Prediction log: could not write %d rows to %s.", rows, directory)
                self._count(errors=1)
            else:
                self._count(written=rows)

    def _write_file(self, directory: str, data: bytes) -> None:
        name, suffix = uuid.uuid4().hex, _SUFFIX[self.format]
        tmp, final = f"{directory}/.part-{name}{suffix}.tmp", f"{directory}/part-{name}{suffix}"
        self.fs.makedirs(directory, exist_ok=True)
        self.fs.pipe_file(tmp, data)
        try:
            self.fs.mv(tmp, final)
        except Exception:
            try:
                self.fs.rm(tmp)
            except Exception:
                logger.debug("Prediction log: could not remove %s.", tmp, exc_info=True)
            raise

    def _prediction_columns(self, records: list[_Predictions]) -> dict[str, list[Any]] | None:
        """The rows of `records` as columns, in file order; malformed records are skipped."""
        ids: list[str] = []
        times: list[datetime] = []
        models: list[str] = []
        versions: list[int] = []
        inputs: dict[str, list[Any]] = {}
        preds: list[Any] = []
        probas: dict[str, list[float | None]] = {}
        for rec in records:
            try:
                n, proba = len(rec.ids), _proba_columns(rec)
                for name, col in rec.inputs.items():
                    if len(col) != n:
                        raise ValueError(f"input '{name}' has {len(col)} values for {n} ids")
                if len(rec.predictions) != n:
                    raise ValueError(f"{len(rec.predictions)} predictions for {n} ids")
                new_ids = [str(i) for i in rec.ids]
            except Exception as exc:
                logger.error(
                    "Prediction log: malformed record for %s v%s skipped: %s",
                    rec.model,
                    rec.version,
                    exc,
                )
                self._count(errors=1)
                continue
            before = len(ids)
            ids.extend(new_ids)
            times.extend([rec.time] * n)
            models.extend([rec.model] * n)
            versions.extend([rec.version] * n)
            preds.extend(rec.predictions)
            # Not setdefault(name, [None] * before): its default would be built for every
            # record and column, quadratic in the rows of a flush.
            for name, values in ((f"input.{k}", v) for k, v in rec.inputs.items()):
                if name not in inputs:
                    inputs[name] = [None] * before
                inputs[name].extend(values)
            for name, values in proba.items():
                if name not in probas:
                    probas[name] = [None] * before
                probas[name].extend(values)
            for col in (*inputs.values(), *probas.values()):
                col.extend([None] * (len(ids) - len(col)))
        if not ids:
            return None
        return {
            "prediction_id": ids,
            "time": times,
            "model": models,
            "version": versions,
            **inputs,
            "prediction": preds,
            **probas,
        }

    def _feedback_columns(self, records: list[_Feedback]) -> dict[str, list[Any]] | None:
        ids: list[str] = []
        labels: list[str | None] = []
        times: list[datetime] = []
        for rec in records:
            for entry in rec.items:
                try:
                    prediction_id, label = entry
                    encoded = None if label is None else _to_json(label)
                except Exception as exc:
                    logger.error("Prediction log: malformed feedback %r skipped: %s", entry, exc)
                    self._count(errors=1)
                    continue
                ids.append(str(prediction_id))
                labels.append(encoded)
                times.append(rec.time)
        if not ids:
            return None
        return {"prediction_id": ids, "label": labels, "time": times}


def _hour_key(moment: datetime) -> tuple[str, str]:
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def _proba_columns(rec: _Predictions) -> dict[str, list[float | None]]:
    if rec.probabilities is None:
        return {}
    rows = [[None if p is None else float(p) for p in row] for row in rec.probabilities]
    if len(rows) != len(rec.ids):
        raise ValueError(f"{len(rows)} probability rows for {len(rec.ids)} ids")
    width = len(rec.classes) if rec.classes is not None else (len(rows[0]) if rows else 0)
    if any(len(row) != width for row in rows):
        raise ValueError(f"probability rows do not all have {width} values")
    names = [str(c) for c in (rec.classes if rec.classes is not None else range(width))]
    return {f"proba.{name}": [row[j] for row in rows] for j, name in enumerate(names)}


# -- Parquet ------------------------------------------------------------------

_FIXED = ("prediction_id", "model", "label")  # string columns; time and version typed too


def _parquet_bytes(columns: dict[str, list[Any]], *, feedback: bool) -> bytes:
    import pyarrow as pa

    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if name in _FIXED:
            arrays[name] = pa.array(values, pa.string())
        elif name == "time":
            arrays[name] = pa.array(values, pa.timestamp("us", tz="UTC"))
        elif name == "version":
            arrays[name] = pa.array(values, pa.int64())
        elif name.startswith("proba."):
            arrays[name] = pa.array(values, pa.float64())
        else:
            arrays[name] = _infer(values)
    table = pa.table(arrays)
    try:
        return _encode(table)
    except _arrow_errors():
        if feedback:
            raise
    return _encode(_writable(table))


def _encode(table: pa.Table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _as_strings(values: Sequence[Any]) -> pa.Array:
    import pyarrow as pa

    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _infer(values: Sequence[Any]) -> pa.Array:
    """Values in their own Arrow type when they share one, else as strings."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except _arrow_errors():
        return _as_strings(values)


def _writable(table: pa.Table) -> pa.Table:
    """The table, with each column Parquet cannot store (say, empty structs) as strings.

    Called only once the whole table failed to encode, so that the usual file is encoded once
    (a trial encoding of every file took a sixth of the log's time, on the model's process)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    errors = _arrow_errors()
    for i, name in enumerate(table.column_names):
        try:
            pq.write_table(table.select([i]), pa.BufferOutputStream())
        except errors:
            table = table.set_column(i, name, _as_strings(table.column(i).to_pylist()))
    return table


# -- JSON Lines ---------------------------------------------------------------


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as Python values."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "bigint"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "other"


def _json_column(values: Sequence[Any]) -> list[Any]:
    """Values kept as JSON when they share a type (ints and floats mix), else as strings."""
    plain = [_plain(v) for v in values]
    kinds = {_kind(v) for v in plain if v is not None}
    if kinds == {"int", "float"}:
        return [None if v is None else float(v) for v in plain]
    if len(kinds) <= 1 and not kinds & {"bigint", "other"}:
        if not kinds & {"list", "dict"}:
            return plain
        try:
            json.dumps(plain, allow_nan=True)
            return plain
        except (TypeError, ValueError):
            pass
    return [None if v is None else str(v) for v in plain]


def _jsonl_bytes(columns: dict[str, list[Any]]) -> bytes:
    encoded: dict[str, list[Any]] = {}
    for name, values in columns.items():
        if name == "time":
            encoded[name] = [(t - _EPOCH) // _US for t in values]
        elif name in (*_FIXED, "version") or name.startswith("proba."):
            encoded[name] = values
        else:
            encoded[name] = _json_column(values)
    names = list(encoded)
    lines = [
        json.dumps(dict(zip(names, row, strict=True)), separators=(",", ":"))
        for row in zip(*encoded.values(), strict=True)
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6, mtime=0)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


# =============================================================================
# Readers
# =============================================================================


def _open_fs(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    try:
        fs, root = fsspec.core.url_to_fs(url.rstrip("/"), **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise InvalidInputError(
            f"Cannot open prediction log store '{url}': {exc}",
            "For s3:// install the extra: pip install 'shipway[s3]'.",
        ) from exc
    return fs, str(root).rstrip("/")


def _children(fs: Any, path: str, prefix: str) -> dict[str, str]:
    """{value: path} for the `prefix=value` directories under `path`."""
    try:
        entries = fs.ls(path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found: dict[str, str] = {}
    for entry in entries:
        name = str(entry).rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(f"{prefix}="):
            found[urllib.parse.unquote(name[len(prefix) + 1 :])] = str(entry).rstrip("/")
    return found


def _overlaps(lo: datetime, hi: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (end is None or lo < end) and (start is None or hi > start)


def _hour_dirs(
    fs: Any, path: str, start: datetime | None, end: datetime | None
) -> list[tuple[datetime, str]]:
    """The `date=/hour=` directories under `path` overlapping [start, end), oldest first."""
    found: list[tuple[datetime, str]] = []
    for day_text, day_path in _children(fs, path, "date").items():
        try:
            day = datetime.strptime(day_text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            continue
        if not _overlaps(day, day + timedelta(days=1), start, end):
            continue
        for hour_text, hour_path in _children(fs, day_path, "hour").items():
            if not (hour_text.isdigit() and 0 <= int(hour_text) < 24):
                continue
            hour = day + timedelta(hours=int(hour_text))
            if _overlaps(hour, hour + timedelta(hours=1), start, end):
                found.append((hour, hour_path))
    return sorted(found)


def _read_dir(fs: Any, path: str) -> list[pd.DataFrame]:
    frames = []
    try:
        entries = sorted(str(e) for e in fs.ls(path, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        name = entry.rsplit("/", 1)[-1]
        if not name.startswith("part-"):
            continue
        if name.endswith(_SUFFIX["parquet"]):
            frames.append(_read_parquet(fs, entry))
        elif name.endswith(_SUFFIX["jsonl"]):
            frames.append(_read_jsonl(fs, entry))
    return frames


def _read_parquet(fs: Any, path: str) -> pd.DataFrame:
    if not pyarrow_available():
        raise InvalidInputError(
            f"{path} is Parquet and pyarrow is not installed to read it.", "pip install pyarrow"
        )
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as fh:
        return pq.read_table(fh).to_pandas()


def _read_jsonl(fs: Any, path: str) -> pd.DataFrame:
    with fs.open(path, "rb") as fh:
        text = gzip.decompress(fh.read()).decode()
    df = pd.DataFrame([json.loads(line) for line in text.splitlines() if line])
    if "time" in df.columns:
        df["time"] = pd.to_datetime(df["time"], unit="us", utc=True).astype(_TIME_DTYPE)
    if "version" in df.columns:
        df["version"] = df["version"].astype("int64")
    return df


def _empty(columns: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


def _combine(
    frames: list[pd.DataFrame],
    columns: Mapping[str, str],
    start: datetime | None,
    end: datetime | None,
) -> pd.DataFrame:
    if not frames:
        return _empty(columns)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if start is not None:
        df = df[df["time"] >= pd.Timestamp(start)]
    if end is not None:
        df = df[df["time"] < pd.Timestamp(end)]
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def read_predictions(
    base_url: str,
    model: str,
    *,
    version: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Logged predictions of `model` (one version or all) with start <= time < end, by time.

    Only hour partitions overlapping [start, end) are read; naive datetimes are UTC. With
    nothing logged, an empty frame with the base columns.
    """
    fs, root = _open_fs(base_url, storage_options)
    fs.invalidate_cache()  # listings cached by fsspec may predate the latest writes
    start, end = (None if t is None else _utc(t) for t in (start, end))
    model_dir = f"{root}/predictions/model={_segment(model)}"
    if version is not None:
        versions = [f"{model_dir}/version={int(version)}"]
    else:
        versions = [p for v, p in sorted(_children(fs, model_dir, "version").items())]
    frames: list[pd.DataFrame] = []
    for version_dir in versions:
        for _, hour_dir in _hour_dirs(fs, version_dir, start, end):
            frames.extend(_read_dir(fs, hour_dir))
    return _combine(frames, _PREDICTION_COLUMNS, start, end)


def read_feedback(
    base_url: str,
    model: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Labels logged for `model` with start <= time < end: prediction_id, label, time.

    `label` is decoded from its stored JSON text back to Python values.
    """
    fs, root = _open_fs(base_url, storage_options)
    fs.invalidate_cache()
    start, end = (None if t is None else _utc(t) for t in (start, end))
    frames: list[pd.DataFrame] = []
    for _, hour_dir in _hour_dirs(fs, f"{root}/feedback/model={_segment(model)}", start, end):
        frames.extend(_read_dir(fs, hour_dir))
    df = _combine(frames, _FEEDBACK_COLUMNS, start, end)
    labels = [None if pd.isna(v) else json.loads(v) for v in df["label"].tolist()]
    df["label"] = pd.Series(labels, index=df.index, dtype=object).infer_objects()
    return df


def join_feedback(predictions: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """`predictions` with `label` and `feedback_time`: the latest label per prediction_id.

    A left join: predictions without feedback keep their row, with missing label.
    """
    latest = (
        feedback.sort_values("time", kind="stable")
        .drop_duplicates("prediction_id", keep="last")
        .loc[:, ["prediction_id", "label", "time"]]
        .rename(columns={"time": "feedback_time"})
    )
    return predictions.merge(latest, on="prediction_id", how="left", validate="many_to_one")
