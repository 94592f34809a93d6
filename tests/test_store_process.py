"""The store process (crawler/store_process.py): a real process that writes the crawl's batches,
its wire, and what happens when it dies."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from crawler.children import WORKER_NICE
from crawler.items import ArticleItem, WithdrawnItem
from crawler.store_process import StoreProcess, decode_batch, encode_batch
from tests.test_store_batches import ITEM, SOURCE, _pipeline, _post, _rows, _stored_urls


class _ExitOnArrival:
    """A field value that ends the process that unpickles it, as a crash in C would."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os._exit, (3,))


@dataclass
class _OwnItem(ArticleItem):
    """A user's own subclass of the item, with a field of its own."""

    note: str = ""


def _nice(pid: int) -> int:
    """Return the nice value of process `pid`."""
    return os.getpriority(os.PRIO_PROCESS, pid)


def _process_pipeline(database_url: str, **settings: Any) -> tuple[Any, Any]:
    """Return an opened store pipeline writing through a store process, batches of 2 items
    written only when full (or drained)."""
    settings = {"STORE_BATCH_SIZE": 2, "STORE_BATCH_SECONDS": 3600, **settings}
    return _pipeline(database_url, STORE_PROCESS=True, **settings)


def _store(pipeline: Any, *items: ArticleItem) -> None:
    """Hand `items` to the pipeline and wait until they are written."""
    for item in items:
        pipeline.process_item(item)
    pipeline.drain()


def test_batches_cross_the_wire_whole_marshalled_or_pickled() -> None:
    article = replace(
        ITEM,
        doc_number="江府〔2024〕3號",
        attachments=[{"url": "http://127.0.0.1/a.pdf", "name": "附件1", "size": None}],
        content_hash="ab" * 32,
        list_url="http://127.0.0.1/index.html",
    )
    gone = WithdrawnItem(SOURCE, ITEM.url, "404", "2026-11-22T04:00:00+00:00")
    payload = encode_batch([article, gone])
    assert payload[:1] == b"M"  # plain values: marshalled, not pickled
    assert decode_batch(payload) == [article, gone]
    assert [type(item) for item in decode_batch(payload)] == [ArticleItem, WithdrawnItem]

    # A subclass, or a value marshal cannot hold, travels pickled, whole.
    own = _OwnItem(**{**vars(ITEM), "note": "own"})
    odd = replace(ITEM, attachments=[{"size": 1.5, "when": datetime(2024, 11, 5, tzinfo=UTC)}])
    for batch in ([own, article], [odd]):
        payload = encode_batch(batch)
        assert payload[:1] != b"M"
        assert decode_batch(payload) == batch
    assert type(decode_batch(encode_batch([own]))[0]) is _OwnItem


def test_the_store_process_runs_apart_nicer_and_ends_with_the_crawl(sqlite_url: str) -> None:
    pipeline, stats = _process_pipeline(sqlite_url)
    assert pipeline.process is not None
    assert pipeline.process.process is None  # nothing to store yet: no process
    _store(pipeline, _post(1), _post(2))
    assert stats.get_value(f"source/{SOURCE}/new") == 2
    process = pipeline.process.process
    assert process is not None and process.pid != os.getpid()
    assert _nice(process.pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE, 19)
    assert process.poll() is None  # it waits for the next batch
    pipeline.close_spider()
    assert process.returncode == 0
    assert _rows(sqlite_url, "select new_articles from crawl_runs") == [(2,)]


def test_a_killed_store_process_is_replaced_and_loses_nothing(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, stats = _process_pipeline(database_url)
    caplog.set_level(logging.WARNING)
    try:
        _store(pipeline, _post(1), _post(2))
        assert pipeline.process is not None and pipeline.process.process is not None
        first = pipeline.process.process
        first.kill()  # out of memory, say, between two batches
        first.wait()
        _store(pipeline, _post(3), _post(4))
        assert pipeline.process.restarts == 1
        second = pipeline.process.process
        assert second is not None and second.pid != first.pid and second.poll() is None
        assert "the store process died writing a batch of 2 items" in caplog.text
        assert "starting a new one" in caplog.text
        assert stats.get_value(f"source/{SOURCE}/new") == 4
        assert stats.get_value(f"source/{SOURCE}/store_errors") is None
    finally:
        pipeline.close_spider()
    assert len(_stored_urls(database_url)) == 4
    assert _rows(database_url, "select new_articles from crawl_runs") == [(4,)]


def test_a_batch_two_store_processes_die_on_is_given_up_and_the_crawl_goes_on(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, stats = _process_pipeline(sqlite_url)
    caplog.set_level(logging.WARNING)
    deadly = replace(_post(2), doc_number=_ExitOnArrival())  # type: ignore[arg-type]
    try:
        _store(pipeline, _post(1), deadly)
        assert pipeline.process is not None and pipeline.process.restarts == 2
        assert "the batch is given up" in caplog.text
        # Both items of that batch count as not stored: fetched again next cycle.
        assert stats.get_value(f"source/{SOURCE}/store_errors") == 2
        assert stats.get_value(f"source/{SOURCE}/article_errors") == 2
        assert stats.get_value(f"source/{SOURCE}/first_error") == (
            f"could not store {_post(1).url}: the store process died twice writing this batch"
        )
        # The next batch goes to a third process.
        _store(pipeline, _post(3), _post(4))
        assert stats.get_value(f"source/{SOURCE}/new") == 2
    finally:
        pipeline.close_spider()
    assert _stored_urls(sqlite_url) == sorted([_post(3).url, _post(4).url])
    assert _rows(sqlite_url, "select new_articles from crawl_runs") == [(2,)]


def test_a_store_process_whose_crawl_is_gone_exits(sqlite_url: str) -> None:
    from crawler.migrate import upgrade

    upgrade(sqlite_url)
    store = StoreProcess(sqlite_url, {SOURCE: True})
    store.start()
    assert store.process is not None and store.socket is not None and store.incoming is not None
    process = store.process
    # The crawl dies without a word: the kernel closes its end of the socket.
    store.incoming.close()
    store.socket.close()
    assert process.wait(timeout=30) == 0


def test_sigint_to_the_process_group_is_left_to_the_crawl(sqlite_url: str) -> None:
    pipeline, stats = _process_pipeline(sqlite_url, STORE_BATCH_SIZE=1)
    try:
        _store(pipeline, _post(1))  # it has settled in: its SIGINT handler is set
        assert pipeline.process is not None and pipeline.process.process is not None
        process = pipeline.process.process
        os.kill(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        _store(pipeline, _post(2))
        assert process.poll() is None and pipeline.process.restarts == 0
        assert stats.get_value(f"source/{SOURCE}/new") == 2
    finally:
        pipeline.close_spider()
