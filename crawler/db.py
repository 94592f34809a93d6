"""Engine and session factory; SQLite gets WAL mode and a busy timeout."""

from __future__ import annotations

import weakref
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """Return an engine for `database_url`, creating the SQLite file's folder if needed."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True)


_shared: weakref.WeakSet[Engine] = weakref.WeakSet()


@lru_cache(maxsize=8)
def engine_for(database_url: str) -> Engine:
    """Return the shared engine of this process for `database_url`."""
    engine = make_engine(database_url)
    _shared.add(engine)
    return engine


def dispose_engines() -> None:
    """Close the pooled connections of every shared engine of this process.

    A process that ends without tearing its interpreter down calls this first: SQLite moves
    its write-ahead log into the database file when the file's last connection closes, and
    until then a copy of the file alone lacks the latest transactions.
    """
    for engine in list(_shared):
        engine.dispose()


def session_factory(database_url: str) -> sessionmaker[Session]:
    """Return a session factory bound to the shared engine for `database_url`."""
    return sessionmaker(engine_for(database_url), expire_on_commit=False)
