"""Whether a server can listen where it was told to, checked before it loads anything.

uvicorn finds out only when it binds, after the models are loaded, and says so in a log line
among others; and it takes a port above 65535 modulo 65536 without a word.
"""

from __future__ import annotations

import errno
import socket

from shipway.errors import InvalidInputError

_HOSTS = "Use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."


def check_listen_address(host: str, port: int) -> None:
    """Raise an InvalidInputError naming the problem if `host:port` cannot be listened on now.

    Bound the way uvicorn binds (SO_REUSEADDR), so a port in TIME_WAIT after a restart is fine.
    """
    if not 1 <= port <= 65535:
        raise InvalidInputError(f"Port {port} is not a TCP port.", "Use 1 to 65535.")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise InvalidInputError(
            f"Host '{host}' is neither an address nor a known name.", _HOSTS
        ) from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise explain_bind_error(exc, host, port) from None


def explain_bind_error(exc: OSError, host: str, port: int) -> InvalidInputError:
    """What a failed bind means for the person who chose `host:port`, and what to do."""
    if exc.errno == errno.EADDRINUSE:
        return InvalidInputError(
            f"Port {port} on {host} is already in use.",
            "Stop what listens there, or choose another port with --port.",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return InvalidInputError(f"{host} is not an address of this machine.", _HOSTS)
    if exc.errno == errno.EACCES:
        return InvalidInputError(
            f"Listening on port {port} needs privileges this process does not have.",
            "Use a port above 1023.",
        )
    return InvalidInputError(f"Cannot listen on {host}:{port}: {exc.strerror}.")
