"""Shared pytest fixtures for the Shipway test suite.

Sections are independent; add new fixtures in their own clearly marked section.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipway
from servers import PostgresServer, S3Server, start_postgres, start_s3

# =============================================================================
# Isolated Shipway home
# =============================================================================


@pytest.fixture
def shipway_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory set as $SHIPWAY_HOME, with database/artifact URL overrides unset."""
    home = tmp_path / "shipway-home"
    home.mkdir()
    monkeypatch.setenv("SHIPWAY_HOME", str(home))
    monkeypatch.delenv("SHIPWAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
    return home


# =============================================================================
# PostgreSQL (real server, one per test session)
# =============================================================================


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server (trust auth, user ``postgres``) for the whole session.

    Its files live in a directory of their own under /tmp, not under pytest's base directory:
    any other pytest session that starts meanwhile resets ``/tmp/pytest-of-USER`` to mode 0700,
    which would lock the ``postgres`` user out of its own data directory.
    """
    base = Path(tempfile.mkdtemp(prefix="shipway-pgdata-"))
    server = start_postgres(base)
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a brand-new, empty database (``postgresql+psycopg://...``)."""
    name = f"shipway_test_{uuid.uuid4().hex[:12]}"
    return postgres_server.create_database(name)


# =============================================================================
# S3 (moto server mode, one per test session)
# =============================================================================


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server running in-process on 127.0.0.1 for the whole session."""
    server = start_s3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_endpoint(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """The moto endpoint URL; also points boto3/botocore/s3fs at it via the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    # Keep a developer's real AWS config/session out of the tests.
    for var in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    # s3fs caches filesystem instances by constructor args; drop any built under another env.
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3_server.endpoint_url


@pytest.fixture
def s3_bucket_url(s3_server: S3Server, s3_endpoint: str) -> str:
    """``s3://<fresh bucket>/artifacts``; the AWS_* env (see ``s3_endpoint``) is set."""
    bucket = f"shipway-test-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    return f"s3://{bucket}/artifacts"


# =============================================================================
# Metadata store backends (SQLite and PostgreSQL): a Client over each
# =============================================================================


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(
    request: pytest.FixtureRequest, shipway_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[shipway.Client]:
    """A ``shipway.Client()`` built from the environment, over SQLite or PostgreSQL.

    SQLite is the embedded default under ``shipway_home``; for PostgreSQL the fixture sets
    ``SHIPWAY_DATABASE_URL`` to a fresh database. Artefacts stay under ``shipway_home``. The
    environment is left set, so subprocesses given ``os.environ`` use the same store.
    """
    if request.param == "postgres":
        monkeypatch.setenv("SHIPWAY_DATABASE_URL", request.getfixturevalue("postgres_url"))
    client = shipway.Client()
    try:
        yield client
    finally:
        if "store" in client.__dict__:  # only close what was opened
            client.store.close()
