"""Run the alembic migrations programmatically (what `monitor db upgrade` and crawls call)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from crawler.config import PROJECT_ROOT


def alembic_config(database_url: str) -> Config:
    """Return the project's alembic configuration aimed at `database_url`."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at `database_url` up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)
