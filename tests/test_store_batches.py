"""Batched storage: one transaction per batch, the item-by-item fallback when a batch fails, the
timer that writes a slow crawl's stragglers, and nothing lost when a crawl dies with items
pending (crawler/pipelines.py, StorePipeline; crawler/store.py, store_batch)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scrapy.settings import Settings
from scrapy.statscollectors import MemoryStatsCollector
from sqlalchemy import event, text

from crawler import pipelines
from crawler.config import PROJECT_ROOT
from crawler.db import engine_for
from crawler.items import ArticleItem
from crawler.migrate import upgrade
from crawler.pipelines import StorePipeline
from crawler.seeds import load_seeds
from crawler.store import content_hash, store_batch
from crawler.urls import canonical_url
from replay.server import ReplayServer
from tests.e2e import crawl_argv, monitor_env, run_monitor, start_crawl
from tests.world import wait_until, with_source

SOURCE = "kaiping"
ARTICLE_URL = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_3212345.html"
ITEM = ArticleItem(
    source_id=SOURCE,
    url=ARTICLE_URL,
    title="江門市“邑科匯”科技成果對接會(生物醫(yī)藥領域)在開平舉辦",
    body="為推進科技成果轉移轉化進程，近日舉辦對接會。\n本次活動聚焦生物醫(yī)藥。",
    published_at="2024-11-05T17:11:06+08:00",
    source_name="本網",
    fetched_at="2026-11-22T04:00:00+00:00",
)
ADDED_LINE = "達成初步合作意向7項。"


def _rows(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Return the rows of a query, on a connection of its own (its own transaction)."""
    with engine_for(database_url).connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def _execute(database_url: str, sql: str) -> None:
    """Run one statement in a transaction of its own."""
    with engine_for(database_url).begin() as conn:
        conn.execute(text(sql))


def _post(number: int, source_id: str = SOURCE) -> ArticleItem:
    """Return a distinct article item (its own URL, title and body)."""
    return replace(
        ITEM,
        source_id=source_id,
        url=ARTICLE_URL.replace("3212345", str(4000000 + number)),
        title=f"{ITEM.title}（第{number}場）",
        body=f"{ITEM.body}\n第{number}場對接會。",
    )


def _pipeline(database_url: str, **settings: Any) -> tuple[StorePipeline, MemoryStatsCollector]:
    """Return an opened StorePipeline on a crawler-like object holding the real kaiping seed
    and a real stats collector (from_crawler reads the STORE_BATCH_* settings)."""
    seeds, errors = load_seeds(PROJECT_ROOT / "seeds")
    assert not errors
    crawler = SimpleNamespace(
        settings=Settings({"DATABASE_URL": database_url, **settings}),
        spider=SimpleNamespace(seeds={SOURCE: seeds[SOURCE]}),
    )
    crawler.stats = MemoryStatsCollector(crawler)  # type: ignore[arg-type]
    pipeline = StorePipeline.from_crawler(crawler)
    pipeline.open_spider()
    return pipeline, crawler.stats


def _stored_urls(database_url: str) -> list[str]:
    return [row[0] for row in _rows(database_url, "select url from articles order by url")]


# ----- store_batch -----------------------------------------------------------------------------


def test_one_batch_holding_new_unchanged_and_changed_is_one_transaction(
    database_url: str,
) -> None:
    sessions = with_source(database_url)
    again = replace(ITEM, url=ARTICLE_URL + "#top", fetched_at="2026-11-22T05:00:00+00:00")
    edited = replace(
        ITEM,
        url=ARTICLE_URL + "?utm_source=wechat",
        body=ITEM.body + "\n" + ADDED_LINE,
        fetched_at="2026-11-22T06:00:00+00:00",
    )
    assert len({canonical_url(item.url) for item in (ITEM, again, edited)}) == 1

    with sessions.begin() as session:
        results = store_batch(session, [ITEM, again, edited], lambda _source_id: False)
        # Written (flushed) but not committed: another connection sees none of it yet.
        assert _rows(database_url, "select count(*) from articles") == [(0,)]
        assert _rows(database_url, "select count(*) from article_versions") == [(0,)]

    assert [r.outcome for r in results] == ["new", "unchanged", "changed"]
    assert len({r.article_id for r in results}) == 1
    assert results[1].version_id is None
    assert None not in (results[0].version_id, results[2].version_id)
    versions = _rows(
        database_url, "select id, version_no, diff from article_versions order by version_no"
    )
    assert [(v[0], v[1]) for v in versions] == [
        (results[0].version_id, 1),
        (results[2].version_id, 2),
    ]
    assert versions[0][2] is None
    assert "+" + ADDED_LINE in versions[1][2]
    assert _rows(database_url, "select content_hash, checks from articles") == [
        (content_hash(edited.title, edited.body), 0)  # a revision restarts the schedule
    ]


