"""Canary releases on a cluster: the rollout controller moving an HTTPRoute's weights and
reading Prometheus, against fakes of the Kubernetes API and of Prometheus' query API.

Both are fakes (tests/k8s_fakes.py says why and what they cover), served over real HTTP on
loopback so that the official `kubernetes` client and httpx do the talking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipway
from k8s_fakes import FakeKubernetes, FakePrometheus, TrackLoad, serve
from servers import free_port
from shipway.deploy import records
from shipway.deploy.analysis import Checks
from shipway.deploy.kubernetes import RenderOptions, rollouts
from shipway.deploy.kubernetes.apply import apply
from shipway.deploy.kubernetes.prometheus import PrometheusMetricsSource
from shipway.deploy.rollout import RolloutState
from shipway.errors import ApprovalRequiredError, DeployError
from shipway.governance.audit import audit_log
from test_k8s_apply import DIGEST, NS, credit, fake

__all__ = ["credit", "fake"]


@pytest.fixture
def closing() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture
def prometheus() -> Iterator[tuple[FakePrometheus, str]]:
    prom = FakePrometheus()
    with serve(prom.app()) as url:
        yield prom, url


def _start(url: str, steps: list[int | str]) -> rollouts.CanaryRun:
    return rollouts.start(
        RenderOptions("models:/credit/2", Path(".")), "staging", steps=steps,  # type: ignore[arg-type]
        interval_s=0.3, checks=Checks(min_requests=20), poll_s=0.05,
        source=lambda ns, app: PrometheusMetricsSource(url, namespace=ns, app=app),
    )  # fmt: skip


def _canary_weights(fake: FakeKubernetes) -> list[int]:
    return [w["credit-canary"] for w in fake.route_weights]


def test_a_good_canary_is_promoted_step_by_step(
    credit: list[shipway.ModelVersionInfo],
    fake: FakeKubernetes,
    prometheus: tuple[FakePrometheus, str],
) -> None:
    prom, url = prometheus
    prom.tracks = {"stable": TrackLoad(rps=90), "canary": TrackLoad(rps=50)}
    apply(RenderOptions("models:/credit/1", Path(".")), "staging", poll_s=0.05)
    started = _start(url, [10, 50, 100])
    canary = fake.get("deployments", NS, "credit-canary")
    assert canary is not None and canary["status"]["availableReplicas"] == 1
    moves: list[RolloutState] = []
    final = rollouts.run(started, tick_s=0.05, on_change=moves.append)

    assert final.status == "promoted", final.reason
    assert _canary_weights(fake) == [0, 10, 50, 100, 0]
    assert fake.route_weights[-1] == {"credit-stable": 100, "credit-canary": 0}
    stable = fake.get("deployments", NS, "credit")
    assert stable is not None
    container = stable["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example/credit@sha256:{DIGEST[2]}"
    assert stable["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "2"
    assert fake.get("deployments", NS, "credit-canary")["spec"]["replicas"] == 0  # type: ignore[index]
    # Every analysis asked Prometheus about both tracks of this app in this namespace.
    assert any('shipway_dev_track="canary"' in q and f'namespace="{NS}"' in q
               for q, _ in prom.queries)  # fmt: skip
    dep = records.get_deployment("staging")
    assert (dep.version, dep.image) == (2, f"registry.example/credit@sha256:{DIGEST[2]}")
    stored = records.latest_rollout("staging")
    assert stored is not None and stored.status == "promoted" and len(stored.history) == 3
    actions = [e.action for e in audit_log(limit=1000)]
    assert "k8s.promote" in actions and "rollout.promoted" in actions
    assert shipway.get_model_version("models:/credit@staging").version == 2


def test_a_bad_canary_is_rolled_back_at_once(
    credit: list[shipway.ModelVersionInfo],
    fake: FakeKubernetes,
    prometheus: tuple[FakePrometheus, str],
) -> None:
    prom, url = prometheus
    prom.tracks = {"stable": TrackLoad(rps=90), "canary": TrackLoad(rps=50, error_share=0.2)}
    apply(RenderOptions("models:/credit/1", Path(".")), "staging", poll_s=0.05)
    final = rollouts.run(_start(url, [10, 50, 100]), tick_s=0.05)

    assert final.status == "failed"
    assert final.reason is not None and "canary error rate 20%" in final.reason
    assert _canary_weights(fake) == [0, 10, 0]
    assert fake.get("deployments", NS, "credit-canary")["spec"]["replicas"] == 0  # type: ignore[index]
    stable = fake.get("deployments", NS, "credit")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"].endswith(DIGEST[1])
    assert records.get_deployment("staging").version == 1
    stored = records.latest_rollout("staging")
    assert stored is not None and stored.status == "failed"


def test_a_canary_that_never_starts_leaves_no_rollout(
    credit: list[shipway.ModelVersionInfo],
    fake: FakeKubernetes,
    prometheus: tuple[FakePrometheus, str],
) -> None:
    apply(RenderOptions("models:/credit/1", Path(".")), "staging", poll_s=0.05)
    fake.mode["credit-canary"] = "deadline"
    with pytest.raises(DeployError, match=r"credit-canary.*ProgressDeadlineExceeded"):
        _start(prometheus[1], [10, 100])
    assert records.latest_rollout("staging") is None
    assert fake.get("deployments", NS, "credit-canary")["spec"]["replicas"] == 0  # type: ignore[index]
    assert records.get_deployment("staging").version == 1


def test_a_canary_needs_its_approval_before_any_api_call(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    from shipway.governance.approvals import set_policy

    apply(RenderOptions("models:/credit/1", Path(".")), "staging", poll_s=0.05)
    set_policy("staging", "manual")
    calls = len(fake.calls)
    with pytest.raises(ApprovalRequiredError):
        _start("http://127.0.0.1:9", [10, 100])
    assert len(fake.calls) == calls


def test_prometheus_source_counts_errors_and_p99_of_one_track_over_the_window(
    prometheus: tuple[FakePrometheus, str], closing: contextlib.ExitStack
) -> None:
    prom, url = prometheus
    prom.tracks = {"canary": TrackLoad(rps=2, error_share=0.25, p99_s=0.123)}
    source = PrometheusMetricsSource(url, namespace="ns", app="credit")
    closing.callback(source.close)
    stats = source.stats("canary", 1000.0, 1060.0)
    assert (stats.requests, stats.errors) == (120, 30)
    assert stats.p99_ms == pytest.approx(123.0)
    assert all("[60s]" in q and t == "1060.000" for q, t in prom.queries)
    prom.tracks["canary"] = TrackLoad(rps=0)
    empty = source.stats("canary", 1000.0, 1060.0)
    assert (empty.requests, empty.p99_ms) == (0, None)
    assert source.stats("stable", 0.0, 60.0).requests == 0  # no series at all
    gone = PrometheusMetricsSource(f"http://127.0.0.1:{free_port()}", namespace="ns", app="x")
    closing.callback(gone.close)
    with pytest.raises(DeployError, match="Cannot reach Prometheus"):
        gone.stats("canary", 0.0, 60.0)


def test_a_rollout_whose_process_died_is_resumed_where_it_was(
    credit: list[shipway.ModelVersionInfo],
    fake: FakeKubernetes,
    prometheus: tuple[FakePrometheus, str],
) -> None:
    prom, url = prometheus
    prom.tracks = {"stable": TrackLoad(rps=90), "canary": TrackLoad(rps=50)}
    gpu = RenderOptions("models:/credit/1", Path("."), gpu=1, gpu_node_selector=("pool=gpu",))
    apply(gpu, "staging", poll_s=0.05)
    first = rollouts.start(
        dataclasses.replace(gpu, uri="models:/credit/2"), "staging", steps=[10, "pause", 100],
        interval_s=0.3, checks=Checks(min_requests=20), poll_s=0.05,
        source=lambda ns, app: PrometheusMetricsSource(url, namespace=ns, app=app),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while first.controller.state.status != "paused":  # 10% passes, then it waits for promote
        assert time.monotonic() < deadline, first.controller.state
        time.sleep(0.05)
        before = first.controller.state
        after = first.controller.tick(time.time())
        if after != before:
            records.save_rollout(after, previous=before, client=shipway.Client())
    for close in first.closers:  # the process following it dies here
        close()
    paused = records.active_rollout("staging")
    assert paused is not None and paused.weight == 10

    resumed = rollouts.attach(
        gpu, "staging", poll_s=0.05,
        source=lambda ns, app: PrometheusMetricsSource(url, namespace=ns, app=app),
    )  # fmt: skip
    assert resumed.controller.state.id == paused.id and resumed.canary.version == 2
    assert resumed.canary.image == f"registry.example/credit@sha256:{DIGEST[2]}"
    records.request_rollout("staging", "promote")
    final = rollouts.run(resumed, tick_s=0.05)
    assert final.status == "promoted", final.reason
    assert _canary_weights(fake)[-2:] == [100, 0]
    pod = fake.get("deployments", NS, "credit")["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["containers"][0]["image"].endswith(DIGEST[2])
    assert pod["nodeSelector"] == {"pool": "gpu"}  # promoted with the options it was applied with
    dep = records.get_deployment("staging")
    assert dep.version == 2 and dep.observed["options"]["gpu"] == 1  # still on record


def test_the_cli_canaries_with_the_options_the_environment_was_applied_with(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    from shipway.cli.k8s import _recorded_options

    apply(RenderOptions("models:/credit/1", Path("."), gpu=1, gpu_node_selector=("pool=gpu",),
                        secrets=("credit-db",)), "staging", poll_s=0.05)  # fmt: skip
    o = _recorded_options("staging", "models:/credit/2", None, canary_replicas=2)
    assert (o.uri, o.gpu, o.gpu_node_selector, o.secrets, o.canary_replicas) == (
        "models:/credit/2", 1, ("pool=gpu",), ("credit-db",), 2
    )
    assert _recorded_options("production", "models:/credit/2", None).gpu == 0  # nothing applied


def test_nothing_to_resume_is_a_clear_error(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    from shipway.errors import ConflictError

    apply(RenderOptions("models:/credit/1", Path(".")), "staging", poll_s=0.05)
    with pytest.raises(ConflictError, match="nothing to resume"):
        rollouts.attach(
            RenderOptions("models:/credit/1", Path(".")), "staging",
            source=lambda ns, app: PrometheusMetricsSource("http://127.0.0.1:9", namespace=ns,
                                                           app=app),
        )  # fmt: skip


def test_the_pipelines_promote_stage_canaries_a_kubernetes_environment_on_the_cluster(
    credit: list[shipway.ModelVersionInfo],
    fake: FakeKubernetes,
    prometheus: tuple[FakePrometheus, str],
) -> None:
    from shipway.pipeline.promote import promote
    from shipway.pipeline.spec import PromoteOptions

    prom, url = prometheus
    prom.tracks = {"stable": TrackLoad(rps=90), "canary": TrackLoad(rps=50)}
    apply(RenderOptions("models:/credit/1", Path("."), gpu=1, gpu_node_selector=("pool=gpu",)),
          "staging", poll_s=0.05)  # fmt: skip
    said: list[str] = []
    options = PromoteOptions(environment="staging", steps="10,100", interval="300ms",
                             prometheus_url=url)  # fmt: skip
    outcome = promote("models:/credit/2", options, shipway.Client(), said.append)
    assert outcome.passed, outcome.detail
    assert outcome.detail == "models:/credit/2 promoted to staging on the cluster by canary"
    assert said[0].startswith("cluster canary") and "rollout promoted: 100% to v2" in said
    assert _canary_weights(fake) == [0, 10, 100, 0]
    pod = fake.get("deployments", NS, "credit")["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["containers"][0]["image"].endswith(DIGEST[2])
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert records.get_deployment("staging").version == 2
