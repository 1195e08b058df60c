"""The endpoints, as one table: Starlette routes them, `openapi.py` documents them.

Each handler reads the raw body itself (fast, and errors keep our JSON shape)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shipway.errors import MalformedRequestError, ShipwayError
from shipway.serving import v2
from shipway.serving.app import ModelServer, _json, error_kind, error_response
from shipway.serving.openapi import Endpoint
from shipway.serving.runtime import ServedModel
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


def endpoints(server: ModelServer) -> list[Endpoint]:
    """Every route of the server, with what /docs says about it."""
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
                response = _json({"error": f"Internal error: {error_kind(exc)}."}, 500)
        if model not in server.models:  # a name from the URL: keep label values bounded
            model = "-"
        metrics.observe_request(
            model, endpoint, response.status_code, time.perf_counter() - started
        )
        return response

    async def native(request: Request, name: str | None) -> Response:
        served = server.get(name) if name else server.default
        with served.arriving():
            body = await server.read_json(request)
            columns = served.validator.decode(body)
        rows = len(next(iter(columns.values()))) if columns else 0
        result = await server.infer(served, columns, rows)
        ids = result["ids"]
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

    async def predict(request: Request) -> Response:
        name = next(iter(server.models), "-")
        return await measured("predict", name, lambda: native(request, None))

    async def predict_model(request: Request) -> Response:
        name = request.path_params["name"]
        return await measured("predict", name, lambda: native(request, name))

    async def feedback(request: Request) -> Response:
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

    async def metrics_endpoint(request: Request) -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    async def v2_server(request: Request) -> Response:
        from shipway import __version__

        return _json(
            {"name": "shipway", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def live(request: Request) -> Response:
        if server.failed:
            return _json({"live": False, "error": server.failed}, 503)
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        waiting = server.unready_models() if server.ready else []
        ok = server.ready and not waiting
        body: dict[str, Any] = {"ready": ok}
        if server.failed:
            body["error"] = server.failed
        if waiting:
            body["restarting"] = waiting
        return _json(body, 200 if ok else 503)

    def served_of(request: Request) -> ServedModel:
        return server.get(request.path_params["name"], request.path_params.get("version"))

    async def model_meta(request: Request) -> Response:
        return _json(v2.tensor_metadata(served_of(request)))

    async def model_ready(request: Request) -> Response:
        served = served_of(request)
        ok = server.model_ready(served)
        return _json({"name": served.name, "ready": ok}, 200 if ok else 503)

    async def infer_work(request: Request) -> Response:
        served = served_of(request)
        with served.arriving():
            raw = await server.read_body(request)
            try:
                body, binary = v2.split_body(raw, request.headers.get(v2.HEADER))
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                if isinstance(exc, ShipwayError):
                    raise
                raise MalformedRequestError(f"The request body is not valid JSON: {exc}.") from None
            columns, rows = v2.decode_inputs(served, body, binary)
        result = await server.infer(served, columns, rows)
        ids = result["ids"]
        payload, headers = v2.encode_outputs(served, result, body, rows, ids)
        return Response(payload, headers=headers)

    async def infer(request: Request) -> Response:
        name = request.path_params["name"]
        return await measured("infer", name, lambda: infer_work(request))

    model, version = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    return [
        Endpoint(
            "POST",
            "/predict",
            predict,
            "Predict rows",
            "native",
            PREDICT_BODY,
            "Predict with the first served model. Rows as JSON records, "
            '`{"columns", "data"}` or `{"instances": [...]}`; the answer holds a prediction '
            "id per row.",
            (400, 413, 422, 503),
        ),
        Endpoint(
            "POST",
            "/models/{name}/predict",
            predict_model,
            "Predict rows with one model",
            "native",
            PREDICT_BODY,
            errors=(400, 404, 413, 422, 503),
        ),
        Endpoint(
            "POST",
            "/feedback",
            feedback,
            "Attach labels",
            "native",
            FEEDBACK_BODY,
            "Attach ground-truth labels to earlier prediction ids, for performance monitoring.",
        ),
        Endpoint(
            "GET", "/metrics", metrics_endpoint, "Prometheus metrics", "operations", errors=()
        ),
        Endpoint("GET", "/v2", v2_server, "Server metadata", "v2", errors=()),
        Endpoint(
            "GET",
            "/v2/health/live",
            live,
            "Liveness",
            "v2",
            description="Live while loading; not live once loading failed.",
            errors=(503,),
        ),
        Endpoint(
            "GET",
            "/v2/health/ready",
            ready,
            "Readiness",
            "v2",
            description="Ready once every model is loaded and warmed up.",
            errors=(503,),
        ),
        Endpoint("GET", model, model_meta, "Model metadata", "v2", errors=(404,)),
        Endpoint("GET", version, model_meta, "Model version metadata", "v2", errors=(404,)),
        Endpoint("GET", f"{model}/ready", model_ready, "Model readiness", "v2", errors=(404,)),
        Endpoint(
            "GET",
            f"{version}/ready",
            model_ready,
            "Model version readiness",
            "v2",
            errors=(404,),
        ),
        Endpoint(
            "POST",
            f"{model}/infer",
            infer,
            "Infer",
            "v2",
            INFER_BODY,
            errors=(400, 404, 413, 422, 503),
        ),
        Endpoint(
            "POST",
            f"{version}/infer",
            infer,
            "Infer with a version",
            "v2",
            INFER_BODY,
            errors=(400, 404, 413, 422, 503),
        ),
    ]
