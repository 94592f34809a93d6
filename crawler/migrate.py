"""Run the alembic migrations programmatically (what `monitor db upgrade` and crawls call).

Every crawl process and every `monitor run` makes sure the schema is current. When the
database already says it is at HEAD, that costs one query instead of loading alembic and its
scripts (a third of a second, paid by every crawl of a daemon's life). A SQLite file is asked
with the standard library's sqlite3, without importing SQLAlchemy: `monitor run --once`
starts its crawl child right after this check, and SQLAlchemy's import (0.2 s) then happens
beside the child's start-up instead of before it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.config import PROJECT_ROOT

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration's revision; tests/test_migrations.py checks it against alembic's head.
HEAD = "0004"


def alembic_config(database_url: str) -> Config:
    """Return the project's alembic configuration aimed at `database_url`."""
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def _sqlite_file(database_url: str) -> Path | None:
    """Return the file of a plain `sqlite:///PATH` URL, or None for any other URL.

    Only URLs that need no decoding are read here (no query, no %-escape): any other goes
    through SQLAlchemy, which knows every form.
    """
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if database_url.startswith(prefix):
            path = database_url[len(prefix) :]
            if path and path != ":memory:" and not set("?%#") & set(path):
                return Path(path)
    return None


def _sqlite_revision(path: Path) -> str | None:
    """Return the revision recorded in a SQLite file, read-only (None if none is)."""
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        rows = connection.execute("select version_num from alembic_version").fetchall()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return rows[0][0] if len(rows) == 1 else None


def current_revision(database_url: str) -> str | None:
    """Return the revision the database is at (None: not migrated yet, or unreadable)."""
    sqlite_file = _sqlite_file(database_url)
    if sqlite_file is not None:
        return _sqlite_revision(sqlite_file)
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from crawler.db import engine_for

    try:
        with engine_for(database_url).connect() as connection:
            rows = connection.execute(text("select version_num from alembic_version")).all()
    except SQLAlchemyError:
        return None
    return rows[0][0] if len(rows) == 1 else None


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at `database_url` up to `revision`."""
    if revision in ("head", HEAD) and current_revision(database_url) == HEAD:
        return
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
