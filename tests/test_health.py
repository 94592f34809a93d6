"""Source health: the states and their thresholds, one alert going bad and one on recovery, sent to
the channels subscribed to `health` only; and the daemon reporting a real unreachable source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.db import session_factory
from crawler.migrate import upgrade
from crawler.models import Alert, Article, CrawlRun, Delivery, Source, SourceHealth
from monitor.channels import load_channels
from monitor.health import (
    HealthPolicy,
    RunSummary,
    Transition,
    check_sources,
    judge,
    silence_threshold,
)
from tests.world import World, hook_channel, mail_channel, make_world, wait_until

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
POLICY = HealthPolicy()
LONG_AGO = NOW - timedelta(days=365)


def ok(entries: int = 20, pages: int = 1, not_modified: int = 0) -> RunSummary:
    """Return a successful run that saw `entries` posts on `pages` list pages."""
    stats = {"list_pages": pages, "list_entries": entries, "list_not_modified": not_modified}
    return RunSummary("ok", None, stats)


def failed(error: str = "Connection refused at http://x/list.html") -> RunSummary:
    """Return a failed run."""
    return RunSummary("failed", error, {"errors": 1, "first_error": error})


def daily(count: int, newest: datetime) -> list[datetime]:
    """Return `count` post dates one day apart, newest first."""
    return [newest - timedelta(days=n) for n in range(count)]


def test_failing_after_n_consecutive_failed_or_timed_out_runs() -> None:
    posts = daily(20, NOW)
    assert judge([failed(), failed(), ok()], posts, LONG_AGO, NOW, POLICY).state == "ok"
    timeout = RunSummary("timeout", "timed out after 600s", {})
    verdict = judge([timeout, failed(), failed(), ok()], posts, LONG_AGO, NOW, POLICY)
    assert verdict.state == "failing"
    assert verdict.reason == "连续 3 次采集失败，最近一次超时：timed out after 600s"
    assert judge([failed(), ok(), failed(), failed()], posts, LONG_AGO, NOW, POLICY).state == "ok"
    assert judge([failed()], posts, LONG_AGO, NOW, HealthPolicy(failures=1)).state == "failing"


def test_empty_when_a_fetched_list_page_shows_no_post_and_a_304_keeps_the_verdict() -> None:
    posts = daily(20, NOW)
    verdict = judge([ok(entries=0)], posts, LONG_AGO, NOW, POLICY)
    assert verdict.state == "empty" and "没有识别出任何公告" in (verdict.reason or "")
    not_modified = ok(entries=0, not_modified=1)
    assert judge([not_modified, ok(entries=0)], posts, LONG_AGO, NOW, POLICY).state == "empty"
    # Only 304s and failures since: the page judged before has not changed.
    history = [not_modified, failed(), not_modified]
    assert judge(history, posts, LONG_AGO, NOW, POLICY, current="empty").state == "empty"
    assert judge(history, posts, LONG_AGO, NOW, POLICY, current="ok").state == "ok"
    assert judge([ok(), ok(entries=0)], posts, LONG_AGO, NOW, POLICY).state == "ok"
    # Failures outrank emptiness.
    assert judge([failed()] * 3 + [ok(entries=0)], posts, LONG_AGO, NOW, POLICY).state == "failing"
    # A crawl may be recorded as failed because its list was empty: that is `empty`.
    stats = {"list_pages": 1, "list_entries": 0}
    empty_failure = RunSummary("failed", "list page shows no posts at http://x/list.html", stats)
    assert judge([empty_failure] * 3, posts, LONG_AGO, NOW, POLICY).state == "empty"
    assert judge([failed(), failed(), empty_failure], posts, LONG_AGO, NOW, POLICY).state == "empty"


def test_silence_is_measured_against_the_sources_rhythm() -> None:
    assert silence_threshold(daily(20, NOW), POLICY) == timedelta(days=7)
    every_five_days = [NOW - timedelta(days=5 * n) for n in range(20)]
    assert silence_threshold(every_five_days, POLICY) == timedelta(days=20)
    assert silence_threshold([NOW], POLICY) == timedelta(days=7)

    runs = [ok()]
    assert judge(runs, daily(20, NOW - timedelta(days=6)), LONG_AGO, NOW, POLICY).state == "ok"
    quiet = judge(runs, daily(20, NOW - timedelta(days=8)), LONG_AGO, NOW, POLICY)
    assert quiet.state == "silent"
    assert quiet.reason is not None and quiet.reason.startswith("已 8 天没有新公告")
    slow = [NOW - timedelta(days=15) - timedelta(days=5 * n) for n in range(20)]
    assert judge(runs, slow, LONG_AGO, NOW, POLICY).state == "ok"
    assert judge(runs, slow, LONG_AGO, NOW + timedelta(days=6), POLICY).state == "silent"
    # A source added yesterday with an old back catalogue is not silent yet.
    old = daily(20, NOW - timedelta(days=300))
    assert judge(runs, old, NOW - timedelta(days=1), NOW, POLICY).state == "ok"
    assert judge(runs, old, NOW - timedelta(days=8), NOW, POLICY).state == "silent"


CHANNELS = """\
channels:
  ops:
    kind: webhook
    url: http://127.0.0.1:9/ops
    topics: [health]
  ops-daily:
    kind: webhook
    url: http://127.0.0.1:9/ops-daily
    topics: [health, biomed_coop]
    mode: digest_daily
  everything:
    kind: webhook
    url: http://127.0.0.1:9/all
    topics: ['*']
  biomed:
    kind: webhook
    url: http://127.0.0.1:9/biomed
    topics: [biomed_coop]
