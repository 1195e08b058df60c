"""A direct route to the prediction endpoints, in front of the Starlette app.

Starlette's error middleware, exception middleware and router cost, per request, about as much
as our whole prediction path; the handlers here already answer every error themselves, so the
hot POST routes skip those layers. Everything else (and every other method) goes through the
full app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from shipway.serving.openapi import Handler

ASGIApp = Any


class FastPath:
    def __init__(self, app: ASGIApp, handlers: Mapping[str, Handler]) -> None:
        """`handlers` maps route templates (as in the route table) to guarded handlers."""
        self.app = app
        self.predict = handlers["/predict"]
        self.predict_model = handlers["/models/{name}/predict"]
        self.infer = handlers["/v2/models/{name}/infer"]
        self.infer_version = handlers["/v2/models/{name}/versions/{version}/infer"]

    def match(self, path: str) -> tuple[Handler, dict[str, str]] | None:
        if path == "/predict":
            return self.predict, {}
        parts = path.split("/")
        # "/models/x/predict" -> ["", "models", "x", "predict"]
        if len(parts) == 4 and parts[1] == "models" and parts[3] == "predict" and parts[2]:
            return self.predict_model, {"name": parts[2]}
        if len(parts) == 5 and parts[1:3] == ["v2", "models"] and parts[4] == "infer":
            return (self.infer, {"name": parts[3]}) if parts[3] else None
        if (
            len(parts) == 7
            and parts[1:3] == ["v2", "models"]
            and parts[4] == "versions"
            and parts[6] == "infer"
            and parts[3]
            and parts[5]
        ):
            return self.infer_version, {"name": parts[3], "version": parts[5]}
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self.match(scope["path"])
            if found is not None:
                handler, params = found
                scope["path_params"] = params
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes... of the wrapped app
        return getattr(self.app, name)
