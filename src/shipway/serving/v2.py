"""The Open Inference Protocol (v2, KServe/Triton) REST codec, binary tensor extension included.

A model's signature maps to one input tensor per column (BYTES for strings and categories) and
to the outputs `predict` and, for classifiers, `predict_proba`, so standard clients such as
`tritonclient.http` work unchanged.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from shipway.serving.runtime import ServedModel
from shipway.serving.validation import Columns, ValidationError
from shipway.types import ColumnSpec

HEADER = "inference-header-content-length"

DATATYPE = {
    "int64": "INT64",
    "float64": "FP64",
    "bool": "BOOL",
    "string": "BYTES",
    "category": "BYTES",
    "datetime": "BYTES",
}
# Tensor types each column accepts: its own, and those that widen to it without loss.
ACCEPTS = {
    "int64": {"INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"},
    "float64": {
        "FP64",
        "FP32",
        "FP16",
        "INT64",
        "INT32",
        "INT16",
        "INT8",
        "UINT32",
        "UINT16",
        "UINT8",
    },
    "bool": {"BOOL"},
    "string": {"BYTES"},
    "category": {"BYTES"},
    "datetime": {"BYTES"},
}
NUMPY = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def tensor_metadata(served: ServedModel) -> dict[str, Any]:
    out = [{"name": "predict", "datatype": _output_type(served), "shape": [-1]}]
    if served.has_proba:
        k = len(served.classes) if served.classes else -1
        out.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, k]})
    return {
        "name": served.name,
        "versions": [str(served.version)],
        "platform": f"shipway-{served.flavor}",
        "inputs": [
            {"name": s.name, "datatype": DATATYPE[s.dtype], "shape": [-1, 1]}
            for s in served.signature.inputs
        ],
        "outputs": out,
    }


def _output_type(served: ServedModel) -> str:
    out = served.signature.output
    return DATATYPE.get(out.dtype, "BYTES") if out else "BYTES"


def split_body(raw: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON part of a request and, with the binary extension, the raw tensor bytes after it."""
    if header_length is None:
        json_part, binary = raw, b""
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise ValidationError(f"Header {HEADER} must be a whole number.") from None
        if not 0 <= n <= len(raw):
            raise ValidationError(f"Header {HEADER} ({n}) is larger than the body.")
        json_part, binary = raw[:n], raw[n:]
    body = orjson.loads(json_part)  # MalformedRequestError is raised by the caller
    if not isinstance(body, dict):
        raise ValidationError("An inference request is a JSON object with 'inputs'.")
    return body, binary


def _decode_bytes(buf: bytes, count: int, name: str) -> list[Any]:
    out, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(buf):
            raise ValidationError(f"Input '{name}': binary BYTES data is truncated.", column=name)
        (length,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + length > len(buf):
            raise ValidationError(f"Input '{name}': binary BYTES data is truncated.", column=name)
        try:
            out.append(buf[pos : pos + length].decode("utf-8", errors="strict"))
        except UnicodeDecodeError:
            raise ValidationError(
                f"Input '{name}', row {len(out)}: BYTES element is not UTF-8 text.",
                column=name,
                row=len(out),
            ) from None
        pos += length
    return out


def _parameters(owner: dict[str, Any], what: str, column: str | None = None) -> dict[str, Any]:
    params = owner.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValidationError(f"{what}: 'parameters' must be an object.", column=column)
    return params


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list) and data and isinstance(data[0], list):
        return [v for row in data for v in (row if isinstance(row, list) else [row])]
    if not isinstance(data, list):
        return [data]
    return data


def decode_inputs(served: ServedModel, body: dict[str, Any], binary: bytes) -> tuple[Columns, int]:
    tensors = body.get("inputs")
    if not isinstance(tensors, list):
        raise ValidationError("'inputs' must be a list of tensors.")
    by_name: dict[str, dict[str, Any]] = {}
    binaries: dict[str, bytes] = {}
    offset = 0
    for t in tensors:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ValidationError("Each input tensor needs a 'name'.")
        name = t["name"]
        by_name[name] = t
        size = _parameters(t, f"Input '{name}'", name).get("binary_data_size")
        if size is not None:
            if type(size) is not int or not 0 <= size <= len(binary) - offset:
                raise ValidationError(
                    f"Input '{name}': binary_data_size {_show(size)} does not fit the "
                    f"{len(binary) - offset} bytes of binary data left.",
                    column=name,
                )
            binaries[name] = binary[offset : offset + size]
            offset += size
    raw_columns: Columns = {}
    rows: int | None = None
    for spec in served.signature.inputs:
        tensor = by_name.get(spec.name)
        if tensor is None:
            raise ValidationError(
                f"Missing input tensor '{spec.name}' ({DATATYPE[spec.dtype]}).",
                column=spec.name,
                expected=DATATYPE[spec.dtype],
            )
        values, n = _tensor_values(spec, tensor, binaries.get(spec.name))
        if rows is None:
            rows = n
        elif n != rows:
            raise ValidationError(
                f"Input '{spec.name}' has {n} rows but the other inputs have {rows}.",
                column=spec.name,
            )
        raw_columns[spec.name] = values
    checked = served.validator.check(raw_columns)
    return checked, rows or 0


