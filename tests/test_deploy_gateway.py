"""Tests of the gateway (``shipway.deploy.gateway``): real uvicorn servers on loopback.

Every upstream is a tiny ASGI app under a real uvicorn server in a thread that answers with its
own name and echoes the request; it can be told to fail or to sleep, per request (query
``status=``, ``sleep=``) or as a whole (attributes). The gateway runs under uvicorn too, and the
tests talk to it over HTTP. Request counts are bounded (at most a thousand small requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from servers import assert_promtool_clean
from serving_helpers import free_port
from shipway.deploy.gateway import LATENCY_GROWTH, Gateway, Track, _Window
from shipway.errors import InvalidInputError

# =============================================================================
# Helpers: upstreams and servers
# =============================================================================


class Upstream:
    """Answers JSON naming itself and echoing the request; `status` / `delay` apply to every
    request unless the query overrides them; `chunked` answers without a content-length."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = 200
        self.delay = 0.0
        self.seen = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen += 1
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        delay = float(query.get("sleep", self.delay))
        if delay:
            await asyncio.sleep(delay)
        payload = json.dumps(
            {
                "name": self.name,
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                "body": body.decode(),
                "slept": delay,
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-upstream", self.name.encode()),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
        status = int(query.get("status", self.status))
        if "chunked" in query:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            half = len(payload) // 2
            await send({"type": "http.response.body", "body": payload[:half], "more_body": True})
            await send({"type": "http.response.body", "body": payload[half:]})
            return
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@dataclass
class Running:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def start(
    app: Any, *, lifespan: Literal["on", "off"] = "off", proxy_headers: bool = True
) -> Running:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        proxy_headers=proxy_headers,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    return Running(f"http://127.0.0.1:{port}", server, thread)


@contextlib.contextmanager
def upstreams(*names: str) -> Iterator[dict[str, tuple[Upstream, Running]]]:
    running = {name: (app, start(app)) for name in names for app in [Upstream(name)]}
    try:
        yield running
    finally:
        for _, server in running.values():
            if not server.server.should_exit:
                server.stop()


@contextlib.contextmanager
def gateway_at(gateway: Gateway) -> Iterator[httpx.Client]:
    """The gateway under uvicorn (lifespan on) and a client pointed at it. uvicorn must not
    take the caller's address from X-Forwarded-For itself: the gateway extends that header."""
    server = start(gateway.app(), lifespan="on", proxy_headers=False)
    try:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            yield client
    finally:
        server.stop()


def url(up: dict[str, tuple[Upstream, Running]], name: str) -> str:
    return up[name][1].url


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def tracks_of(responses: list[httpx.Response]) -> Counter[str]:
    return Counter(r.headers["x-shipway-track"] for r in responses)


def metric(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


# =============================================================================
# Routing
# =============================================================================


def test_weights_split_traffic_between_tracks() -> None:
    with upstreams("s1", "s2", "c1") as up:
        gateway = Gateway("production", "credit")
        gateway.set_tracks(
            [
                Track("stable", 4, 90, [url(up, "s1"), url(up, "s2")]),
                Track("canary", 5, 10, [url(up, "c1")]),
            ]
        )
        with gateway_at(gateway) as client:
            answers = [client.get("/predict") for _ in range(1000)]
            assert all(r.status_code == 200 for r in answers)
            share = tracks_of(answers)["canary"] / 1000
            assert abs(share - 0.10) <= 0.03
            canary = [r for r in answers if r.headers["x-shipway-track"] == "canary"]
            assert {r.headers["x-shipway-version"] for r in canary} == {"5"}
            assert {r.json()["name"] for r in canary} == {"c1"}
            stable_names = Counter(
                r.json()["name"] for r in answers if r.headers["x-shipway-track"] == "stable"
            )
            assert abs(stable_names["s1"] - stable_names["s2"]) <= 1

            # weights need not sum to 100: 30/10 is 75/25
            gateway.set_tracks(
                [
                    Track("stable", 4, 30, [url(up, "s1")]),
                    Track("canary", 5, 10, [url(up, "c1")]),
                ]
            )
            answers = [client.get("/predict") for _ in range(200)]
            assert abs(tracks_of(answers)["canary"] / 200 - 0.25) <= 0.05
            status = client.get("/-/status").json()
            assert {t["name"]: t["share"] for t in status["tracks"]} == {
                "stable": 0.75,
                "canary": 0.25,
            }


def test_a_track_without_ready_replicas_gets_no_traffic() -> None:
    with upstreams("s1") as up:
        gateway = Gateway("production", "credit")
        gateway.set_tracks([Track("stable", 4, 50, [url(up, "s1")]), Track("canary", 5, 50, [])])
        with gateway_at(gateway) as client:
            answers = [client.get("/") for _ in range(50)]
            assert tracks_of(answers) == {"stable": 50}
            # only a weight-0 track has replicas left: it serves rather than a 503
            gateway.set_tracks(
                [Track("stable", 4, 0, [url(up, "s1")]), Track("canary", 5, 100, [])]
            )
            assert client.get("/").headers["x-shipway-track"] == "stable"


def test_round_robin_within_a_track() -> None:
    with upstreams("a", "b", "c") as up:
        gateway = Gateway("staging", "credit")
        gateway.set_tracks([Track("stable", 1, 100, [url(up, n) for n in "abc"])])
        with gateway_at(gateway) as client:
            names = [client.get("/x").json()["name"] for _ in range(12)]
            assert names == list("abc" * 4)


def test_requests_and_answers_pass_through() -> None:
    with upstreams("a") as up:
        gateway = Gateway("staging", "credit")
        gateway.set_tracks([Track("stable", 3, 100, [url(up, "a")])])
        with gateway_at(gateway) as client:
            r = client.post(
                "/models/credit/predict?x=1&y=%20two",
                content=b'{"rows": [1, 2]}',
                headers={
                    "content-type": "application/json",
                    "x-request-id": "abc-123",
                    "x-secret-hop": "dropped",
                    "connection": "keep-alive, x-secret-hop",
                    "x-forwarded-for": "10.0.0.9",
                },
            )
            assert r.status_code == 200
            echo = r.json()
            assert echo["method"] == "POST"
            assert echo["path"] == "/models/credit/predict"
            assert echo["query"] == "x=1&y=%20two"
            assert echo["body"] == '{"rows": [1, 2]}'
            sent = dict(echo["headers"])
            assert sent["x-request-id"] == "abc-123"
            assert sent["content-type"] == "application/json"
            assert "x-secret-hop" not in sent  # named in Connection: hop-by-hop
            assert sent["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
            assert sent["x-forwarded-host"] == client.base_url.netloc.decode()
            assert sent["host"] == url(up, "a").removeprefix("http://")
            assert "accept-encoding" in sent  # the caller's own (httpx's client sent one)
            assert r.headers["x-upstream"] == "a"
            assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
            # the gateway keeps no cookie jar: one caller's cookies never reach another's
            again = httpx.post(
                f"{client.base_url}/models/credit/predict", content=b"{}", trust_env=False
            ).json()
            assert "cookie" not in dict(again["headers"])
            assert r.headers["x-shipway-track"] == "stable"
            assert r.headers["x-shipway-version"] == "3"

            # statuses pass through, 4xx and 5xx alike, and are never retried
            assert client.get("/?status=418").status_code == 418
            before = up["a"][0].seen
            r = client.put("/?status=503", content=b"x")
            assert r.status_code == 503 and r.json()["method"] == "PUT"
            assert up["a"][0].seen == before + 1

            # a chunked answer is buffered and sent with its length
            r = client.get("/?chunked=1")
            assert r.status_code == 200 and r.json()["name"] == "a"
            assert int(r.headers["content-length"]) == len(r.content)

            assert client.head("/").status_code == 200


def test_set_tracks_swaps_at_once_and_in_flight_requests_finish_on_their_replica() -> None:
    with upstreams("old", "new") as up:
        gateway = Gateway("staging", "credit")
        old, new = url(up, "old"), url(up, "new")
        gateway.set_tracks([Track("stable", 1, 100, [old])])
        with gateway_at(gateway) as client, ThreadPoolExecutor(1) as pool:
            slow = pool.submit(client.get, "/?sleep=3")  # in flight while the tracks swap
            deadline = time.monotonic() + 5
            while gateway.in_flight(old) != 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            gateway.set_tracks([Track("stable", 2, 100, [new])])
            assert client.get("/").json()["name"] == "new"
            assert gateway.in_flight(old) == 1  # still draining
            answer = slow.result(timeout=10)
            assert answer.json()["name"] == "old"
            assert answer.headers["x-shipway-version"] == "1"
            assert gateway.in_flight(old) == 0


def test_set_tracks_rejects_bad_tables() -> None:
    gateway = Gateway("staging", "credit")
    with pytest.raises(InvalidInputError, match="weight 150"):
        gateway.set_tracks([Track("stable", 1, 150, [])])
    with pytest.raises(InvalidInputError, match="unique"):
        gateway.set_tracks([Track("stable", 1, 50, []), Track("stable", 2, 50, [])])
    table = [Track("stable", 1, 100, ["http://127.0.0.1:1/"])]
    gateway.set_tracks(table)
    table[0].urls.append("http://elsewhere")  # the gateway keeps its own copy
    assert gateway.tracks == [Track("stable", 1, 100, ["http://127.0.0.1:1"])]


# =============================================================================
# Failures: retries, timeouts, limits
# =============================================================================


def test_a_replica_shut_down_mid_load_loses_no_request() -> None:
    with upstreams("a", "b") as up:
        gateway = Gateway("production", "credit")
        gateway.set_tracks([Track("stable", 1, 100, [url(up, "a"), url(up, "b")])])
        with gateway_at(gateway) as client:
            total, stop_after = 400, 100
            done = threading.Semaphore(0)

            def one(_: int) -> tuple[int, str]:
                r = client.get("/?sleep=0.003")
                done.release()
                return r.status_code, r.headers.get("x-upstream", "")

            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(one, i) for i in range(total)]
                for _ in range(stop_after):
                    done.acquire()
                up["b"][1].stop()  # the supervisor has not noticed: b stays in the table
                results = [f.result() for f in futures]
            assert Counter(status for status, _ in results) == {200: total}
            served = Counter(name for _, name in results)
            assert served["b"] >= stop_after // 4  # b did serve until it stopped
            assert served["a"] + served["b"] == total
            metrics = client.get("/-/metrics").text
            assert metric(metrics, "shipway_gateway_upstream_retries_total", track="stable") >= 1


def test_retry_goes_to_the_other_track_and_then_gives_up_with_502() -> None:
    with upstreams("c") as up:
        gateway = Gateway("production", "credit")
        gateway.set_tracks(
            [Track("stable", 1, 100, [dead_url()]), Track("canary", 2, 0, [url(up, "c")])]
        )
        with gateway_at(gateway) as client:
            r = client.post("/predict", content=b"{}")
            assert r.status_code == 200
            assert r.headers["x-shipway-track"] == "canary" and r.json()["name"] == "c"

            gateway.set_tracks([Track("stable", 1, 100, [dead_url(), dead_url()])])
            r = client.get("/predict")
            assert r.status_code == 502
            assert "Could not reach a replica" in r.json()["error"]
            assert r.headers["x-shipway-track"] == "stable"
            now = time.time()
            assert gateway.stats("stable", now - 5, now + 1).errors == 1


@contextlib.contextmanager
def raw_server(reply: bytes) -> Iterator[tuple[str, list[int]]]:
    """A socket server that reads one request, writes `reply` (maybe nothing) and hangs up;
    yields its URL and a list that counts the requests it got."""
    hits: list[int] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                data += chunk
            hits.append(1)
            self.request.sendall(reply)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_replica_that_hangs_up_unanswered_is_retried_but_a_broken_answer_is_not() -> None:
    broken = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part"
    with (
        upstreams("good") as up,
        raw_server(b"") as (hang_up, hung),
        raw_server(broken) as (half, halves),
    ):
        gateway = Gateway("production", "credit")
        gateway.set_tracks([Track("stable", 1, 100, [hang_up, url(up, "good")])])
        with gateway_at(gateway) as client:
            answers = [client.post("/predict", content=b"{}") for _ in range(4)]
            assert [r.status_code for r in answers] == [200] * 4
            assert {r.json()["name"] for r in answers} == {"good"}
            assert len(hung) == 2  # round-robin sent it every other request; each retried

            gateway.set_tracks([Track("stable", 1, 100, [half, url(up, "good")])])
            seen = up["good"][0].seen
            r = client.post("/predict", content=b"{}")
            assert r.status_code == 502 and "broke off" in r.json()["error"]
            assert len(halves) == 1 and up["good"][0].seen == seen  # answered: not retried


def test_upstream_timeout_is_a_504() -> None:
    with upstreams("a") as up:
        gateway = Gateway("staging", "credit", timeout_s=0.3)
        gateway.set_tracks([Track("stable", 1, 100, [url(up, "a")])])
        with gateway_at(gateway) as client:
            started = time.monotonic()
            r = client.get("/?sleep=3")
            assert r.status_code == 504
            assert time.monotonic() - started < 2.5  # the gateway's 0.3 s, not the upstream's 3
            assert "did not answer within 0.3 s" in r.json()["error"]
            assert up["a"][0].seen == 1  # not retried
            assert client.get("/").status_code == 200
            now = time.time()
            stats = gateway.stats("stable", now - 10, now + 1)
            assert (stats.requests, stats.errors) == (2, 1)


def test_no_ready_replica_is_a_503_with_retry_after() -> None:
    gateway = Gateway("staging", "credit")
    with gateway_at(gateway) as client:
        r = client.post("/predict", content=b"{}")
        assert r.status_code == 503
        assert r.json() == {"error": "no ready replica in environment staging"}
        assert r.headers["retry-after"] == "1"
        ready = client.get("/-/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
        assert client.get("/-/healthy").status_code == 200
        gateway.set_tracks([Track("stable", 1, 100, []), Track("canary", 2, 0, [])])
        assert client.get("/").status_code == 503


def test_a_body_over_the_limit_is_a_413() -> None:
    with upstreams("a") as up:
        gateway = Gateway("staging", "credit", max_body_bytes=1000)
        gateway.set_tracks([Track("stable", 1, 100, [url(up, "a")])])
        with gateway_at(gateway) as client:
            assert client.post("/", content=b"x" * 1000).status_code == 200
            r = client.post("/", content=b"x" * 1001)
            assert r.status_code == 413 and "limit of 1000 bytes" in r.json()["error"]

            def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
                for _ in range(5):
                    yield b"y" * 300

            assert client.post("/", content=chunks()).status_code == 413
            assert up["a"][0].seen == 1


# =============================================================================
# Statistics and metrics
# =============================================================================


def test_window_p99_matches_numpy_within_a_bucket() -> None:
    rng = np.random.default_rng(7)
    for latencies in (
        rng.lognormal(math.log(0.05), 0.6, 5000),  # around 50 ms
        rng.uniform(0.0002, 0.003, 3000),  # sub-millisecond to 3 ms
        np.concatenate([rng.normal(0.02, 0.002, 970), rng.normal(1.5, 0.1, 30)]),  # a tail
    ):
        window = _Window(60)
        for i, latency in enumerate(latencies):
            window.add(1000.0 + i % 10, float(latency), error=i % 50 == 0)
        stats = window.stats(1000, 1010)
        assert stats.requests == len(latencies)
        assert stats.errors == math.ceil(len(latencies) / 50)
        expected = float(np.percentile(latencies, 99)) * 1000
        assert stats.p99_ms is not None
        assert abs(stats.p99_ms / expected - 1) < LATENCY_GROWTH - 1


def test_window_intervals_count_whole_overlapping_seconds_and_forget_old_ones() -> None:
    window = _Window(10)
    for second in range(100, 120):  # 20 seconds into a 10-second ring
        window.add(second + 0.5, 0.01, error=second % 2 == 0)
    assert window.stats(100, 110).requests == 0  # overwritten
    assert window.stats(110, 120).requests == 10
    assert window.stats(112.5, 114.2).requests == 3  # seconds 112, 113, 114
    assert window.stats(115, 116).errors == 0 and window.stats(116, 117).errors == 1
    assert window.stats(130, 140).p99_ms is None


def test_stats_count_requests_errors_and_latency_per_track() -> None:
    rng = np.random.default_rng(3)
    with upstreams("s", "c") as up:
        gateway = Gateway("production", "credit")
        gateway.set_tracks(
            [Track("stable", 1, 50, [url(up, "s")]), Track("canary", 2, 50, [url(up, "c")])]
        )
        with gateway_at(gateway) as client:
            start = time.time()
            sleeps = rng.lognormal(math.log(0.01), 0.5, 200)  # about 10 ms, tail to ~40 ms
            measured: dict[str, list[float]] = {"stable": [], "canary": []}
            slept: dict[str, list[float]] = {"stable": [], "canary": []}
            errors = Counter[str]()
            for i, sleep in enumerate(sleeps):
                status = 500 if i % 7 == 0 else 200
                t0 = time.perf_counter()
                r = client.get(f"/?sleep={sleep:.4f}&status={status}")
                elapsed = time.perf_counter() - t0
                track = r.headers["x-shipway-track"]
                measured[track].append(elapsed)
                slept[track].append(float(sleep))
                errors[track] += r.status_code >= 500
            end = time.time()
            assert errors.total() == math.ceil(200 / 7)
            for track in ("stable", "canary"):
                stats = gateway.stats(track, start, end)
                assert stats.requests == len(measured[track]) == 100
                assert stats.errors == errors[track] >= 10
                assert stats.error_rate == errors[track] / 100
                # the gateway's latency lies between the upstream's sleep and what the
                # client measured; p99 lands in that range to within a bucket
                assert stats.p99_ms is not None
                low = float(np.percentile(slept[track], 99)) * 1000
                high = float(np.percentile(measured[track], 99)) * 1000
                assert low / LATENCY_GROWTH <= stats.p99_ms <= high * LATENCY_GROWTH
            assert gateway.stats("stable", end + 5, end + 10).requests == 0
            assert gateway.stats("nonesuch", start, end) == gateway.stats("canary", end, start)


def test_metrics_status_and_openapi_endpoints() -> None:
    with upstreams("s", "c") as up:
        gateway = Gateway("production", "credit")
        gateway.set_tracks(
            [Track("stable", 4, 80, [url(up, "s")]), Track("canary", 5, 20, [url(up, "c")])]
        )
        with gateway_at(gateway) as client:
            for _ in range(10):
                client.get("/predict")
            client.get("/predict?status=500")
            text = client.get("/-/metrics").text

            assert_promtool_clean(text)

            requests = "shipway_gateway_requests_total"
            env = {"environment": "production"}
            assert metric(text, requests, **env) == 11
            assert metric(text, requests, track="stable", version="4", status="200") >= 7
            assert metric(text, requests, status="500") == 1
            count = "shipway_gateway_request_duration_seconds_count"
            assert metric(text, count, track="canary", version="5") >= 2
            assert metric(text, "shipway_gateway_track_weight", track="canary") == 20
            assert metric(text, "shipway_gateway_ready_replicas", track="stable") == 1

            status = client.get("/-/status").json()
            assert status["environment"] == "production" and status["model"] == "credit"
            assert status["tracks"] == [
                {
                    "name": "stable",
                    "version": 4,
                    "weight": 80.0,
                    "share": 0.8,
                    "urls": [url(up, "s")],
                    "in_flight": {url(up, "s"): 0},
                },
                {
                    "name": "canary",
                    "version": 5,
                    "weight": 20.0,
                    "share": 0.2,
                    "urls": [url(up, "c")],
                    "in_flight": {url(up, "c"): 0},
                },
            ]
            assert client.get("/-/ready").json() == {"status": "ready", "replicas": 2}

            spec = client.get("/-/openapi.json").json()
            assert spec["openapi"].startswith("3.")
            assert set(spec["paths"]) == {"/-/healthy", "/-/ready", "/-/status", "/-/metrics"}
            missing = client.get("/-/nonesuch")
            assert missing.status_code == 404
            assert missing.json()["error"].startswith("No gateway endpoint /-/nonesuch.")
            wrong = client.post("/-/status")
            assert wrong.status_code == 405 and "not allowed" in wrong.json()["error"]
            assert up["s"][0].seen + up["c"][0].seen == 11  # /-/ paths never reach a replica
