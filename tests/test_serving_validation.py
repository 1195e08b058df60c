"""Request validation on a real server: every error class is a 4xx JSON answer naming the
column, row and what was expected; user input never causes a 500.

One server per module serves `credit` (scikit-learn) and `toy` (a python-function ToyModel with
int, float, bool, string, category and nullable float columns).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving_helpers import (
    FEATURES,
    live_server,
    records,
    register_toy,
    shipway_env,
    toy_expected,
    train_credit,
)
from shipway.serving import ServerSettings, create_app

HEADER = "Inference-Header-Content-Length"


class Env(SimpleNamespace):
    def __repr__(self) -> str:  # keeps hypothesis' failure reports short
        return "env"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    with shipway_env(tmp_path_factory.mktemp("serving-validation") / "home"):
        _, model, frame = train_credit()
        _, toy = register_toy("toy")
        app = create_app(["models:/credit/1", "models:/toy/1"])
        with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield Env(model=model, X=frame, toy=toy, http=http, url=url)


@pytest.fixture(scope="module")
def http(env: SimpleNamespace) -> httpx.Client:
    client: httpx.Client = env.http
    return client


def jsonable(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in records(frame)
    ]


def credit_rows(env: SimpleNamespace, n: int = 3) -> list[dict[str, Any]]:
    return jsonable(env.X.iloc[10 : 10 + n])


def toy_rows(env: SimpleNamespace, n: int = 3) -> list[dict[str, Any]]:
    return jsonable(env.toy.iloc[1 : 1 + n])


def split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"columns": columns, "data": [[r.get(c) for c in columns] for r in rows]}


def assert_422(
    r: httpx.Response,
    column: str | None = None,
    row: int | None = None,
    expected: str | None = None,
) -> dict[str, Any]:
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert isinstance(body["error"], str) and body["error"]
    if column is not None:
        assert body["column"] == column, body
        assert column in body["error"]
    if row is not None:
        assert body["row"] == row, body
    if expected is not None:
        assert body["expected"] == expected, body
    return body


# =============================================================================
# Native endpoints: one test per error class
# =============================================================================


def test_missing_column_in_records(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = credit_rows(env)
    del rows[2]["income"]
    body = assert_422(http.post("/predict", json=rows), "income", 2, "a number")
    assert "missing column" in body["error"]


def test_missing_column_in_split(env: SimpleNamespace, http: httpx.Client) -> None:
    body = split(credit_rows(env))
    i = body["columns"].index("housing")
    body["columns"].pop(i)
    for row in body["data"]:
        row.pop(i)
    expected = "one of [own, rent, mortgage]"
    assert_422(http.post("/predict", json=body), "housing", None, expected)
    r = http.post("/predict", json={"dataframe_split": body})
    assert_422(r, "housing", None, expected)


@pytest.mark.parametrize(
    ("model", "column", "value", "expected"),
    [
        ("credit", "age", "41", "an integer"),  # string in a numeric column
        ("credit", "income", "52000", "a number"),
        ("credit", "age", 3.5, "an integer"),  # lossy float in an int column
        ("credit", "age", True, "an integer"),  # a bool is not an integer
        ("credit", "income", [1.0], "a number"),
        ("credit", "income", {"v": 1}, "a number"),
        ("toy", "flag", 1, "true or false"),  # int in a bool column
        ("toy", "flag", "true", "true or false"),
        ("toy", "name", 5, "a string"),
        ("toy", "x", False, "a number"),
    ],
)
def test_wrong_type(
    env: SimpleNamespace, http: httpx.Client, model: str, column: str, value: Any, expected: str
) -> None:
    rows = credit_rows(env) if model == "credit" else toy_rows(env)
    rows[1][column] = value
    body = assert_422(http.post(f"/models/{model}/predict", json=rows), column, 1, expected)
    assert "row 1" in body["error"]


def test_unknown_category(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = credit_rows(env)
    rows[0]["employment"] = "astronaut"
    expected = "one of [salaried, self_employed, unemployed, retired]"
    body = assert_422(http.post("/predict", json=rows), "employment", 0, expected)
    assert "unknown category" in body["error"] and "astronaut" in body["error"]
    rows = toy_rows(env)
    rows[2]["color"] = "RED"  # categories are case-sensitive
    assert_422(http.post("/models/toy/predict", json=rows), "color", 2)


@pytest.mark.parametrize("column", ["income", "age", "employment"])
def test_null_in_a_non_nullable_column(
    env: SimpleNamespace, http: httpx.Client, column: str
) -> None:
    rows = credit_rows(env)
    rows[1][column] = None
    body = assert_422(http.post("/predict", json=rows), column, 1)
    assert "null is not allowed" in body["error"]
    assert_422(http.post("/predict", json=split(rows)), column, 1)


def test_wrong_row_width_in_split(env: SimpleNamespace, http: httpx.Client) -> None:
    body = split(credit_rows(env))
    body["data"][1] = body["data"][1][:-1]
    r = assert_422(http.post("/predict", json=body), None, 1)
    assert r["row"] == 1 and "7 values" in r["error"]
    body["data"][1] = "not a row"
    assert assert_422(http.post("/predict", json=body))["row"] == 1
    r = http.post("/predict", json={"dataframe_split": {"columns": "age", "data": []}})
    assert_422(r)


def test_record_that_is_not_an_object(env: SimpleNamespace, http: httpx.Client) -> None:
    rows: list[Any] = credit_rows(env)
    rows[1] = 5
    assert assert_422(http.post("/predict", json=rows))["row"] == 1


@pytest.mark.parametrize("body", [5, "rows", None, {"what": 1}, {"instances": 3}])
def test_unrecognised_body_shape(http: httpx.Client, body: Any) -> None:
    assert_422(http.post("/predict", content=json.dumps(body)))


def test_errors_name_the_first_bad_row_in_every_format(
    env: SimpleNamespace, http: httpx.Client
) -> None:
    rows = credit_rows(env, 5)
    rows[3]["debt_ratio"] = "high"
    for body in (
        rows,
        {"instances": rows},
        {"dataframe_records": rows},
        split(rows),
        {"dataframe_split": split(rows)},
    ):
        assert_422(http.post("/predict", json=body), "debt_ratio", 3, "a number")


def test_safe_widening_is_accepted(env: SimpleNamespace, http: httpx.Client) -> None:
    frame = env.X.iloc[30:34].copy()
    frame["income"] = frame["income"].round()  # whole numbers, sent as JSON ints
    rows = jsonable(frame)
    for row in rows:
        row["income"] = int(row["income"])  # int for a float column
        row["age"] = float(row["age"])  # 41.0 for an int column
    assert isinstance(rows[0]["income"], int) and isinstance(rows[0]["age"], float)
    r = http.post("/predict", json=rows)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == env.model.predict(frame).tolist()
    assert np.allclose(r.json()["probabilities"], env.model.predict_proba(frame))


def test_null_accepted_in_a_nullable_column(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = toy_rows(env)
    rows[0]["rate"] = None
    rows[1]["rate"] = 3  # int widened to float
    r = http.post("/models/toy/predict", json=rows)
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["predictions"], toy_expected(rows))


@pytest.mark.parametrize(
    "value",
    [2**63, 2**64 - 1, 1e19, -1e19, -1e300],
    ids=["2^63", "2^64-1", "1e19", "-1e19", "-1e300"],
)
def test_integer_out_of_int64_range(env: SimpleNamespace, http: httpx.Client, value: Any) -> None:
    rows = credit_rows(env)
    rows[2]["age"] = value
    assert_422(http.post("/predict", json=rows), "age", 2, "an integer")


def test_int64_limits_are_accepted(env: SimpleNamespace, http: httpx.Client) -> None:
    rows = toy_rows(env, 2)
    rows[0]["n"], rows[1]["n"] = 2**63 - 1, -(2**63)
    r = http.post("/models/toy/predict", json=rows)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body", [[], {"columns": FEATURES, "data": []}, {"instances": []}])
def test_no_rows_is_a_client_error(http: httpx.Client, body: Any) -> None:
    assert_422(http.post("/predict", json=body))


def test_columns_object_with_non_list_values(env: SimpleNamespace, http: httpx.Client) -> None:
    row = credit_rows(env, 1)[0]
    r = http.post("/predict", json={"inputs": {k: [v] for k, v in row.items()}})
    assert r.status_code == 200, r.text
    assert_422(http.post("/predict", json={"inputs": dict(row)}), "age")
    bad = {k: [v, v] for k, v in row.items()}
    bad["housing"] = [row["housing"]]
    assert_422(http.post("/predict", json={"inputs": bad}), "housing")


# =============================================================================
# Open Inference Protocol (v2)
# =============================================================================


def v2_body(env: SimpleNamespace, n: int = 3) -> dict[str, Any]:
    rows = credit_rows(env, n)
    types = {"age": "INT64", "credit_lines": "INT64", "months_employed": "INT64"}
    types |= {"income": "FP64", "debt_ratio": "FP64", "employment": "BYTES", "housing": "BYTES"}
    return {
        "inputs": [
            {"name": c, "datatype": types[c], "shape": [n, 1], "data": [r[c] for r in rows]}
            for c in FEATURES
        ]
    }


def tensor(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in body["inputs"] if t["name"] == name)
    return found


def infer(http: httpx.Client, body: Any) -> httpx.Response:
    return http.post("/v2/models/credit/infer", json=body)


def test_v2_valid_request_answers(env: SimpleNamespace, http: httpx.Client) -> None:
    r = infer(http, v2_body(env))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == env.model.predict(env.X.iloc[10:13]).tolist()


def test_v2_missing_tensor(env: SimpleNamespace, http: httpx.Client) -> None:
    body = v2_body(env)
    body["inputs"] = [t for t in body["inputs"] if t["name"] != "debt_ratio"]
    assert_422(infer(http, body), "debt_ratio", None, "FP64")


@pytest.mark.parametrize(
    ("column", "datatype", "expected"),
    [("income", "BYTES", "FP64"), ("age", "FP64", "INT64"), ("housing", "INT64", "BYTES")],
)
def test_v2_wrong_datatype(
    env: SimpleNamespace, http: httpx.Client, column: str, datatype: str, expected: str
) -> None:
    body = v2_body(env)
    tensor(body, column)["datatype"] = datatype
    r = assert_422(infer(http, body), column, None, expected)
    assert datatype in r["error"]


def test_v2_widening_datatypes_accepted(env: SimpleNamespace, http: httpx.Client) -> None:
    body = v2_body(env)
    tensor(body, "age")["datatype"] = "INT32"
    tensor(body, "income")["datatype"] = "INT64"
    tensor(body, "income")["data"] = [int(v) for v in tensor(body, "income")["data"]]
    tensor(body, "debt_ratio")["datatype"] = "FP32"
    r = infer(http, body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "change",
    [
        {"shape": [3, 1], "data": [1, 2]},  # data shorter than the shape
        {"shape": [2, 1], "data": [1, 2, 3]},  # longer
        {"shape": [3, 2], "data": [1, 2, 3, 4, 5, 6]},  # not one column
        {"shape": [3, 1, 1], "data": [1, 2, 3]},
        {"shape": [-3], "data": [1, 2, 3]},
        {"shape": "3", "data": [1, 2, 3]},
        {"shape": [3.0], "data": [1, 2, 3]},
    ],
)
def test_v2_shape_and_data_mismatch(
    env: SimpleNamespace, http: httpx.Client, change: dict[str, Any]
) -> None:
    body = v2_body(env)
    tensor(body, "age").update(change)
    assert_422(infer(http, body), "age")


def test_v2_inputs_with_different_row_counts(env: SimpleNamespace, http: httpx.Client) -> None:
    body = v2_body(env)
    t = tensor(body, "housing")
    t["shape"], t["data"] = [2, 1], t["data"][:2]  # consistent in itself, not with the rest
    r = assert_422(infer(http, body), "housing")
    assert "2 rows" in r["error"] and "3" in r["error"]


def test_v2_value_errors_name_column_and_row(env: SimpleNamespace, http: httpx.Client) -> None:
    body = v2_body(env)
    tensor(body, "employment")["data"][2] = "astronaut"
    assert_422(infer(http, body), "employment", 2)
    body = v2_body(env)
    tensor(body, "age")["data"][1] = 3.5
    assert_422(infer(http, body), "age", 1, "an integer")
    body = v2_body(env)
    tensor(body, "income")["data"][0] = None
    assert_422(infer(http, body), "income", 0)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"inputs": {}},
        {"inputs": [5]},
        {"inputs": [{"datatype": "INT64"}]},
        [],
        "inputs",
    ],
)
def test_v2_malformed_structure(http: httpx.Client, body: Any) -> None:
    assert_422(http.post("/v2/models/credit/infer", content=json.dumps(body)))


def test_v2_bad_parameters_and_outputs(env: SimpleNamespace, http: httpx.Client) -> None:
    for key, value in [
        ("parameters", [1]),
        ("parameters", "binary"),
        ("outputs", [{"name": "predict", "parameters": 5}]),
    ]:
        body = v2_body(env)
        body[key] = value
        assert "'parameters' must be an object" in assert_422(infer(http, body))["error"]
    body = v2_body(env)
    body["outputs"] = "predict"  # not a list: the default outputs
    assert [o["name"] for o in infer(http, body).json()["outputs"]] == ["predict", "predict_proba"]
    body = v2_body(env)
    tensor(body, "age")["parameters"] = [1]
    assert_422(infer(http, body), "age")
    for size in ("x", -8, [8], 1.5):
        body = v2_body(env)
        tensor(body, "age")["parameters"] = {"binary_data_size": size}
        assert_422(infer(http, body))


def _binary_request(json_part: dict[str, Any], blob: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(json_part).encode()
    return head + blob, {HEADER: str(len(head)), "content-type": "application/octet-stream"}


def test_v2_binary_tensor_errors(env: SimpleNamespace, http: httpx.Client) -> None:
    body = v2_body(env, 1)
    t = tensor(body, "housing")
    del t["data"]

    def send(blob: bytes, size: int | None = None) -> httpx.Response:
        t["parameters"] = {"binary_data_size": len(blob) if size is None else size}
        content, headers = _binary_request(body, blob)
        return http.post("/v2/models/credit/infer", content=content, headers=headers)

    good = struct.pack("<I", 3) + b"own"
    assert send(good).status_code == 200
    assert_422(send(struct.pack("<I", 2) + b"\xff\xfe"), "housing")  # not UTF-8
    assert_422(send(b"\x01\x00"), "housing")  # truncated length prefix
    assert_422(send(struct.pack("<I", 9) + b"own"), "housing")  # truncated string
    assert_422(send(good, size=len(good) + 10))  # more than the body holds

    body = v2_body(env, 2)
    age = tensor(body, "age")
    del age["data"]
    blob = np.array([41], dtype=np.int64).tobytes()  # 1 value for shape [2, 1]
    age["parameters"] = {"binary_data_size": len(blob)}
    content, headers = _binary_request(body, blob)
    r = http.post("/v2/models/credit/infer", content=content, headers=headers)
    assert_422(r, "age")

    for value in ("x", "-1", "99999"):
        r = http.post(
            "/v2/models/credit/infer",
            content=json.dumps(v2_body(env)).encode(),
            headers={HEADER: value},
        )
        assert r.status_code in (400, 422), (value, r.text)


@pytest.mark.parametrize(
    ("value", "datatype"),
    [(math.inf, "FP64"), (-math.inf, "FP64"), (math.nan, "FP64"), (math.inf, "FP32")],
)
def test_v2_binary_non_finite_floats(
    env: SimpleNamespace, http: httpx.Client, value: float, datatype: str
) -> None:
    """JSON cannot carry NaN or infinity, but binary tensors can: they are refused too."""
    body = v2_body(env, 2)
    income = tensor(body, "income")
    del income["data"]
    income["datatype"] = datatype
    blob = np.array([52000.0, value], dtype=np.float64 if datatype == "FP64" else np.float32)
    income["parameters"] = {"binary_data_size": blob.nbytes}
    content, headers = _binary_request(body, blob.tobytes())
    r = http.post("/v2/models/credit/infer", content=content, headers=headers)
    assert_422(r, "income", 1, "a number")


def test_v2_internal_keys_cannot_be_injected(env: SimpleNamespace, http: httpx.Client) -> None:
    body = v2_body(env, 1)
    tensor(body, "age")["_binary"] = "abcdefgh"  # 8 bytes, as an INT64 would take
    tensor(body, "housing")["_binary"] = [1, 2]
    r = infer(http, body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == env.model.predict(env.X.iloc[10:11]).tolist()


# =============================================================================
# Malformed JSON, body limits
# =============================================================================


@pytest.mark.parametrize("path", ["/predict", "/v2/models/credit/infer", "/feedback"])
@pytest.mark.parametrize("raw", [b"{", b"[1, 2", b"", b"\xff\xfe", b"NaN", b"{'a': 1}"])
def test_malformed_json_is_400(http: httpx.Client, path: str, raw: bytes) -> None:
    r = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert "not valid JSON" in r.json()["error"]


def test_feedback_with_bad_model_field(http: httpx.Client) -> None:
    for model in ([1], 5, None, {"a": 1}):
        r = http.post("/feedback", json={"model": model, "labels": []})
        assert r.status_code in (404, 422), (model, r.status_code, r.text)
        assert "error" in r.json()


@pytest.fixture(scope="module")
def small(env: SimpleNamespace) -> Iterator[httpx.Client]:
    """A second server, over the same store, with a 1000-byte body limit."""
    app = create_app(["models:/credit/1"], ServerSettings(max_body_bytes=1000))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("path", ["/predict", "/v2/models/credit/infer", "/feedback"])
def test_body_over_the_limit_is_413(env: SimpleNamespace, small: httpx.Client, path: str) -> None:
    big = json.dumps({"instances": credit_rows(env, 20)}).encode()
    assert len(big) > 1000
    r = small.post(path, content=big, headers={"content-type": "application/json"})
    assert "content-length" in r.request.headers
    assert r.status_code == 413, r.text
    assert "1000-byte limit" in r.json()["error"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    r = small.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413, r.text
    assert "error" in r.json()


def test_body_under_the_limit_is_answered(env: SimpleNamespace, small: httpx.Client) -> None:
    rows = credit_rows(env, 2)
    raw = json.dumps(rows).encode()
    assert len(raw) < 1000
    assert small.post("/predict", content=raw).status_code == 200

    def chunks() -> Iterator[bytes]:
        yield raw[:50]
        yield raw[50:]

    r = small.post("/predict", content=chunks())
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == env.model.predict(env.X.iloc[10:12]).tolist()


# =============================================================================
# Property: arbitrary input never causes a 500
# =============================================================================

PROPERTY = settings(
    max_examples=int(os.environ.get("SHIPWAY_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["salaried", "own", "INT64", "FP64", "BYTES", *FEATURES]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=10) | st.sampled_from([*FEATURES, "inputs", "data", "columns"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


def check_answer(r: httpx.Response) -> None:
    assert r.status_code in (200, 400, 404, 413, 422), (r.status_code, r.text)
    if r.status_code != 200:
        assert isinstance(r.json()["error"], str)


def still_answers(env: SimpleNamespace, http: httpx.Client) -> None:
    r = http.post("/predict", json=credit_rows(env))
    assert r.status_code == 200
    assert infer(http, v2_body(env)).status_code == 200


def _mutate(body: Any, path: list[int], value: Any) -> Any:
    """`body` with the node reached by following `path` (indices modulo sizes) set to `value`."""
    if not path or not isinstance(body, dict | list) or not body:
        return value
    if isinstance(body, dict):
        key = sorted(body)[path[0] % len(body)]
        return {**body, key: _mutate(body[key], path[1:], value)}
    i = path[0] % len(body)
    return [*body[:i], _mutate(body[i], path[1:], value), *body[i + 1 :]]


paths = st.lists(st.integers(0, 50), max_size=5)


@PROPERTY
@given(body=json_values)
def test_property_arbitrary_json_never_500(env: SimpleNamespace, body: Any) -> None:
    http = env.http
    raw = json.dumps(body)  # `json=None` would send no body at all
    check_answer(http.post("/predict", content=raw))
    check_answer(http.post("/v2/models/credit/infer", content=raw))
    check_answer(http.post("/models/toy/predict", content=raw))


@PROPERTY
@given(path=paths, value=json_values, fmt=st.sampled_from(["records", "split", "v2"]))
def test_property_mutated_valid_requests_never_500(
    env: SimpleNamespace, path: list[int], value: Any, fmt: str
) -> None:
    http = env.http
    if fmt == "v2":
        body = _mutate(v2_body(env, 2), path, value)
        check_answer(http.post("/v2/models/credit/infer", json=body))
    else:
        rows = credit_rows(env, 2)
        body = _mutate(rows if fmt == "records" else split(rows), path, value)
        check_answer(http.post("/predict", json=body))


@PROPERTY
@given(raw=st.binary(max_size=300), header=st.none() | st.integers(-5, 400).map(str))
def test_property_arbitrary_bytes_never_500(
    env: SimpleNamespace, raw: bytes, header: str | None
) -> None:
    http = env.http
    check_answer(http.post("/predict", content=raw))
    headers = {HEADER: header} if header is not None else {}
    check_answer(http.post("/v2/models/credit/infer", content=raw, headers=headers))


def test_server_still_answers_after_the_property_tests(
    env: SimpleNamespace, http: httpx.Client
) -> None:
    still_answers(env, http)
    metrics = http.get("/metrics").text
    assert 'status="500"' not in metrics