def _tensor_values(
    spec: ColumnSpec, tensor: dict[str, Any], buf: bytes | None
) -> tuple[list[Any], int]:
    name, datatype, shape = spec.name, tensor.get("datatype"), tensor.get("shape")
    if not isinstance(datatype, str) or datatype not in ACCEPTS[spec.dtype]:
        raise ValidationError(
            f"Input '{name}': datatype {datatype} does not fit a {spec.dtype} column; "
            f"expected {DATATYPE[spec.dtype]}.",
            column=name,
            expected=DATATYPE[spec.dtype],
        )
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise ValidationError(
            f"Input '{name}': shape {shape} is not [rows] or [rows, 1].",
            column=name,
            expected="[rows] or [rows, 1]",
        )
    n = shape[0]
    if buf is not None:
        if datatype == "BYTES":
            values = _decode_bytes(buf, n, name)
        else:
            dtype = np.dtype(NUMPY[datatype])
            if len(buf) != n * dtype.itemsize:
                raise ValidationError(
                    f"Input '{name}': {len(buf)} bytes of binary data do not hold shape "
                    f"{shape} of {datatype}.",
                    column=name,
                )
            values = np.frombuffer(buf, dtype=dtype).tolist()
    else:
        values = _flatten(tensor.get("data"))
    if len(values) != math.prod(shape):
        raise ValidationError(
            f"Input '{name}': shape {shape} holds {math.prod(shape)} values but data has "
            f"{len(values)}.",
            column=name,
            expected=f"{math.prod(shape)} values",
        )
    if datatype in ("FP16", "FP32"):  # widened to float64, not a lossy cast
        values = [float(v) if isinstance(v, int | float) else v for v in values]
    return values, n


def encode_outputs(
    served: ServedModel,
    result: dict[str, list[Any]],
    body: dict[str, Any],
    rows: int,
    ids: list[str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body, with binary outputs where the client asked for them.

    The rows' prediction ids travel in the response's `parameters`, so that feedback can be
    attached to v2 predictions as to native ones.
    """
    requested = body.get("outputs")
    wanted: dict[str, bool] = {}
    default_binary = bool(_parameters(body, "The request").get("binary_data_output", False))
    if isinstance(requested, list) and requested:
        for o in requested:
            if isinstance(o, dict) and isinstance(o.get("name"), str):
                params = _parameters(o, f"Output '{o['name']}'")
                wanted[o["name"]] = bool(params.get("binary_data", False))
    else:
        wanted = {"predict": default_binary}
        if "probabilities" in result:
            wanted["predict_proba"] = default_binary
    outputs, blobs = [], []
    for name, binary in wanted.items():
        if name == "predict":
            datatype, shape, data = _output_type(served), [rows], result["predictions"]
        elif name == "predict_proba" and "probabilities" in result:
            probs = result["probabilities"]
            width = len(probs[0]) if probs else (len(served.classes or []) or 0)
            datatype, shape, data = "FP64", [rows, width], [v for row in probs for v in row]
        else:
            raise ValidationError(f"Unknown output '{name}'.", expected="predict or predict_proba")
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            blob = _encode_binary(datatype, data)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = data
        outputs.append(entry)
    response: dict[str, Any] = {
        "model_name": served.name,
        "model_version": str(served.version),
        "outputs": outputs,
    }
    if "id" in body:
        response["id"] = body["id"]
    if ids is not None:
        response["parameters"] = {"prediction_ids": ids}
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER: str(len(head)),
    }


def _encode_binary(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in data:
            b = str(v).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.asarray(data, dtype=NUMPY[datatype]).tobytes()
