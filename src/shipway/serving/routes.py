"""The endpoints. Each reads the raw body itself (fast, and errors stay in our JSON shape);
the request schemas are documented for /docs through `openapi_extra`."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from shipway.errors import MalformedRequestError, ShipwayError
from shipway.serving import v2
from shipway.serving.app import ModelServer, _json, error_response, new_ids
from shipway.serving.validation import ValidationError

log = logging.getLogger("shipway.serving")

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "array", "items": {"type": "object"}, "title": "records"},
                        {
                            "type": "object",
                            "title": "split",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array"}},
                            },
                        },
                        {
                            "type": "object",
                            "title": "instances",
                            "properties": {"instances": {"type": "array"}},
                        },
                    ]
                },
                "example": [{"age": 41, "income": 52000.0, "employment": "salaried"}],
            }
        },
    }
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype", "data"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string"},
                                    "data": {"type": "array"},
                                },
                            },
                        },
                        "outputs": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    }
}
FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["labels"],
                    "properties": {
                        "model": {"type": "string"},
                        "labels": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["prediction_id", "label"],
                                "properties": {"prediction_id": {"type": "string"}, "label": {}},
                            },
                        },
                    },
                },
                "example": {"labels": [{"prediction_id": "3f2a...", "label": 1}]},
            }
        },
    }
}


def install(app: FastAPI, server: ModelServer) -> None:
    metrics = server.metrics

    async def measured(
        endpoint: str, model: str, work: Callable[[], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        with metrics.track_in_flight():
            try:
                response = await work()
            except ShipwayError as exc:
                response = error_response(exc)
            except Exception as exc:  # a model bug: answer 500, and count it like the rest
                log.exception("unexpected error on the %s endpoint of %s", endpoint, model)
                response = _json({"error": f"Internal error: {type(exc).__name__}."}, 500)
        if model not in server.models:  # a name from the URL: keep label values bounded
            model = "-"
        metrics.observe_request(
            model, endpoint, response.status_code, time.perf_counter() - started
        )
        return response

    async def native(request: Request, name: str | None) -> Response:
        served = server.get(name) if name else server.default
        batcher = served.batcher
        if batcher is not None:
            with batcher.arriving():
                body = await server.read_json(request)
                columns = served.validator.decode(body)
        else:
            body = await server.read_json(request)
            columns = served.validator.decode(body)
        rows = len(next(iter(columns.values()))) if columns else 0
        result = await server.infer(served, columns, rows)
        ids = new_ids(rows)
        server.log_predictions(served, ids, columns, result)
        out: dict[str, Any] = {
            "model": served.name,
            "version": served.version,
            "ids": ids,
            "predictions": result["predictions"],
        }
        if "probabilities" in result:
            out["probabilities"] = result["probabilities"]
            out["classes"] = served.classes
        return _json(out)

    @app.post("/predict", tags=["native"], openapi_extra=PREDICT_BODY, summary="Predict rows")
    async def predict(request: Request) -> Response:
        """Predict with the first served model. Rows as JSON records, `{"columns", "data"}`,
        or `{"instances": [...]}`; the answer holds a prediction id per row."""
        name = next(iter(server.models), "-")
        return await measured("predict", name, lambda: native(request, None))

    @app.post(
        "/models/{name}/predict",
        tags=["native"],
        openapi_extra=PREDICT_BODY,
        summary="Predict rows with one model",
    )
    async def predict_model(name: str, request: Request) -> Response:
        return await measured("predict", name, lambda: native(request, name))

    @app.post("/feedback", tags=["native"], openapi_extra=FEEDBACK_BODY, summary="Attach labels")
    async def feedback(request: Request) -> Response:
        """Attach ground-truth labels to earlier prediction ids, for performance monitoring."""

        async def work() -> Response:
            body = await server.read_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("labels"), list):
                raise ValidationError('Expected {"labels": [{"prediction_id", "label"}]}.')
            if "model" in body and not isinstance(body["model"], str):
                raise ValidationError("'model' must be the name of a served model.")
            served = server.get(body["model"]) if "model" in body else server.default
            items = []
            for i, item in enumerate(body["labels"]):
                if (
                    not isinstance(item, dict)
                    or not isinstance(item.get("prediction_id"), str)
                    or "label" not in item
                ):
                    raise ValidationError(
                        f"Label {i}: expected an object with 'prediction_id' (a string) and "
                        "'label'.",
                        row=i,
                    )
                items.append((item["prediction_id"], item["label"]))
            if server.predlog is not None:
                server.predlog.record_feedback(served.name, items)
            return _json({"accepted": len(items), "model": served.name}, 202)

        return await measured("feedback", "-", work)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    # ---- Open Inference Protocol (v2) ------------------------------------------------------

    @app.get("/v2", tags=["v2"], summary="Server metadata")
    async def v2_server() -> Response:
        from shipway import __version__

        return _json(
            {"name": "shipway", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    @app.get("/v2/health/live", tags=["v2"], summary="Liveness")
    async def live() -> Response:
        """Live while loading; not live once loading failed, so an orchestrator restarts it."""
        if server.failed:
            return _json({"live": False, "error": server.failed}, 503)
        return _json({"live": True})

    @app.get("/v2/health/ready", tags=["v2"], summary="Readiness")
    async def ready() -> Response:
        """Ready once every model is loaded and has answered a warm-up request."""
        body: dict[str, Any] = {"ready": server.ready}
        if server.failed:
            body["error"] = server.failed
        return _json(body, 200 if server.ready else 503)

    @app.get("/v2/models/{name}", tags=["v2"], summary="Model metadata")
    async def model_meta(name: str) -> Response:
        return _json(v2.tensor_metadata(server.get(name)))

    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"], summary="Model metadata")
    async def model_version_meta(name: str, version: str) -> Response:
        return _json(v2.tensor_metadata(server.get(name, version)))

    @app.get("/v2/models/{name}/ready", tags=["v2"], summary="Model readiness")
    async def model_ready(name: str) -> Response:
        served = server.get(name)
        return _json({"name": name, "ready": served.ready}, 200 if served.ready else 503)

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"], summary="Readiness")
    async def model_version_ready(name: str, version: str) -> Response:
        served = server.get(name, version)
        return _json({"name": name, "ready": served.ready}, 200 if served.ready else 503)

    async def infer(request: Request, name: str, version: str | None) -> Response:
        served = server.get(name, version)
        raw = await server.read_body(request)
        try:
            body, binary = v2.split_body(raw, request.headers.get(v2.HEADER))
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            if isinstance(exc, ShipwayError):
                raise
            raise MalformedRequestError(f"The request body is not valid JSON: {exc}.") from None
        columns, rows = v2.decode_inputs(served, body, binary)
        result = await server.infer(served, columns, rows)
        server.log_predictions(served, new_ids(rows), columns, result)
        payload, headers = v2.encode_outputs(served, result, body, rows)
        return Response(payload, headers=headers)

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=INFER_BODY, summary="Infer")
    async def v2_infer(name: str, request: Request) -> Response:
        return await measured("infer", name, lambda: infer(request, name, None))

    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        tags=["v2"],
        openapi_extra=INFER_BODY,
        summary="Infer with a version",
    )
    async def v2_infer_version(name: str, version: str, request: Request) -> Response:
        return await measured("infer", name, lambda: infer(request, name, version))
