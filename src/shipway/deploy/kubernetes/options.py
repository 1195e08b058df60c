"""What `shipway k8s render` is asked for, checked before anything is looked up or written.

Every check raises :class:`~shipway.errors.InvalidInputError` with what to do, so a bad option
fails before the registry is read and long before anything lands in the output directory.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shipway.deploy.analysis import Checks
from shipway.deploy.rollout import Step, parse_steps
from shipway.errors import InvalidInputError
from shipway.serving.settings import ServerSettings

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "RenderOptions",
    "Toleration",
    "check_schedule",
    "cpu_millis",
    "quantity",
]

DEFAULT_ENVIRONMENTS = ("staging", "production")
DEFAULT_GATEWAY = "shipway-gateway"
DEFAULT_GPU_NODE_SELECTOR = "nvidia.com/gpu.present=true"
DEFAULT_GPU_TOLERATION = "nvidia.com/gpu:NoSchedule"

# An environment becomes a namespace suffix and an overlay directory: a short DNS label.
ENV_NAME = re.compile(r"[a-z]([-a-z0-9]{0,18}[a-z0-9])?")
# Object names are derived from the app name (`-canary`, `-analysis`, `-train-v12` ...) and
# Service names must be DNS-1035 labels (a letter first, 63 characters at most).
APP_NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
DIGEST_REF = re.compile(r"[^\s@]+@sha256:[0-9a-f]{64}")
QUANTITY = re.compile(r"(\d+(\.\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
CPU = re.compile(r"\d+m|\d+(\.\d{1,3})?")
INT_OR_PERCENT = re.compile(r"\d+%?")
DURATION = re.compile(r"[1-9]\d*(s|m|h)")
URL = re.compile(r"[a-z0-9+]+://\S+")
HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Label keys: an optional DNS-subdomain prefix and a name; values: 63 characters.
LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_SUFFIX = {
    "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity(text: str, what: str) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``1.5Gi``) as a number."""
    match = QUANTITY.fullmatch(text)
    if match is None:
        raise InvalidInputError(
            f"{what} '{text}' is not a Kubernetes quantity.",
            "Write a number with an optional suffix, e.g. 500m, 2, 512Mi, 4Gi.",
        )
    return float(match.group(1)) * _SUFFIX.get(match.group(3) or "", 1.0)


def cpu_millis(text: str, what: str = "CPU") -> int:
    """``500m`` -> 500, ``1.5`` -> 1500."""
    if not CPU.fullmatch(text) or quantity(text, what) <= 0:
        raise InvalidInputError(
            f"{what} '{text}' is not a CPU amount.", "Write cores (1, 0.5) or millicores (500m)."
        )
    return round(quantity(text, what) * 1000)


@dataclass(frozen=True)
class Toleration:
    """``KEY[=VALUE][:EFFECT]``: operator Equal with a value, Exists without one."""

    key: str
    value: str | None = None
    effect: str | None = None

    @classmethod
    def parse(cls, text: str) -> Toleration:
        rest, _, effect = text.partition(":")
        key, eq, value = rest.partition("=")
        if not LABEL_KEY.fullmatch(key) or (eq and not LABEL_VALUE.fullmatch(value)):
            raise InvalidInputError(
                f"Cannot read the toleration '{text}'.",
                "Write KEY[=VALUE][:EFFECT], e.g. nvidia.com/gpu:NoSchedule.",
            )
        if effect and effect not in EFFECTS:
            raise InvalidInputError(
                f"Unknown taint effect '{effect}' in '{text}'.", f"Use {', '.join(EFFECTS)}."
            )
        return cls(key, value if eq else None, effect or None)