"""


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    """Return sessions on a migrated SQLite file: source `kaiping`, added long ago, posting daily."""
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    upgrade(url)
    factory = session_factory(url)
    with factory.begin() as session:
        session.add(
            Source(
                id="kaiping",
                name="开平市科工商务局",
                base_url="http://www.kaiping.gov.cn",
                created_at=LONG_AGO,
                consecutive_failures=0,
            )
        )
        session.flush()
        for day, published in enumerate(daily(5, NOW)):
            session.add(
                Article(
                    source_id="kaiping",
                    canonical_url=f"http://www.kaiping.gov.cn/{day}.html",
                    url=f"http://www.kaiping.gov.cn/{day}.html",
                    title=f"公告 {day}",
                    published_at=published,
                    content_hash="0" * 64,
                    first_seen_at=published,
                    last_seen_at=published,
                )
            )
    return factory


def add_run(sessions: sessionmaker[Session], status: str, **stats: Any) -> None:
    """Record one finished (or, with status 'running', abandoned) crawl run of kaiping."""
    with sessions.begin() as session:
        error = (
            "Connection refused at http://www.kaiping.gov.cn/list.html" if status != "ok" else None
        )
        session.add(
            CrawlRun(
                source_id="kaiping", started_at=NOW, status=status, error=error, stats=stats or None
            )
        )


def outbox(sessions: sessionmaker[Session]) -> list[tuple[str, str, list[str]]]:
    """Return (kind, title, [channel:state]) of every alert, oldest first."""
    with sessions() as session:
        return [
            (
                alert.kind,
                alert.payload["title"],
                sorted(f"{d.channel}:{d.state}" for d in alert.deliveries),
            )
            for alert in session.scalars(select(Alert).order_by(Alert.id))
        ]


def test_one_alert_to_ops_channels_going_bad_one_on_recovery(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    channels = load_channels(tmp_path / "channels.yaml")

    def check(minutes: int) -> list[Transition]:
        """Return the changes of a health check `minutes` after NOW."""
        return check_sources(
            sessions, channels, ["kaiping"], POLICY, NOW + timedelta(minutes=minutes)
        )

    add_run(sessions, "ok", list_pages=1, list_entries=20)
    assert check(0) == [] and outbox(sessions) == []
    for _ in range(2):
        add_run(sessions, "failed")
    add_run(sessions, "running")  # left behind by a killed daemon: not counted
    assert check(1) == []
    add_run(sessions, "timeout")
    (change,) = check(2)
    assert (change.previous, change.state) == ("ok", "failing")
    ops = ["ops-daily:pending", "ops:pending"]
    assert outbox(sessions) == [("health", "来源「开平市科工商务局」采集失败", ops)]
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.article_version_id is None
        assert alert.idempotency_key.startswith("health-")
        excerpt = alert.payload["excerpt"]
        assert "连续 3 次采集失败，最近一次超时" in excerpt and "（北京时间）" in excerpt
        health = session.get(SourceHealth, "kaiping")
        assert health is not None and health.state == "failing"
        assert health.since == NOW + timedelta(minutes=2) == health.notified_at

    add_run(sessions, "failed")
    assert check(3) == [] and len(outbox(sessions)) == 1  # still broken: nothing more

    add_run(sessions, "ok", list_pages=1, list_entries=0)
    (change,) = check(4)
    assert (change.previous, change.state) == ("failing", "empty")
    add_run(sessions, "ok", list_pages=1, list_entries=20)
    (change,) = check(5)
    assert (change.previous, change.state) == ("empty", "ok")
    add_run(sessions, "ok", list_pages=1, list_not_modified=1)
    assert check(6) == []
    assert [(kind, title) for kind, title, _ in outbox(sessions)] == [
        ("health", "来源「开平市科工商务局」采集失败"),
        ("health", "来源「开平市科工商务局」列表为空"),
        ("health", "来源「开平市科工商务局」已恢复正常"),
    ]
    with sessions() as session:
        keys = session.scalars(select(Alert.idempotency_key)).all()
        assert len(set(keys)) == 3
        assert {d.channel for d in session.scalars(select(Delivery))} == {"ops", "ops-daily"}


def test_no_ops_channel_still_records_the_state(sessions: sessionmaker[Session]) -> None:
    for _ in range(3):
        add_run(sessions, "failed")
    (change,) = check_sources(sessions, {}, ["kaiping", "unknown"], POLICY, NOW)
    assert change.state == "failing"
    with sessions() as session:
        health = session.get(SourceHealth, "kaiping")
        assert health is not None and health.state == "failing" and health.notified_at is None


def test_daemon_reports_an_unreachable_source_once_and_then_its_recovery(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with make_world(tmp_path, tmp_path_factory, MONITOR_HEALTH_FAILURES="2") as world:
        world.channels(
            hook_channel("ops", world.hook, ["health"]),
            hook_channel("everything", world.hook, ["*"]),
            mail_channel("mail", world.smtp, ["biomed_coop"]),
        )
        world.replay.stop()
        with world.daemon(every="1s") as daemon:
            (alert,) = world.hook.wait_for(1, timeout=120)
            runs = failed_runs(world)
            wait_until(lambda: failed_runs(world) > runs, 120, "one more failed crawl")
            assert len(world.hook.deliveries) == 1
            world.replay.start()
            recovery = world.hook.wait_for(2, timeout=120)[1]
            assert "Traceback" not in daemon.log()
        assert alert.path == "/ops" and recovery.path == "/ops"
        assert alert.json["kind"] == recovery.json["kind"] == "health"
        assert alert.json["title"] == "来源「" + source_name(world) + "」采集失败"
        assert "连续 2 次采集失败" in alert.json["excerpt"]
        assert "Connection" in alert.json["excerpt"]
        assert recovery.json["title"] == "来源「" + source_name(world) + "」已恢复正常"
        assert world.smtp.messages == [] and len(world.hook.attempts) == 2
        assert world.rows("select state from source_health") == [("ok",)]


def failed_runs(world: World) -> int:
    """Return how many crawls of the world's source failed."""
    return int(world.scalar("select count(*) from crawl_runs where status = 'failed'"))


def source_name(world: World) -> str:
    """Return the stored name of the world's source."""
    return str(world.scalar("select name from sources"))
