"""Crawling only what is new: conditional list requests, known articles skipped, withdrawals."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from replay.server import ReplayServer
from tests.e2e import monitor_env, run_monitor
from tests.world import with_source


@pytest.fixture
def site(tmp_path: Path):
    """Yield a 60-post kaiping replay (4 list pages) and a monitor environment."""
    with ReplayServer(["kaiping"], size=60) as replay:
        channels = tmp_path / "channels.yaml"
        channels.write_text(
            f"channels:\n  file:\n    kind: file\n    path: {tmp_path / 'alerts.jsonl'}\n",
            encoding="utf-8",
        )
        yield replay, monitor_env(tmp_path, replay.url, channels)


def _cycle(env: dict) -> None:
    done = run_monitor(["run", "--once", "--sources", "kaiping"], env)
    assert done.returncode == 0, done.stderr[-3000:]


def _query(env: dict, sql: str, **params: object) -> list[tuple]:
    engine = create_engine(env["DATABASE_URL"])
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _site_requests(replay: ReplayServer) -> list:
    return [r for r in replay.requests if not r.path.endswith("/robots.txt")]


def test_unchanged_site_costs_one_conditional_request_per_list(site) -> None:
    replay, env = site
    _cycle(env)
    first = _site_requests(replay)
    # The first crawl is bounded by the backfill depth: 3 list pages of 15 posts.
    assert sum("/content/post_" in r.path for r in first) == 45
    replay.clear_log()

    _cycle(env)
    second = _site_requests(replay)
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in second] == [("index.html", 304)]
    assert "if-none-match" in {k.lower() for k in second[0].headers}


def test_new_post_fetches_only_the_new_article(site) -> None:
    replay, env = site
    _cycle(env)
    replay.clear_log()
    url = replay.publish(
        "kaiping", "開平市召開2024年安全生產工作會議", ["會議部署了冬季安全生產工作。"]
    )
    _cycle(env)
    articles = [r.path for r in _site_requests(replay) if "/content/post_" in r.path]
    assert len(articles) == 1 and url.endswith(articles[0])
    lists = [
        (r.path.rsplit("/", 1)[-1], r.status) for r in _site_requests(replay) if "index" in r.path
    ]
    # Page 1 shows a new post, so the walk goes on; page 2 holds only known posts: it stops.
    assert lists == [("index.html", 200), ("index_2.html", 200)]


def test_post_gone_from_list_between_neighbours_is_withdrawn(site) -> None:
    replay, env = site
    _cycle(env)
    rows = _query(env, "select url from articles order by published_at desc")
    victim = rows[4][0]
    replay.delete("kaiping", victim)
    _cycle(env)
    withdrawn = _query(
        env, "select url, withdrawn_reason from articles where withdrawn_at is not null"
    )
    assert withdrawn == [(victim, "gone from its list page")]


def test_due_revisit_of_a_deleted_post_marks_it_withdrawn(site) -> None:
    replay, env = site
    _cycle(env)
    victim = _query(env, "select url from articles order by published_at asc")[0][0]
    _query(
        env, "update articles set next_check_at = '2000-01-01 00:00:00' where url = :u", u=victim
    )
    replay.delete("kaiping", victim)
    replay.clear_log()
    _cycle(env)
    assert any(r.status == 404 for r in replay.requests if victim.endswith(r.path))
    withdrawn = _query(
        env, "select url, withdrawn_reason from articles where withdrawn_at is not null"
    )
    assert withdrawn == [(victim, "HTTP 404 on revisit")]


def test_revisit_schedule_decays_after_each_check(site) -> None:
    _replay, env = site
    _cycle(env)
    target = _query(env, "select url from articles order by published_at desc")[0][0]
    _query(
        env, "update articles set next_check_at = '2000-01-01 00:00:00' where url = :u", u=target
    )
    _cycle(env)
    ((checks, next_check, last_seen),) = _query(
        env, "select checks, next_check_at, last_seen_at from articles where url = :u", u=target
    )
    assert checks == 1
    assert next_check > last_seen  # six hours later, as text in UTC


def test_title_edit_seen_on_the_list_refetches_the_post(site) -> None:
    replay, env = site
    _cycle(env)
    newest = _query(env, "select url from articles order by published_at desc")[0][0]
    replay.edit("kaiping", newest, title="開平市關於調整2024年冬季供水時間的通知（更正）")
    replay.clear_log()
    _cycle(env)
    fetched = [r.path for r in _site_requests(replay) if "/content/post_" in r.path]
    assert len(fetched) == 1 and newest.endswith(fetched[0])
    assert _query(
        env,
        "select count(*) from article_versions v join articles a "
        "on a.id = v.article_id where a.url = :u",
        u=newest,
    ) == [(2,)]


def test_a_crawl_reads_once_whether_the_database_held_any_article(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from crawler.items import ArticleItem
    from crawler.memory import CrawlMemory
    from crawler.store import store_batch
    from crawler.urls import canonical_url

    sessions = with_source(f"sqlite:///{tmp_path / 'memory.db'}")
    first = CrawlMemory(sessions)
    assert first.empty()  # the first crawl of an installation skips its list look-ups
    post = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_1.html"
    with sessions.begin() as session:
        now = datetime.now(UTC)
        item = ArticleItem(
            "kaiping", post, "開平舉辦生物醫藥對接會", "正文。", fetched_at=now.isoformat()
        )
        store_batch(session, [item], lambda _source_id: True)
    # Read once: what this crawl stores itself changes nothing for it...
    assert first.empty()
    # ...and the next crawl looks its list pages up.
    later = CrawlMemory(sessions)
    assert not later.empty()
    assert later.known([canonical_url(post)]) == {canonical_url(post): "開平舉辦生物醫藥對接會"}


def test_list_validators_of_several_sources_are_saved_in_a_few_statements(
    database_url: str,
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import event, select

    from crawler.memory import CrawlMemory
    from crawler.models import HttpValidator

    with_source(database_url)
    sessions = with_source(database_url, "sznews", "深圳新闻", "http://www.sznews.com")
    earlier = datetime(2026, 1, 1, tzinfo=UTC)
    kaiping = {f"http://www.kaiping.gov.cn/list_{n}.html": (f'"k{n}"', None) for n in range(700)}
    sznews = {f"http://www.sznews.com/news/{n}.htm": (None, f"day {n}") for n in range(600)}
    memory = CrawlMemory(sessions)
    memory.save_validators({"kaiping": dict(list(kaiping.items())[:300])}, earlier)
    # A later crawl: new ETags for pages saved before, and pages never saved.
    kaiping = {url: (f'"{etag.strip(chr(34))}-2"', None) for url, (etag, _) in kaiping.items()}
    statements: list[str] = []
    engine = sessions.kw["bind"]

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    now = earlier + timedelta(days=1)
    try:
        memory.save_validators({"kaiping": kaiping, "sznews": sznews}, now)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # 1,300 pages: three look-ups of 500 URLs at most, then the writes (one statement per
    # batch of rows, not one per page).
    assert sum(s.lstrip().upper().startswith("SELECT") for s in statements) == 3
    assert len(statements) < 20
    later = CrawlMemory(sessions)
    for url, pair in {**kaiping, **sznews}.items():
        assert later.validators(url) == pair
    with sessions() as session:
        by_url = {row.url: row for row in session.scalars(select(HttpValidator))}
    assert len(by_url) == 1300
    assert {row.source_id for url, row in by_url.items() if url in sznews} == {"sznews"}
    assert {row.updated_at for row in by_url.values()} == {now}
    assert memory.validators("http://www.kaiping.gov.cn/list_5.html") == ('"k5-2"', None)
