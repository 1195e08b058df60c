"""Datasets logged with a run: a content hash, a schema, a row count, and the data as Parquet."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from shipway.errors import InvalidInputError


def content_hash(df: Any) -> tuple[str, list[dict[str, Any]]]:
    """Content hash and schema of a DataFrame.

    The hash covers the schema and the values row by row (pandas' own row hashing), not the
    Parquet bytes, so the same data hashes the same whatever library version wrote it.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(
            f"log_dataset expects a pandas DataFrame, got {type(df).__name__}.",
            "Convert it first, for example pandas.DataFrame(data).",
        )
    schema = [{"name": str(c), "dtype": str(t)} for c, t in df.dtypes.items()]
    h = hashlib.sha256(json.dumps(schema, sort_keys=True).encode())
    try:
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    except TypeError as exc:  # unhashable cells such as lists
        raise InvalidInputError(f"Cannot hash this DataFrame's values: {exc}.") from exc
    return h.hexdigest(), schema


def describe(df: Any) -> tuple[str, list[dict[str, Any]], bytes]:
    """Content hash, schema and Parquet bytes of a DataFrame (see `content_hash`)."""
    digest, schema = content_hash(df)
    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False)
    except Exception as exc:
        raise InvalidInputError(f"Cannot store this DataFrame as Parquet: {exc}.") from exc
    return digest, schema, buf.getvalue()