def test_new_posts_are_written_in_a_few_statements_and_each_result_names_its_own_rows(
    database_url: str,
) -> None:
    sessions = with_source(database_url)
    posts = [_post(number) for number in range(120)]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        with sessions.begin() as session:
            results = store_batch(session, posts, lambda _source_id: True)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    # One look-up and one multi-row INSERT per table, not a statement per row (a dialect may
    # split a long INSERT into pages of rows; 120 rows fit in one on SQLite and PostgreSQL).
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 2, statements
    assert len(statements) <= 4, statements
    assert [r.outcome for r in results] == ["new"] * len(posts)
    stored = {
        row[0]: row[1:]
        for row in _rows(
            database_url,
            "select a.url, a.id, v.id, v.title from articles a "
            "join article_versions v on v.article_id = a.id",
        )
    }
    for post, result in zip(posts, results, strict=True):
        assert stored[post.url] == (result.article_id, result.version_id, post.title)


def test_hash_change_from_normalisation_alone_is_not_a_revision(database_url: str) -> None:
    sessions = with_source(database_url)
    with sessions.begin() as session:
        (first,) = store_batch(session, [ITEM], lambda _source_id: False)
    assert first.outcome == "new"
    # As if an older normaliser (another OpenCC dictionary, say) had computed the stored hash.
    stale = "0" * 64
    _execute(database_url, f"update articles set content_hash = '{stale}'")
    assert _rows(database_url, "select content_hash from articles") == [(stale,)]

    later = replace(ITEM, fetched_at="2026-11-22T05:00:00+00:00")
    with sessions.begin() as session:
        (again,) = store_batch(session, [later], lambda _source_id: False)

    assert (again.outcome, again.article_id, again.version_id) == (
        "unchanged",
        first.article_id,
        None,
    )
    assert _rows(database_url, "select count(*) from article_versions") == [(1,)]
    ((stored_hash, checks),) = _rows(database_url, "select content_hash, checks from articles")
    assert stored_hash == content_hash(ITEM.title, ITEM.body) != stale
    assert checks == 1  # seen again: the revisit schedule moves on, it does not restart


# ----- the pipeline, driven directly -------------------------------------------------------------


WRITERS = pytest.mark.parametrize("store_process", [True, False], ids=["process", "thread"])


@WRITERS
def test_a_failing_batch_is_stored_item_by_item_and_only_the_bad_item_is_lost(
    database_url: str, caplog: pytest.LogCaptureFixture, store_process: bool
) -> None:
    pipeline, stats = _pipeline(
        database_url, STORE_BATCH_SIZE=3, STORE_BATCH_SECONDS=3600, STORE_PROCESS=store_process
    )
    assert (pipeline.process is not None) is store_process
    # "ghost" is not in the sources table: its article breaks the foreign key.
    good, bad, other = _post(1), _post(2, source_id="ghost"), _post(3)
    caplog.set_level(logging.INFO, logger="crawler.pipelines")
    try:
        pipeline.process_item(good)
        pipeline.process_item(bad)
        assert _stored_urls(database_url) == []  # still pending
        pipeline.process_item(other)  # the third item makes the batch due
        assert pipeline.pending == []
        pipeline.drain()  # the writer thread has written it

        assert _stored_urls(database_url) == sorted([good.url, other.url])
        assert _rows(database_url, "select count(*) from article_versions") == [(2,)]
        assert stats.get_value("source/ghost/store_errors") == 1
        assert stats.get_value("source/ghost/article_errors") == 1
        first_error = stats.get_value("source/ghost/first_error")
        assert first_error.startswith(f"could not store {bad.url}: IntegrityError")
        assert stats.get_value(f"source/{SOURCE}/new") == 2
        assert stats.get_value(f"source/{SOURCE}/store_errors") is None
        assert stats.get_value(f"source/{SOURCE}/article_errors") is None
        assert (
            "a batch of 3 items failed (IntegrityError: (sqlite3.IntegrityError) FOREIGN KEY "
            "constraint failed); it was stored item by item" in caplog.text
            if database_url.startswith("sqlite")
            else "a batch of 3 items failed (IntegrityError: (psycopg.errors.ForeignKeyViolation)"
            in caplog.text
        )
        assert f"source ghost: could not store {bad.url}" in caplog.text
    finally:
        pipeline.close_spider()
    assert _rows(database_url, "select new_articles from crawl_runs") == [(2,)]


