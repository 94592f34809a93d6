"""Item pipelines: store each article (new / changed / unchanged) and record a crawl run per source."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crawler import migrate
from crawler.db import session_factory
from crawler.items import ArticleItem, WithdrawnItem
from crawler.models import CrawlRun, Source
from crawler.store import mark_withdrawn, store_article

logger = logging.getLogger(__name__)


class StorePipeline:
    """Write every ArticleItem to the database in its own transaction; one CrawlRun per source."""

    def __init__(self, database_url: str, enabled: bool = True, crawler: Any = None) -> None:
        self.database_url = database_url
        self.enabled = enabled
        self.crawler = crawler
        self.sessions: sessionmaker[Session] | None = None
        self.baseline: dict[str, bool] = {}
        self.run_ids: dict[str, int] = {}
        self.outcomes: Counter[tuple[str, str]] = Counter()

    @classmethod
    def from_crawler(cls, crawler: Any) -> StorePipeline:
        """Build the pipeline from the DATABASE_URL and STORE_ENABLED settings."""
        settings = crawler.settings
        return cls(settings.get("DATABASE_URL"), settings.getbool("STORE_ENABLED", True), crawler)

    def open_spider(self) -> None:
        """Migrate the database if needed, mirror the sources, and open their crawl runs."""
        if not self.enabled:
            return
        migrate.upgrade(self.database_url)
        self.sessions = session_factory(self.database_url)
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            for seed in self.crawler.spider.seeds.values():
                source = session.get(Source, seed.id)
                if source is None:
                    source = Source(id=seed.id, created_at=now, consecutive_failures=0)
                    session.add(source)
                source.name = seed.name
                source.base_url = seed.base_url
                session.flush()  # runs reference the source: insert it first
                self.baseline[seed.id] = source.last_success_at is None
                run = CrawlRun(source_id=seed.id, started_at=now, status="running")
                session.add(run)
                session.flush()
                self.run_ids[seed.id] = run.id

    def process_item(self, item: ArticleItem | WithdrawnItem) -> ArticleItem | WithdrawnItem:
        """Store one article (or withdrawal) and count what happened to it."""
        if not self.enabled or self.sessions is None:
            return item
        if isinstance(item, WithdrawnItem):
            with self.sessions.begin() as session:
                if mark_withdrawn(session, item):
                    self.outcomes[(item.source_id, "withdrawn")] += 1
                    self.crawler.stats.inc_value(f"source/{item.source_id}/withdrawn")
            return item
        with self.sessions.begin() as session:
            result = store_article(session, item, baseline=self.baseline.get(item.source_id, False))
        self.outcomes[(item.source_id, result.outcome)] += 1
        self.crawler.stats.inc_value(f"source/{item.source_id}/{result.outcome}")
        return item

    def close_spider(self) -> None:
        """Close each source's crawl run with its counts, status and first error."""
        if not self.enabled or self.sessions is None:
            return
        stats = self.crawler.stats
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            for source_id, run_id in self.run_ids.items():
                run = session.get(CrawlRun, run_id)
                source = session.get(Source, source_id)
                assert run is not None and source is not None

                def stat(name: str, sid: str = source_id) -> Any:
                    return stats.get_value(f"source/{sid}/{name}", 0)

                run.finished_at = now
                run.items_found = stat("articles")
                run.new_articles = self.outcomes[(source_id, "new")]
                run.changed_articles = self.outcomes[(source_id, "changed")]
                run.http_errors = stat("errors")
                run.stats = {
                    key.split("/", 2)[2]: value
                    for key, value in stats.get_stats().items()
                    if key.startswith(f"source/{source_id}/")
                }
                ok = stat("list_pages") > 0
                run.status = "ok" if ok else "failed"
                run.error = None if ok else (stat("first_error") or "no list page could be fetched")
                source.last_crawl_at = now
                if ok:
                    source.last_success_at = now
                    source.consecutive_failures = 0
                else:
                    source.consecutive_failures += 1
