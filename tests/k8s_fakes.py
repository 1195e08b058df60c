"""Fakes of the Kubernetes API server and of Prometheus' query API, as real HTTP servers.

These are fakes, the one place the test suite allows them: no API server (and no cluster, no
Prometheus scraping pods) runs on a test machine. They are small Starlette apps served by
uvicorn on loopback, so the code under test talks to them exactly as to the real thing: the
official `kubernetes` client (its `DynamicClient` discovery, server-side apply with
``application/apply-patch+yaml``, merge and JSON patches, label-selector lists) and httpx.

What the Kubernetes fake covers: discovery (``/version``, ``/apis``, ``/api/v1``, each group's
resource list), GET/PATCH of objects and GET of lists under ``/api/v1`` and ``/apis/G/V``,
``dryRun=All``, a bearer token, a 403 or a 422 on chosen requests, and a Deployment controller
that observes a new spec, keeps one ReplicaSet per pod template with
``deployment.kubernetes.io/revision`` (as the real one does, reusing the ReplicaSet of a
template seen before), and makes the replicas available, or never (pods in
``ImagePullBackOff``), or fails with ``ProgressDeadlineExceeded``. Not covered: real merge
semantics of server-side apply (the fake merges maps and replaces lists), field ownership,
admission, watches.

The Prometheus fake answers ``/api/v1/query`` for the three queries
`PrometheusMetricsSource` makes, from per-track request rates, error shares and p99s.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servers import uvicorn_thread

Obj = dict[str, Any]
TOKEN = "test-token"
REVISION = "deployment.kubernetes.io/revision"

# (group, version) -> [(plural, kind, namespaced)]
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("configmaps", "ConfigMap", True),
        ("pods", "Pod", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True), ("replicasets", "ReplicaSet", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("gateway.networking.k8s.io", "v1"): [("httproutes", "HTTPRoute", True)],
}


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    return JSONResponse(body, status_code=code)


def _merge(into: Obj, patch: Obj) -> Obj:
    """RFC 7386 merge (also how this fake approximates server-side apply)."""
    out = copy.deepcopy(into)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = op["path"][1:].split("/")
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            node[int(last) if isinstance(node, list) else last] = copy.deepcopy(op["value"])
    return out


def _template_hash(template: Obj) -> str:
    plain = copy.deepcopy(template)
    plain.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None


@dataclass
class FakeKubernetes:
    """The API server's state and the knobs tests turn."""

    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)  # (plural, ns, name)
    calls: list[Call] = field(default_factory=list)
    mode: dict[str, str] = field(default_factory=dict)  # Deployment -> available|stuck|deadline
    forbid: set[tuple[str, str]] = field(default_factory=set)  # (verb, plural)
    reject: dict[str, tuple[int, str]] = field(default_factory=dict)  # kind -> (code, message)
    route_weights: list[dict[str, int]] = field(default_factory=list)  # every HTTPRoute write
    pending: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, plural: str, ns: str, name: str) -> Obj | None:
        return self.objects.get((plural, ns, name))

    def of_kind(self, plural: str) -> list[Obj]:
        return [o for (p, _, _), o in self.objects.items() if p == plural]

    # -- the app -------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                return self._handle(request, body)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "PATCH"])])

    def _handle(self, request: Request, body: bytes) -> Response:
        path = request.url.path
        self.calls.append(Call(request.method, path, dict(request.query_params),
                               request.headers.get("content-type")))  # fmt: skip
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "Unauthorized")
        if path == "/version":
            return JSONResponse({"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
        if path == "/api":
            return JSONResponse({"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for g, v in RESOURCES if g
            ]  # fmt: skip
            return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        resources = RESOURCES.get((group, version))
        if resources is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return JSONResponse({
                "kind": "APIResourceList",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [
                    {"name": p, "singularName": k.lower(), "namespaced": n, "kind": k,
                     "verbs": ["get", "list", "patch", "create", "update", "delete"]}
                    for p, k, n in resources
                ],
            })  # fmt: skip
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, plural, name = rest[1], rest[2], (rest[3] if len(rest) > 3 else None)
        else:
            ns, plural, name = "", rest[0], (rest[1] if len(rest) > 1 else None)
        kind = {p: k for p, k, _ in resources}[plural]
        verb = "patch" if request.method == "PATCH" else ("get" if name else "list")
        if (verb, plural) in self.forbid:
            api_group = group or '""'
            return _status(403, "Forbidden", (
                f'{plural}.{group or "core"} "{name}" is forbidden: User '
                f'"system:serviceaccount:ci:deployer" cannot {verb} resource "{plural}" in API '
                f'group {api_group} in the namespace "{ns}"'
            ))  # fmt: skip
        if request.method == "GET":
            if name is None:
                return self._list(plural, ns, kind, request.query_params.get("labelSelector"))
            self._reconcile(plural, ns, name)
            found = self.get(plural, ns, name)
            if found is None:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            return JSONResponse(found)
        assert name is not None
        return self._patch(request, body, group, version, kind, plural, ns, name)

    def _list(self, plural: str, ns: str, kind: str, selector: str | None) -> Response:
        wanted = dict(p.split("=", 1) for p in selector.split(",")) if selector else {}
        items = [
            o for (p, n, _), o in self.objects.items()
            if p == plural and n == ns
            and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]  # fmt: skip
        return JSONResponse({"kind": f"{kind}List", "apiVersion": "v1", "items": items,
                             "metadata": {"resourceVersion": "1"}})  # fmt: skip

    def _patch(
        self, request: Request, body: bytes, group: str, version: str, kind: str,
        plural: str, ns: str, name: str,
    ) -> Response:  # fmt: skip
        if kind in self.reject:
            code, message = self.reject[kind]
            return _status(code, "Invalid", f'{kind} "{name}" is invalid: {message}')
        content_type = request.headers.get("content-type", "")
        existing = self.get(plural, ns, name)
        if content_type == "application/apply-patch+yaml":
            if request.query_params.get("fieldManager") != "shipway":
                return _status(400, "BadRequest", "fieldManager is required for apply")
            patch = yaml.safe_load(body)
            updated = _merge(existing or {}, patch)
        elif existing is None:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        elif content_type == "application/merge-patch+json":
            updated = _merge(existing, json.loads(body))
        elif content_type == "application/json-patch+json":
            updated = _json_patch(existing, json.loads(body))
        else:
            return _status(415, "UnsupportedMediaType", f"unsupported {content_type}")
        meta = updated.setdefault("metadata", {})
        meta["name"] = name
        if ns:
            meta["namespace"] = ns
        meta.setdefault("uid", str(uuid.uuid4()))
        updated["apiVersion"] = f"{group}/{version}" if group else version
        updated["kind"] = kind
        if kind == "Deployment":
            updated.setdefault("spec", {}).setdefault("replicas", 1)
        old_spec = (existing or {}).get("spec")
        if updated.get("spec") != old_spec:
            meta["generation"] = int(meta.get("generation", 0)) + 1
        if request.query_params.get("dryRun") == "All":
            return JSONResponse(updated)
        self.objects[(plural, ns, name)] = updated
        if kind == "Deployment" and updated.get("spec") != old_spec:
            self._roll(updated, ns)
        if kind == "HTTPRoute":
            refs = updated["spec"]["rules"][0]["backendRefs"]
            self.route_weights.append({r["name"]: r.get("weight", 1) for r in refs})
        return JSONResponse(updated)

    # -- the Deployment controller -------------------------------------------------------------

    def _roll(self, deployment: Obj, ns: str) -> None:
        """A new ReplicaSet revision for a new template; the status follows on later GETs."""
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        th = _template_hash(template)
        uid = deployment["metadata"]["uid"]
        owned = [rs for rs in self.of_kind("replicasets")
                 if rs["metadata"]["ownerReferences"][0]["uid"] == uid]  # fmt: skip
        top = max((int(rs["metadata"]["annotations"][REVISION]) for rs in owned), default=0)
        same = [rs for rs in owned if rs["metadata"]["labels"]["pod-template-hash"] == th]
        if same:
            rs = same[0]
            if rs["metadata"]["annotations"][REVISION] != str(top):
                rs["metadata"]["annotations"][REVISION] = str(top + 1)
        else:
            labels = dict(template["metadata"]["labels"]) | {"pod-template-hash": th}
            rs_template = copy.deepcopy(template)
            rs_template["metadata"]["labels"] = labels
            rs = {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{th}", "namespace": ns, "labels": labels,
                    "annotations": {REVISION: str(top + 1)},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": name, "uid": deployment["metadata"]["uid"]}],
                },
                "spec": {"replicas": 0, "template": rs_template,
                         "selector": {"matchLabels": labels}},
            }  # fmt: skip
            self.objects[("replicasets", ns, rs["metadata"]["name"])] = rs
        deployment["metadata"].setdefault("annotations", {})[REVISION] = rs["metadata"][
            "annotations"
        ][REVISION]
        self.pending[name] = 2

    def _reconcile(self, plural: str, ns: str, name: str) -> None:
        if plural != "deployments" or name not in self.pending:
            return
        dep = self.objects[(plural, ns, name)]
        replicas = dep["spec"]["replicas"]
        self.pending[name] -= 1
        status: Obj = {"observedGeneration": dep["metadata"]["generation"], "replicas": replicas,
                       "updatedReplicas": replicas, "readyReplicas": 0,
                       "availableReplicas": 0}  # fmt: skip
        mode = self.mode.get(name, "available")
        if self.pending[name] <= 0:
            if mode == "available":
                status |= {"readyReplicas": replicas, "availableReplicas": replicas,
                           "conditions": [{"type": "Available", "status": "True"},
                                          {"type": "Progressing", "status": "True",
                                           "reason": "NewReplicaSetAvailable"}]}  # fmt: skip
            elif mode == "deadline":
                status["conditions"] = [{
                    "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{name}" has timed out progressing.',
                }]  # fmt: skip
            if mode != "available":
                self._stuck_pod(dep, ns)
            del self.pending[name]
        dep["status"] = status

    def _stuck_pod(self, dep: Obj, ns: str) -> None:
        labels = dict(dep["spec"]["template"]["metadata"]["labels"])
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        name = f"{dep['metadata']['name']}-7d9f8-x2x4q"
        self.objects[("pods", ns, name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "server", "ready": False,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{image}"'}},
            }]},
        }  # fmt: skip


