"""The team server's ASGI app: the route table under bearer auth, errors as JSON.

    app = shipway.server.create_app(client)

Composed from plain parts, outermost first: the auth middleware (no token, no entry), then
the router, whose every route runs the same wrapper: role check, query and body parsing, the
handler (in the thread pool: the store is synchronous) as the caller, JSON out. A
`ShipwayError` becomes its HTTP status and `{"error", "hint"}`; anything else is a 500 logged
with the method and path only (never a header or a body) and answered without details.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
import pydantic
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from shipway.client import Client
from shipway.errors import (
    InvalidInputError,
    MalformedRequestError,
    PayloadTooLargeError,
    ShipwayError,
    UnauthorizedError,
)
from shipway.server.auth import IDENTITY, BearerAuth
from shipway.server.endpoints import API, Call, Endpoint, openapi

log = logging.getLogger("shipway.server")

MAX_JSON_BYTES = 8 * 1024 * 1024
TITLE = "Shipway team server"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(
            data,
            default=_plain,
            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        ),
        status_code=status,
        media_type="application/json",
    )


def _plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def error_response(exc: ShipwayError) -> Response:
    response = json_response({"error": exc.message, "hint": exc.hint}, exc.http_status)
    # The error class, so a remote client raises the very same exception (several share a status).
    response.headers["x-shipway-error"] = type(exc).__name__
    if isinstance(exc, UnauthorizedError):
        response.headers["www-authenticate"] = 'Bearer realm="shipway"'
    return response


def _internal_error(request: Request, exc: BaseException) -> Response:
    # Method and path only: headers hold tokens, bodies hold whatever callers sent, and
    # SQLAlchemy would print a failed statement's parameters.
    if hasattr(exc, "hide_parameters"):
        exc.hide_parameters = True
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return json_response(
        {"error": "Internal server error.", "hint": "The server log has the details."}, 500
    )


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _json_body(request: Request, endpoint: Endpoint) -> Any:
    assert endpoint.body is not None
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise PayloadTooLargeError(f"The body is over {MAX_JSON_BYTES} bytes.")
    try:
        return endpoint.body.model_validate_json(bytes(raw) or b"{}")
    except pydantic.ValidationError as exc:
        # Where and what only: pydantic's own text repeats the input, which may be a secret.
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] == "json_invalid":
            raise MalformedRequestError(
                "The body is not valid JSON.",
                "Send a JSON object (Content-Type: application/json).",
            ) from None
        more = f" ({exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise InvalidInputError(f"Invalid body at '{where}': {first['msg']}{more}.") from None


def _route(endpoint: Endpoint, client: Client) -> Route:
    async def run(request: Request) -> Response:
        try:
            identity = request.scope.get(IDENTITY)
            if endpoint.role is not None:
                if identity is None:  # only reachable if the middleware was left out
                    raise UnauthorizedError("A token is required.")
                from shipway.governance.identity import require

                require(identity, endpoint.role, endpoint.action)
            query = {p.name: p.parse(request.query_params.get(p.name)) for p in endpoint.query}
            body = await _json_body(request, endpoint) if endpoint.body is not None else None
            caller = client
            if identity is not None:
                caller = client.as_user(identity.user, source=_source(request))
            call = Call(request, identity, caller, dict(request.path_params), query, body)
            if endpoint.is_async:
                result = await endpoint.handler(call)
            else:
                result = await run_in_threadpool(endpoint.handler, call)
        except ShipwayError as exc:
            return error_response(exc)
        except Exception as exc:
            return _internal_error(request, exc)
        return result if isinstance(result, Response) else json_response(result, endpoint.status)

    return Route(endpoint.path, run, methods=[endpoint.method], name=endpoint.operation_id)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail, "hint": None}, exc.status_code)


def endpoints() -> list[Endpoint]:
    """Every operation of the API, in the order the docs show them."""
    from shipway.server import artifacts, deployments, governance, meta, models, pipelines, runs
    from shipway.server.ui import ENDPOINTS as UI_ENDPOINTS

    return [
        *meta.ENDPOINTS,
        *runs.ENDPOINTS,
        *models.ENDPOINTS,
        *artifacts.ENDPOINTS,
        *deployments.ENDPOINTS,
        *pipelines.ENDPOINTS,
        *governance.ENDPOINTS,
        *UI_ENDPOINTS,
    ]


def create_app(client: Client | None = None, table: Sequence[Endpoint] | None = None) -> Starlette:
    """The app over `client`'s store and artefacts (the default client when None)."""
    from shipway import __version__
    from shipway.client import get_client
    from shipway.server.ui import routes as ui_routes
    from shipway.serving.openapi import docs_page

    client = client or get_client()
    table = list(table if table is not None else endpoints())
    spec = openapi(table, title=TITLE, version=__version__)
    spec_body = orjson.dumps(spec)

    async def spec_route(_: Request) -> Response:
        return Response(spec_body, media_type="application/json")

    async def docs_route(_: Request) -> Response:
        return HTMLResponse(docs_page(TITLE, f"{API}/openapi.json"))

    routes = [
        *(_route(e, client) for e in table),
        Route(f"{API}/openapi.json", spec_route, methods=["GET"], include_in_schema=False),
        Route("/docs", docs_route, methods=["GET"], include_in_schema=False),
        *ui_routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BearerAuth, client=client)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.client = client
    app.state.openapi = spec
    return app
