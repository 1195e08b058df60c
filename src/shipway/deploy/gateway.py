"""The gateway: one port per environment, a reverse proxy in front of its model-server replicas.

Traffic is split between **tracks** (``stable`` and, during a rollout, ``canary``) by weight,
then balanced over the track's ready replicas::

    gateway = Gateway("production", "credit")
    gateway.set_tracks([Track("stable", 4, 90, [url_a, url_b]), Track("canary", 5, 10, [url_c])])
    uvicorn.run(gateway.app(), port=8100)

How a request is routed:

* **Tracks** are chosen by smooth weighted round-robin (as nginx does): over any run of
  requests each track's share is its weight over the sum of the weights, to within one
  request, with no random drift to confuse a canary analysis of a few hundred requests.
  Weights need not sum to 100. A track with no ready replica gets nothing and its share goes
  to the others; when only weight-0 tracks have replicas left they share the traffic equally
  (serving beats a 503).
* **Replicas** within a track: the one with the fewest requests in flight, round-robin among
  ties (so plain round-robin under light load).
* **Retries**: a request whose connection fails before any response byte (refused, reset,
  closed, no free pooled connection) is retried once on another replica of the same track, or
  of another track when the track has no other. A replica that was stopped, crashed or is
  restarting therefore loses no request. A request the replica answered, even with a 5xx, is
  never retried, and neither is one that timed out (the replica may still be working on it).
* **Errors** the gateway makes are JSON ``{"error": ...}``: 413 (body over the limit),
  502 (no replica could be reached, or its answer broke off), 503 with ``Retry-After`` (no
  ready replica at all), 504 (no answer within the timeout).

Every answer carries ``x-shipway-track`` and ``x-shipway-version``. Bodies are buffered (model
requests are small). :meth:`Gateway.set_tracks` swaps the whole routing table at once;
requests in flight finish on the replica they started on, and :meth:`Gateway.in_flight` tells
the agent when a replica it took out has drained.

For the canary analysis the gateway keeps per-track, per-second counters of requests, errors
(5xx answers and its own 502/504) and a log-spaced latency histogram (4% wide buckets from
0.1 ms to 60 s) over the last 15 minutes: :meth:`Gateway.stats` answers any interval in that
window with one-second resolution, in well under a millisecond. The same numbers go to
Prometheus at ``/-/metrics``; paths under ``/-/`` belong to the gateway and are never proxied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import numpy as np
import numpy.typing as npt
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shipway.deploy.analysis import TrackStats
from shipway.errors import InvalidInputError
from shipway.serving import openapi

__all__ = ["Gateway", "Track", "TrackStats"]

log = logging.getLogger(__name__)

LATENCY_MIN_S: Final = 1e-4
LATENCY_MAX_S: Final = 60.0
LATENCY_GROWTH: Final = 1.04
"""Each latency bucket is 4% wider than the one before: quantiles are exact to within 4%."""
_LOG_GROWTH: Final = math.log(LATENCY_GROWTH)
_BUCKETS: Final = math.ceil(math.log(LATENCY_MAX_S / LATENCY_MIN_S) / _LOG_GROWTH)
# bucket 0: [0, min); bucket k in 1.._BUCKETS: [min g^(k-1), min g^k); then overflow

DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Prometheus buckets (seconds), fine enough around typical p99s for histogram_quantile."""

_HOP_BY_HOP: Final = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization proxy-connection te "
    b"trailer trailers transfer-encoding upgrade".split()
)
_NOT_FORWARDED: Final = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}
_NOT_RETURNED: Final = _HOP_BY_HOP | {b"date", b"server", b"x-shipway-track", b"x-shipway-version"}
_UNANSWERED: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
"""Failures of a round trip before any response byte: safe to try another replica."""


@dataclass
class Track:
    """One model version served by some replicas, and its share of the traffic."""

    name: str
    """``"stable"`` or ``"canary"``."""
    version: int
    weight: float
    """0..100, relative to the other tracks' weights."""
    urls: list[str] = field(default_factory=list)
    """Base URLs of the ready replicas (the supervisor keeps them current)."""


