"""Garbage-collector tuning of the crawl, extraction and monitor processes (no Scrapy import:
the extraction worker and the monitor use it too)."""

from __future__ import annotations

import gc

# Python's default collects the young generation every 700 net allocations of container
# objects; a crawl makes several per request (requests, responses, deferreds, items), and its
# full collections walk every module and setting loaded at start-up. Measured on the
# 10,000-post benchmark crawl: 1,191 collections, 1.8-2.0 s of its 22-30 s of CPU, against 1-3
# collections and under 0.01 s with start-up's objects frozen and this threshold. Most of a
# crawl's objects die by reference counting; the young generation stays a few MB.
GC_THRESHOLD = (10_000, 10, 10)


_tuned = False


def tune_gc() -> None:
    """Freeze the objects allocated so far out of collections, and collect less often.

    Called once start-up is over (modules, settings, seeds: none of it is garbage). Cycles made
    later are still collected, only in larger batches. Only the first call of a process
    freezes: a later one would freeze whatever garbage was waiting for its collection.
    """
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
