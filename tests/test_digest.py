"""Digest channels: alerts wait in state `digest` and go out bundled, once, through real sinks;
and which channels a topic (or `health`) reaches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.config import AppSettings
from crawler.db import session_factory
from crawler.migrate import upgrade
from crawler.models import Alert, Article, ArticleVersion, Delivery, Source
from monitor.alerting import process_new_versions, subscribed_channels
from monitor.channels import ChannelConfig, build_notifier, load_channels
from monitor.daemon import Daemon
from monitor.digest import digest_entries, digest_key, period_label, queue_digests
from monitor.dispatcher import dispatch_due
from monitor.render import make_digest
from monitor.topics import TopicSet, load_topics
from replay.sinks import SmtpSink, WebhookSink
from tests.world import POSTS, hook_channel, mail_channel

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


@pytest.fixture(scope="module")
def topics() -> TopicSet:
    """Return the shipped topics."""
    return load_topics(None)


@pytest.fixture
def sinks() -> Iterator[tuple[SmtpSink, WebhookSink]]:
    """Return a running SMTP sink and webhook sink."""
    with SmtpSink() as smtp, WebhookSink() as hook:
        yield smtp, hook


@pytest.fixture
def sessions(sqlite_url: str) -> sessionmaker[Session]:
    """Return sessions on a migrated SQLite file with two new biomedical posts, not classified."""
    upgrade(sqlite_url)
    factory = session_factory(sqlite_url)
    with factory.begin() as session:
        session.add(
            Source(
                id="kaiping",
                name="开平市科工商务局",
                base_url="http://kaiping.test",
                created_at=NOW,
                consecutive_failures=0,
            )
        )
        session.flush()
        for number, (title, paragraphs) in enumerate(POSTS[:2]):
            article = Article(
                source_id="kaiping",
                canonical_url=f"http://kaiping.test/{number}",
                url=f"http://kaiping.test/{number}",
                title=title,
                published_at=NOW,
                content_hash=str(number) * 64,
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
            session.add(article)
            session.flush()
            session.add(
                ArticleVersion(
                    article_id=article.id,
                    version_no=1,
                    title=title,
                    body="\n".join(paragraphs),
                    published_at=NOW,
                    content_hash=str(number) * 64,
                    fetched_at=NOW,
                    attachments=[],
                )
            )
    return factory


def channels_file(tmp_path: Path, *entries: str) -> dict[str, ChannelConfig]:
    """Return the channels of a channels file made of `entries`."""
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n" + "".join(entries), encoding="utf-8")
    return load_channels(path)


def states(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    """Return (alert kind, channel, state) of every delivery, in delivery order."""
    with sessions() as session:
        rows = session.execute(
            select(Alert.kind, Delivery.channel, Delivery.state).join(Alert).order_by(Delivery.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_digest_channels_get_one_bundle_per_period_sent_once(
    tmp_path: Path,
    sqlite_url: str,
    sessions: sessionmaker[Session],
    topics: TopicSet,
    sinks: tuple[SmtpSink, WebhookSink],
) -> None:
    smtp, hook = sinks
    channels = channels_file(
        tmp_path,
        hook_channel("instant", hook, ["*"]),
        hook_channel("hourly", hook, ["*"], mode="digest_hourly"),
        mail_channel("daily", smtp, ["biomed_coop"], mode="digest_daily"),
        hook_channel("ops", hook, ["health"]),
    )
    assert process_new_versions(sessions, topics, channels).alerts == 2
    waiting = [
        ("new", "instant", "pending"),
        ("new", "hourly", "digest"),
        ("new", "daily", "digest"),
    ]
    assert states(sessions) == waiting * 2

    (queued,) = queue_digests(sessions, channels, "hourly", NOW)
    assert (queued.channel, queued.entries) == ("hourly", 2)
    bundled = [("new", "instant", "pending"), ("new", "hourly", "sent"), ("new", "daily", "digest")]
    assert states(sessions) == [*bundled * 2, ("digest", "hourly", "pending")]
    assert queue_digests(sessions, channels, "hourly", NOW) == []

    notifiers = {name: build_notifier(name, config) for name, config in channels.items()}
    assert dispatch_due(sessions, notifiers).sent == 3
    by_path = {request.path: request.json for request in hook.deliveries}
    assert sorted(by_path) == ["/hourly", "/instant"]
    digest = by_path["/hourly"]
    assert digest["kind"] == "digest" and digest["idempotency_key"] == queued.idempotency_key
    assert digest["title"] == "11月22日 12:00 每小时汇总 2 条公告"
    assert [entry["title"] for entry in digest["entries"]] == [title for title, _ in POSTS[:2]]
    assert len(hook.deliveries) == 3 and smtp.messages == []

    settings = AppSettings(database_url=sqlite_url, data_dir=tmp_path)
    daemon = Daemon(settings, {}, topics, channels, notifiers)
    daemon.send_digests("daily")
    (mail,) = smtp.wait_for(1)
    assert str(mail.message["Subject"]).startswith("【生物医药合作·汇总】")
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert POSTS[0][0] in text and POSTS[1][0] in text
    daemon.send_digests("daily")
    daemon.send_digests("hourly")
    assert len(smtp.messages) == 1 and len(hook.deliveries) == 3
    assert {state for _, _, state in states(sessions)} == {"sent"}


def test_a_digest_that_cannot_be_written_leaves_its_alerts_waiting(
    tmp_path: Path, sessions: sessionmaker[Session], topics: TopicSet
) -> None:
    channels = channels_file(
        tmp_path, hook_channel("hourly", WebhookSink(), ["*"], mode="digest_hourly")
    )
    process_new_versions(sessions, topics, channels)
    with sessions.begin() as session:
        waiting = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        bundle = make_digest(digest_entries(session, waiting), period_label("hourly", NOW))
        # Another process wrote this very digest a moment ago.
        session.add(
            Alert(
                idempotency_key=digest_key("hourly", bundle),
                kind="digest",
                payload=bundle.to_payload(),
                created_at=NOW,
            )
        )
    assert queue_digests(sessions, channels, "hourly", NOW) == []
    assert states(sessions) == [("new", "hourly", "digest")] * 2


def test_a_channel_no_longer_in_digest_mode_gets_its_waiting_alerts_next_hour(
    tmp_path: Path, sessions: sessionmaker[Session], topics: TopicSet
) -> None:
    hook = WebhookSink()
    process_new_versions(
        sessions, topics, channels_file(tmp_path, hook_channel("team", hook, ["*"], "digest_daily"))
    )
    instant = channels_file(tmp_path, hook_channel("team", hook, ["*"]))
    assert queue_digests(sessions, instant, "daily", NOW) == []
    (queued,) = queue_digests(sessions, instant, "hourly", NOW)
    assert queued.entries == 2


def test_star_means_every_topic_but_health(tmp_path: Path) -> None:
    hook = WebhookSink()
    channels = channels_file(
        tmp_path,
        hook_channel("everything", hook, ["*"]),
        hook_channel("ops", hook, ["health"]),
        hook_channel("ops-and-biomed", hook, ["health", "biomed_coop"], "digest_daily"),
        hook_channel("all-and-ops", hook, ["*", "health"]),
        hook_channel("other", hook, ["policy"]),
    )
    assert subscribed_channels(channels, ["health"]) == ["ops", "ops-and-biomed", "all-and-ops"]
    assert subscribed_channels(channels, ["biomed_coop"]) == [
        "everything",
        "ops-and-biomed",
        "all-and-ops",
    ]
    assert subscribed_channels(channels, ["policy"]) == ["everything", "all-and-ops", "other"]
    assert subscribed_channels(channels, []) == []
