"""Prove the server fixtures in conftest.py start real, isolated services."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import s3fs
import sqlalchemy as sa

from servers import PostgresServer, S3Server

# Shared across the two "distinct database" tests below.
_seen_databases: list[str] = []


def _check_fresh_database(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            name = conn.execute(sa.text("select current_database()")).scalar_one()
            tables = sa.inspect(conn).get_table_names()
            assert tables == [], f"database {name} is not empty: {tables}"
            assert name not in _seen_databases
            _seen_databases.append(name)
            # Leave a table behind: the other test must not see it.
            conn.execute(sa.text("create table leftover (id int)"))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_url_is_a_real_postgresql(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    assert postgres_url.startswith(
        f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/"
    )
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("select version()")).scalar_one()
    finally:
        engine.dispose()
    assert "PostgreSQL" in version


@pytest.mark.postgres
def test_postgres_url_gives_fresh_database_a(postgres_url: str) -> None:
    _check_fresh_database(postgres_url)


@pytest.mark.postgres
def test_postgres_url_gives_fresh_database_b(postgres_url: str) -> None:
    _check_fresh_database(postgres_url)


@pytest.mark.parametrize("run", [1, 2])
def test_s3_bucket_is_fresh_and_reachable_with_default_s3fs(
    run: int, s3_bucket_url: str, s3_endpoint: str, s3_server: S3Server
) -> None:
    assert s3_bucket_url.startswith("s3://shipway-test-")
    assert s3_bucket_url.endswith("/artifacts")
    bucket = s3_bucket_url.removeprefix("s3://").split("/")[0]

    fs = s3fs.S3FileSystem()  # default args: endpoint must come from AWS_ENDPOINT_URL
    assert fs.ls(bucket) == []
    path = f"{s3_bucket_url.removeprefix('s3://')}/run{run}/hello.txt"
    with fs.open(path, "wb") as fh:
        fh.write(b"hello shipway")
    with fs.open(path, "rb") as fh:
        assert fh.read() == b"hello shipway"

    # The object really lives in moto: read it back through an independent boto3 client.
    body = s3_server.client().get_object(Bucket=bucket, Key=path.split("/", 1)[1])["Body"].read()
    assert body == b"hello shipway"
    assert s3_endpoint == s3_server.endpoint_url


def test_s3_storage_options_work_without_env(s3_server: S3Server) -> None:
    assert "AWS_ENDPOINT_URL" not in os.environ
    bucket = "shipway-explicit-options"
    s3_server.create_bucket(bucket)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options)
    fs.pipe(f"{bucket}/x.bin", b"\x00\x01")
    assert fs.cat(f"{bucket}/x.bin") == b"\x00\x01"


def test_shipway_home(shipway_home: Path) -> None:
    assert shipway_home.is_dir()
    assert os.environ["SHIPWAY_HOME"] == str(shipway_home)
    assert "SHIPWAY_DATABASE_URL" not in os.environ
    assert "SHIPWAY_ARTIFACT_URL" not in os.environ