def kubeconfig(path: Path, url: str, context: str = "fake") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "deployer", "user": {"token": TOKEN}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "deployer"}}],
    }))  # fmt: skip
    return path


# ----------------------------------------------------------------------------------------------
# Prometheus


@dataclass
class TrackLoad:
    rps: float = 10.0
    error_share: float = 0.0
    p99_s: float = 0.02


@dataclass
class FakePrometheus:
    tracks: dict[str, TrackLoad] = field(default_factory=dict)
    queries: list[tuple[str, str]] = field(default_factory=list)  # (query, time)

    def answer(self, query: str) -> float | None:
        track = re.search(r'shipway_dev_track="(\w+)"', query)
        window = re.search(r"\[(\d+)s\]", query)
        if track is None or window is None or track.group(1) not in self.tracks:
            return None
        load, seconds = self.tracks[track.group(1)], int(window.group(1))
        if query.startswith("histogram_quantile"):
            return load.p99_s if load.rps else float("nan")
        if 'status=~"5.."' in query:
            return load.rps * seconds * load.error_share
        return load.rps * seconds

    def app(self) -> Starlette:
        async def query(request: Request) -> Response:
            form = dict(request.query_params)
            if request.method == "POST":
                form |= {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            text, at = form.get("query", ""), form.get("time", "")
            self.queries.append((text, at))
            value = self.answer(text)
            result = [] if value is None else [{"metric": {}, "value": [float(at), str(value)]}]
            return JSONResponse({"status": "success",
                                 "data": {"resultType": "vector", "result": result}})  # fmt: skip

        return Starlette(routes=[Route("/api/v1/query", query, methods=["GET", "POST"])])


# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """`app` under uvicorn on a loopback port, in a thread; its base URL."""
    with uvicorn_thread(app, what="fake server", log_level="warning", lifespan="off",
                        access_log=False) as url:  # fmt: skip
        yield url
