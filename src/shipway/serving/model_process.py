"""A served model in its own process, so its predict calls never hold the HTTP side's GIL.

A scikit-learn pipeline spends milliseconds per call in Python (input checks, pandas), all of
it under the GIL; in the server's own process that time is taken from the event loop that reads
and answers requests, and the two take turns on one core. In a child process they run side by
side. The child loads the model, warms it up, then answers batches over a socket: checked
columns in, predictions out. It also makes the batch's prediction ids and writes the prediction
log, so logging costs the HTTP side nothing.

The child is started with `python -m shipway.serving.model_process` (not multiprocessing's
spawn, which re-imports the parent's `__main__`: a user's script without a main guard would
start servers recursively). It ignores SIGINT and SIGTERM: a Ctrl-C or a SIGTERM to the
process group must not kill it while the server drains. It exits when told to (after flushing
its prediction log) or when the socket closes (the server died). If it dies, or does not
answer a batch within the request timeout (it is then killed), the call in flight fails with
`ModelProcessError` and the next call starts a new child.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from shipway.errors import ShipwayError
from shipway.records import ModelVersionInfo
from shipway.types import Signature

log = logging.getLogger("shipway.serving")

Columns = dict[str, list[Any]]
# Variables the child must not inherit: metrics are the HTTP side's.
_NOT_INHERITED = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


class ModelProcessError(ShipwayError):
    """The model's process died or failed to start (a 503: another try may succeed)."""

    http_status = 503


class ModelCallError(Exception):
    """The model raised in its process; `kind` is the original exception's type name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class LogSpec:
    """Where and how much the child writes to the prediction log."""

    artifact_url: str
    artifact_options: dict[str, Any] | None
    sample_rate: float


@dataclass(frozen=True)
class ModelMeta:
    """What the HTTP side needs to know of a model it does not load itself."""

    info: ModelVersionInfo
    signature: Signature
    flavor: str
    has_proba: bool
    load_seconds: float
    takes_arrays: bool = False


class ModelProcess:
    """The parent's handle on one model's child process. `predict` is called from one thread
    at a time (the model's predict thread); a lock makes that a rule, not an assumption."""

    def __init__(
        self,
        uri: str,
        env: dict[str, str],
        *,
        threads: int = 1,
        log_spec: LogSpec | None = None,
        on_drop: Callable[[int], None] | None = None,
        start_timeout: float = 600.0,
        predict_timeout: float | None = None,
    ) -> None:
        """`predict_timeout`: a call that takes longer kills the process (a model stuck for
        good would otherwise hold the model's predict thread for ever); None waits."""
        self.uri = uri
        self.env = {k: v for k, v in env.items() if k not in _NOT_INHERITED}
        self.threads = threads
        self.log_spec = log_spec
        self.on_drop = on_drop or (lambda rows: None)
        self.start_timeout = start_timeout
        self.predict_timeout = predict_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._loaded = False  # the child said ready, and has not been stopped since
        self._replacing: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> ModelMeta:
        """Start the child and wait until its model is loaded and warm; a model that cannot
        load raises the child's own error (a ShipwayError with its message and hint)."""
        with self._lock:
            return self._start()

    def _start(self) -> ModelMeta:
        parent, child = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "shipway.serving.model_process", str(child.fileno())],
                pass_fds=[child.fileno()],
                env=self.env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        self._conn.send((self.uri, self.threads, self.log_spec))
        if not self._conn.poll(self.start_timeout):
            self._stop(kill=True)
            raise ModelProcessError(
                f"{self.uri} did not load within {self.start_timeout:g} s in its process."
            )
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            code = self._stop(kill=True)
            raise ModelProcessError(
                f"The process loading {self.uri} exited with code {code}.",
                "Its output above says why.",
            ) from None
        if kind != "ready":
            self._stop(kill=True)
            raise payload
        meta: ModelMeta = payload
        self._loaded = True
        return meta

    def running(self) -> bool:
        """The child has loaded the model and is still alive (any thread may ask)."""
        proc = self._proc
        return self._loaded and proc is not None and proc.poll() is None

    def replace_soon(self) -> None:
        """If the child died, start a new one in the background (one at a time).

        A dead child is otherwise replaced by the next prediction; but a server that reports
        not ready while it has no model (so Kubernetes sends it no traffic) gets no next
        prediction, and would never be ready again."""
        if self.running() or (self._replacing is not None and self._replacing.is_alive()):
            return
        self._replacing = threading.Thread(
            target=self._replace, name=f"shipway-replace-{self.uri}", daemon=True
        )
        self._replacing.start()

    def _replace(self) -> None:
        with self._lock:
            try:
                self._start_if_dead()
            except Exception as exc:  # the next prediction tries again, and says why
                log.error("could not start a new process for %s: %s", self.uri, exc)

    def _start_if_dead(self) -> None:
        """With the lock held: a child that exited (killed, out of memory) is reaped, and a
        new one started; nothing is lost, no call was in flight."""
        if self._proc is not None and self._proc.poll() is not None:
            log.warning("the process of %s exited with %s", self.uri, self._stop(kill=True))
        if self._conn is None:
            self.restarts += 1
            log.warning("starting a new process for %s", self.uri)
            self._start()

    def predict(self, columns: Columns, rows: int) -> dict[str, list[Any]]:
        with self._lock:
            self._start_if_dead()
            assert self._conn is not None
            try:
                self._conn.send((columns, rows))
                if self.predict_timeout is not None and not self._conn.poll(self.predict_timeout):
                    self._stop(kill=True)
                    raise ModelProcessError(
                        f"{self.uri} did not answer within {self.predict_timeout:g} s; its "
                        "process was stopped.",
                        "Retry: a new one is started for the next request.",
                    )
                kind, payload, dropped = self._conn.recv()
            except (EOFError, OSError):
                code = self._stop(kill=True)
                raise ModelProcessError(
                    f"The process of {self.uri} died (exit code {code}) during a prediction.",
                    "Retry: a new one is started for the next request.",
                ) from None
        if dropped:
            self.on_drop(dropped)
        if kind == "ok":
            result: dict[str, list[Any]] = payload
            return result
        raise _exception(payload)

    def close(self, timeout: float = 30.0) -> None:
        """Ask the child to flush its log and exit; kill it after `timeout` seconds."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):  # already gone
                    self._conn.send(None)
            self._stop(kill=False, timeout=timeout)

    def _stop(self, *, kill: bool, timeout: float = 5.0) -> int | None:
        """Close the socket (a child still reading sees it end and exits, its log flushed),
        kill the child too if asked, and reap it; its exit code."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._loaded = False
        if conn is not None:
            conn.close()
        code = None
        if proc is not None:
            if kill:
                proc.kill()
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        return code