def _label_pair(text: str, what: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
        raise InvalidInputError(
            f"Cannot read the {what} '{text}'.",
            "Write KEY=VALUE, e.g. nvidia.com/gpu.present=true.",
        )
    return key, value


@dataclass(frozen=True)
class RenderOptions:
    """Everything `shipway k8s render` can be told. Defaults suit a small CPU model."""

    uri: str
    output: Path
    environments: tuple[str, ...] = ()  # more overlays than staging and production
    kind: Literal["inference", "training"] = "inference"
    image: str | None = None
    name: str | None = None
    force: bool = False
    port: int = 8080
    # Scale: production's replicas and autoscaling bounds (staging runs 1, autoscaling to 2).
    replicas: int = 3
    max_replicas: int = 10
    hpa: bool = True
    cpu_utilization: int = 70
    pods_metrics: tuple[str, ...] = ()  # METRIC=TARGET, e.g. shipway_requests_in_flight=4
    max_surge: str = "25%"
    max_unavailable: str = "0"
    # Resources (production; staging requests half the CPU).
    cpu: str = "500m"
    cpu_limit: str = "2"
    memory: str = "1Gi"
    memory_limit: str | None = None  # default: the request
    gpu: int = 0
    gpu_node_selector: tuple[str, ...] = ()
    gpu_tolerations: tuple[str, ...] = ()
    # The server.
    startup_seconds: int = 300
    drain_seconds: int = 30
    prestop_seconds: int = 5
    workers: int = 1
    server: ServerSettings = field(default_factory=ServerSettings)
    artifact_url: str | None = None
    # Secrets, only ever by reference.
    secrets: tuple[str, ...] = ()
    external_secrets: tuple[str, ...] = ()
    secret_store: str = "shipway"
    secret_store_kind: Literal["ClusterSecretStore", "SecretStore"] = "ClusterSecretStore"
    image_pull_secrets: tuple[str, ...] = ()
    # Training.
    schedule: str | None = None
    retrain: bool = False  # the CronJob runs `shipway retrain MODEL`, not the training command
    # Canary.
    canary: str | None = None
    canary_image: str | None = None
    canary_weight: int = 10
    canary_replicas: int = 1
    gateway: str | None = None  # NAME or NAMESPACE/NAME
    hostnames: tuple[str, ...] = ()
    argo: bool = False
    steps: str = "10,25,50,100"
    interval: str = "1m"
    failure_limit: int = 1
    checks: Checks = field(default_factory=Checks)
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"

    # ------------------------------------------------------------------------------------------
    # Saved with the manifests (`shipway-render.json`), so `k8s apply --from DIR` applies
    # exactly what was rendered, every option included.

    def saved(self) -> dict[str, Any]:
        """The options as plain JSON data (also kept with a Kubernetes deployment's record)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del data["output"], data["force"]
        data["server"] = self.server.model_dump(mode="json")
        data["checks"] = dataclasses.asdict(self.checks)
        return json.loads(json.dumps(data))  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.saved(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, output: Path = Path(".")) -> RenderOptions:
        return cls.from_saved(json.loads(text), output)

    @classmethod
    def from_saved(cls, data: dict[str, Any], output: Path = Path(".")) -> RenderOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(
                f"Unknown render options {', '.join(unknown)}.",
                "The file was written by another Shipway version: render it again.",
            )
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        data["server"] = ServerSettings.model_validate(data.get("server", {}))
        data["checks"] = Checks(**data.get("checks", {}))
        return cls(output=output, **data)

    # ------------------------------------------------------------------------------------------
    # Derived values (each checked in `check`).

    @property
    def overlays(self) -> tuple[str, ...]:
        """Every environment to write an overlay for: staging, production, then the others."""
        return tuple(dict.fromkeys(DEFAULT_ENVIRONMENTS + self.environments))

    @property
    def training(self) -> bool:
        return self.kind == "training"

    @property
    def parsed_steps(self) -> list[Step]:
        return parse_steps(self.steps)

    @property
    def gateway_ref(self) -> tuple[str | None, str]:
        """(namespace or None, name) of the Gateway the HTTPRoute attaches to."""
        namespace, _, name = (self.gateway or DEFAULT_GATEWAY).rpartition("/")
        return namespace or None, name

    @property
    def routed(self) -> bool:
        """Whether an HTTPRoute is rendered: for a canary, Argo, or a Gateway asked for."""
        return self.canary is not None or self.argo or self.gateway is not None

    @property
    def node_selector(self) -> dict[str, str]:
        if not self.gpu:
            return {}
        pairs = self.gpu_node_selector or (DEFAULT_GPU_NODE_SELECTOR,)
        return dict(_label_pair(p, "GPU node selector") for p in pairs)

    @property
    def tolerations(self) -> list[Toleration]:
        if not self.gpu:
            return []
        return [Toleration.parse(t) for t in self.gpu_tolerations or (DEFAULT_GPU_TOLERATION,)]

    @property
    def parsed_pods_metrics(self) -> list[tuple[str, str]]:
        metrics = []
        for text in self.pods_metrics:
            metric, eq, target = text.partition("=")
            if not eq or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", metric):
                raise InvalidInputError(
                    f"Cannot read the autoscaling metric '{text}'.",
                    "Write METRIC=TARGET per pod, e.g. shipway_requests_in_flight=4.",
                )
            if quantity(target, f"The target of {metric}") <= 0:
                raise InvalidInputError(f"The target of {metric} must be above 0.")
            metrics.append((metric, target))
        return metrics

    # ------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise InvalidInputError on the first option that cannot be rendered."""
        self._check_names()
        self._check_scale()
        self._check_resources()
        self._check_server()
        self._check_secrets()
        self._check_kind()
        self._check_canary()

    def _check_names(self) -> None:
        for env in self.environments:
            if not ENV_NAME.fullmatch(env):
                raise InvalidInputError(
                    f"'{env}' is not a usable environment name.",
                    "Use lower-case letters, digits and '-', starting with a letter, at most "
                    "20 characters (it becomes part of the namespace), e.g. staging.",
                )
        if self.name is not None and not APP_NAME.fullmatch(self.name):
            raise InvalidInputError(
                f"'{self.name}' is not a usable name for Kubernetes objects.",
                "Use lower-case letters, digits and '-', starting with a letter, at most 40 "
                "characters.",
            )
        for image in (self.image, self.canary_image):
            if image is not None and not DIGEST_REF.fullmatch(image):
                raise InvalidInputError(
                    f"The image '{image}' is not pinned by digest.",
                    "Give REGISTRY/REPOSITORY@sha256:<64 hex digits> (shipway build --push "
                    "prints it), so every replica runs the same bytes.",
                )
        if not 1 <= self.port <= 65535:
            raise InvalidInputError(f"Port {self.port} is out of range (1-65535).")

    def _check_scale(self) -> None:
        if not 1 <= self.replicas <= self.max_replicas:
            raise InvalidInputError(
                f"Replicas ({self.replicas}) must be at least 1 and at most --max-replicas "
                f"({self.max_replicas})."
            )
        if not 1 <= self.cpu_utilization <= 100:
            raise InvalidInputError(
                f"The CPU utilisation target {self.cpu_utilization}% is out of range (1-100)."
            )
        self.parsed_pods_metrics  # noqa: B018 (checks them)
        for flag, value in (("--max-surge", self.max_surge),
                            ("--max-unavailable", self.max_unavailable)):  # fmt: skip
            if not INT_OR_PERCENT.fullmatch(value) or int(value.rstrip("%")) > 100:
                raise InvalidInputError(
                    f"{flag} '{value}' is not a count or a percentage.", "E.g. 1 or 25%."
                )
        if self.max_surge.rstrip("%") == "0" and self.max_unavailable.rstrip("%") == "0":
            raise InvalidInputError(
                "--max-surge and --max-unavailable cannot both be 0: the update could not move."
            )

    def _check_resources(self) -> None:
        if cpu_millis(self.cpu) > cpu_millis(self.cpu_limit, "CPU limit"):
            raise InvalidInputError(
                f"The CPU request {self.cpu} is above its limit {self.cpu_limit}."
            )
        memory = quantity(self.memory, "Memory")
        if memory <= 0:
            raise InvalidInputError("The memory request must be above 0.")
        if self.memory_limit is not None and quantity(self.memory_limit, "Memory limit") < memory:
            raise InvalidInputError(
                f"The memory limit {self.memory_limit} is below its request {self.memory}."
            )
        if self.gpu < 0:
            raise InvalidInputError("--gpu must be 0 or more.")
        if not self.gpu and (self.gpu_node_selector or self.gpu_tolerations):
            raise InvalidInputError(
                "A GPU node selector or toleration was given without --gpu.",
                "Add --gpu N (GPUs per replica).",
            )
        self.node_selector  # noqa: B018 (checks them)
        self.tolerations  # noqa: B018

    def _check_server(self) -> None:
        if self.startup_seconds < 10:
            raise InvalidInputError("--startup-seconds must be at least 10.")
        if self.drain_seconds < 0 or self.prestop_seconds < 0:
            raise InvalidInputError("--drain-seconds and --prestop-seconds cannot be negative.")
        if self.workers < 1:
            raise InvalidInputError("--workers must be at least 1.")
        url = self.artifact_url
        if url is not None and not URL.fullmatch(url):
            raise InvalidInputError(
                f"'{url}' is not an artefact store URL.", "Give one such as s3://bucket/shipway."
            )

    def _check_secrets(self) -> None:
        for secret in (*self.secrets, *self.image_pull_secrets, self.secret_store):
            if not SECRET_NAME.fullmatch(secret):
                raise InvalidInputError(
                    f"'{secret}' is not a Kubernetes object name.",
                    "Name an existing Secret (or SecretStore): lower-case letters, digits, "
                    "'-' and '.'.",
                )
        for key in self.external_secrets:
            if not key.strip() or any(c.isspace() for c in key):
                raise InvalidInputError(
                    f"'{key}' is not a key in a secret store.",
                    "Give the path of the secret in the store, e.g. shipway/credit.",
                )

    def _check_kind(self) -> None:
        if self.kind not in ("inference", "training"):
            raise InvalidInputError(f"Unknown kind '{self.kind}'.", "Use inference or training.")
        if self.retrain and self.schedule is None:
            raise InvalidInputError(
                "--retrain makes the retraining CronJob: give its --schedule (and --kind "
                "training)."
            )
        if not self.training:
            if self.schedule is not None:
                raise InvalidInputError(
                    "--schedule is for training images.", "Add --kind training."
                )
            return
        if self.canary is not None or self.argo or self.gateway is not None:
            raise InvalidInputError(
                "Canary releases and routes are for inference images, not --kind training."
            )
        if self.schedule is not None:
            check_schedule(self.schedule)

    def _check_canary(self) -> None:
        if not 0 <= self.canary_weight <= 100:
            raise InvalidInputError(
                f"The canary weight {self.canary_weight} is out of range.",
                "Give a percentage of traffic from 0 to 100.",
            )
        if self.canary_replicas < 1:
            raise InvalidInputError("--canary-replicas must be at least 1.")
        if self.canary_image is not None and self.canary is None:
            raise InvalidInputError("--canary-image needs --canary URI.")
        namespace, name = self.gateway_ref
        for part in (name, namespace or "x"):
            if not SECRET_NAME.fullmatch(part):
                raise InvalidInputError(
                    f"'{self.gateway}' does not name a Gateway.", "Write NAME or NAMESPACE/NAME."
                )
        for host in self.hostnames:
            if not HOSTNAME.fullmatch(host):
                raise InvalidInputError(f"'{host}' is not a host name.")
        if self.argo:
            self.parsed_steps  # noqa: B018 (checks them)
            if not DURATION.fullmatch(self.interval):
                raise InvalidInputError(
                    f"Cannot read the interval '{self.interval}'.", "Use 30s, 2m or 1h."
                )
            if self.failure_limit < 1:
                raise InvalidInputError("--failure-limit must be at least 1.")
            if self.checks.max_score_shift is not None:
                raise InvalidInputError(
                    "The score-shift check reads the prediction log; an Argo AnalysisTemplate "
                    "cannot.",
                    "Leave it out with --argo.",
                )
            if not self.prometheus_url.startswith(("http://", "https://")):
                raise InvalidInputError(f"'{self.prometheus_url}' is not an HTTP(S) URL.")


def check_schedule(schedule: str) -> None:
    """A schedule a CronJob accepts: five cron fields, or one of its @ macros."""
    from croniter import croniter

    text = schedule.strip()
    if text.startswith("@"):
        if text in CRON_MACROS:
            return
    elif len(text.split()) == 5 and croniter.is_valid(text):
        return
    raise InvalidInputError(
        f"'{schedule}' is not a cron schedule.",
        "Give five fields (minute hour day-of-month month day-of-week), e.g. '0 3 * * 0' for "
        f"Sundays at 03:00, or one of {', '.join(CRON_MACROS)}.",
    )
