"""Shared test fixtures: a migrated database on SQLite always, and on PostgreSQL when
SILTA_TEST_DATABASE_URL is set, plus an application client on top of it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.store.database import Database
from gateway.store.migrate import upgrade

POSTGRES_URL = os.environ.get("SILTA_TEST_DATABASE_URL")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES_URL,
            reason="SILTA_TEST_DATABASE_URL is not set: no PostgreSQL server to test against",
        ),
    ),
]


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session, migrated once."""
    assert POSTGRES_URL is not None
    admin_url = make_url(POSTGRES_URL)
    name = f"silta_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'silta.db'}")
        upgrade(db.engine)
    else:
        url = request.getfixturevalue("postgres_database_url")
        db = Database(url)
        with db.engine.begin() as conn:
            names = conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename <> 'alembic_version'"
                )
            ).scalars()
            tables = ", ".join(f'"{name}"' for name in names)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def settings(database: Database) -> Settings:
    """Settings of the FHIR core tests: no authentication (the trust layer's tests in
    tests/policy and tests/api/test_auth_enforcement.py turn it on)."""
    return Settings(
        database_url=database.url,
        public_base_url="http://testserver/fhir",
        auth_required=False,
        outbox_dispatcher=False,
    )


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    app = create_app(settings, database=database, migrate=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
