"""Kubernetes manifests for a model version: a kustomize base and one overlay per environment.

    from shipway.deploy.kubernetes import RenderOptions, render

    render(RenderOptions("models:/credit/4", Path("k8s"), canary="models:/credit/5"))

Objects are plain dicts built by small functions (`objects.py` for built-in kinds,
`canary.py` for the Gateway API route and Argo Rollouts), dumped with PyYAML; `overlays.py`
holds what differs per environment and `render.py` looks up the image and writes the files.
"""

from shipway.deploy.kubernetes.objects import Release
from shipway.deploy.kubernetes.options import DEFAULT_ENVIRONMENTS, RenderOptions, Toleration
from shipway.deploy.kubernetes.render import Rendered, render

__all__ = ["DEFAULT_ENVIRONMENTS", "Release", "RenderOptions", "Rendered", "Toleration", "render"]
