"""The schema exists only through alembic: upgrade, downgrade, and no drift from the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from crawler.db import make_engine
from crawler.migrate import HEAD, alembic_config, upgrade
from crawler.models import Base

TABLES = {"sources", "articles", "article_versions", "crawl_runs", "alerts", "deliveries"}


def test_upgrade_creates_every_table_and_matches_models(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_downgrade_removes_tables(database_url: str) -> None:
    from alembic import command

    upgrade(database_url)
    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "base")
    engine = make_engine(database_url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
    finally:
        engine.dispose()


def test_head_constant_is_alembic_head_and_a_current_database_skips_alembic(
    database_url: str,
) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    from crawler.migrate import HEAD, current_revision

    config = alembic_config(database_url)
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    command.downgrade(config, "base")
    assert current_revision(database_url) is None
    command.upgrade(config, "0002")
    assert current_revision(database_url) == "0002"
    upgrade(database_url)  # not at head: alembic runs the rest
    assert current_revision(database_url) == HEAD
    engine = make_engine(database_url)
    try:
        assert "stories" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_sqlite_file_is_checked_without_importing_sqlalchemy(tmp_path: Path) -> None:
    """`monitor run --once` starts its crawl child right after this check: no SQLAlchemy yet."""
    import subprocess
    import sys

    from crawler.migrate import _sqlite_file

    database = tmp_path / "sub dir" / "monitor.db"
    url = f"sqlite:///{database}"
    assert _sqlite_file(url) == database
    assert _sqlite_file("sqlite:///relative.db") == Path("relative.db")
    for other in ("sqlite://", "sqlite:///:memory:", "sqlite:///a.db?mode=ro", "sqlite:///%41.db"):
        assert _sqlite_file(other) is None, other  # SQLAlchemy reads these
    assert _sqlite_file("postgresql://postgres@127.0.0.1/x") is None
    script = (
        "import sys; from crawler.migrate import current_revision; "
        "print(current_revision(sys.argv[1])); print('sqlalchemy' in sys.modules)"
    )

    def check() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script, url], capture_output=True, text=True, check=True
        )
        return done.stdout.split()

    assert check() == ["None", "False"]  # no file yet
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as writer:  # another process holds the file open in WAL mode
            writer.execute(text("select 1"))
            assert check() == [HEAD, "False"]
    finally:
        engine.dispose()
    assert check() == [HEAD, "False"]
