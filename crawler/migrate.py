"""Run the alembic migrations programmatically (what `monitor db upgrade` and crawls call).

Every crawl process and every `monitor run` makes sure the schema is current. When the
database already says it is at HEAD, that costs one query instead of loading alembic and its
scripts (a third of a second, paid by every crawl of a daemon's life).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

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


def current_revision(database_url: str) -> str | None:
    """Return the revision the database is at (None: not migrated yet, or unreadable)."""
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