def test_new_and_changed_text_of_one_article_in_one_batch_all_reach_the_database(
    database_url: str,
) -> None:
    pipeline, stats = _pipeline(database_url, STORE_BATCH_SIZE=3, STORE_BATCH_SECONDS=3600)
    try:
        pipeline.process_item(ITEM)
        pipeline.process_item(replace(ITEM, url=ARTICLE_URL + "#top"))
        pipeline.process_item(replace(ITEM, body=ITEM.body + "\n" + ADDED_LINE))
        assert pipeline.pending == []
    finally:
        pipeline.close_spider()
    assert [stats.get_value(f"source/{SOURCE}/{o}") for o in ("new", "unchanged", "changed")] == [
        1,
        1,
        1,
    ]
    assert stats.get_value(f"source/{SOURCE}/store_errors") is None
    assert _rows(database_url, "select version_no from article_versions order by 1") == [(1,), (2,)]
    assert _rows(database_url, "select new_articles, changed_articles from crawl_runs") == [(1, 1)]


def test_timer_writes_pending_items_once_the_oldest_has_waited(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(pipelines, "time", SimpleNamespace(monotonic=lambda: now[0]))
    pipeline, stats = _pipeline(sqlite_url, STORE_BATCH_SIZE=1000, STORE_BATCH_SECONDS=5)
    try:
        # The timer open_spider started is what calls _flush_stale, every batch_seconds.
        assert pipeline.timer is not None and pipeline.timer.running
        assert (pipeline.timer.f, pipeline.timer.interval) == (pipeline._flush_stale, 5)

        pipeline.process_item(_post(1))
        now[0] += 4
        pipeline.process_item(_post(2))
        pipeline._flush_stale()  # the oldest has waited 4 s of 5
        assert len(pipeline.pending) == 2 and _stored_urls(sqlite_url) == []

        now[0] += 1
        pipeline._flush_stale()  # 5 s: both go, the younger one with the oldest
        assert pipeline.pending == []
        pipeline.drain()
        assert _stored_urls(sqlite_url) == sorted([_post(1).url, _post(2).url])
        assert stats.get_value(f"source/{SOURCE}/new") == 2

        now[0] += 60  # an idle spell does not count towards the next item's wait
        pipeline.process_item(_post(3))
        pipeline._flush_stale()
        assert len(pipeline.pending) == 1
        now[0] += 5
        pipeline._flush_stale()
        pipeline.drain()
        assert len(_stored_urls(sqlite_url)) == 3
    finally:
        pipeline.close_spider()
    assert not pipeline.timer.running


@WRITERS
def test_batches_are_written_beside_the_crawl_in_order_and_all_before_the_runs_close(
    sqlite_url: str, store_process: bool
) -> None:
    """A batch waiting for SQLite's write lock does not hold up the crawl's thread."""
    import sqlite3

    pipeline, stats = _pipeline(
        sqlite_url, STORE_BATCH_SIZE=2, STORE_BATCH_SECONDS=3600, STORE_PROCESS=store_process
    )
    # Another writer (the monitor classifying, say) holds the database's write lock.
    path = sqlite_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for number in range(1, 7):  # three batches, handed over as they fill
            pipeline.process_item(_post(number))
        assert pipeline.pending == []
        assert len(pipeline.writing) == 3  # waiting for the lock, not written
        assert _stored_urls(sqlite_url) == []
        assert stats.get_value(f"source/{SOURCE}/new") is None  # counted once written
        # The same post again, changed, in a later batch: it must see the first one stored.
        pipeline.process_item(replace(_post(1), body=_post(1).body + "\n" + ADDED_LINE))
        pipeline.process_item(_post(7))
        assert len(pipeline.writing) == 4
    finally:
        other.execute("COMMIT")
        other.close()
    pipeline.drain()
    process = pipeline.process.process if pipeline.process is not None else None
    assert (process is not None) is store_process
    assert not pipeline.writing
    assert len(_stored_urls(sqlite_url)) == 7
    assert stats.get_value(f"source/{SOURCE}/new") == 7
    assert stats.get_value(f"source/{SOURCE}/changed") == 1
    pipeline.process_item(_post(8))  # pending at the end: closing writes it
    pipeline.close_spider()
    assert pipeline.writer is None
    if process is not None:  # it wrote every batch, then ended with the crawl's end
        assert process.returncode == 0
    assert len(_stored_urls(sqlite_url)) == 8
    assert _rows(sqlite_url, "select new_articles, changed_articles from crawl_runs") == [(8, 1)]


# ----- real crawls of the kaiping replay ---------------------------------------------------------


def _crawl_argv(replay: ReplayServer, log_file: Path, **settings: Any) -> list[str]:
    """Return the argv of a `scrapy crawl` of the kaiping replay with extra settings."""
    return crawl_argv(replay.url, [SOURCE], LOG_FILE=log_file, **settings)


def _crawl(replay: ReplayServer, env: dict, log_file: Path, **settings: Any) -> None:
    """Run one crawl to completion."""
    done = subprocess.run(
        _crawl_argv(replay, log_file, **settings),
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _all_post_urls(replay: ReplayServer) -> list[str]:
    return sorted(replay.article_url(SOURCE, post) for post in replay.site(SOURCE).column.all())


def _article_fetches(replay: ReplayServer) -> list[str]:
    """Return the paths of the article pages the replay has served, in order."""
    return [r.path for r in replay.requests if "/content/post_" in r.path and r.status == 200]


def _list_fetches(replay: ReplayServer) -> list[tuple[str, int]]:
    return [(r.path.rsplit("/", 1)[-1], r.status) for r in replay.requests if "index" in r.path]


def _last_run(database_url: str) -> tuple[str, int, str | None, dict]:
    ((status, new, error, stats),) = _rows(
        database_url,
        "select status, new_articles, error, stats from crawl_runs order by id desc limit 1",
    )
    return status, new, error, stats if isinstance(stats, dict) else json.loads(stats or "{}")


def test_an_article_the_database_refuses_costs_only_itself_in_a_real_crawl(
    tmp_path: Path,
) -> None:
    with ReplayServer([SOURCE]) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        database_url = env["DATABASE_URL"]
        everything = _all_post_urls(replay)
        victim = everything[len(everything) // 2]
        upgrade(database_url)
        # A real refusal by the database, for one article of the crawl's only batch.
        _execute(
            database_url,
            "create trigger refuse_victim before insert on articles "
            f"when new.url = '{victim}' begin select raise(abort, 'refused by the test'); end",
        )
        _crawl(replay, env, tmp_path / "crawl.log", STORE_BATCH_SECONDS=3600)

        assert _stored_urls(database_url) == [u for u in everything if u != victim]
        status, new, error, stats = _last_run(database_url)
        assert (stats["store_errors"], stats["article_errors"], new) == (1, 1, len(everything) - 1)
        assert stats["first_error"].startswith(f"could not store {victim}: IntegrityError")
        assert (status, error) == ("ok", stats["first_error"])
        log = (tmp_path / "crawl.log").read_text(encoding="utf-8")
        assert f"source {SOURCE}: could not store {victim}" in log
        # A failed article: the list validators are not saved, so no 304 can hide the post.
        assert _rows(database_url, "select count(*) from http_validators") == [(0,)]

        _execute(database_url, "drop trigger refuse_victim")
        replay.clear_log()
        _crawl(replay, env, tmp_path / "crawl2.log")
        assert _list_fetches(replay)[0] == ("index.html", 200)
        assert [replay.url + path for path in _article_fetches(replay)] == [victim]
        assert _stored_urls(database_url) == everything
        assert _last_run(database_url)[:3] == ("ok", 1, None)


def test_timer_stores_articles_while_the_crawl_is_still_fetching(tmp_path: Path) -> None:
    with ReplayServer([SOURCE]) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        database_url = env["DATABASE_URL"]
        everything = _all_post_urls(replay)
        upgrade(database_url)
        crawl = start_crawl(
            _crawl_argv(
                replay,
                tmp_path / "crawl.log",
                STORE_BATCH_SIZE=100_000,  # never reached: only the timer can write early
                STORE_BATCH_SECONDS=0.2,
                DOWNLOAD_DELAY=0.25,  # about 6 s of article pages, one at a time
            ),
            env,
        )
        try:
            stored_early = wait_until(
                lambda: _rows(database_url, "select count(*) from articles")[0][0],
                timeout=60,
                what="the first articles in the database",
                every=0.05,
            )
            # Read after the count: the crawl was still fetching when the rows were there.
            fetched = len(_article_fetches(replay))
            assert crawl.poll() is None
            _, stderr = crawl.communicate(timeout=90)
        finally:
            if crawl.poll() is None:
                crawl.kill()
                crawl.wait()
        assert crawl.returncode == 0, stderr[-3000:]
    assert 0 < stored_early <= fetched < len(everything)
    assert _stored_urls(database_url) == everything
    status, new, _error, stats = _last_run(database_url)
    assert (status, new, stats["new"]) == ("ok", len(everything), len(everything))


def test_crawl_killed_with_items_pending_loses_nothing_for_the_next_cycle(
    tmp_path: Path,
) -> None:
    with ReplayServer([SOURCE]) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        database_url = env["DATABASE_URL"]
        everything = _all_post_urls(replay)
        upgrade(database_url)
        log_file = tmp_path / "killed.log"
        crawl = start_crawl(
            _crawl_argv(
                replay,
                log_file,
                STORE_BATCH_SIZE=100_000,
                STORE_BATCH_SECONDS=3600,  # nothing is written before the spider closes
                DOWNLOAD_DELAY=0.25,
                LOG_LEVEL="DEBUG",  # "Scraped from ...": the item has been through the pipeline
            ),
            env,
        )

        def scraped() -> int:
            log = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
            return log.count("Scraped from <200 ")

        try:
            wait_until(lambda: scraped() >= 5, timeout=60, what="5 items in the pipeline")
        finally:
            os.killpg(crawl.pid, signal.SIGKILL)  # a power cut: no close_spider, no flush
            crawl.wait(timeout=30)
        fetched_before = set(_article_fetches(replay))
        assert 5 <= len(fetched_before) < len(everything)
        # The pending items died with the process; the run was never closed, no validators.
        assert _rows(database_url, "select count(*) from articles") == [(0,)]
        assert _rows(database_url, "select status from crawl_runs") == [("running",)]
        assert _rows(database_url, "select count(*) from http_validators") == [(0,)]

        replay.clear_log()
        done = run_monitor(["run", "--once", "--sources", SOURCE], env)
        assert done.returncode == 0, done.stderr[-3000:]
        refetched = _article_fetches(replay)

    assert _list_fetches(replay)[0] == ("index.html", 200)
    assert fetched_before <= set(refetched)  # what died unstored is not "known": fetched again
    assert _stored_urls(database_url) == everything
    per_article = _rows(
        database_url,
        "select a.url, count(v.id) from articles a join article_versions v "
        "on v.article_id = a.id group by a.url order by a.url",
    )
    assert per_article == [(url, 1) for url in everything]
    assert _last_run(database_url)[:2] == ("ok", len(everything))
