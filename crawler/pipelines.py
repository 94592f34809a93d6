"""Item pipelines: store each article (new / changed / unchanged) and record a crawl run per source."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler import migrate
from crawler.db import session_factory
from crawler.items import ArticleItem, WithdrawnItem
from crawler.models import CrawlRun, Source
from crawler.store import mark_withdrawn, store_article

logger = logging.getLogger(__name__)


def run_verdict(stat: Callable[[str], Any], list_url: str) -> tuple[bool, str | None]:
    """Return whether a source's crawl succeeded and the reason recorded with it (None if clean)."""
    if not stat("list_pages"):
        return False, stat("first_error") or "no list page could be fetched"
    if not stat("list_entries") and not stat("list_not_modified"):
        # A column that suddenly lists nothing: a changed layout or a defaced page, not "no news".
        refused = stat("links_refused")
        note = f"; {refused} links refused by the link policy" if refused else ""
        return False, f"list page shows no posts{note} at {list_url}"
    if stat("article_errors") and not stat("articles"):
        return False, f"every article page failed: {stat('first_error')}"
    return True, stat("first_error") or None


def stats_by_source(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the `source/<id>/<name>` crawl stats grouped by source id: {id: {name: value}}."""
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in stats.items():
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "source":
            grouped.setdefault(parts[1], {})[parts[2]] = value
    return grouped


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
        seeds = self.crawler.spider.seeds
        # A few statements for the whole crawl, however many sources it has.
        with self.sessions.begin() as session:
            known = {
                source.id: source
                for source in session.scalars(select(Source).where(Source.id.in_(list(seeds))))
            }
            for seed in seeds.values():
                source = known.get(seed.id)
                if source is None:
                    source = Source(id=seed.id, created_at=now, consecutive_failures=0)
                    session.add(source)
                source.name = seed.name
                source.base_url = seed.base_url
                self.baseline[seed.id] = source.last_success_at is None
            session.flush()  # runs reference the sources: insert them first
            runs = {sid: CrawlRun(source_id=sid, started_at=now, status="running") for sid in seeds}
            session.add_all(runs.values())
            session.flush()
            self.run_ids = {sid: run.id for sid, run in runs.items()}

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
        per_source = stats_by_source(stats.get_stats())
        with self.sessions.begin() as session:
            run_rows = {
                run.id: run
                for run in session.scalars(
                    select(CrawlRun).where(CrawlRun.id.in_(list(self.run_ids.values())))
                )
            }
            sources = {
                source.id: source
                for source in session.scalars(
                    select(Source).where(Source.id.in_(list(self.run_ids)))
                )
            }
            for source_id, run_id in self.run_ids.items():
                run = run_rows.get(run_id)
                source = sources.get(source_id)
                assert run is not None and source is not None
                own = per_source.get(source_id, {})

                def stat(name: str, own: dict[str, Any] = own) -> Any:
                    return own.get(name, 0)

                run.finished_at = now
                run.items_found = stat("articles")
                run.new_articles = self.outcomes[(source_id, "new")]
                run.changed_articles = self.outcomes[(source_id, "changed")]
                run.http_errors = stat("errors")
                run.stats = dict(own)
                seed = self.crawler.spider.seeds[source_id]
                ok, run.error = run_verdict(stat, seed.list_urls[0])
                run.status = "ok" if ok else "failed"
                source.last_crawl_at = now
                if ok:
                    source.last_success_at = now
                    source.consecutive_failures = 0
                else:
                    source.consecutive_failures += 1