def _exception(payload: tuple[str, str, bytes | None]) -> Exception:
    kind, message, pickled = payload
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
            if isinstance(exc, ShipwayError):
                return exc
        except Exception:
            pass
    return ModelCallError(kind, message)


def _describe(exc: BaseException) -> tuple[str, str, bytes | None]:
    """An exception as the parent can rebuild it: our own errors whole, others by name (the
    class may live in the model's code, which the parent never imports)."""
    pickled = None
    if isinstance(exc, ShipwayError):
        try:
            pickled = pickle.dumps(exc)
        except Exception:
            pickled = None
    return type(exc).__name__, str(exc), pickled


# -- the child ----------------------------------------------------------------------------


def _child(conn: Connection) -> int:
    uri, threads, log_spec = conn.recv()
    from threadpoolctl import threadpool_limits

    from shipway.client import get_client
    from shipway.serving.predlog import PredictionLog
    from shipway.serving.runtime import (
        ServedModel,
        new_ids,
        quiet_garbage_collector,
        short_gil_turns,
    )

    short_gil_turns()

    try:
        served = ServedModel.load(uri, get_client(), threads)
        # After loading: threadpoolctl limits only the native libraries already loaded (see
        # runtime._limit_native_threads for why one thread).
        threadpool_limits(limits=threads)
        served.warm_up()
    except BaseException as exc:  # reported to the parent, which explains and exits
        if not isinstance(exc, ShipwayError):
            log.exception("loading %s failed", uri)
            exc = ShipwayError(f"Loading {uri} failed: {type(exc).__name__}: {exc}")
        conn.send(("failed", exc))
        return 1
    predlog = None
    dropped = [0]
    if log_spec is not None:
        predlog = PredictionLog(
            log_spec.artifact_url,
            log_spec.artifact_options,
            sample_rate=log_spec.sample_rate,
            on_drop=lambda rows: dropped.__setitem__(0, dropped[0] + rows),
        )
        predlog.start()
    meta = ModelMeta(
        served.info,
        served.signature,
        served.flavor,
        served.has_proba,
        served.load_seconds,
        served.takes_arrays,
    )
    quiet_garbage_collector()
    conn.send(("ready", meta))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the server is gone
                return 0
            if message is None:
                return 0
            columns, rows = message
            try:
                result = served.predict_columns(columns, rows)
                result["ids"] = new_ids(rows)
                if predlog is not None:
                    predlog.record(
                        served.name,
                        served.version,
                        result["ids"],
                        columns,
                        result["predictions"],
                        result.get("probabilities"),
                        served.classes,
                    )
                reply: tuple[str, Any, int] = ("ok", result, dropped[0])
            except Exception as exc:
                log.exception("predict failed in the process of %s", uri)
                reply = ("error", _describe(exc), dropped[0])
            dropped[0] = 0
            conn.send(reply)
    finally:
        if predlog is not None:
            predlog.close()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    conn = Connection(int(argv[0]))
    try:
        return _child(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    # Through the module's own name, so what the child pickles names this module, not
    # __main__, and the parent can unpickle it.
    from shipway.serving.model_process import main as module_main

    sys.exit(module_main(sys.argv[1:]))