class Gateway:
    """The reverse proxy of one environment; see the module docstring for its behaviour."""

    def __init__(
        self,
        environment: str,
        model: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        max_body_bytes: int = 16 * 1024 * 1024,
        max_connections: int = 512,
        window_s: int = 900,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.environment = environment
        self.model = model
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.window_s = window_s
        self._clock = clock
        self._pool = _Pool(())
        self._in_flight: dict[str, int] = {}
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._metrics = _Metrics()
        self._timeouts = httpx.Timeout(
            timeout_s, connect=connect_timeout_s, pool=connect_timeout_s
        ).as_dict()
        self._transport: httpx.AsyncHTTPTransport | None = None
        self._app: ASGIApp | None = None

    # -- the seams the agent and the controller use ---------------------------------------

    def set_tracks(self, tracks: Sequence[Track]) -> None:
        """Replace the routing table at once (copied: later changes to `tracks` do nothing)."""
        names = [t.name for t in tracks]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"Track names must be unique, got {names}.")
        for t in tracks:
            if not 0 <= t.weight <= 100:
                raise InvalidInputError(f"Track '{t.name}' has weight {t.weight}; use 0 to 100.")
        copies = tuple(
            Track(t.name, t.version, float(t.weight), [u.rstrip("/") for u in t.urls])
            for t in tracks
        )
        self._pool = _Pool(copies)
        m = self._metrics
        m.weight.clear()
        m.replicas.clear()
        for t in copies:
            m.weight.labels(self.environment, t.name, str(t.version)).set(t.weight)
            m.replicas.labels(self.environment, t.name, str(t.version)).set(len(t.urls))

    @property
    def tracks(self) -> list[Track]:
        """The current routing table (copies)."""
        return [Track(t.name, t.version, t.weight, list(t.urls)) for t in self._pool.tracks]

    def in_flight(self, url: str) -> int:
        """Requests now being answered by the replica at `url` (0 once it has drained)."""
        return self._in_flight.get(url.rstrip("/"), 0)

    def stats(self, track: str, start: float, end: float) -> TrackStats:
        """Requests, errors and p99 latency of `track` over ``[start, end)`` (epoch seconds).

        One-second resolution: every second that overlaps the interval counts whole. Only the
        last ``window_s`` seconds are kept. Safe to call from any thread.
        """
        with self._lock:
            window = self._windows.get(track)
            if window is None or end <= start:
                return TrackStats(0, 0, None)
            return window.stats(start, end)

    def app(self) -> ASGIApp:
        """The ASGI app: ``/-/`` paths are the gateway's own, everything else is proxied."""
        if self._app is None:
            admin = self._admin_app()

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] == "http" and not scope["path"].startswith("/-/"):
                    await self._proxy(scope, receive, send)
                else:
                    await admin(scope, receive, send)

            self._app = app
        return self._app

    async def aclose(self) -> None:
        """Close the connection pool (done on the app's shutdown too)."""
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.aclose()

    # -- proxying ---------------------------------------------------------------------------

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        body = await _read_body(scope, receive, self.max_body_bytes)
        if body is None:
            message = (
                f"The request body is over the gateway's limit of {self.max_body_bytes} bytes."
            )
            await self._error(send, 413, message, None, started)
            return
        if isinstance(body, _Gone):
            return
        pool = self._pool
        track = pool.choose_track()
        if track is None:
            message = f"no ready replica in environment {self.environment}"
            await self._error(send, 503, message, None, started, [(b"retry-after", b"1")])
            return
        url = pool.choose_url(track, self._in_flight)
        method, target, headers = scope["method"], _target(scope), _forwarded_headers(scope)
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    answer = await self._exchange(url, method, target, headers, body)
                except _Unanswered as failure:
                    fallback = pool.fallback(track, url, self._in_flight)
                    if fallback is None:
                        raise
                    log.info("retrying on another replica: %s", failure)
                    self._metrics.retries.labels(self.environment, track.name).inc()
                    track, url = fallback
                    answer = await self._exchange(url, method, target, headers, body)
        except (TimeoutError, httpx.TimeoutException):
            message = f"The replica at {url} did not answer within {self.timeout_s:g} s."
            await self._error(send, 504, message, track, started)
            return
        except _Unanswered as failure:
            await self._error(send, 502, f"Could not reach a replica: {failure}", track, started)
            return
        except httpx.HTTPError as exc:
            message = f"The answer of the replica at {url} broke off: {_describe(exc)}"
            await self._error(send, 502, message, track, started)
            return
        except Exception as exc:
            log.exception("unexpected error proxying %s %s to %s", method, target, url)
            await self._error(
                send, 500, f"Internal gateway error: {_describe(exc)}", track, started
            )
            return
        status, raw_headers, content = answer
        out = [(k, v) for k, v in raw_headers if k not in _NOT_RETURNED]
        if not any(k == b"content-length" for k, _ in out) and _has_body(method, status):
            out.append((b"content-length", str(len(content)).encode()))
        await _respond(send, status, out + _track_headers(track), content)
        self._record(track, status, started)

    async def _exchange(
        self, url: str, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One upstream round trip; raises _Unanswered when it failed before any response."""
        transport = self._http()
        self._in_flight[url] = self._in_flight.get(url, 0) + 1
        try:
            request = httpx.Request(
                method,
                url + target,
                headers=headers,
                content=body,
                extensions={"timeout": self._timeouts},
            )
            try:
                response = await transport.handle_async_request(request)
            except _UNANSWERED as exc:
                raise _Unanswered(f"{url}: {_describe(exc)}") from exc
            try:
                content = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
            return response.status_code, [(k.lower(), v) for k, v in response.headers.raw], content
        finally:
            left = self._in_flight[url] - 1
            if left:
                self._in_flight[url] = left
            else:
                del self._in_flight[url]

    def _http(self) -> httpx.AsyncHTTPTransport:
        """The connection pool to the replicas (made in the serving event loop).

        httpx's transport, not an ``AsyncClient``: a client is a user agent, with a cookie jar
        (one caller's Set-Cookie would go out with the next caller's requests), default
        headers, redirects and auth, none of which a proxy may add. No HTTP(S)_PROXY either.
        """
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=min(self.max_connections, 128),
                    keepalive_expiry=4.0,  # below uvicorn's 5 s: we close idle ones first
                ),
                retries=0,
            )
        return self._transport

    async def _error(
        self,
        send: Send,
        status: int,
        message: str,
        track: Track | None,
        started: float,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = orjson.dumps({"error": message})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(extra or []),
            *(_track_headers(track) if track else []),
        ]
        await _respond(send, status, headers, body)
        self._record(track, status, started)

    def _record(self, track: Track | None, status: int, started: float) -> None:
        latency = time.perf_counter() - started
        m = self._metrics
        name, version = (track.name, str(track.version)) if track else ("none", "")
        m.requests.labels(self.environment, name, version, str(status)).inc()
        if track is None:
            return
        m.duration.labels(self.environment, name, version).observe(latency)
        with self._lock:
            window = self._windows.get(name)
            if window is None:
                window = self._windows[name] = _Window(self.window_s)
            window.add(self._clock(), latency, status >= 500)

    # -- the gateway's own endpoints ----------------------------------------------------------

    def _admin_app(self) -> Starlette:
        from shipway import __version__

        table = [
            openapi.Endpoint("GET", "/-/healthy", self._healthy, "Liveness", "gateway", errors=()),
            openapi.Endpoint(
                "GET",
                "/-/ready",
                self._ready,
                "Readiness",
                "gateway",
                description="Ready while at least one replica of any track is ready.",
                errors=(503,),
            ),
            openapi.Endpoint(
                "GET",
                "/-/status",
                self._status,
                "Tracks, weights, versions and replicas",
                "gateway",
                description="`share` is the fraction of traffic a track gets now, after "
                "weights are normalised over the tracks that have ready replicas.",
                errors=(),
            ),
            openapi.Endpoint(
                "GET",
                "/-/metrics",
                self._metrics_endpoint,
                "Prometheus metrics",
                "gateway",
                errors=(),
            ),
        ]
        spec = orjson.dumps(
            openapi.spec(
                table,
                "Shipway gateway",
                f"The gateway of environment {self.environment} (model {self.model}). Paths "
                "under /-/ are its own; every other request is proxied to a replica.",
                __version__,
            )
        )

        async def spec_endpoint(request: Request) -> Response:
            return Response(spec, media_type="application/json")

        async def http_error(request: Request, exc: Exception) -> Response:
            status = getattr(exc, "status_code", 500)
            path = request.url.path
            message = {
                404: f"No gateway endpoint {path}.",
                405: f"Method {request.method} not allowed on {path}.",
            }
            hint = " Paths under /-/ are the gateway's own; see /-/openapi.json."
            return _json({"error": message.get(status, "Request failed.") + hint}, status)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await self.aclose()

        return Starlette(
            routes=[Route(e.path, e.handler, methods=[e.method]) for e in table]
            + [Route("/-/openapi.json", spec_endpoint)],
            exception_handlers={HTTPException: http_error},
            lifespan=lifespan,
        )

    async def _healthy(self, request: Request) -> Response:
        return _json({"status": "healthy"})

    async def _ready(self, request: Request) -> Response:
        replicas = sum(len(t.urls) for t in self._pool.tracks)
        if not replicas:
            error = {"error": f"no ready replica in environment {self.environment}"}
            return _json(error, 503, {"retry-after": "1"})
        return _json({"status": "ready", "replicas": replicas})

    async def _status(self, request: Request) -> Response:
        pool = self._pool
        shares = pool.shares()
        tracks = [
            {
                "name": t.name,
                "version": t.version,
                "weight": t.weight,
                "share": shares.get(t.name, 0.0),
                "urls": t.urls,
                "in_flight": {u: self._in_flight.get(u, 0) for u in t.urls},
            }
            for t in pool.tracks
        ]
        return _json({"environment": self.environment, "model": self.model, "tracks": tracks})

    async def _metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)


class _Pool:
    """An immutable set of tracks, and the state of choosing among them (event loop only)."""

    def __init__(self, tracks: tuple[Track, ...]) -> None:
        self.tracks = tracks
        self._credit = {t.name: 0.0 for t in tracks}
        self._cursor = {t.name: 0 for t in tracks}

    def _candidates(self, exclude: str | None = None) -> list[Track]:
        ready = [t for t in self.tracks if t.urls and t.name != exclude]
        return [t for t in ready if t.weight > 0] or ready

    def shares(self) -> dict[str, float]:
        candidates = self._candidates()
        total = sum(t.weight or 1.0 for t in candidates)
        return {t.name: (t.weight or 1.0) / total for t in candidates}

    def choose_track(self, exclude: str | None = None) -> Track | None:
        """Smooth weighted round-robin: everyone earns their weight, the richest pays it all."""
        candidates = self._candidates(exclude)
        if not candidates:
            return None
        for t in candidates:
            self._credit[t.name] += t.weight or 1.0
        chosen = max(candidates, key=lambda t: self._credit[t.name])
        self._credit[chosen.name] -= sum(t.weight or 1.0 for t in candidates)
        return chosen

    def choose_url(self, track: Track, in_flight: dict[str, int]) -> str:
        """The replica with the fewest requests in flight, round-robin among ties."""
        urls, start = track.urls, self._cursor[track.name]
        n = len(urls)
        step = min(range(n), key=lambda k: (in_flight.get(urls[(start + k) % n], 0), k))
        self._cursor[track.name] = (start + step + 1) % n
        return urls[(start + step) % n]

    def fallback(
        self, track: Track, failed: str, in_flight: dict[str, int]
    ) -> tuple[Track, str] | None:
        """Where to retry: another replica of `track`, else one of another track."""
        others = [u for u in track.urls if u != failed]
        if others:
            return track, min(others, key=lambda u: in_flight.get(u, 0))
        other = self.choose_track(exclude=track.name)
        return None if other is None else (other, self.choose_url(other, in_flight))


class _Window:
    """One track's per-second counters over the last `seconds` seconds, as a ring."""

    def __init__(self, seconds: int) -> None:
        self.stamps = np.full(seconds, -1, dtype=np.int64)
        self.requests = np.zeros(seconds, dtype=np.int64)
        self.errors = np.zeros(seconds, dtype=np.int64)
        self.latency = np.zeros((seconds, _BUCKETS + 2), dtype=np.int32)

    def add(self, now: float, latency_s: float, error: bool) -> None:
        second = math.floor(now)
        row = second % len(self.stamps)
        if self.stamps[row] != second:
            self.stamps[row] = second
            self.requests[row] = self.errors[row] = 0
            self.latency[row] = 0
        self.requests[row] += 1
        self.errors[row] += int(error)
        self.latency[row, _bucket(latency_s)] += 1

    def stats(self, start: float, end: float) -> TrackStats:
        rows = (self.stamps >= math.floor(start)) & (self.stamps < math.ceil(end))
        requests = int(self.requests[rows].sum())
        if not requests:
            return TrackStats(0, 0, None)
        counts = self.latency[rows].sum(axis=0)
        return TrackStats(requests, int(self.errors[rows].sum()), _quantile(counts, 0.99) * 1e3)


def _bucket(latency_s: float) -> int:
    if latency_s < LATENCY_MIN_S:
        return 0
    return min(_BUCKETS + 1, 1 + int(math.log(latency_s / LATENCY_MIN_S) / _LOG_GROWTH))


def _quantile(counts: npt.NDArray[np.integer[Any]], q: float) -> float:
    """The q-quantile (seconds) of the latencies counted in a histogram of `_bucket` indexes.

    Estimates what ``numpy.percentile(latencies, 100 * q)`` gives (linear between order
    statistics), interpolating geometrically inside the bucket: off by less than one bucket's
    width (4%). Latencies over 60 s report as 60 s.
    """
    position = (int(counts.sum()) - 1) * q  # 0-based rank among the sorted latencies
    cumulative = np.cumsum(counts)
    k = int(np.searchsorted(cumulative, math.floor(position), side="right"))
    before = int(cumulative[k] - counts[k])
    fraction = min(1.0, (position - before + 0.5) / int(counts[k]))
    if k == 0:
        return LATENCY_MIN_S * fraction
    if k > _BUCKETS:
        return LATENCY_MAX_S
    low = LATENCY_MIN_S * LATENCY_GROWTH ** (k - 1)
    return float(low * LATENCY_GROWTH**fraction)


class _Metrics:
    """The gateway's Prometheus metrics, in a registry of its own (one per gateway)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        by_track = ["environment", "track", "version"]
        self.requests = Counter(
            "shipway_gateway_requests",
            "Requests answered, by track, version and HTTP status (track none: no replica).",
            [*by_track, "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "shipway_gateway_request_duration_seconds",
            "Time from receiving a request to answering it, retries included.",
            by_track,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "shipway_gateway_upstream_retries",
            "Requests retried on another replica after their connection failed unanswered.",
            ["environment", "track"],
            registry=self.registry,
        )
        self.weight = Gauge(
            "shipway_gateway_track_weight",
            "The traffic weight of a track (0 to 100).",
            by_track,
            registry=self.registry,
        )
        self.replicas = Gauge(
            "shipway_gateway_ready_replicas",
            "Ready replicas the gateway routes a track to.",
            by_track,
            registry=self.registry,
        )


class _Unanswered(Exception):
    """The upstream connection failed before any response byte."""


class _Gone:
    """The client disconnected while sending its body."""


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | _Gone | None:
    """The whole request body; None when it is over `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _Gone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _target(scope: Scope) -> str:
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (path + b"?" + query if query else path).decode("latin-1")


def _forwarded_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The caller's headers minus hop-by-hop ones, plus X-Forwarded-For/-Host/-Proto."""
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    named = {token.strip().lower() for k, v in raw if k == b"connection" for token in v.split(b",")}
    out = [(k, v) for k, v in raw if k not in _NOT_FORWARDED and k not in named]
    present = {k for k, _ in out}
    client = scope.get("client")
    if client:
        chain = [v for k, v in out if k == b"x-forwarded-for"] + [client[0].encode()]
        out = [(k, v) for k, v in out if k != b"x-forwarded-for"]
        out.append((b"x-forwarded-for", b", ".join(chain)))
    host = next((v for k, v in raw if k == b"host"), None)
    if host and b"x-forwarded-host" not in present:
        out.append((b"x-forwarded-host", host))
    if b"x-forwarded-proto" not in present:
        out.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    return out


def _has_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)


def _track_headers(track: Track) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-shipway-track", track.name.encode()),
        (b"x-shipway-version", b"%d" % track.version),
    ]


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
