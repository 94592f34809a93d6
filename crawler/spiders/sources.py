"""The generic source spider: reads `seeds/*.yaml`, walks column lists, yields extracted articles.

`scrapy crawl sources -a sources=kaiping,zhongshan` crawls several sources in one process (the
daemon does this for sources that fall due together); `scrapy crawl kaiping` crawls one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo

import scrapy
from pydantic import BaseModel, Field, ValidationError
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.config import get_settings
from crawler.db import session_factory
from crawler.extract_pool import (
    ExtractionPool,
    PageJob,
    article_answer,
    article_job,
    default_workers,
    list_answer,
    list_job,
)
from crawler.items import ArticleItem, WithdrawnItem
from crawler.linkpolicy import CHECKED_KEY, allowed_links
from crawler.memory import CrawlMemory, title_changed
from crawler.middlewares import describe_failure
from crawler.seeds import Seed, effective_seed, load_seeds
from crawler.urls import canonical_url

logger = logging.getLogger(__name__)
CST = ZoneInfo("Asia/Shanghai")
# The request meta key under which `read_ahead` leaves a page's reading for its callback.
READ_KEY = "page_read"


class PageRead(NamedTuple):
    """A page read ahead of its callback: the job (its URL, its crawl time) and the answer."""

    job: PageJob
    answer: Any


class SpiderArgs(BaseModel):
    """Arguments of `scrapy crawl sources -a name=value`."""

    sources: str | None = Field(
        default=None, description="Comma-separated source ids; default: every enabled source."
    )
    max_pages: int | None = Field(default=None, ge=1, description="Override list-page depth.")


def _page_headers(response: Response) -> dict[str, str]:
    """Return the response headers that page objects read, as a plain str dict.

    crawler/pages reads Content-Type alone (its charset decodes a page that declares none).
    Copying every header of every page for the extraction worker cost the crawl's thread
    14 µs a page; the one header, 2 µs.
    """
    content_type = response.headers.get(b"Content-Type")
    return {"content-type": content_type.decode("latin-1")} if content_type else {}


class SourcesSpider(scrapy.Spider):
    """Crawl the column lists of the given sources and extract every linked article."""

    name = "sources"
    fixed_source: ClassVar[str | None] = None

    def __init__(
        self,
        seeds: list[Seed] | None = None,
        memory: CrawlMemory | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.seeds: dict[str, Seed] = {seed.id: seed for seed in seeds or []}
        self.memory = memory
        self.extraction = ExtractionPool(0)  # from_crawler sets the configured pool
        self.list_validators: dict[str, dict[str, tuple[str | None, str | None]]] = {}
        self.lists_requested: dict[str, set[str]] = {}

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> SourcesSpider:
        """Build the spider with the sources selected by arguments and settings."""
        try:
            spider_args = SpiderArgs.model_validate(kwargs)
        except ValidationError as exc:
            raise ValueError(f"bad spider argument: {exc}") from None
        settings = crawler.settings
        available, errors = load_seeds(Path(settings.get("SEEDS_DIR")))
        for error in errors:
            logger.error("source file skipped: %s", error)
        wanted = (
            [cls.fixed_source]
            if cls.fixed_source
            else [s.strip() for s in (spider_args.sources or "").split(",") if s.strip()]
        )
        if wanted:
            unknown = [sid for sid in wanted if sid not in available]
            for sid in unknown:
                logger.error("unknown or invalid source %r (see the errors above)", sid)
            chosen = [available[sid] for sid in wanted if sid in available]
        else:
            chosen = [seed for seed in available.values() if seed.enabled]
        replay = settings.get("REPLAY_URL")
        chosen = [effective_seed(seed, replay) for seed in chosen]
        if spider_args.max_pages:
            chosen = [s.model_copy(update={"max_pages": spider_args.max_pages}) for s in chosen]
        memory = None
        if settings.getbool("STORE_ENABLED", True):
            memory = CrawlMemory(session_factory(settings.get("DATABASE_URL")))
        spider = super().from_crawler(crawler, seeds=chosen, memory=memory)
        workers = settings.get("EXTRACT_WORKERS")
        spider.extraction = ExtractionPool(
            default_workers() if workers in (None, "") else int(workers)
        )
        # The worker starts now when the crawl's event loop runs (it does under `scrapy
        # crawl`), so that its start-up (Python, lxml, OpenCC, a warm-up page: a third of a
        # second on its own core) overlaps Scrapy's building of its engine and the store's
        # opening instead of holding up the first list page; else as the crawl starts.
        spider.extraction.start()
        spider.allowed_domains = sorted({d for seed in chosen for d in seed.domains()})
        return spider

    async def start(self) -> AsyncIterator[Any]:
        """Yield the first list page of every source, then the revisits that are due."""
        self.extraction.start()  # a no-op when from_crawler started it
        for seed in self.seeds.values():
            self.lists_requested[seed.id] = set(seed.list_urls)
            for list_url in seed.list_urls:
                yield self._list_request(seed, list_url, depth=1)
        if self.memory is None:
            return
        now = datetime.now(UTC)
        for seed in self.seeds.values():
            for url, list_url in self.memory.due_revisits(seed.id, now):
                yield self._article_request(seed, url, list_url, None, revisit=True)

    def _list_request(
        self, seed: Seed, url: str, depth: int, conditional: bool = True, checked: bool = False
    ) -> scrapy.Request:
        """Return the request of a list page (`checked`: its URL passed `allowed_links`)."""
        headers = {}
        if self.memory is not None and conditional:
            etag, last_modified = self.memory.validators(url)
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
        browser = seed.needs_browser("list")
        # A browser sends no validators: ask plainly first, open the browser only on a change.
        probe = browser and bool(headers)
        meta: dict[str, Any] = {
            "source_id": seed.id,
            "page_kind": "list",
            "browser": browser and not probe,
            "browser_if_changed": probe,
            "handle_httpstatus_list": [304],
        }
        if checked:
            meta[CHECKED_KEY] = url
        return scrapy.Request(
            url,
            headers=headers,
            callback=self.parse_list,
            errback=self.on_error,
            cb_kwargs={"source_id": seed.id, "depth": depth},
            dont_filter=not conditional,
            meta=meta,
        )

    def _article_request(
        self,
        seed: Seed,
        url: str,
        list_url: str | None,
        list_date: datetime | None,
        revisit: bool = False,
        checked: bool = False,
    ) -> scrapy.Request:
        """Return the request of an article page (`checked`: its URL passed `allowed_links`)."""
        meta: dict[str, Any] = {
            "source_id": seed.id,
            "page_kind": "article",
            "browser": seed.needs_browser("article"),
        }
        if checked:
            meta[CHECKED_KEY] = url
        if revisit:
            meta["handle_httpstatus_list"] = [404, 410]
        return scrapy.Request(
            url,
            callback=self.parse_article,
            errback=self.on_error,
            cb_kwargs={"source_id": seed.id, "list_date": list_date, "list_url": list_url},
            meta=meta,
        )

    def page_job(self, request: scrapy.Request, response: Response) -> PageJob | None:
        """Return the reading of a response that its callback will read, or None.

        That is a list page (unless it is a browser probe, answered again in the browser) or
        an article page, of a known source, answered 2xx.
        """
        meta = request.meta
        seed = self.seeds.get(meta.get("source_id", ""))
        if seed is None or not 200 <= response.status < 300:
            return None
        kind = meta.get("page_kind")
        if kind == "list" and not meta.get("browser_if_changed"):
            return list_job(
                response.url,
                response.body,
                _page_headers(response),
                article_pattern=seed.article_pattern,
                list_pattern=seed.list_pattern,
                encoding=seed.encoding,
            )
        if kind == "article":
            return article_job(
                seed.extractor,
                response.url,
                response.body,
                headers=_page_headers(response),
                crawl_time=datetime.now(UTC),
                list_date=request.cb_kwargs.get("list_date"),
                encoding=seed.encoding,
            )
        return None

    async def read_ahead(self, request: scrapy.Request, response: Response) -> None:
        """Read a page in the extraction worker before its callback runs (the downloader
        middleware `crawler.middlewares.ReadAheadMiddleware` awaits this).

        The answer waits in the request's meta; the callback, a plain function, takes it. A
        coroutine callback costs Scrapy a task, a Deferred and a future per page: a bare spider
        whose callback awaited one future took 1-2 s longer over the benchmark's 10,636 pages
        than one with a plain callback. Without a worker, or when reading ahead fails (a bad
        list pattern), the callback reads the page itself.
        """
        if not self.extraction.workers:
            return
        job = self.page_job(request, response)
        if job is None:
            return
        try:
            answer = await self.extraction.read(job)
        except Exception:  # noqa: BLE001 - the callback reads it again and raises it there
            return
        request.meta[READ_KEY] = PageRead(job, answer)

    def _page_read(self, response: Response) -> PageRead:
        """Return the reading of a response: the one read ahead, else one made here (counted
        as the stat `extraction/read_in_crawl`: with a worker, a sign that ReadAheadMiddleware
        is missing from DOWNLOADER_MIDDLEWARES)."""
        read = response.meta.pop(READ_KEY, None)
        if isinstance(read, PageRead) and read.job.url == response.url:
            return read
        job = self.page_job(response.request, response) if response.request else None
        if job is None:
            raise ValueError(f"no page to read in the response of {response.url}")
        self.crawler.stats.inc_value("extraction/read_in_crawl")
        return PageRead(job, self.extraction.read_here(job))

    def parse_list(self, response: Response, source_id: str, depth: int) -> list[Any]:
        """Follow the articles and further pages of one column list page.

        The page is read in the extraction worker (like article pages), off the reactor.
        Callbacks return lists rather than yield: Scrapy then runs its spider middlewares'
        plain path over the output, not a chain of async generators per response.
        """
        seed = self.seeds[source_id]
        stats = self.crawler.stats
        stats.inc_value(f"source/{source_id}/list_pages")
        if response.status == 304:
            stats.inc_value(f"source/{source_id}/list_not_modified")
            return []
        self.list_validators.setdefault(source_id, {})[response.url] = (
            response.headers.get("ETag", b"").decode("latin-1") or None,
            response.headers.get("Last-Modified", b"").decode("latin-1") or None,
        )
        if response.meta.get("browser_if_changed"):
            # The plain probe saw a change: render the list in the browser this time.
            return [self._list_request(seed, response.url, depth, conditional=False)]
        page = list_answer(self._page_read(response).answer)
        page = allowed_links(page, seed, self.crawler)  # off-site, non-http, private hosts
        stats.inc_value(f"source/{source_id}/list_entries", len(page.entries))
        if not page.entries:
            logger.warning("source %s: list page %s shows no posts", source_id, response.url)
        shown = {canonical_url(entry.url): entry for entry in page.entries}
        memory = self.memory if self.memory is not None and not self.memory.empty() else None
        known = memory.known(shown) if memory is not None else {}
        stats.inc_value(f"source/{source_id}/list_known", len(known))
        output: list[Any] = []
        for canonical, entry in shown.items():
            if canonical not in known or title_changed(entry.title, known[canonical]):
                output.append(
                    self._article_request(
                        seed, entry.url, response.url, entry.published_at, checked=True
                    )
                )
        output += self._withdrawn_from_list(source_id, response.url, page.entries, set(shown))
        # Walk the column one page at a time, so that the walk can stop at the first page
        # whose posts are all known; `max_pages` bounds it (the backfill depth).
        if depth < seed.max_pages and (not shown or len(known) < len(shown)):
            visited = self.lists_requested.setdefault(source_id, set())
            visited.update((response.url, response.request.url if response.request else ""))
            following = next((u for u in page.next_pages if u not in visited), None)
            if following is not None:
                visited.add(following)
                output.append(self._list_request(seed, following, depth + 1, checked=True))
        return output

    def _withdrawn_from_list(
        self, source_id: str, list_url: str, entries: list[Any], shown: set[str]
    ) -> list[WithdrawnItem]:
        """Return WithdrawnItems for known posts gone from a list that still shows their neighbours."""
        dates = [e.published_at.astimezone(CST).date() for e in entries if e.published_at]
        if self.memory is None or self.memory.empty() or len(dates) < 3:
            return []
        now = datetime.now(UTC).isoformat()
        return [
            WithdrawnItem(source_id, url, "gone from its list page", now)
            for url in self.memory.missing_from_list(
                source_id, list_url, shown, max(dates), min(dates)
            )
        ]

    def parse_article(
        self,
        response: Response,
        source_id: str,
        list_date: datetime | None = None,
        list_url: str | None = None,
    ) -> list[Any]:
        """Extract one article page into an ArticleItem (a WithdrawnItem when it is gone)."""
        if response.status in (404, 410):
            reason = f"HTTP {response.status} on revisit"
            return [WithdrawnItem(source_id, response.url, reason, datetime.now(UTC).isoformat())]
        now = datetime.now(UTC)
        article, digest = article_answer(self._page_read(response).answer)
        if not article.title and not article.body:
            # Unreadable (the extractor failed, or found nothing): not stored as an empty
            # post. A failed article keeps the list validators unsaved, so the next cycle
            # lists the page again and fetches this post again.
            self._article_failed(source_id, response.url, "no title or text could be extracted")
            return []
        self.crawler.stats.inc_value(f"source/{source_id}/articles")
        item = ArticleItem(
            source_id=source_id,
            url=response.url,
            title=article.title,
            body=article.body,
            published_at=article.published_at.isoformat() if article.published_at else None,
            source_name=article.source,
            doc_number=article.doc_number,
            attachments=[
                {"url": a.url, "name": a.name, "type": a.type} for a in article.attachments
            ],
            fetched_at=now.isoformat(),
            http_status=response.status,
            list_url=list_url,
            content_hash=digest,
        )
        return [item]

    def closed(self, reason: str) -> None:
        """Save list-page validators of sources whose crawl completed without a failed article."""
        self.extraction.close()
        if self.memory is None or reason != "finished":
            return
        stats = self.crawler.stats
        complete = {
            source_id: validators
            for source_id, validators in self.list_validators.items()
            if not stats.get_value(f"source/{source_id}/article_errors")
        }
        self.memory.save_validators(complete, datetime.now(UTC))

    def _article_failed(self, source_id: str, url: str, reason: str) -> None:
        """Record an article page that was fetched but could not be read."""
        stats = self.crawler.stats
        stats.inc_value(f"source/{source_id}/errors")
        stats.inc_value(f"source/{source_id}/article_errors")
        if stats.get_value(f"source/{source_id}/first_error") is None:
            stats.set_value(f"source/{source_id}/first_error", f"{reason} at {url}")
        logger.warning("source %s: article page failed: %s (%s)", source_id, reason, url)

    def on_error(self, failure: Failure) -> None:
        """Record a failed request against its source, with a one-line reason."""
        request = failure.request  # type: ignore[attr-defined]
        source_id = request.meta.get("source_id", "?")
        kind = request.meta.get("page_kind", "page")
        reason = describe_failure(failure)
        stats = self.crawler.stats
        stats.inc_value(f"source/{source_id}/errors")
        stats.inc_value(f"source/{source_id}/{kind}_errors")
        if stats.get_value(f"source/{source_id}/first_error") is None:
            stats.set_value(f"source/{source_id}/first_error", f"{reason} at {request.url}")
        logger.warning("source %s: %s page failed: %s (%s)", source_id, kind, reason, request.url)


def _named_spiders() -> dict[str, type[SourcesSpider]]:
    """Return one spider class per valid source file, named after the source id."""
    seeds, _errors = load_seeds(get_settings().seeds_dir)
    classes: dict[str, type[SourcesSpider]] = {}
    for seed_id in seeds:
        class_name = "".join(part.title() for part in seed_id.split("_")) + "Spider"
        classes[class_name] = type(
            class_name,
            (SourcesSpider,),
            {
                "name": seed_id,
                "fixed_source": seed_id,
                "__module__": __name__,
                "__doc__": f"Crawl the source {seed_id!r} (seeds/{seed_id}.yaml).",
            },
        )
    return classes


globals().update(_named_spiders())
