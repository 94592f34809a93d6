"""Article extraction off the reactor thread: worker processes, so parsing uses another core.

A crawl's own thread downloads, schedules and stores; extracting an article page (lxml parse,
cleaning, dates) is pure CPU work of about 2 ms a page, which in one process stalls the
downloads. With `EXTRACT_WORKERS` > 0 (default: 1 on a machine with more than one core,
0 on one core) pages are extracted in that many worker processes.

Workers are started with "spawn" (never fork a process running a reactor and threads) and
belong to the crawl's process group, so the daemon's time limit kills them with the crawl.
A worker that dies (killed, out of memory, a crash in a C library) loses nothing: the pool
is started again and the pages it held go to the new worker; a page on which two workers
die is given up as unreadable (the crawl records it as a failed article, and the next cycle
fetches it again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from multiprocessing import get_context
from typing import Any

from crawler.pages.article import EXTRACTORS
from crawler.pages.model import ExtractedArticle

logger = logging.getLogger(__name__)


def default_workers() -> int:
    """Return the default EXTRACT_WORKERS: 1 when this process may use several cores, else 0."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 1 if cores > 1 else 0


def extract_page(
    kind: str,
    url: str,
    html: bytes,
    headers: Mapping[str, str],
    crawl_time: datetime,
    list_date: datetime | None,
    encoding: str | None,
) -> tuple[ExtractedArticle, str | None]:
    """Return the article and, if extraction failed, the traceback (for the crawl's log)."""
    try:
        article = EXTRACTORS[kind].extract(url, html, headers, crawl_time, list_date, encoding)
        return article, None
    except Exception:  # noqa: BLE001 - a page that cannot be read is an empty article
        return ExtractedArticle(url=url, title="", body=""), traceback.format_exc()


def _warm_up() -> None:
    """Import and build what extraction needs once per worker, not on its first page."""
    page = b"<html><body><p>x</p></body></html>"
    extract_page("generic", "http://127.0.0.1/", page, {}, datetime(2000, 1, 1), None, None)


class ExtractionPool:
    """Extract article pages in worker processes (or in this process when `workers` is 0)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(0, workers)
        self.executor: Executor | None = None
        self.restarts = 0

    def _executor(self) -> Executor | None:
        if self.workers and self.executor is None:
            self.executor = ProcessPoolExecutor(
                self.workers, mp_context=get_context("spawn"), initializer=_warm_up
            )
        return self.executor

    async def extract(self, kind: str, url: str, html: bytes, **options: Any) -> ExtractedArticle:
        """Return the extracted article at `url`; failures are logged and give an empty one."""
        args = (
            kind,
            url,
            html,
            dict(options.get("headers") or {}),
            options["crawl_time"],
            options.get("list_date"),
            options.get("encoding"),
        )
        article, error = await self._run(args)
        if error is not None:
            logger.warning("extraction failed for %s\n%s", url, error.rstrip())
        return article

    async def _run(self, args: tuple[Any, ...]) -> tuple[ExtractedArticle, str | None]:
        """Return extract_page(*args), from a worker when there is a pool.

        A page whose worker died is given to a new worker once; if that one dies too, the
        page itself is what kills them (a crash in a C library, say): it is given up, as an
        empty article, rather than extracted here, where it would take the crawl down.
        """
        url = args[1]
        for attempt in (1, 2):
            executor = self._executor()
            if executor is None:
                return extract_page(*args)
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    executor, extract_page, *args
                )
            except BrokenProcessPool:
                self._restart(executor, url)
                if attempt == 2:
                    error = f"the extraction worker died twice on this page ({url})"
                    return ExtractedArticle(url=url, title="", body=""), error
        raise AssertionError("unreachable")

    def _restart(self, broken: Executor, url: str) -> None:
        """Replace a pool whose worker died.

        Every page the dead worker held fails the same way: only the first replaces the pool,
        and a pool already replaced is never shut down by a late failure of the old one.
        """
        if self.executor is not broken:
            return
        self.executor = None
        self.restarts += 1
        logger.warning("an extraction worker died (at %s); starting a new one", url)
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (pages still queued are not extracted)."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
