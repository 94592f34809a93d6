"""Shared fixtures: databases (SQLite file always, PostgreSQL when one answers on 127.0.0.1:5432)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_URL = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"


def postgres_answers() -> bool:
    """Return True when a PostgreSQL server accepts connections on 127.0.0.1:5432."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            pass
    except OSError:
        return False
    import psycopg

    try:
        with psycopg.connect(
            f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres", connect_timeout=3
        ):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """Return the URL of a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'monitor.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Return the URL of a fresh PostgreSQL database, dropped afterwards; skip if no server."""
    if not postgres_answers():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432: PostgreSQL tests SKIPPED")
    import psycopg

    name = f"monitor_test_{uuid.uuid4().hex[:10]}"
    dsn = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        from crawler.db import engine_for

        engine_for.cache_clear()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """Return a fresh database URL on each backend (PostgreSQL skipped when absent)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
