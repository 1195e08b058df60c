"""The OpenAPI description of the model server, and the /docs page that renders it.

The server is plain Starlette (per-request framework work is the largest cost after the model
itself), so its routes are described here from the same table that registers them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]

ERROR = {
    "description": "An error, with what was wrong and what to do.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "column": {"type": "string"},
                    "row": {"type": "integer"},
                    "expected": {"type": "string"},
                },
            }
        }
    },
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: dict[str, Any] | None = None
    description: str = ""
    errors: Sequence[int] = field(default=(404, 422))


def spec(endpoints: Sequence[Endpoint], title: str, description: str, version: str) -> Any:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        operation: dict[str, Any] = {
            "summary": e.summary,
            "tags": [e.tag],
            "operationId": re.sub(r"\W+", "_", f"{e.method}_{e.path}").strip("_"),
            "responses": {"200": {"description": "Success"}}
            | {str(code): ERROR for code in e.errors},
        }
        if e.description:
            operation["description"] = e.description
        params = re.findall(r"{(\w+)}", e.path)
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if e.body is not None:
            operation["requestBody"] = e.body.get("requestBody", e.body)
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
    }


def docs_page(title: str, spec_url: str = "/openapi.json") -> str:
    """Swagger UI, loaded from its public CDN, pointed at our spec."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "{spec_url}", dom_id: "#swagger-ui"}});</script>
</body></html>"""
