"""Scrapy extensions of the crawl (enabled in crawler/settings.py)."""

from __future__ import annotations

import logging
from typing import Any

from scrapy import signals
from scrapy.utils.log import get_scrapy_root_handler

from crawler.gc_tuning import tune_gc


class _AtEngineStart:
    """An extension whose `engine_started` runs once the crawl's engine starts (logging is
    set up by then)."""

    @classmethod
    def from_crawler(cls, crawler: Any) -> _AtEngineStart:
        """Return the extension, connected to the engine_started signal."""
        extension = cls()
        crawler.signals.connect(extension.engine_started, signal=signals.engine_started)
        return extension

    def engine_started(self) -> None:
        """Do the extension's work."""
        raise NotImplementedError


class RootLogLevel(_AtEngineStart):
    """Let loggers drop messages below LOG_LEVEL before they become records.

    Scrapy filters by LOG_LEVEL in its root handler, and leaves the root logger at NOTSET and
    its own `scrapy` logger at DEBUG (scrapy.utils.log.DEFAULT_LOGGING), so each
    `logger.debug` of a crawl at INFO ("Crawled (200)", "Scraped from" for every page and
    item) still builds a LogRecord and walks the handlers to be thrown away (logging was 1.4%
    of the crawl's CPU in a profile of the 10,000-post benchmark crawl). Once the engine
    starts, those two loggers take the level of Scrapy's handler. A logger given another level
    keeps it, and a crawl at DEBUG logs what it always did.
    """

    def engine_started(self) -> None:
        """Raise the root and `scrapy` loggers to the handler's level, if they have Scrapy's."""
        handler = get_scrapy_root_handler()
        if handler is None or handler.level <= logging.DEBUG:
            return
        for name, default in (("", logging.NOTSET), ("scrapy", logging.DEBUG)):
            logger = logging.getLogger(name)
            if logger.level == default:
                logger.setLevel(handler.level)


class TuneGc(_AtEngineStart):
    """Apply `tune_gc` (crawler/gc_tuning.py) to the crawl process once its engine starts."""

    def engine_started(self) -> None:
        """Freeze start-up's objects and raise the young generation's threshold."""
        tune_gc()
