"""SQLAlchemy models: sources, articles, article versions, crawl runs, and the alert outbox.

Tables are created only by the alembic migrations in `migrations/`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine


class _SqliteDateTime(sqlite.DATETIME):
    """SQLite's DATETIME, writing its text with `datetime.isoformat` (the same text).

    SQLAlchemy's own writer fills a %-format from a dict of seven fields: 4 microseconds a
    value, six values an article, a quarter of a second of the crawl's thread over the
    10,000-post benchmark. The first 26 characters of `isoformat(" ", "microseconds")` are the
    very same text (YYYY-MM-DD HH:MM:SS.ffffff, zero-padded, without the zone that
    SQLAlchemy's writer leaves out too), so stored values compare as before.
    """

    def bind_processor(self, dialect: Dialect) -> Any:
        """Return the writer of datetime values (others go to SQLAlchemy's writer)."""
        fallback = super().bind_processor(dialect)
        datetime_type = datetime

        def process(value: Any) -> Any:
            if type(value) is datetime_type:  # its zone (UTCDateTime's UTC) is not written
                return value.isoformat(" ", "microseconds")[:26]
            return fallback(value) if fallback is not None else value

        return process


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Return the column type of `dialect`; on SQLite, one with a faster writer."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SqliteDateTime())
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} refused: pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base for every table."""

    type_annotation_map = {datetime: UTCDateTime}  # noqa: RUF012


class Source(Base):
    """A monitored site column, mirrored from its seed file on each crawl."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    base_url: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column()
    last_crawl_at: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)


class Story(Base):
    """One event reported by several posts (reposts across portals); alerted once."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_article_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column()


class SourceHealth(Base):
    """The health state of a source, so that a broken source alerts once and recovers once."""

    __tablename__ = "source_health"

    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), default="ok")
    reason: Mapped[str | None] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column()
    notified_at: Mapped[datetime | None] = mapped_column()


class Article(Base):
    """One post, identified by its canonical URL; its content lives in versions."""

    __tablename__ = "articles"

    __table_args__ = (
        # A source's latest posts (monitor/health.py) without sorting its whole history.
        Index("ix_articles_source_published", "source_id", "published_at"),
        # The story index's window (monitor/stories.py): only posts with a signature.
        Index(
            "ix_articles_story_window",
            "first_seen_at",
            sqlite_where=text("minhash IS NOT NULL"),
            postgresql_where=text("minhash IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"), index=True)
    canonical_url: Mapped[str] = mapped_column(String(1000), unique=True)
    url: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    withdrawn_at: Mapped[datetime | None] = mapped_column()
    withdrawn_reason: Mapped[str | None] = mapped_column(String(200))
    # Decaying revisit schedule (crawler.memory.REVISIT_AFTER): None once it has run out.
    next_check_at: Mapped[datetime | None] = mapped_column(index=True)
    checks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    list_url: Mapped[str | None] = mapped_column(String(1000))
    # Near-duplicate grouping: the story this post belongs to, and its MinHash signature.
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary)
    story: Mapped[Story | None] = relationship()
    versions: Mapped[list[ArticleVersion]] = relationship(
        back_populates="article", order_by="ArticleVersion.version_no"
    )


class HttpValidator(Base):
    """ETag and Last-Modified of a list page, for conditional requests on the next cycle."""

    __tablename__ = "http_validators"

    url: Mapped[str] = mapped_column(String(1000), primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"), index=True)
    etag: Mapped[str | None] = mapped_column(String(300))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column()


class ArticleVersion(Base):
    """The content of an article as fetched at one time; a new row whenever the content hash changes."""

    __tablename__ = "article_versions"
    __table_args__ = (
        UniqueConstraint("article_id", "version_no"),
        Index("ix_article_versions_unclassified", "classified_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)
    version_no: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column()
    source_name: Mapped[str | None] = mapped_column(String(300))
    doc_number: Mapped[str | None] = mapped_column(String(200))
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    diff: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column()
    # Stored during a source's first crawl: classified, but not alerted (see README, "Baseline").
    baseline: Mapped[bool] = mapped_column(default=False)
    classified_at: Mapped[datetime | None] = mapped_column()
    topics: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    parties: Mapped[list[str] | None] = mapped_column(JSON)
    article: Mapped[Article] = relationship(back_populates="versions")


class CrawlRun(Base):
    """One crawl of one source: when, how it ended, and what it found."""

    __tablename__ = "crawl_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"), index=True)
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="running")
    items_found: Mapped[int] = mapped_column(Integer, default=0)
    new_articles: Mapped[int] = mapped_column(Integer, default=0)
    changed_articles: Mapped[int] = mapped_column(Integer, default=0)
    http_errors: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Alert(Base):
    """An outbox entry: one article version matched topics; delivered once per channel."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None for health alerts, which concern a source rather than an article.
    article_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("article_versions.id"), index=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="new")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column()
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="alert")


class Delivery(Base):
    """The state of one alert on one channel: pending, sent or failed (dead letter)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    channel: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column()
    alert: Mapped[Alert] = relationship(back_populates="deliveries")
