"""One exception tree for every user-facing failure.

    ShipwayError
    ├── NotFoundError          unknown model, version, alias, run, blob (exit 2, HTTP 404)
    ├── InvalidInputError      the user asked for something malformed (exit 2, HTTP 422)
    │   ├── MalformedRequestError  a body that is not the JSON it claims to be (HTTP 400)
    │   └── PayloadTooLargeError   a body over the server's limit (HTTP 413)
    ├── UnauthorizedError      no valid API key or token (exit 5, HTTP 401)
    ├── ForbiddenError         the user's role does not allow the action (exit 9, HTTP 403)
    │   └── ApprovalRequiredError  the environment needs an approval for this version first
    ├── OverloadedError        the server is saturated; retry later (HTTP 503)
    │   └── UnreachableError       the team server (SHIPWAY_TRACKING_URI) does not answer
    ├── ConflictError          the request clashes with the store's state (exit 3, HTTP 409)
    ├── DeployError            model-server replicas could not be started or kept up (exit 8)
    ├── PackagingError         building, running or pushing a container image failed (exit 7)
    │   ├── EngineNotFoundError    no usable container engine (docker, podman, buildah)
    │   ├── DependencyError        a requirement cannot be resolved for the image's platform
    │   ├── BuildFailedError       the engine's build failed (its failing step is in the message)
    │   └── PushFailedError        the registry is unreachable or refused the image
    └── IntegrityError         stored data failed verification (exit 4, HTTP 500)
        ├── CorruptArtifactError   a blob whose bytes no longer match its digest
        └── UntrustedModelError    a model file that is invalid or holds untrusted types

Every message says what was wrong and, where there is one, what to do next; the CLI
prints it on one line with no traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ShipwayError(Exception):
    """Root of every error Shipway raises on purpose."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class NotFoundError(ShipwayError):
    exit_code = 2
    http_status = 404

    @classmethod
    def missing(
        cls, kind: str, name: str, existing: Iterable[str], of: str | None = None
    ) -> NotFoundError:
        """An error naming `name` and listing what exists, closest match first."""
        choices = sorted({str(e) for e in existing})
        what = f"{kind.capitalize()} '{name}'" + (f" of {of}" if of else "")
        if not choices:
            return cls(f"{what} not found.", f"No {kind}s exist yet.")
        close = difflib.get_close_matches(name, choices, n=len(choices), cutoff=0.0)
        shown = ", ".join(close[:10]) + (", ..." if len(close) > 10 else "")
        return cls(f"{what} not found.", f"Existing: {shown}.")


class InvalidInputError(ShipwayError):
    exit_code = 2
    http_status = 422


class MalformedRequestError(InvalidInputError):
    http_status = 400


class PayloadTooLargeError(InvalidInputError):
    http_status = 413


class UnauthorizedError(ShipwayError):
    exit_code = 5
    http_status = 401


class ForbiddenError(ShipwayError):
    exit_code = 9
    http_status = 403


class ApprovalRequiredError(ForbiddenError):
    pass


class OverloadedError(ShipwayError):
    exit_code = 6
    http_status = 503


class UnreachableError(OverloadedError):
    pass


class ConflictError(ShipwayError):
    exit_code = 3
    http_status = 409


class DeployError(ShipwayError):
    exit_code = 8
    http_status = 500


class PackagingError(ShipwayError):
    exit_code = 7
    http_status = 500


class EngineNotFoundError(PackagingError):
    pass


class DependencyError(PackagingError):
    exit_code = 2
    http_status = 422


class BuildFailedError(PackagingError):
    pass


class PushFailedError(PackagingError):
    http_status = 502


class IntegrityError(ShipwayError):
    exit_code = 4
    http_status = 500


class CorruptArtifactError(IntegrityError):
    pass


class UntrustedModelError(IntegrityError):
    pass
