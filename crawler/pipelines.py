"""Item pipelines: store each article (new / changed / unchanged) and record a crawl run per source."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twisted.internet.task import LoopingCall

from crawler import migrate
from crawler.children import several_cores
from crawler.db import session_factory
from crawler.items import ArticleItem, WithdrawnItem
from crawler.models import CrawlRun, Source
from crawler.store_process import BatchWriter, StoreProcess, Written

logger = logging.getLogger(__name__)
# Batches handed to the writer thread and not yet written, before the crawl waits for one.
MAX_BATCHES_WRITING = 4
# What writing one batch did, and the batch (crawler.store_process.Written).
_Written = tuple[Written, list[ArticleItem | WithdrawnItem]]


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
    """Write ArticleItems to the database in batches; one CrawlRun per source.

    Items wait in memory until `STORE_BATCH_SIZE` of them are pending or the oldest has
    waited `STORE_BATCH_SECONDS`, then go in one transaction (a timer flushes a slow crawl's
    stragglers, and closing the spider flushes the rest). Nothing is lost when a crawl is
    killed with items pending: an article that was never stored is not known, so the next
    cycle fetches it again, and list validators are only saved after a complete crawl.
    A batch that fails is written again item by item, so one bad item costs only itself.

    Batches are written by a thread of their own, one after another in the order they were
    made, so that the crawl's event loop goes on downloading while SQLite works or waits:
    for the monitor's write lock (a 10,000-post benchmark crawl spent 0.3 s of its 0.6 s in
    database calls waiting, most in SQLite's busy handler, whose sleeps grow from 1 ms to
    100 ms) or for the disk. What a batch did (outcome counts, failed items) is taken back on
    the event loop's thread, where the crawl's stats live, as batches finish; at most
    `MAX_BATCHES_WRITING` wait for the writer before a new one waits for the oldest, which
    bounds the items held in memory. Closing the spider waits for every batch. With
    `STORE_PROCESS` on (default: on a machine with more than one core) the thread does not
    write a batch itself but has a store process write it (crawler/store_process.py says why
    and what happens when that process dies).
    """

    def __init__(
        self,
        database_url: str,
        enabled: bool = True,
        crawler: Any = None,
        batch_size: int = 200,
        batch_seconds: float = 1.0,
        store_process: bool = False,
    ) -> None:
        self.database_url = database_url
        self.enabled = enabled
        self.crawler = crawler
        self.batch_size = max(1, batch_size)
        self.batch_seconds = batch_seconds
        self.sessions: sessionmaker[Session] | None = None
        self.baseline: dict[str, bool] = {}
        self.run_ids: dict[str, int] = {}
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.pending: list[ArticleItem | WithdrawnItem] = []
        self.pending_since = 0.0
        self.timer: LoopingCall | None = None
        self.store_process = store_process
        self.writer: ThreadPoolExecutor | None = None
        self.writing: deque[Future[_Written]] = deque()
        self.write: Callable[[list[ArticleItem | WithdrawnItem]], Written] | None = None
        self.process: StoreProcess | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> StorePipeline:
        """Build the pipeline from the DATABASE_URL, STORE_ENABLED, STORE_BATCH_* and
        STORE_PROCESS settings."""
        settings = crawler.settings
        store_process = settings.get("STORE_PROCESS")
        return cls(
            settings.get("DATABASE_URL"),
            settings.getbool("STORE_ENABLED", True),
            crawler,
            batch_size=settings.getint("STORE_BATCH_SIZE", 200),
            batch_seconds=settings.getfloat("STORE_BATCH_SECONDS", 1.0),
            store_process=(
                several_cores() if store_process is None else settings.getbool("STORE_PROCESS")
            ),
        )

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
        if self.store_process:
            # Started by the first batch: a crawl that stores nothing (an idle cycle, where
            # every list answers 304) starts no store process.
            self.process = StoreProcess(self.database_url, self.baseline)
            self.write = self.process.write
        else:
            self.write = BatchWriter(self.sessions, self.baseline).write
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.timer = LoopingCall(self._flush_stale)
        self.timer.start(self.batch_seconds, now=False)

    def process_item(self, item: ArticleItem | WithdrawnItem) -> ArticleItem | WithdrawnItem:
        """Queue one article (or withdrawal) for the next batch; write the batch when due."""
        if self.write is None:
            return item
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append(item)
        if len(self.pending) >= self.batch_size:
            self.flush()
        return item

    def _flush_stale(self) -> None:
        """Write the pending items once the oldest has waited `batch_seconds`; take back
        what the batches written since did."""
        if self.pending and time.monotonic() - self.pending_since >= self.batch_seconds:
            self.flush()
        else:
            self._collect()

    def flush(self) -> None:
        """Hand every pending item to the writer thread as one batch (see the class)."""
        batch, self.pending = self.pending, []
        if batch and self.write is not None:
            if self.writer is None:
                self._taken(self._write_batch(batch))
            else:
                self.writing.append(self.writer.submit(self._write_batch, batch))
        self._collect(keep=MAX_BATCHES_WRITING)

    def drain(self) -> None:
        """Wait until every batch handed to the writer is written; take back what they did."""
        self._collect(keep=0)

    def _collect(self, keep: int | None = None) -> None:
        """Take back what the finished batches did, oldest first; then, if more than `keep`
        are still being written, wait for the oldest ones."""
        writing = self.writing
        while writing and (writing[0].done() or (keep is not None and len(writing) > keep)):
            self._taken(writing.popleft().result())

    def _taken(self, written: _Written) -> None:
        """Count a written batch's outcomes and failures (on the event loop's thread)."""
        (counted, failed, batch_error), batch = written
        if batch_error is not None:
            logger.warning(
                "a batch of %d items failed (%s); it was stored item by item",
                len(batch),
                batch_error,
            )
        for index, reason in failed:
            self._store_failed(batch[index], reason)
        # One stats call per source and outcome, not per item (Scrapy's collector costs 5
        # microseconds a call).
        for (source_id, outcome), number in Counter(counted).items():
            self.outcomes[(source_id, outcome)] += number
            self.crawler.stats.inc_value(f"source/{source_id}/{outcome}", number)

    def _write_batch(self, batch: list[ArticleItem | WithdrawnItem]) -> _Written:
        """Write `batch` (in the writer thread), with the BatchWriter or the store process."""
        assert self.write is not None
        return self.write(batch), batch

    def _store_failed(self, item: ArticleItem | WithdrawnItem, error: str) -> None:
        """Log and count an item that could not be stored (it is fetched again next cycle).

        It counts as a failed article too, so the source's list validators are not saved and
        the next cycle's list request is not answered 304 over a post that was never stored.
        """
        reason = f"could not store {item.url}: {error}"
        logger.error("source %s: %s", item.source_id, reason)
        stats = self.crawler.stats
        stats.inc_value(f"source/{item.source_id}/store_errors")
        stats.inc_value(f"source/{item.source_id}/article_errors")
        if not stats.get_value(f"source/{item.source_id}/first_error"):
            stats.set_value(f"source/{item.source_id}/first_error", reason[:500])

    def close_spider(self) -> None:
        """Close each source's crawl run with its counts, status and first error."""
        if self.write is None or self.sessions is None:
            return
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        try:
            self.flush()
            self.drain()
        finally:
            if self.writer is not None:
                self.writer.shutdown(wait=True)
                self.writer = None
            if self.process is not None:
                self.process.stop()
            self.write = None
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
