"""The model server's ASGI app: native and Open Inference Protocol endpoints over served models.

    app = shipway.serving.create_app(["models:/credit@champion", "models:/churn/2"])

Models load (and warm up) in the lifespan, so the server reports ready only once every model
has answered a sample request. Errors are JSON `{"error": ...}` with the status their class
carries; user input never causes a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from shipway.client import Client, get_client
from shipway.errors import (
    MalformedRequestError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    ShipwayError,
)
from shipway.serving.auth import ApiKeyMiddleware
from shipway.serving.batching import Batcher
from shipway.serving.fastpath import FastPath
from shipway.serving.metrics import ServingMetrics
from shipway.serving.model_process import LogSpec, ModelProcess
from shipway.serving.predlog import PredictionLog
from shipway.serving.runtime import ServedModel, new_ids, quiet_garbage_collector
from shipway.serving.settings import ServerSettings, api_keys
from shipway.serving.validation import ValidationError

log = logging.getLogger("shipway.serving")

JSON = "application/json"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def error_kind(exc: BaseException) -> str:
    """The name a 500 gives of an unexpected error: the model's own exception's, when the
    model raised it in its process."""
    return getattr(exc, "kind", None) or type(exc).__name__


def error_response(exc: ShipwayError) -> Response:
    body = exc.body() if isinstance(exc, ValidationError) else {"error": str(exc)}
    headers = {"Retry-After": "1"} if exc.http_status == 503 else None
    return _json(body, exc.http_status, headers)


class ModelServer:
    """State shared by the endpoints: the served models, metrics, prediction log."""

    def __init__(self, uris: Sequence[str], settings: ServerSettings, client: Client) -> None:
        if not uris:
            raise ValueError("serve at least one model")
        self.uris = list(uris)
        self.settings = settings
        self.client = client
        self.models: dict[str, ServedModel] = {}
        self.metrics = ServingMetrics()
        self.metrics.watch_model_processes(self._model_pids)
        self.predlog: PredictionLog | None = None
        self.ready = False
        self.failed: str | None = None
        self._loading: asyncio.Task[None] | None = None

    def _model_pids(self) -> dict[str, int | None]:
        return {
            name: served.process.pid
            for name, served in list(self.models.items())
            if served.process is not None
        }

    @property
    def default(self) -> ServedModel:
        if not self.models:
            raise self._not_ready()
        return next(iter(self.models.values()))

    def model_ready(self, served: ServedModel) -> bool:
        """Whether `served` can answer now; a model whose process died is given a new one in
        the background (nothing else would, while readiness keeps traffic away)."""
        if served.ready:
            return True
        if served.activated and served.process is not None:
            served.process.replace_soon()
        return False

    def unready_models(self) -> list[str]:
        """The loaded models that cannot answer now (their process is being replaced)."""
        return [name for name, served in list(self.models.items()) if not self.model_ready(served)]

    def _not_ready(self) -> ShipwayError:
        if self.failed:
            return ShipwayError(f"The server failed to load its models: {self.failed}")
        return OverloadedError(
            "The models are still loading.", "Retry once /v2/health/ready is 200."
        )

    async def start(self) -> None:
        """Load the models. By default in the background: the port opens at once, liveness
        answers, and readiness turns 200 once every model is loaded and warmed up.

        With `load_before_accept` (several workers sharing one port) the lifespan waits for
        the load, so uvicorn opens the worker's side of the port only once it is ready. A
        worker still loading would otherwise take connections from the kernel as fast as its
        ready siblings and answer each with 503 (quickly, so it took most of them).
        """
        self._loading = asyncio.create_task(self._load_all(), name="shipway-load")
        if self.settings.load_before_accept:
            await self._loading

    async def _load_all(self) -> None:
        try:
            for uri in self.uris:
                served = await asyncio.to_thread(self._load_one, uri)
                if served.name in self.models:
                    raise ValueError(f"model '{served.name}' is listed twice")
                self._activate(served)
            if self.settings.prediction_log:
                self.predlog = PredictionLog(
                    self.client.settings.resolved_artifact_url,
                    self.client.settings.artifact_options or None,
                    sample_rate=self.settings.prediction_log_sample,
                    on_drop=functools.partial(self.metrics.prediction_log_dropped, "all"),
                )
                self.predlog.start()
            quiet_garbage_collector()
            self.ready = True
        except Exception as exc:
            self.failed = str(exc)
            log.error("failed to load models: %s", exc)

    def _load_one(self, uri: str) -> ServedModel:
        threads = self.settings.model_threads
        if self.settings.model_process:
            log_spec = None
            if self.settings.prediction_log:
                log_spec = LogSpec(
                    self.client.settings.resolved_artifact_url,
                    self.client.settings.artifact_options or None,
                    self.settings.prediction_log_sample,
                )
            process = ModelProcess(
                uri,
                self.client.child_env(),
                threads=threads,
                log_spec=log_spec,
                on_drop=functools.partial(self.metrics.prediction_log_dropped, "all"),
                # By then every caller of the batch has had its 503: stop a stuck model.
                predict_timeout=self.settings.request_timeout_s,
            )
            return ServedModel.start_process(process, threads)
        served = ServedModel.load(uri, self.client, threads)
        # Warm up in the predict thread itself, so its native thread pools are the warm ones.
        served.executor.submit(served.warm_up).result()
        return served

    def _activate(self, served: ServedModel) -> None:
        if self.settings.batching:
            served.batcher = Batcher(
                served.predict_columns,
                max_batch_size=self.settings.max_batch_size,
                max_latency_ms=self.settings.max_latency_ms,
                max_queue_rows=self.settings.max_queue_rows,
                on_batch=functools.partial(self.metrics.observe_batch, served.name),
                on_queue=functools.partial(self.metrics.set_queue_depth, served.name),
                executor=served.executor,
            )
            served.batcher.start()
        self.metrics.set_model_loaded(
            served.name, served.version, served.flavor, served.load_seconds
        )
        served.activated = True
        self.models[served.name] = served
        log.info(
            "%s/%s ready: loaded and warmed up in %.1f s%s",
            served.name,
            served.version,
            served.load_seconds,
            "; its pipeline takes arrays (columns by position)" if served.takes_arrays else "",
        )

    async def stop(self) -> None:
        self.ready = False
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        for served in self.models.values():
            if served.batcher is not None:
                await served.batcher.close()
            served.close()
        if self.predlog is not None:
            self.predlog.close()

    def get(self, name: str, version: str | None = None) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            if not self.ready:
                raise self._not_ready()
            raise NotFoundError.missing("model", name, self.models)
        if version is not None and version != str(served.version):
            raise NotFoundError(
                f"Model '{name}' version {version} is not served here.",
                f"This server serves version {served.version}.",
            )
        return served

    async def read_json(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"The request body is over the {limit}-byte limit.")
        raw = await self.read_body(request)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequestError(f"The request body is not valid JSON: {exc}.") from None

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"The request body is over the {limit}-byte limit.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def infer(self, served: ServedModel, columns: dict[str, list[Any]], rows: int) -> Any:
        """Predict, and log: the result carries a prediction id per row in "ids"."""
        if rows == 0:
            raise ValidationError("The request holds no rows.", expected="at least one row")
        try:
            result = await _wait_for(served.predict(columns, rows), self.settings.request_timeout_s)
        except OverloadedError:
            self.metrics.overload_rejected(served.name)
            raise
        probs = result.get("probabilities")
        if probs:
            # Score of the positive (last) class for binary classifiers, else the top score.
            scores = [p[-1] if len(p) == 2 else max(p) for p in probs]
            self.metrics.observe_scores(served.name, served.version, scores)
        if "ids" not in result:  # a model in its own process made and logged them already
            result["ids"] = new_ids(rows)
            if self.predlog is not None:
                self.predlog.record(
                    served.name,
                    served.version,
                    result["ids"],
                    columns,
                    result["predictions"],
                    probs,
                    served.classes,
                )
        return result


async def _wait_for(awaitable: Any, timeout: float) -> Any:
    # Not asyncio.wait_for: on 3.11 it runs the awaitable in a new task, so the rows would be
    # queued only after the batcher had seen this request stop "arriving" and closed the batch.
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        raise OverloadedError(
            f"The prediction did not finish within {timeout:g} s.", "Retry after a short pause."
        ) from None


def create_app(
    uris: Sequence[str],
    settings: ServerSettings | None = None,
    *,
    client: Client | None = None,
) -> ASGIApp:
    """The ASGI app serving `uris` (models:/NAME/VERSION, models:/NAME@ALIAS or bundle:/DIR)."""
    from shipway import __version__
    from shipway.serving import openapi, routes

    settings = settings or ServerSettings()
    server = ModelServer(uris, settings, client or get_client())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        yield
        await server.stop()

    table = routes.endpoints(server)
    title = "Shipway model server"
    spec = openapi.spec(
        table,
        title,
        "Native predictions and the Open Inference Protocol (v2) over " + ", ".join(uris),
        __version__,
    )

    async def spec_endpoint(request: Request) -> Response:
        return _json(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(openapi.docs_page(title))

    def guarded(handler: openapi.Handler) -> openapi.Handler:
        """Every error, on every route, answered as JSON {"error": ...}."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ShipwayError as exc:
                return error_response(exc)
            except Exception as exc:
                log.exception("unexpected error on %s", request.url.path)
                return _json({"error": f"Internal error: {error_kind(exc)}."}, 500)

        return endpoint

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        message = {404: "No such route.", 405: "Method not allowed on this route."}
        hint = " See /docs for the API." if status in message else ""
        return _json({"error": message.get(status, "Request failed.") + hint}, status)

    handlers = {e.path: guarded(e.handler) for e in table}
    app = Starlette(
        routes=[Route(e.path, handlers[e.path], methods=[e.method]) for e in table]
        + [
            Route("/openapi.json", spec_endpoint, include_in_schema=False),
            Route("/docs", docs, include_in_schema=False),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.server = server
    outer: ASGIApp = FastPath(app, handlers)
    keys = api_keys(settings)
    if keys:
        outer = ApiKeyMiddleware(outer, keys=keys)
    return outer
