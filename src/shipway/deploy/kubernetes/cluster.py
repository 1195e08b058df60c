"""The `ClusterClient` seam: the few Kubernetes API calls Shipway makes, and their errors.

    cluster = KubeCluster("prod-eu", "credit-production")
    cluster.apply(objects)                          # server-side apply, field manager `shipway`
    cluster.get("apps/v1", "Deployment", "credit")  # None when it does not exist
    cluster.patch("apps/v1", "Deployment", "credit-canary", {"spec": {"replicas": 0}})
    cluster.list("apps/v1", "ReplicaSet", {"app.kubernetes.io/name": "credit"})

:class:`KubeCluster` implements it with the official client's `DynamicClient` (discovery, so
custom resources such as the Gateway API's HTTPRoute need no generated classes). Rollout
status, ReplicaSet revisions and the canary's weights are all read and written through these
four methods (`status.py`, `traffic.py`), so the seam stays small.

Every failure becomes a :class:`~shipway.errors.ShipwayError` saying what to check: an
unreachable cluster or a missing kubeconfig context a :class:`DeployError` naming the context,
401 and 403 a :class:`ForbiddenError` naming the verb, the resource and the user, 404 a
:class:`NotFoundError`, 422 an :class:`InvalidInputError` with the API server's reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from shipway.errors import (
    ConflictError,
    DeployError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    ShipwayError,
)

__all__ = ["FIELD_MANAGER", "ClusterClient", "KubeCluster", "Obj"]

Obj = dict[str, Any]
FIELD_MANAGER = "shipway"
REQUEST_TIMEOUT_S = 60.0


class ClusterClient(Protocol):
    """One namespace of one cluster, as Shipway uses it."""

    context: str
    namespace: str

    def apply(self, objects: Sequence[Obj], *, dry_run: bool = False) -> list[Obj]:
        """Server-side apply each object in order (field manager `shipway`, taking over fields
        another manager set); with `dry_run` the API server validates and changes nothing."""

    def get(self, api_version: str, kind: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""

    def patch(self, api_version: str, kind: str, name: str, patch: Obj | list[Obj]) -> Obj:
        """A JSON merge patch (a dict) or a JSON patch (a list of operations)."""

    def list(self, api_version: str, kind: str, labels: Mapping[str, str]) -> list[Obj]:
        """Objects of `kind` whose labels include `labels`."""

    def close(self) -> None:
        """Close the connections."""


class KubeCluster:
    """:class:`ClusterClient` over a kubeconfig context (``None``: the current one), or the
    pod's service account when there is no kubeconfig and Shipway runs in a cluster."""

    def __init__(
        self,
        context: str | None,
        namespace: str,
        *,
        kubeconfig: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.namespace = namespace
        self._kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        self._cache_dir = cache_dir
        self._user = "the current user"
        self.context = context or "(current)"
        self._dynamic: Any = None

    # ------------------------------------------------------------------------------------------
    # Connecting

    def _connect(self) -> Any:
        if self._dynamic is not None:
            return self._dynamic
        import urllib3

        try:
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
            from kubernetes.dynamic import DynamicClient
        except ImportError:
            raise DeployError(
                "The Kubernetes client is not installed.",
                "Install it with `pip install 'shipway[kubernetes]'`.",
            ) from None

        cfg = client.Configuration()
        try:
            contexts, current = config.list_kube_config_contexts(self._kubeconfig)
            chosen = self.context if self.context != "(current)" else current["name"]
            found = [c for c in contexts if c["name"] == chosen]
            if not found:
                names = ", ".join(sorted(c["name"] for c in contexts)) or "none"
                raise DeployError(
                    f"The kubeconfig ({self._kubeconfig}) has no context '{chosen}'.",
                    f"Its contexts: {names}. Give one with --context (`kubectl config "
                    "get-contexts` lists them).",
                )
            self.context = chosen
            self._user = f"user '{found[0]['context'].get('user', '?')}'"
            config.load_kube_config(
                self._kubeconfig, chosen, client_configuration=cfg, persist_config=False
            )
        except (ConfigException, OSError) as exc:
            if self.context == "(current)" and "KUBERNETES_SERVICE_HOST" in os.environ:
                config.load_incluster_config(client_configuration=cfg)
                self.context, self._user = "in-cluster", "this pod's service account"
            else:
                raise DeployError(
                    f"Cannot load the kubeconfig context '{self.context}' from "
                    f"{self._kubeconfig}: {exc}",
                    "Check KUBECONFIG and --context (`kubectl config get-contexts`).",
                ) from None
        # A refused connection fails fast; a silent one fails within the timeout.
        cfg.retries = urllib3.Retry(total=2, connect=2, read=0, status=0, backoff_factor=0.2)
        api = client.ApiClient(cfg)
        pool = api.rest_client.pool_manager
        pool.connection_pool_kw["timeout"] = urllib3.Timeout(connect=10, read=REQUEST_TIMEOUT_S)
        # Discovery is cached per API server, beside kubectl's own cache.
        cache_dir = self._cache_dir or Path.home() / ".kube" / "cache" / "shipway"
        with contextlib.suppress(OSError):
            cache_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(cfg.host.encode()).hexdigest()[:16]
        cache = str(cache_dir / f"discovery-{key}.json")
        with self._errors("discover", "the API groups"):
            self._dynamic = DynamicClient(api, cache_file=cache)
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        dynamic = self._connect()
        try:
            with self._errors("discover", kind):
                return dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            hint = "Install its CRDs, or check the apiVersion."
            if api_version.startswith("gateway.networking.k8s.io"):
                hint = "Install the Gateway API CRDs (and a Gateway controller) in the cluster."
            raise DeployError(
                f"The cluster of context '{self.context}' has no {kind} ({api_version}).", hint
            ) from None

    # ------------------------------------------------------------------------------------------
    # The seam

    def apply(self, objects: Sequence[Obj], *, dry_run: bool = False) -> list[Obj]:
        out = []
        for obj in objects:
            resource = self._resource(obj["apiVersion"], obj["kind"])
            name = obj["metadata"]["name"]
            namespace = self.namespace if resource.namespaced else None
            body = obj
            if resource.namespaced:
                body = obj | {"metadata": obj["metadata"] | {"namespace": self.namespace}}
            with self._errors("patch", _what(obj["kind"], name), namespace):
                result = resource.server_side_apply(
                    body=json.loads(json.dumps(body)),
                    name=name,
                    namespace=namespace,
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                    dry_run="All" if dry_run else None,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            out.append(result.to_dict())
        return out

    def get(self, api_version: str, kind: str, name: str) -> Obj | None:
        from kubernetes.dynamic.exceptions import NotFoundError as Missing

        resource = self._resource(api_version, kind)
        namespace = self.namespace if resource.namespaced else None
        try:
            with self._errors("get", _what(kind, name), namespace, missing_ok=True):
                found: Obj = resource.get(
                    name=name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_S
                ).to_dict()
                return found
        except Missing:
            return None

    def patch(self, api_version: str, kind: str, name: str, patch: Obj | list[Obj]) -> Obj:
        resource = self._resource(api_version, kind)
        namespace = self.namespace if resource.namespaced else None
        content_type = (
            "application/json-patch+json" if isinstance(patch, list) else
            "application/merge-patch+json"
        )  # fmt: skip
        with self._errors("patch", _what(kind, name), namespace):
            result: Obj = resource.patch(
                body=patch,
                name=name,
                namespace=namespace,
                content_type=content_type,
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT_S,
            ).to_dict()
        return result

    def list(self, api_version: str, kind: str, labels: Mapping[str, str]) -> list[Obj]:
        resource = self._resource(api_version, kind)
        namespace = self.namespace if resource.namespaced else None
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        with self._errors("list", resource.name, namespace):
            found = resource.get(
                namespace=namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            ).to_dict()
        items: list[Obj] = found.get("items") or []
        return items

    def close(self) -> None:
        if self._dynamic is not None:
            self._dynamic.client.close()
            self._dynamic.client.rest_client.pool_manager.clear()
            self._dynamic = None

    # ------------------------------------------------------------------------------------------
    # Errors

    @contextlib.contextmanager
    def _errors(
        self, verb: str, what: str, namespace: str | None = None, *, missing_ok: bool = False
    ) -> Iterator[None]:
        from kubernetes.dynamic.exceptions import DynamicApiError
        from kubernetes.dynamic.exceptions import NotFoundError as Missing
        from urllib3.exceptions import HTTPError

        where = f" in namespace {namespace}" if namespace else ""
        try:
            yield
        except ShipwayError:
            raise
        except Missing:
            if missing_ok:
                raise
            raise NotFoundError(
                f"{what}{where} was not found (context '{self.context}').",
                f"Check the namespace exists: `kubectl --context {self.context} get namespace "
                f"{namespace}`."
                if namespace
                else None,
            ) from None
        except DynamicApiError as exc:
            raise self._api_error(exc, verb, what, where) from None
        except (HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DeployError(
                f"Cannot reach the cluster of context '{self.context}' to {verb} {what}: {reason}.",
                f"Check the cluster is up and reachable from here (VPN, firewall): `kubectl "
                f"--context {self.context} cluster-info`.",
            ) from None

    def _api_error(self, exc: Any, verb: str, what: str, where: str) -> ShipwayError:
        message = _message(exc)
        status = exc.status
        if status == 401:
            return ForbiddenError(
                f"The cluster of context '{self.context}' rejected the credentials of "
                f"{self._user} ({verb} {what}{where}): {message}",
                "Renew them (your cloud CLI's get-credentials, or a fresh token in the "
                "kubeconfig).",
            )
        if status == 403:
            return ForbiddenError(
                f"{self._user} (context '{self.context}') may not {verb} {what}{where}: {message}",
                f"Ask a cluster admin for a Role allowing it; check with `kubectl --context "
                f"{self.context} auth can-i {verb} {what.split()[0].lower()}`.",
            )
        if status == 422:
            return InvalidInputError(f"The cluster refused {what}{where}: {message}")
        if status == 409:
            return ConflictError(f"{what}{where} changed meanwhile: {message}", "Try again.")
        return DeployError(
            f"The cluster of context '{self.context}' failed to {verb} {what}{where} "
            f"(HTTP {status}): {message}"
        )


def _what(kind: str, name: str) -> str:
    return f"{kind} {name}"


def _message(exc: Any) -> str:
    """The API server's own explanation, from its Status body."""
    try:
        body = json.loads(exc.body)
        return str(body.get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
