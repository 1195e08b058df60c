"""The team server: a versioned REST API (`/api/v1`) over the store, behind bearer tokens.

    shipway server --host 0.0.0.0 --port 8800

Modules: `app` (the ASGI app: auth, the route wrapper, errors), `auth` (the token middleware),
`endpoints` (the route table and the OpenAPI spec built from it), then one module per noun:
`meta`, `runs`, `models`, `artifacts`, `deployments`, `pipelines`, `governance`; `serve` runs it.
"""

from __future__ import annotations

from shipway.server.app import create_app, endpoints
from shipway.server.serve import serve

__all__ = ["create_app", "endpoints", "serve"]
