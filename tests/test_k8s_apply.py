"""`shipway k8s apply`, `status` and `rollback` against a fake Kubernetes API server.

The API server is a fake (tests/k8s_fakes.py says why and what it covers): a real HTTP server
on loopback that the official `kubernetes` client talks to as to a cluster.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import shipway
from deploy_helpers import register_doubler
from k8s_fakes import FakeKubernetes, kubeconfig, serve
from servers import free_port
from shipway.client import get_client
from shipway.deploy import records
from shipway.deploy.kubernetes import RenderOptions, render
from shipway.deploy.kubernetes.apply import apply, environment_objects, live_status, rollback
from shipway.deploy.kubernetes.render import app_name, resolve_release
from shipway.deploy.kubernetes.status import RolloutStatus
from shipway.errors import (
    ApprovalRequiredError,
    DeployError,
    ForbiddenError,
    InvalidInputError,
)
from shipway.governance.audit import audit_log
from shipway.packaging import images

DIGEST = {1: "a" * 64, 2: "b" * 64}
NS = "credit-staging"


def _push(version: shipway.ModelVersionInfo) -> None:
    images.record_build(version.uri, images.BuiltImage(
        tag=f"{version.name}:v{version.version}", image_id="1" * 64, size_bytes=1,
        base_image="localhost/python-base:3.11", engine="podman", kind="inference",
        lock_digest="c" * 64, sbom_digest=None,
    ))  # fmt: skip
    ref = f"registry.example/credit@sha256:{DIGEST[version.version]}"
    images.record_push(version.uri, "1" * 64, ref)


@pytest.fixture
def credit(shipway_home: Path) -> list[shipway.ModelVersionInfo]:
    versions = [register_doubler("credit"), register_doubler("credit", factor=3)]
    for v in versions:
        _push(v)
    return versions


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubernetes]:
    """A fake API server, and a kubeconfig whose context `fake` points at it."""
    cluster = FakeKubernetes()
    monkeypatch.setenv("HOME", str(tmp_path))  # the discovery cache goes under ~/.kube
    with serve(cluster.app()) as url:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", url)))
        yield cluster


def _apply(uri: str, env: str = "staging", **kwargs: object) -> object:
    kwargs.setdefault("poll_s", 0.05)
    return apply(RenderOptions(uri, Path(".")), env, **kwargs)  # type: ignore[arg-type]


def _image(fake: FakeKubernetes, name: str = "credit") -> str:
    dep = fake.get("deployments", NS, name)
    assert dep is not None
    image: str = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def _actions() -> list[str]:
    return [e.action for e in audit_log(limit=1000) if e.action.startswith("k8s.")]


def test_apply_server_side_applies_the_overlay_and_records_only_once_available(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    seen: list[tuple[RolloutStatus, bool]] = []

    def on_status(status: RolloutStatus) -> None:
        seen.append((status, records.find_deployment("staging") is not None))

    done = _apply("models:/credit/1", context="fake", on_status=on_status)
    patches = [c for c in fake.calls if c.method == "PATCH"]
    assert patches and all(c.content_type == "application/apply-patch+yaml" for c in patches)
    assert all(c.query.get("fieldManager") == "shipway" for c in patches)
    assert {k for (k, _, _) in fake.objects} >= {
        "namespaces", "serviceaccounts", "configmaps", "deployments", "services",
        "horizontalpodautoscalers", "poddisruptionbudgets", "networkpolicies", "replicasets",
    }  # fmt: skip
    assert fake.get("namespaces", "", NS) is not None
    assert _image(fake) == f"registry.example/credit@sha256:{DIGEST[1]}"
    # The progress display saw the rollout before it was done, and nothing was recorded then.
    assert not any(recorded for _, recorded in seen)
    assert not seen[0][0].done and seen[-1][0].done
    dep = records.get_deployment("staging")
    assert (dep.runtime, dep.host, dep.port, dep.version, dep.status) == (
        "kubernetes", "fake", 80, 1, "running",
    )  # fmt: skip
    assert dep.observed["namespace"] == NS and dep.observed["digest"] == f"sha256:{DIGEST[1]}"
    assert dep.observed["revision"] == 1
    assert _actions() == ["k8s.apply"]
    assert done.status is not None and done.status.available == 1  # type: ignore[attr-defined]
    assert shipway.get_model_version("models:/credit@staging").version == 1


def test_the_in_memory_overlay_is_what_kubectl_kustomize_renders(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is missing; run `make test` or scripts/install-system-deps.sh.")
    o = RenderOptions("models:/credit/1", tmp_path / "out", gateway="gw")
    render(o)
    for env in ("staging", "production"):
        out = subprocess.run(["kubectl", "kustomize", str(tmp_path / "out" / "overlays" / env)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        want = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout)}
        release = resolve_release(o.uri, "inference", None, client=get_client())
        mine = environment_objects(o, env, app_name(o, "credit"), release)
        assert {(d["kind"], d["metadata"]["name"]): d for d in mine} == want


@pytest.mark.parametrize("mode, reason", [
    ("stuck", "ImagePullBackOff"), ("deadline", "ProgressDeadlineExceeded"),
])  # fmt: skip
def test_a_rollout_that_never_becomes_available_is_an_error_and_records_nothing(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes, mode: str, reason: str
) -> None:
    _apply("models:/credit/1")
    fake.mode["credit"] = mode
    with pytest.raises(DeployError, match=reason) as err:
        _apply("models:/credit/2", timeout_s=1.0)
    assert "did not become available" in err.value.message
    dep = records.get_deployment("staging")
    assert (dep.version, dep.image) == (1, f"registry.example/credit@sha256:{DIGEST[1]}")
    assert _actions() == ["k8s.apply"]


def test_a_failure_mid_apply_records_nothing(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    fake.reject["HorizontalPodAutoscaler"] = (422, "spec.maxReplicas: Invalid value: 0")
    with pytest.raises(InvalidInputError, match=r"HorizontalPodAutoscaler credit.*maxReplicas"):
        _apply("models:/credit/1")
    assert fake.get("deployments", NS, "credit") is not None  # applied before the failure
    assert records.find_deployment("staging") is None
    assert _actions() == []


def test_an_unreachable_cluster_or_unknown_context_is_a_clear_error(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}", "prod-eu")
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(DeployError, match="Cannot reach the cluster of context 'prod-eu'") as e:
        _apply("models:/credit/1")
    assert "cluster-info" in str(e.value)
    with pytest.raises(DeployError, match=r"no context 'nope'.*prod-eu"):
        _apply("models:/credit/1", context="nope")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(DeployError, match="Cannot load the kubeconfig"):
        _apply("models:/credit/1")
    assert records.find_deployment("staging") is None


def test_a_forbidden_verb_is_a_forbidden_error_naming_it_and_the_user(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    fake.forbid.add(("patch", "deployments"))
    with pytest.raises(ForbiddenError) as err:
        _apply("models:/credit/1")
    text = str(err.value)
    assert "user 'deployer'" in text and "may not patch Deployment credit" in text
    assert "system:serviceaccount:ci:deployer" in text and "auth can-i" in text
    assert err.value.exit_code == 9
    assert records.find_deployment("staging") is None


def test_dry_run_uses_the_servers_dry_run_and_records_nothing(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    done = _apply("models:/credit/1", dry_run=True)
    patches = [c for c in fake.calls if c.method == "PATCH"]
    assert patches and all(c.query.get("dryRun") == "All" for c in patches)
    assert fake.objects == {}
    assert len(done.objects) == len(patches)  # type: ignore[attr-defined]
    assert records.find_deployment("staging") is None and _actions() == []


def test_production_without_approval_is_refused_before_any_api_call(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    with pytest.raises(ApprovalRequiredError, match="approvals request models:/credit/1"):
        _apply("models:/credit/1", "production")
    assert fake.calls == []


def test_rollback_applies_the_previous_template_waits_and_audits(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    _apply("models:/credit/1")
    _apply("models:/credit/2")
    assert _image(fake).endswith(DIGEST[2])
    live = live_status("staging")
    assert (live.stable.revision, live.stable.version, live.canary) == (2, "2", None)

    dep = rollback("staging", poll_s=0.05)
    assert _image(fake).endswith(DIGEST[1])
    undo = [c for c in fake.calls if c.content_type == "application/json-patch+json"]
    assert len(undo) == 1
    assert (dep.version, dep.observed["revision"], dep.observed["rolled_back_from"]) == (1, 3, 2)
    assert _actions() == ["k8s.apply", "k8s.apply", "k8s.rollback"]
    entry = audit_log(limit=1)[0]
    assert entry.before is not None and entry.before["version"] == 2
    assert shipway.get_model_version("models:/credit@staging").version == 1
    # Revision 2 (version 2) is still there to go forward to.
    again = rollback("staging", to_revision=2, poll_s=0.05)
    assert again.version == 2 and _image(fake).endswith(DIGEST[2])


def test_the_cli_applies_shows_status_and_rolls_back(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    from shipway.cli import create_app

    runner = CliRunner()
    app = create_app()
    out = runner.invoke(app, ["k8s", "apply", "models:/credit/1", "--env", "staging"])
    assert out.exit_code == 0, out.output
    assert "is available in staging" in out.output and NS in out.output
    out = runner.invoke(app, ["k8s", "apply", "models:/credit/2", "--env", "staging",
                              "--dry-run"])  # fmt: skip
    assert out.exit_code == 0 and "Nothing changed or recorded" in out.output
    out = runner.invoke(app, ["k8s", "status", "--env", "staging"])
    assert out.exit_code == 0, out.output
    assert "models:/credit/1" in out.output and "available" in out.output
    runner.invoke(app, ["k8s", "apply", "models:/credit/2", "--env", "staging"])
    out = runner.invoke(app, ["k8s", "rollback", "--env", "staging"])
    assert out.exit_code == 0, out.output
    assert "rolled back to revision 3: models:/credit/1" in out.output


def test_apply_from_a_rendered_directory_keeps_every_option(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes, tmp_path: Path
) -> None:
    from shipway.cli import create_app
    from shipway.deploy.kubernetes.render import OPTIONS_FILE

    out_dir = tmp_path / "k8s"
    runner, app = CliRunner(), create_app()
    rendered = runner.invoke(app, [
        "k8s", "render", "models:/credit/1", "-o", str(out_dir), "--gpu", "1",
        "--gpu-node-selector", "pool=gpu", "--gpu-toleration", "nvidia.com/gpu:NoSchedule",
        "--secret", "credit-db", "--max-batch-size", "16",
    ])  # fmt: skip
    assert rendered.exit_code == 0, rendered.output
    assert (out_dir / OPTIONS_FILE).is_file()
    refused = runner.invoke(app, ["k8s", "apply", "--from", str(out_dir), "--env", "staging",
                                  "--replicas", "5"])  # fmt: skip
    assert refused.exit_code != 0 and "--replicas cannot change" in str(refused.exception)
    assert fake.get("deployments", NS, "credit") is None  # nothing applied
    done = runner.invoke(app, ["k8s", "apply", "--from", str(out_dir), "--env", "staging"])
    assert done.exit_code == 0, done.output
    pod = fake.get("deployments", NS, "credit")["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    assert {"secretRef": {"name": "credit-db"}} in pod["containers"][0]["envFrom"]
    config = [o for (k, _, _), o in fake.objects.items() if k == "configmaps"]
    assert any("16" in str(c.get("data")) for c in config)
    # a new version with the same options, its image resolved from the registry records
    again = runner.invoke(app, ["k8s", "apply", "models:/credit/2", "--from", str(out_dir),
                                "--env", "staging"])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert _image(fake) == f"registry.example/credit@sha256:{DIGEST[2]}"
    assert records.get_deployment("staging").version == 2


def test_apply_needs_a_version_or_a_rendered_directory(
    fake: FakeKubernetes, tmp_path: Path
) -> None:
    from shipway.cli import create_app

    out = CliRunner().invoke(create_app(), ["k8s", "apply", "--env", "staging"])
    assert out.exit_code != 0 and "or --from DIR" in str(out.exception)
    out = CliRunner().invoke(create_app(), ["k8s", "apply", "--from", str(tmp_path),
                                            "--env", "staging"])  # fmt: skip
    assert "has no shipway-render.json" in str(out.exception)


def test_an_unknown_environment_is_a_clear_error_before_any_api_call(
    credit: list[shipway.ModelVersionInfo], fake: FakeKubernetes
) -> None:
    from shipway.errors import NotFoundError

    _apply("models:/credit/1")
    calls = len(fake.calls)
    for action in (lambda: live_status("qa"), lambda: rollback("qa", poll_s=0.05)):
        with pytest.raises(NotFoundError, match="Environment 'qa' not found") as err:
            action()
        assert "staging" in str(err.value)  # the environments that do exist are named
    assert len(fake.calls) == calls
