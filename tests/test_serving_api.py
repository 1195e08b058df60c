"""The model server's endpoints, against a real uvicorn server (native, v2, feedback, metrics).

One server per module serves two models: `credit` (a scikit-learn pipeline) and `churn` (a
python-function ToyModel with int, float, bool, string, category and nullable columns). Every
answer is compared with the model's own predictions on the same rows.
"""

from __future__ import annotations

import math
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

import shipway
from serving_helpers import (
    FEATURES,
    TOY_FEATURES,
    live_server,
    records,
    register_toy,
    shipway_env,
    toy_expected,
    train_credit,
)
from shipway.serving import create_app
from shipway.serving.predlog import join_feedback, read_feedback, read_predictions

PROMTOOL = "/usr/bin/promtool"


# =============================================================================
# Fixtures and helpers
# =============================================================================


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    with shipway_env(tmp_path_factory.mktemp("serving-api") / "home"):
        credit, model, frame = train_credit()
        churn, toy = register_toy("churn")
        yield SimpleNamespace(credit=credit, model=model, X=frame, churn=churn, toy=toy)


@pytest.fixture(scope="module")
def url(env: SimpleNamespace) -> Iterator[str]:
    app = create_app(["models:/credit/1", "models:/churn/1"])
    with live_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def jsonable(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records with NaN as null (JSON has no NaN)."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in records(frame)
    ]


def split(frame: pd.DataFrame) -> dict[str, Any]:
    rows = jsonable(frame)
    return {"columns": list(frame.columns), "data": [[r[c] for c in frame.columns] for r in rows]}


def v2_datatype(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series.dtype):
        return "BOOL"
    if pd.api.types.is_integer_dtype(series.dtype):
        return "INT64"
    if pd.api.types.is_float_dtype(series.dtype):
        return "FP64"
    return "BYTES"


def v2_tensors(frame: pd.DataFrame, *, nested: bool = False) -> list[dict[str, Any]]:
    rows = jsonable(frame)
    out = []
    for col in frame.columns:
        values = [r[col] for r in rows]
        out.append(
            {
                "name": col,
                "datatype": v2_datatype(frame[col]),
                "shape": [len(values), 1],
                "data": [[v] for v in values] if nested else values,
            }
        )
    return out


def assert_credit_answer(env: SimpleNamespace, body: dict[str, Any], rows: pd.DataFrame) -> None:
    assert body["model"] == "credit"
    assert body["version"] == 1
    assert len(body["ids"]) == len(rows) == len(set(body["ids"]))
    assert all(isinstance(i, str) and i for i in body["ids"])
    assert body["predictions"] == env.model.predict(rows).tolist()
    assert np.allclose(body["probabilities"], env.model.predict_proba(rows), atol=1e-12)
    assert body["classes"] == env.model.classes_.tolist() == [0, 1]


def samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when none)."""
    return sum(
        s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


# =============================================================================
# Native predictions
# =============================================================================

FORMATS = {
    "records": lambda f: jsonable(f),
    "split": lambda f: split(f),
    "instances": lambda f: {"instances": jsonable(f)},
    "instances-positional": lambda f: {"instances": split(f)["data"]},
    "positional": lambda f: split(f)["data"],
    "dataframe_split": lambda f: {"dataframe_split": split(f)},
    "dataframe_records": lambda f: {"dataframe_records": jsonable(f)},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("path", ["/predict", "/models/credit/predict"])
def test_predict_formats_answer_the_models_own_predictions(
    env: SimpleNamespace, http: httpx.Client, fmt: str, path: str
) -> None:
    rows = env.X.iloc[40:47]
    r = http.post(path, json=FORMATS[fmt](rows))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert_credit_answer(env, r.json(), rows)


def test_split_columns_in_any_order(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = env.X.iloc[5:9]
    body = split(rows[list(reversed(FEATURES))])
    r = http.post("/predict", json=body)
    assert r.status_code == 200, r.text
    assert_credit_answer(env, r.json(), rows)


def test_single_record_object(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = env.X.iloc[[3]]
    r = http.post("/predict", json=jsonable(rows)[0])
    assert r.status_code == 200, r.text
    assert_credit_answer(env, r.json(), rows)


def test_ids_are_unique_across_requests(env: SimpleNamespace, http: httpx.Client) -> None:
    ids: list[str] = []
    for start in range(0, 30, 5):
        r = http.post("/predict", json=jsonable(env.X.iloc[start : start + 5]))
        assert r.status_code == 200
        ids += r.json()["ids"]
    assert len(ids) == len(set(ids)) == 30


def test_two_models_each_route_to_their_own(env: SimpleNamespace, http: httpx.Client) -> None:
    toy_rows = env.toy.iloc[2:9]
    r = http.post("/models/churn/predict", json=jsonable(toy_rows))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "churn"
    assert body["version"] == 1
    assert len(set(body["ids"])) == len(toy_rows)
    assert np.allclose(body["predictions"], toy_expected(toy_rows))
    assert "probabilities" not in body and "classes" not in body

    # churn does not accept credit rows, and credit does not accept churn rows: no mix-up.
    r = http.post("/models/churn/predict", json=jsonable(env.X.iloc[:2]))
    assert r.status_code == 422
    assert r.json()["column"] in TOY_FEATURES
    r = http.post("/models/credit/predict", json=jsonable(toy_rows))
    assert r.status_code == 422
    assert r.json()["column"] in FEATURES
    # The default model is the first one listed.
    r = http.post("/predict", json=jsonable(env.X.iloc[:2]))
    assert r.json()["model"] == "credit"


def test_nullable_column_accepts_null(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = jsonable(env.toy.iloc[:3])
    rows[1]["rate"] = None
    r = http.post("/models/churn/predict", json=rows)
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["predictions"], toy_expected(rows))


@pytest.mark.parametrize(
    "path", ["/models/nope/predict", "/v2/models/nope", "/v2/models/nope/infer"]
)
def test_unknown_model_is_404_listing_served_models(http: httpx.Client, path: str) -> None:
    if path.endswith("predict") or path.endswith("infer"):
        r = http.post(path, json=[])
    else:
        r = http.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert "nope" in error and "credit" in error and "churn" in error


# =============================================================================
# Open Inference Protocol (v2) over plain HTTP
# =============================================================================


def test_v2_server_metadata_and_health(http: httpx.Client) -> None:
    r = http.get("/v2")
    assert r.status_code == 200
    assert r.json() == {
        "name": "shipway",
        "version": shipway.__version__,
        "extensions": ["binary_tensor_data"],
    }
    assert http.get("/v2/health/live").json() == {"live": True}
    r = http.get("/v2/health/ready")
    assert r.status_code == 200 and r.json() == {"ready": True}


def test_v2_model_metadata_one_input_per_column(env: SimpleNamespace, http: httpx.Client) -> None:
    r = http.get("/v2/models/credit")
    assert r.status_code == 200
    meta = r.json()
    assert meta["name"] == "credit"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "shipway-sklearn"
    assert meta["inputs"] == [
        {"name": "age", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "income", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "debt_ratio", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "credit_lines", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "months_employed", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "employment", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "housing", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]

    churn = http.get("/v2/models/churn").json()
    assert churn["platform"] == "shipway-python"
    assert [(i["name"], i["datatype"]) for i in churn["inputs"]] == [
        ("n", "INT64"),
        ("x", "FP64"),
        ("flag", "BOOL"),
        ("name", "BYTES"),
        ("color", "BYTES"),
        ("rate", "FP64"),
    ]
    assert churn["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]

    r = http.get("/v2/models/credit/versions/1")
    assert r.status_code == 200 and r.json() == meta


def test_v2_model_readiness_and_versions(http: httpx.Client) -> None:
    for path in ("/v2/models/credit/ready", "/v2/models/credit/versions/1/ready"):
        r = http.get(path)
        assert r.status_code == 200
        assert r.json() == {"name": "credit", "ready": True}
    for path in (
        "/v2/models/credit/versions/2",
        "/v2/models/credit/versions/2/ready",
        "/v2/models/credit/versions/latest",
    ):
        r = http.get(path)
        assert r.status_code == 404, path
        assert isinstance(r.json()["error"], str)
        assert "version 1" in r.json()["error"] or "1" in r.json()["error"]
    r = http.post("/v2/models/credit/versions/2/infer", json={"inputs": []})
    assert r.status_code == 404 and "error" in r.json()


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("path", ["/v2/models/credit/infer", "/v2/models/credit/versions/1/infer"])
def test_v2_infer_json_tensors(
    env: SimpleNamespace, http: httpx.Client, path: str, nested: bool
) -> None:
    rows = env.X.iloc[100:106]
    r = http.post(path, json={"id": "req-42", "inputs": v2_tensors(rows, nested=nested)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "credit"
    assert body["model_version"] == "1"
    assert body["id"] == "req-42"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"predict", "predict_proba"}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["shape"] == [6]
    assert outputs["predict"]["data"] == env.model.predict(rows).tolist()
    proba = outputs["predict_proba"]
    assert proba["datatype"] == "FP64" and proba["shape"] == [6, 2]
    assert np.allclose(np.reshape(proba["data"], (6, 2)), env.model.predict_proba(rows))


def test_v2_infer_flat_shape_and_no_id(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = env.X.iloc[7:10]
    tensors = v2_tensors(rows)
    for t in tensors:
        t["shape"] = [3]
    r = http.post("/v2/models/credit/infer", json={"inputs": tensors})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "id" not in body
    assert body["outputs"][0]["data"] == env.model.predict(rows).tolist()


def test_v2_requested_outputs_subset(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = env.X.iloc[20:24]
    body = {"inputs": v2_tensors(rows), "outputs": [{"name": "predict_proba"}]}
    r = http.post("/v2/models/credit/infer", json=body)
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert [o["name"] for o in outputs] == ["predict_proba"]
    assert np.allclose(np.reshape(outputs[0]["data"], (4, 2)), env.model.predict_proba(rows))

    body["outputs"] = [{"name": "predict"}]
    outputs = http.post("/v2/models/credit/infer", json=body).json()["outputs"]
    assert [o["name"] for o in outputs] == ["predict"]
    assert outputs[0]["data"] == env.model.predict(rows).tolist()

    body["outputs"] = [{"name": "embedding"}]
    r = http.post("/v2/models/credit/infer", json=body)
    assert r.status_code == 422 and "embedding" in r.json()["error"]


def test_v2_infer_every_column_type(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = env.toy.iloc[:6]  # row 0 has a null rate
    r = http.post("/v2/models/churn/infer", json={"id": "t", "inputs": v2_tensors(rows)})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "predict" and out["datatype"] == "FP64" and out["shape"] == [6]
    assert np.allclose(out["data"], toy_expected(rows))


# =============================================================================
# Open Inference Protocol with the real tritonclient
# =============================================================================


@pytest.fixture(scope="module")
def triton_client(url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def triton_inputs(
    frame: pd.DataFrame, meta: dict[str, Any], binary: bool, as_bytes: bool
) -> list[triton.InferInput]:
    out = []
    n = len(frame)
    for spec in meta["inputs"]:
        name, datatype = spec["name"], spec["datatype"]
        column = frame[name]
        if datatype == "BYTES":
            values = [str(v).encode() if as_bytes else str(v) for v in column]
            array = np.array(values, dtype=np.object_).reshape(n, 1)
        elif datatype == "INT64":
            array = column.to_numpy(np.int64).reshape(n, 1)
        elif datatype == "FP64":
            array = column.to_numpy(np.float64).reshape(n, 1)
        else:
            array = column.to_numpy(np.bool_).reshape(n, 1)
        tensor = triton.InferInput(name, [n, 1], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        out.append(tensor)
    return out


def test_tritonclient_metadata_and_health(triton_client: triton.InferenceServerClient) -> None:
    meta = triton_client.get_server_metadata()
    assert meta["name"] == "shipway"
    assert "binary_tensor_data" in meta["extensions"]
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("credit")
    assert triton_client.is_model_ready("credit", "1")
    assert not triton_client.is_model_ready("credit", "7")
    model_meta = triton_client.get_model_metadata("credit")
    assert model_meta["name"] == "credit"
    assert [i["name"] for i in model_meta["inputs"]] == FEATURES
    assert triton_client.get_model_metadata("credit", "1") == model_meta


@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
@pytest.mark.parametrize(
    ("binary_in", "as_bytes"),
    [(True, True), (False, True), (False, False)],
    ids=["in-binary", "in-json-bytes", "in-json-str"],
)
def test_tritonclient_infer_credit(
    env: SimpleNamespace,
    triton_client: triton.InferenceServerClient,
    binary_in: bool,
    as_bytes: bool,
    binary_out: bool,
) -> None:
    rows = env.X.iloc[200:213]
    meta = triton_client.get_model_metadata("credit")
    result = triton_client.infer(
        "credit",
        triton_inputs(rows, meta, binary_in, as_bytes),
        outputs=[
            triton.InferRequestedOutput("predict", binary_data=binary_out),
            triton.InferRequestedOutput("predict_proba", binary_data=binary_out),
        ],
        request_id="triton-1",
    )
    response = result.get_response()
    assert response["id"] == "triton-1"
    assert response["model_name"] == "credit"
    predict = result.as_numpy("predict")
    proba = result.as_numpy("predict_proba")
    assert predict.dtype == np.int64 and predict.shape == (13,)
    assert proba.dtype == np.float64 and proba.shape == (13, 2)
    assert predict.tolist() == env.model.predict(rows).tolist()
    assert np.allclose(proba, env.model.predict_proba(rows))


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_every_column_type(
    env: SimpleNamespace, triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    rows = env.toy.iloc[1:12]  # no null: tensors carry no nulls
    meta = triton_client.get_model_metadata("churn")
    result = triton_client.infer(
        "churn",
        triton_inputs(rows, meta, binary, True),
        model_version="1",
        outputs=[triton.InferRequestedOutput("predict", binary_data=binary)],
    )
    predict = result.as_numpy("predict")
    assert predict.dtype == np.float64 and predict.shape == (11,)
    assert np.allclose(predict, toy_expected(rows))


def test_tritonclient_reports_server_errors(
    env: SimpleNamespace, triton_client: triton.InferenceServerClient
) -> None:
    rows = env.X.iloc[:2]
    meta = triton_client.get_model_metadata("credit")
    tensors = triton_inputs(rows, meta, True, True)[1:]  # 'age' missing
    with pytest.raises(triton.InferenceServerException, match="age"):
        triton_client.infer("credit", tensors)


# =============================================================================
# Feedback and the prediction log
# =============================================================================


def test_feedback_and_prediction_log_round_trip(tmp_path: Path) -> None:
    with shipway_env(tmp_path / "home"):
        _, model, frame = train_credit()
        base = shipway.Client().settings.resolved_artifact_url
        sent: dict[str, dict[str, Any]] = {}  # id -> the row sent
        predicted: dict[str, int] = {}
        probs: dict[str, list[float]] = {}
        app = create_app(["models:/credit/1"])
        with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            for start in (0, 4, 11):
                rows = frame.iloc[start : start + 3 + start % 2]
                body = http.post("/predict", json=jsonable(rows)).json()
                assert body["predictions"] == model.predict(rows).tolist()
                for i, row in zip(body["ids"], jsonable(rows), strict=True):
                    sent[i] = row
                predicted.update(zip(body["ids"], body["predictions"], strict=True))
                probs.update(zip(body["ids"], body["probabilities"], strict=True))
            labelled = sorted(sent)[:5]
            labels = {pid: (k + 1) % 2 for k, pid in enumerate(labelled)}
            r = http.post(
                "/feedback",
                json={"labels": [{"prediction_id": p, "label": v} for p, v in labels.items()]},
            )
            assert r.status_code == 202, r.text
            assert r.json() == {"accepted": 5, "model": "credit"}
            r = http.post(
                "/feedback",
                json={"model": "credit", "labels": [{"prediction_id": labelled[0], "label": 1}]},
            )
            assert r.status_code == 202
            labels[labelled[0]] = 1  # the latest label wins
            # Malformed feedback is refused, and refused feedback is not logged.
            assert http.post("/feedback", json={"labels": "x"}).status_code == 422
            r = http.post("/feedback", json={"labels": [{"label": 1}]})
            assert r.status_code == 422 and r.json()["row"] == 0
            r = http.post("/feedback", json={"model": "nope", "labels": []})
            assert r.status_code == 404 and "credit" in r.json()["error"]
        # The server has stopped: the prediction log was flushed on shutdown.

        logged = read_predictions(base, "credit")
        assert sorted(logged["prediction_id"]) == sorted(sent)
        assert (logged["model"] == "credit").all() and (logged["version"] == 1).all()
        for rec in logged.to_dict(orient="records"):
            pid = rec["prediction_id"]
            for col in FEATURES:
                assert rec[f"input.{col}"] == sent[pid][col], (pid, col)
            assert rec["prediction"] == predicted[pid]
            assert np.allclose([rec["proba.0"], rec["proba.1"]], probs[pid])
        feedback = read_feedback(base, "credit")
        assert len(feedback) == 6
        assert set(feedback["prediction_id"]) == set(labelled)
        joined = join_feedback(logged, feedback).set_index("prediction_id")
        assert len(joined) == len(sent)
        for pid in sent:
            if pid in labels:
                assert joined.loc[pid, "label"] == labels[pid]
            else:
                assert pd.isna(joined.loc[pid, "label"])


# =============================================================================
# Metrics
# =============================================================================


def test_metrics_count_traffic_and_pass_promtool(env: SimpleNamespace, http: httpx.Client) -> None:
    before = http.get("/metrics").text
    rows_sent = 0
    for k in range(1, 6):
        assert http.post("/predict", json=jsonable(env.X.iloc[:k])).status_code == 200
        rows_sent += k
    for _ in range(3):
        bad = jsonable(env.X.iloc[:1])
        bad[0]["age"] = "old"
        assert http.post("/predict", json=bad).status_code == 422
    assert http.post("/models/churn/predict", json=jsonable(env.toy.iloc[1:3])).status_code == 200
    r = http.post("/v2/models/credit/infer", json={"inputs": v2_tensors(env.X.iloc[:2])})
    assert r.status_code == 200
    unknown = f"ghost-{uuid.uuid4().hex[:8]}"
    assert http.post(f"/models/{unknown}/predict", json=[]).status_code == 404
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    total = "shipway_requests_total"
    assert delta(total, model="credit", endpoint="predict", status="200") == 5
    assert delta(total, model="credit", endpoint="predict", status="422") == 3
    assert delta(total, model="churn", endpoint="predict", status="200") == 1
    assert delta(total, model="credit", endpoint="infer", status="200") == 1
    duration = "shipway_request_duration_seconds"
    assert delta(f"{duration}_count", model="credit", endpoint="predict") == 8
    assert delta(f"{duration}_sum", model="credit", endpoint="predict") > 0
    assert delta(f"{duration}_bucket", model="credit", endpoint="predict", le="+Inf") == 8
    # Sequential requests: one batch each; only valid rows reach the model.
    assert delta("shipway_batch_size_count", model="credit") == 6
    assert delta("shipway_batch_size_sum", model="credit") == rows_sent + 2
    assert delta("shipway_batch_size_bucket", model="credit", le="2.0") == 3  # 1, 2, 2
    assert metric(after, "shipway_model_info", model="credit", version="1", flavor="sklearn") == 1
    assert metric(after, "shipway_model_info", model="churn", version="1", flavor="python") == 1
    # A request for a model that is not served must not mint a new label value.
    assert unknown not in after
    assert metric(after, "shipway_requests_in_flight") == 0

    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=r.content, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


# =============================================================================
# Documentation
# =============================================================================


def test_docs_and_openapi_list_every_route(http: httpx.Client) -> None:
    r = http.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/predict": "post",
        "/models/{name}/predict": "post",
        "/feedback": "post",
        "/metrics": "get",
        "/v2": "get",
        "/v2/health/live": "get",
        "/v2/health/ready": "get",
        "/v2/models/{name}": "get",
        "/v2/models/{name}/ready": "get",
        "/v2/models/{name}/versions/{version}": "get",
        "/v2/models/{name}/versions/{version}/ready": "get",
        "/v2/models/{name}/infer": "post",
        "/v2/models/{name}/versions/{version}/infer": "post",
    }
    for path, method in expected.items():
        assert method in paths.get(path, {}), path
    for path in ("/predict", "/models/{name}/predict", "/v2/models/{name}/infer", "/feedback"):
        assert "requestBody" in paths[path]["post"], path
