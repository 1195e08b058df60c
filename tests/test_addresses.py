"""Checking where a server will listen before it loads anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shipway.addresses import check_listen_address
from shipway.errors import InvalidInputError


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_free_port_passes_and_stays_free() -> None:
    with _listening() as sock:
        port = sock.getsockname()[1]
    check_listen_address("127.0.0.1", port)
    check_listen_address("127.0.0.1", port)  # the check itself holds nothing
    check_listen_address("localhost", port)


def test_a_port_someone_listens_on_is_named() -> None:
    with _listening() as sock:
        port = sock.getsockname()[1]
        with pytest.raises(InvalidInputError, match=f"Port {port} on 127.0.0.1 is already in use"):
            check_listen_address("127.0.0.1", port)
        with pytest.raises(InvalidInputError, match="already in use"):
            check_listen_address("0.0.0.0", port)  # every interface includes the loopback one


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_a_number_that_is_not_a_tcp_port_is_refused(port: int) -> None:
    with pytest.raises(InvalidInputError, match=f"Port {port} is not a TCP port"):
        check_listen_address("127.0.0.1", port)


def test_an_address_of_another_machine_or_no_machine_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"192\.0\.2\.1 is not an address of this machine"):
        check_listen_address("192.0.2.1", 8080)  # TEST-NET-1: never assigned to a host
    with pytest.raises(InvalidInputError, match=r"'no-such-host\.invalid' is neither"):
        check_listen_address("no-such-host.invalid", 8080)


def test_every_server_command_refuses_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "SHIPWAY_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("SHIPWAY_DATABASE_URL", None)
    with _listening() as sock:
        port = str(sock.getsockname()[1])
        commands = (
            ["server"],
            ["serve", "models:/credit/1"],
            ["monitor", "serve-metrics"],
            ["run-image", "credit:v1"],
        )
        for command in commands:
            result = subprocess.run(
                [sys.executable, "-m", "shipway.cli", *command, "--port", port],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip().splitlines() == [
                f"Error: Port {port} on 127.0.0.1 is already in use. Stop what listens there, "
                "or choose another port with --port."
            ]
    assert not (tmp_path / "home").exists()  # refused before a store was opened
