"""Classifying new versions in batches: stories, reposts, alerts, and a batch met by a concurrent
classifier, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Alert, Article, ArticleVersion, Delivery, Story
from monitor import alerting
from monitor.alerting import alert_key, process_new_versions
from monitor.channels import ChannelConfig
from monitor.notifiers.local import ConsoleConfig
from monitor.stories import StoryIndex, signature, to_bytes
from monitor.topics import TopicSet, load_topics
from tests.test_stories import REPOST, REPOST_TITLE, STORY, STORY_TITLE, _traditional
from tests.world import POSTS, with_source

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
OTHER_TITLE, OTHER = POSTS[1][0], "\n".join(POSTS[1][1])
THIRD_TITLE, THIRD = POSTS[2][0], "\n".join(POSTS[2][1])
REPOST_BODY = _traditional("\n".join(REPOST))


@pytest.fixture(scope="module")
def topics() -> TopicSet:
    """Return the shipped topics."""
    return load_topics(None)


@pytest.fixture
def channels() -> dict[str, ChannelConfig]:
    """Return an instant channel for every topic and a digest channel for biomed_coop."""
    return {
        "all": ConsoleConfig(kind="console"),
        "daily": ConsoleConfig(kind="console", topics=["biomed_coop"], mode="digest_daily"),
        "ops": ConsoleConfig(kind="console", topics=["health"]),
    }


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    """Return sessions on a migrated database holding one source."""
    return with_source(database_url, "site", "某市科技局", "http://site.test", NOW)


def store(
    sessions: sessionmaker[Session],
    name: str,
    title: str,
    body: str,
    *,
    version_no: int = 1,
    baseline: bool = False,
) -> int:
    """Store a version of post `name` (the article too, for a first version); return its id."""
    url = f"http://site.test/{name}"
    with sessions.begin() as session:
        if version_no == 1:
            article = Article(
                source_id="site",
                canonical_url=url,
                url=url,
                title=title,
                published_at=NOW,
                content_hash=f"{name}-1",
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
            session.add(article)
            session.flush()
        else:
            article = session.scalars(select(Article).where(Article.canonical_url == url)).one()
        version = ArticleVersion(
            article_id=article.id,
            version_no=version_no,
            title=title,
            body=body,
            published_at=NOW,
            content_hash=f"{name}-{version_no}",
            diff="-old\n+new" if version_no > 1 else None,
            fetched_at=NOW,
            baseline=baseline,
            attachments=[],
        )
        session.add(version)
        session.flush()
        return version.id


def stories_of(sessions: sessionmaker[Session]) -> dict[str, int | None]:
    """Return post name -> story id."""
    with sessions() as session:
        rows = session.execute(select(Article.canonical_url, Article.story_id)).all()
    return {url.rsplit("/", 1)[1]: story for url, story in rows}


def alerts_of(sessions: sessionmaker[Session]) -> list[tuple[str, str, list[str]]]:
    """Return (post name, kind, channels) of every alert, in order."""
    with sessions() as session:
        alerts = session.scalars(select(Alert).order_by(Alert.id)).all()
        return [
            (
                alert.payload["url"].rsplit("/", 1)[1],
                alert.kind,
                [d.channel for d in sorted(alert.deliveries, key=lambda d: d.id)],
            )
            for alert in alerts
        ]


def test_posts_join_stories_reposts_do_not_alert_and_changes_do(
    sessions: sessionmaker[Session], topics: TopicSet, channels: dict[str, ChannelConfig]
) -> None:
    store(sessions, "story", STORY_TITLE, "\n".join(STORY))
    store(sessions, "repost", REPOST_TITLE, REPOST_BODY)  # joins a story not stored yet
    store(sessions, "other", OTHER_TITLE, OTHER)
    store(sessions, "baseline", THIRD_TITLE, THIRD, baseline=True)
    store(sessions, "short", "通知", "详见附件。")  # too short for a signature
    index = StoryIndex()
    done = process_new_versions(sessions, topics, channels, batch=3, stories=index)
    assert (done.classified, done.alerts) == (5, 2)
    assert alerts_of(sessions) == [
        ("story", "new", ["all", "daily"]),
        ("other", "new", ["all", "daily"]),
    ]
    first = stories_of(sessions)
    assert first["story"] == first["repost"]
    assert len(set(first.values())) == 4 and None not in first.values()

    # A later cycle, in a restarted daemon (its index read back from the database).
    store(sessions, "repost2", REPOST_TITLE + "（转载）", REPOST_BODY)
    store(sessions, "story", STORY_TITLE, "\n".join(STORY) + "\n附件：合作协议全文。", version_no=2)
    store(sessions, "other-copy", OTHER_TITLE, OTHER, baseline=True)
    done = process_new_versions(sessions, topics, channels, stories=StoryIndex())
    assert (done.classified, done.alerts) == (3, 1)
    assert alerts_of(sessions)[2:] == [("story", "changed", ["all", "daily"])]
    second = stories_of(sessions)
    assert second["repost2"] == second["story"] and second["other-copy"] == second["other"]

    with sessions() as session:
        versions = session.scalars(select(ArticleVersion).order_by(ArticleVersion.id)).all()
        assert all(v.classified_at is not None for v in versions)
        assert [bool(v.topics) for v in versions] == [True] * 4 + [False] + [True] * 3
        assert all(v.parties for v in versions if v.topics)
        articles = {a.canonical_url.rsplit("/", 1)[1]: a for a in session.scalars(select(Article))}
        for name, article in articles.items():
            version = min(article.versions, key=lambda v: v.version_no)
            minhash = signature(version.title, version.body)
            assert article.minhash == (to_bytes(minhash) if minhash is not None else None), name
        stored = {s.id: s.first_article_id for s in session.scalars(select(Story))}
        assert stored == {
            articles[name].story_id: articles[name].id
            for name in ("story", "other", "baseline", "short")
        }
        assert session.scalar(select(func.count()).select_from(Delivery)) == 6


def test_a_batch_met_by_a_concurrent_classifier_is_done_again_one_by_one(
    sessions: sessionmaker[Session],
    topics: TopicSet,
    channels: dict[str, ChannelConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store(sessions, "story", STORY_TITLE, "\n".join(STORY))
    store(sessions, "repost", REPOST_TITLE, REPOST_BODY)
    contested = store(sessions, "other", OTHER_TITLE, OTHER)
    write = alerting._write
    calls: list[int] = []

    def concurrent_then_write(session: Session, *args: Any) -> None:
        if not calls:
            # Another process classifies `other` and queues its alert meanwhile.
            with sessions.begin() as other:
                other.get(ArticleVersion, contested).classified_at = NOW  # type: ignore[union-attr]
                other.add(
                    Alert(
                        article_version_id=contested,
                        idempotency_key=alert_key("http://site.test/other", "other-1"),
                        kind="new",
                        payload={"url": "http://site.test/other"},
                        created_at=NOW,
                    )
                )
        calls.append(1)
        write(session, *args)

    monkeypatch.setattr(alerting, "_write", concurrent_then_write)
    index = StoryIndex()
    done = process_new_versions(sessions, topics, channels, stories=index)
    # The batch failed on the alert key; done again, `other` was no longer new.
    assert (done.classified, done.alerts) == (2, 1)
    assert len(calls) == 1 + 3  # the batch, then each version in a transaction of its own
    assert [(name, kind) for name, kind, _ in alerts_of(sessions)] == [
        ("other", "new"),
        ("story", "new"),
    ]
    stored = stories_of(sessions)
    assert stored["story"] == stored["repost"] is not None and stored["other"] is None
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Story)) == 1
    # The index forgot the failed batch's posts: a new repost joins the stored story.
    store(sessions, "repost2", REPOST_TITLE + "（转载）", REPOST_BODY)
    assert process_new_versions(sessions, topics, channels, stories=index).alerts == 0
    assert stories_of(sessions)["repost2"] == stored["story"]
