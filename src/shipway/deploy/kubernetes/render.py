"""`shipway k8s render`: a kustomize base and one overlay per environment, written atomically.

    DIR/
      base/kustomization.yaml, deployment.yaml, service.yaml, ...   one object per file
      overlays/<env>/kustomization.yaml, namespace.yaml, patches/   per environment
      README.md                                                     what to apply, and needs

The image is the one `shipway build --push` recorded for the version (pinned by digest), or
the one given. Everything is checked and looked up first, then written into a temporary
directory beside DIR and moved into place: a failure leaves DIR as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipway.client import Client, get_client
from shipway.deploy.kubernetes import canary, objects, overlays
from shipway.deploy.kubernetes.objects import Names, Obj, Release
from shipway.deploy.kubernetes.options import APP_NAME, DEFAULT_GPU_TOLERATION, RenderOptions
from shipway.errors import InvalidInputError, NotFoundError

__all__ = ["Rendered", "build_base", "dump", "render", "resolve_release"]


@dataclass(frozen=True)
class Rendered:
    directory: Path
    files: list[str]  # relative to `directory`, sorted
    environments: tuple[str, ...]
    app: str
    release: Release
    canary: Release | None


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings (PromQL) as literal blocks, and never an anchor: the
    same labels dict used twice is written out twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(document: Obj | list[Obj]) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, explicit_start=True,
        default_flow_style=False, width=100,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# What to run


def resolve_release(uri: str, kind: str, image: str | None, *, client: Client) -> Release:
    """The version `uri` names, and the image to run: `image`, else the last pushed one."""
    from shipway.packaging.images import list_images
    from shipway.registry.registry import get_model_version

    info = get_model_version(uri, client=client)
    pinned = f"models:/{info.name}/{info.version}"
    if image is not None:
        return Release(info.name, info.version, image)
    built = [i for i in list_images(pinned, client=client) if i.kind == kind]
    pushed = [i for i in built if i.pushed_ref]
    flag = " --kind training" if kind == "training" else ""
    if pushed:
        ref = pushed[-1].pushed_ref
        assert ref is not None
        return Release(info.name, info.version, ref)
    if built:
        raise NotFoundError(
            f"The {kind} image of {pinned} ({built[-1].tag}) was built but never pushed: a "
            "cluster cannot pull it.",
            f"Push it with `shipway build {pinned}{flag} --push REGISTRY/REPOSITORY`, or give "
            "--image REPOSITORY@sha256:...",
        )
    raise NotFoundError(
        f"No {kind} image is recorded for {pinned}.",
        f"Build and push one with `shipway build {pinned}{flag} --push REGISTRY/REPOSITORY`, "
        "or give --image REPOSITORY@sha256:...",
    )


def app_name(o: RenderOptions, model: str) -> str:
    if o.name is not None:
        return o.name
    dashed = "".join(c if c.isascii() and c.isalnum() else "-" for c in model.lower())
    name = "-".join(part for part in dashed.split("-") if part)
    if not APP_NAME.fullmatch(name):
        raise InvalidInputError(
            f"The model name '{model}' does not make a usable Kubernetes name.",
            "Give one with --name, e.g. --name credit (lower-case, starting with a letter).",
        )
    return name


# ----------------------------------------------------------------------------------------------
# The base


def _file_name(obj: Obj, app: str) -> str:
    name: str = obj["metadata"]["name"]
    suffix = name.removeprefix(app).strip("-")
    return f"{obj['kind'].lower()}{'-' + suffix if suffix else ''}.yaml"


def build_base(
    o: RenderOptions, app: str, release: Release, canary_release: Release | None
) -> list[Obj]:
    """Every object of the base, in the order kustomize lists them."""
    names = Names(app)
    stable, canary_svc = names.track("stable"), names.track("canary")
    out = [objects.service_account(o, app)]
    if o.external_secrets:
        out.append(objects.external_secret(o, app))
    if o.training:
        out += [objects.network_policy(o, app), objects.job(o, app, release)]
        if o.schedule is not None:
            out.append(objects.cron_job(o, app, release))
        return out
    config = objects.config_map(o, app)
    digest = objects.config_digest(config)
    replicas = None if o.hpa else 1
    out.append(config)
    if o.argo:
        target = canary_release or release
        template = objects.pod_template(o, app, target, track=None, digest=digest)
        workload = canary.rollout(o, app, target, template, replicas=replicas)
        out.append(workload)
        # Argo points the stable and canary Services at each revision's pods by itself.
        out += [objects.service(o, app, name=n, track=None) for n in (app, stable, canary_svc)]
        out.append(canary.http_route(o, app, [(stable, 100), (canary_svc, 0)]))
        out.append(canary.analysis_template(o, app))
    else:
        workload = objects.deployment(
            o, app, release, name=app, track="stable", replicas=replicas, digest=digest
        )
        out += [workload, objects.service(o, app, name=app, track=None)]
        if canary_release is not None:
            out.append(objects.deployment(
                o, app, canary_release, name=canary_svc, track="canary",
                replicas=o.canary_replicas, digest=digest,
            ))  # fmt: skip
            out.append(objects.service(o, app, name=stable, track="stable"))
            out.append(objects.service(o, app, name=canary_svc, track="canary"))
            weights = [(stable, 100 - o.canary_weight), (canary_svc, o.canary_weight)]
            out.append(canary.http_route(o, app, weights))
        elif o.routed:
            out.append(canary.http_route(o, app, [(app, 100)]))
    if o.hpa:
        out.append(objects.horizontal_pod_autoscaler(o, app, target=workload))
    out += [objects.pod_disruption_budget(app), objects.network_policy(o, app)]
    return out


# ----------------------------------------------------------------------------------------------
# Writing


def _readme(o: RenderOptions, app: str, release: Release, canary_release: Release | None) -> str:
    lines = [
        f"# {app}: Kubernetes manifests for {release.uri}",
        "",
        "Rendered by `shipway k8s render`.",
    ]
    for what, r in (("Image", release), ("Canary", canary_release)):
        if r is not None:
            lines.append(f"- {what}: {r.uri}, `{r.image}`")
    if o.argo and canary_release is not None:
        lines.append("The Rollout runs the canary: applied where the stable version runs, it "
                     "starts the canary steps.")  # fmt: skip
    lines += [
        "",
        "Apply an environment with `kubectl apply -k overlays/ENV` "
        "(or preview it with `kubectl kustomize overlays/ENV`).",
        "",
        "Needs in the cluster:",
    ]
    needs = []
    if o.hpa and o.pods_metrics:
        needs.append("a custom metrics adapter (e.g. prometheus-adapter) serving the per-pod "
                     f"metrics {', '.join(m for m, _ in o.parsed_pods_metrics)}")  # fmt: skip
    if o.routed:
        needs.append(f"the Gateway API CRDs and a Gateway named `{o.gateway_ref[1]}`")
    if o.argo:
        needs.append("Argo Rollouts with the Gateway API traffic-router plugin "
                     f"({canary.GATEWAY_PLUGIN}), and Prometheus at {o.prometheus_url} keeping "
                     "pod labels on the series it scrapes")  # fmt: skip
    if o.external_secrets:
        needs.append(f"the External Secrets operator and a {o.secret_store_kind} named "
                     f"`{o.secret_store}`")  # fmt: skip
    if o.secrets:
        needs.append(f"the Secrets {', '.join(o.secrets)} in each namespace")
    if o.training and not (o.secrets or o.external_secrets):
        needs.append(
            "a store for the training runs: SHIPWAY_DATABASE_URL and "
            "SHIPWAY_ARTIFACT_URL in a Secret (--secret), else runs stay in the pod"
        )
    if o.gpu:
        selected = ", ".join(f"{k}={v}" for k, v in o.node_selector.items())
        tolerated = ", ".join(o.gpu_tolerations or (DEFAULT_GPU_TOLERATION,))
        needs.append(f"a GPU pool with the NVIDIA device plugin: nodes labelled {selected} "
                     f"(and tainted {tolerated}, which these pods tolerate)")  # fmt: skip
    if o.hpa and not o.training:
        needs.append("metrics-server (for CPU autoscaling)")
    if not needs:
        needs.append("nothing beyond a namespace you may create")
    return "\n".join(lines + [f"- {n}" for n in needs]) + "\n"


OPTIONS_FILE = "shipway-render.json"
"""The options the manifests were rendered with: `shipway k8s apply --from DIR` reads them."""


def _files(
    o: RenderOptions, app: str, release: Release, canary_release: Release | None, base: list[Obj]
) -> dict[str, str]:
    files = {f"base/{_file_name(obj, app)}": dump(obj) for obj in base}
    if len(files) != len(base):
        raise AssertionError("two base objects map to one file name")
    resources = sorted(path.removeprefix("base/") for path in files)
    files["base/kustomization.yaml"] = dump(overlays.KUSTOMIZATION | {"resources": resources})
    for env in o.overlays:
        for path, document in overlays.overlay(env, o, app, base).items():
            files[f"overlays/{env}/{path}"] = dump(document)
    files["README.md"] = _readme(o, app, release, canary_release)
    files[OPTIONS_FILE] = o.to_json()
    return files


def _check_output(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(f"{directory} exists and is not a directory.")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InvalidInputError(
            f"{directory} is not empty.",
            "Give an empty or new directory, or --force to replace it.",
        )


def _write(directory: Path, files: dict[str, str]) -> None:
    """Write every file into a fresh directory beside `directory`, then swap it in."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    old: Path | None = None
    try:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        tmp.chmod(0o755)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, old / "previous")
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not directory.exists():
            os.replace(old / "previous", directory)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def render(o: RenderOptions, *, client: Client | None = None) -> Rendered:
    """Render `o` into `o.output`. Nothing is written unless everything renders."""
    o.check()
    _check_output(o.output, o.force)
    client = client or get_client()
    release = resolve_release(o.uri, o.kind, o.image, client=client)
    canary_release = None
    if o.canary is not None:
        canary_release = resolve_release(o.canary, o.kind, o.canary_image, client=client)
        if canary_release.model != release.model:
            raise InvalidInputError(
                f"The canary {canary_release.uri} is not a version of '{release.model}'.",
                f"Give another version of the same model, e.g. models:/{release.model}/N.",
            )
        if canary_release.version == release.version:
            raise InvalidInputError(
                f"The canary and stable are both {release.uri}.",
                "Give the new version with --canary.",
            )
    app = app_name(o, release.model)
    base = build_base(o, app, release, canary_release)
    files = _files(o, app, release, canary_release, base)
    _write(o.output, files)
    return Rendered(o.output, sorted(files), o.overlays, app, release, canary_release)
