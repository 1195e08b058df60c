"""The route table: one `Endpoint` per operation names its handler, the role it needs, its body
and query parameters; the router, the role checks and the OpenAPI spec are all built from it.

`role` has no default, so no route can be declared without saying who may call it; `None`
makes a route public (health, login, the docs), and the auth middleware keeps its own, short,
list of those.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request

from shipway.errors import InvalidInputError

if TYPE_CHECKING:
    from shipway.client import Client
    from shipway.governance.identity import Identity

API = "/api/v1"

RoleName = Literal["viewer", "developer", "approver", "admin"]


@dataclass(frozen=True)
class Param:
    """A query parameter: parsed to `kind` and checked against `ge`/`le` before the handler."""

    name: str
    description: str
    kind: type[str] | type[int] = str
    default: str | int | None = None
    ge: int | None = None
    le: int | None = None

    def parse(self, raw: str | None) -> str | int | None:
        if raw is None:
            return self.default
        if self.kind is str:
            return raw
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInputError(
                f"Query parameter '{self.name}' must be a whole number."
            ) from None
        if self.ge is not None and value < self.ge:
            raise InvalidInputError(f"Query parameter '{self.name}' must be at least {self.ge}.")
        if self.le is not None and value > self.le:
            raise InvalidInputError(f"Query parameter '{self.name}' must be at most {self.le}.")
        return value


@dataclass
class Call:
    """What a handler gets: who calls (and a client acting as them), and the parsed request."""

    request: Request
    identity: Identity | None
    client: Client
    """Writes through it are audited as the caller, from the caller's address."""
    path: dict[str, str]
    query: dict[str, Any]
    body: Any


Handler = Callable[[Call], Any]
"""Plain functions run in the thread pool (the store is synchronous); coroutines are awaited.
The result is serialised as JSON unless it is already a Response."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    role: RoleName | None
    """The least role allowed to call it; None for a public route."""
    body: type[BaseModel] | None = None
    query: Sequence[Param] = ()
    status: int = 200
    returns: Any = None
    """The type of the JSON response, for the spec (a record class, `list[...]`, ...)."""
    description: str = ""
    raw_body: str | None = None
    """The media type of a body the handler reads itself (an artefact upload)."""

    @property
    def action(self) -> str:
        """What the caller tries to do, for "alice (viewer) may not <action>: ..."."""
        return self.summary[0].lower() + self.summary[1:]

    @property
    def operation_id(self) -> str:
        return re.sub(r"\W+", "_", f"{self.method}_{self.path.removeprefix(API)}").strip("_")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "hint": {"type": ["string", "null"]}},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_RESPONSES = {
    "400": _error("A malformed request."),
    "401": _error("No valid token: send 'Authorization: Bearer TOKEN'."),
    "403": _error("The caller's role does not allow it, or an approval is missing."),
    "404": _error("Nothing by that name."),
    "409": _error("It clashes with the store's state."),
    "422": _error("Invalid input."),
}
_REF = "#/components/schemas/{model}"


def _schema(kind: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = TypeAdapter(kind).json_schema(ref_template=_REF)
    components.update(schema.pop("$defs", {}))
    return schema


def openapi(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `endpoints`; each operation names its role in
    `x-shipway-role` and public ones carry `security: []`."""
    components: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        ok: dict[str, Any] = {"description": "Success"}
        if e.returns is not None:
            ok["content"] = {"application/json": {"schema": _schema(e.returns, components)}}
        op: dict[str, Any] = {
            "summary": e.summary,
            "tags": [e.tag],
            "operationId": e.operation_id,
            "x-shipway-role": e.role,
            "responses": {str(e.status): ok}
            | {code: r for code, r in _RESPONSES.items() if e.role is not None or code != "401"},
        }
        if e.description:
            op["description"] = e.description
        if e.role is None:
            op["security"] = []
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)", e.path)
        ]
        params += [
            {
                "name": q.name,
                "in": "query",
                "required": False,
                "description": q.description,
                "schema": {"type": "integer" if q.kind is int else "string"}
                | ({} if q.default is None else {"default": q.default}),
            }
            for q in e.query
        ]
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(e.body, components)}},
            }
        elif e.raw_body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {e.raw_body: {"schema": {"type": "string", "format": "binary"}}},
            }
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The Shipway team server. Every route but health, login and these "
            "docs needs `Authorization: Bearer TOKEN` (create one with `shipway tokens create`).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
