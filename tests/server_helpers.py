"""Shared pieces for the team-server tests: users with tokens, a live server in a thread or as
a `shipway server` process, and raw HTTP for paths an HTTP client would normalise."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import shipway
from servers import uvicorn_thread
from serving_helpers import free_port
from shipway.governance.identity import create_admin, create_token, create_user
from shipway.server import create_app

USERS = {"viewer": "vic", "developer": "dana", "approver": "avery", "admin": "ada"}
"""One user per role; the admin is the first admin (`create_admin`)."""


@dataclass
class Team:
    url: str
    client: shipway.Client
    tokens: dict[str, str] = field(default_factory=dict, repr=False)
    """Role (or user name, for extra users) -> token."""

    def http(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def add_user(self, name: str, role: str) -> str:
        create_user(name, role, client=self.client)  # type: ignore[arg-type]
        _, token = create_token(name, name="test", client=self.client)
        self.tokens[name] = token
        return token


def make_users(client: shipway.Client) -> dict[str, str]:
    """The four users of `USERS` and a token each, by role."""
    _, admin_token = create_admin(USERS["admin"], client=client)
    tokens = {"admin": admin_token}
    for role, name in USERS.items():
        if role != "admin":
            create_user(name, role, client=client)  # type: ignore[arg-type]
            tokens[role] = create_token(name, name="test", client=client)[1]
    return tokens


@contextlib.contextmanager
def live_api(app: Any) -> Iterator[str]:
    """`app` under a real uvicorn on loopback, in a thread. Its loggers propagate (no
    dictConfig), with access logs on, so caplog sees everything the server logs."""
    with uvicorn_thread(app, log_config=None, log_level="debug", access_log=True,
                        lifespan="off") as url:  # fmt: skip
        yield url


@contextlib.contextmanager
def module_store(home: Path) -> Iterator[shipway.Client]:
    """A fresh store in `home` for a whole test module: `SHIPWAY_HOME` is `home`, and no other
    database, artefact store or team server is configured, while it lasts."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPWAY_HOME", str(home))
        for var in ("SHIPWAY_DATABASE_URL", "SHIPWAY_ARTIFACT_URL", "SHIPWAY_TRACKING_URI",
                    "SHIPWAY_TOKEN"):  # fmt: skip
            mp.delenv(var, raising=False)
        client = shipway.Client()
        try:
            yield client
        finally:
            client.store.close()


@contextlib.contextmanager
def team_server(client: shipway.Client) -> Iterator[Team]:
    tokens = make_users(client)
    with live_api(create_app(client)) as url:
        yield Team(url, client, tokens)


def raw_request(
    url: str, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> int:
    """Send `target` byte for byte (no dot-segment or percent normalisation); the status."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


# =============================================================================
# `shipway server` as a real process
# =============================================================================


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"shipway server ignored signal {sig}:\n{self.output()}") from None


def server_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["SHIPWAY_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("SHIPWAY_ARTIFACT_URL", None)
    env.pop("SHIPWAY_DATABASE_URL", None)
    if database_url:
        env["SHIPWAY_DATABASE_URL"] = database_url
    return env


@contextlib.contextmanager
def server_process(
    home: Path, workdir: Path, *, database_url: str | None = None, port: int | None = None
) -> Iterator[ServerProcess]:
    """`python -m shipway.cli server --port PORT`, yielded once /api/v1/health answers 200."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"server-{port}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipway.cli", "server", "--port", str(port)],
            env=server_env(home, database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"shipway server exited:\n{server.output()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.url}/api/v1/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"shipway server never got healthy:\n{server.output()}")
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            with contextlib.suppress(AssertionError):
                server.stop(signal.SIGKILL)
