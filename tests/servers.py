"""Start real backing servers (PostgreSQL, S3 via moto) for the test suite.

Plain helpers with no pytest dependency; the fixtures in ``conftest.py`` wrap them.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BINARIES_MISSING = (
    "PostgreSQL server binaries not found: run `make test` "
    "(it installs the postgresql package) or `apt-get install postgresql`"
)

S3_REGION = "us-east-1"
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"


@contextlib.contextmanager
def uvicorn_thread(app: Any, *, what: str = "test server", **config: Any) -> Iterator[str]:
    """`app` under a real uvicorn on a free loopback port, in a daemon thread; its base URL
    once uvicorn has started. `config` goes to `uvicorn.Config` (log level, lifespan, ...).

    The socket is bound here, to port 0, and handed to uvicorn: no other process can take the
    port between choosing it and listening on it."""
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the {what} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# Below Linux's ephemeral range (32768-60999): a port the kernel hands out for port 0 is one it
# also gives to outgoing connections, and one of those could take it before our server binds it.
_PORTS = range(20_000, 32_768)
_pick = random.SystemRandom()  # its own source: tests may seed the `random` module


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    for _ in range(200):
        port = _pick.choice(_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


# --------------------------------------------------------------------------- PostgreSQL


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric sort key ("16" > "9.6").
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_postgres_bin() -> Path:
    """Directory holding initdb/pg_ctl for the highest installed PostgreSQL version."""
    candidates = [
        d
        for d in Path("/usr/lib/postgresql").glob("*/bin")
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file()
    ]
    if not candidates:
        raise RuntimeError(PG_BINARIES_MISSING)
    return max(candidates, key=_version_key)


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the ``postgres`` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(
        _as_postgres_user(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stdout}"
        )


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL cluster (trust auth, superuser ``postgres``)."""

    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    log_file: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"
    _stopped: bool = field(default=False, repr=False)

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL for database *dbname* on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string (for psycopg directly)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """Create database *name* and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove the socket dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                "pg_ctl stop",
            )
        finally:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def start_postgres(base_dir: Path) -> PostgresServer:
    """initdb a fresh cluster under ``base_dir/data`` and start it on a free TCP port."""
    bin_dir = find_postgres_bin()
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    data_dir = base_dir / "data"
    log_file = base_dir / "postgres.log"
    # Unix socket paths are limited to ~107 bytes; pytest tmp dirs can be long.
    socket_dir = Path(tempfile.mkdtemp(prefix="shipway-pg-"))

    if os.geteuid() == 0:
        # The postgres user must own its data/socket dirs, write the log, and be able
        # to traverse base_dir (pytest tmp dirs are 0700 root-owned).
        data_dir.mkdir(mode=0o700, exist_ok=True)
        log_file.touch()
        for path in (data_dir, socket_dir, log_file):
            shutil.chown(path, user="postgres", group="postgres")
        for parent in [base_dir, *base_dir.parents]:
            mode = parent.stat().st_mode
            if mode & 0o001 == 0:
                parent.chmod(mode | 0o001)  # o+x: traverse only, no listing

    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            "initdb",
        )
        last_error: RuntimeError | None = None
        for _attempt in range(3):  # the free port can be stolen between probe and bind
            port = free_port()
            options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                _run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(data_dir),
                        "-o",
                        options,
                        "-l",
                        str(log_file),
                        "-w",
                        "start",
                    ],
                    "pg_ctl start",
                )
            except RuntimeError as exc:
                log = log_file.read_text(errors="replace") if log_file.exists() else ""
                last_error = RuntimeError(f"{exc}\n--- {log_file} ---\n{log[-4000:]}")
                continue
            return PostgresServer(
                bin_dir=bin_dir,
                data_dir=data_dir,
                socket_dir=socket_dir,
                log_file=log_file,
                port=port,
            )
        assert last_error is not None
        raise last_error
    except BaseException:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- S3 (moto)


@dataclass
class S3Server:
    """moto's S3-compatible server, running in a thread of this process."""

    endpoint_url: str
    _server: Any = field(repr=False)
    region: str = S3_REGION
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY

    @property
    def storage_options(self) -> dict[str, Any]:
        """Explicit fsspec/s3fs options (for code paths that do not read the environment)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    def client(self) -> Any:
        """A boto3 S3 client bound to this server with dummy credentials."""
        import boto3  # type: ignore[import-untyped,unused-ignore]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        self._server.stop()


def start_s3() -> S3Server:
    """Start moto's server mode on 127.0.0.1 (OS-assigned port)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return S3Server(endpoint_url=f"http://{host}:{port}", _server=server)


# =============================================================================
# promtool (Debian package `prometheus`)
# =============================================================================


def promtool() -> str:
    """The promtool binary; a clear failure when it is not installed."""
    import pytest

    path = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if path is None:
        pytest.fail(
            "promtool is not installed: run scripts/install-system-deps.sh "
            "(Debian/Ubuntu package 'prometheus')"
        )
    return path


def assert_promtool_clean(body: bytes | str) -> None:
    """`promtool check metrics` accepts the exposition `body` without a warning."""
    data = body.encode() if isinstance(body, str) else body
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=data, capture_output=True, timeout=60
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, f"promtool check metrics failed:\n{output}"
    assert output.strip() == "", f"promtool check metrics warned:\n{output}"
