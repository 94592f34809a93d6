"""From stored article versions to outbox alerts: classify each new version once, in one transaction.

A version is classified exactly once (`classified_at` is set in the same transaction that
writes its alert and deliveries), so a crash can neither lose nor double an alert.
Versions stored during a source's first crawl (`baseline`) are classified but not alerted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from crawler.models import Alert, Article, ArticleVersion, Delivery, Source
from monitor.channels import ChannelConfig
from monitor.parties import extract_parties
from monitor.render import AlertMessage
from monitor.stories import StoryIndex, assign_story, signature
from monitor.topics import TopicMatch, TopicSet

if TYPE_CHECKING:
    from datasketch import MinHash

logger = logging.getLogger(__name__)
CST = ZoneInfo("Asia/Shanghai")


@dataclass
class ClassifyResult:
    """How many versions were classified and how many alerts were queued."""

    classified: int = 0
    alerts: int = 0


def alert_key(canonical_url: str, content_hash: str) -> str:
    """Return the idempotency key of the alert for one content of one article."""
    return hashlib.sha256(f"{canonical_url}|{content_hash}".encode()).hexdigest()[:32]


HEALTH_TOPIC = "health"


def subscribed_channels(channels: dict[str, ChannelConfig], topic_names: list[str]) -> list[str]:
    """Return the names of the channels subscribed to any of `topic_names`, whatever their mode.

    A channel gets a topic it names; '*' stands for every topic except `health`, which only
    goes to channels that name it (the operations channels).
    """
    named = set(topic_names)
    return [
        name
        for name, config in channels.items()
        if named & set(config.topics) or ("*" in config.topics and named - {HEALTH_TOPIC})
    ]


def described(match: TopicMatch, topics: TopicSet) -> dict[str, object]:
    """Return a match as shown in alerts: its dict plus the labels from the topics file."""
    spec = topics.spec.topics.get(match.name)
    if spec is None:
        return match.to_dict()
    return {
        **match.to_dict(),
        "label": spec.label or match.name,
        "group_labels": {name: group.label for name, group in spec.groups.items() if group.label},
    }


def build_message(
    version: ArticleVersion,
    article: Article,
    source: Source,
    matches: list[TopicMatch],
    parties: list[str],
    key: str,
    topics: TopicSet,
) -> AlertMessage:
    """Return the alert message for one matching version."""
    return AlertMessage(
        idempotency_key=key,
        kind="new" if version.version_no == 1 else "changed",
        title=version.title,
        url=article.url,
        source_id=source.id,
        source_name=source.name,
        published_at=version.published_at.astimezone(CST) if version.published_at else None,
        topics=[described(m, topics) for m in matches],
        parties=parties,
        excerpt=version.body[:200],
        diff=version.diff,
    )


@dataclass(frozen=True)
class Analysis:
    """What classifying a version found, before anything is written: pure CPU work."""

    matches: list[TopicMatch]
    parties: list[str]
    minhash: MinHash | None


def analyse(version: ArticleVersion, topics: TopicSet, *, with_signature: bool) -> Analysis:
    """Return the topics, parties and (for a first version) story signature of a version."""
    matches = topics.classify(version.title, version.body)
    parties = extract_parties(version.title, version.body) if matches else []
    minhash = signature(version.title, version.body) if with_signature else None
    return Analysis(matches, parties, minhash)


def classify_version(
    session: Session,
    version: ArticleVersion,
    topics: TopicSet,
    channels: dict[str, ChannelConfig],
    *,
    allow_alert: bool = True,
    stories: StoryIndex | None = None,
    analysis: Analysis | None = None,
    story_alerts: StoryAlerts | None = None,
) -> bool:
    """Classify one version in `session` and queue its alert; return True if an alert was queued.

    With a story index, a new post joins its story; a repost of a story that already
    alerted is attached to it and does not alert again. `analysis` is `analyse(version)`
    when the caller did that work beforehand (outside the write transaction);
    `story_alerts` answers "has this story alerted" for the versions of one transaction.
    """
    now = datetime.now(UTC)
    joins_story = stories is not None and version.version_no == 1
    if analysis is None:
        analysis = analyse(version, topics, with_signature=joins_story)
    matches, parties = analysis.matches, analysis.parties
    version.topics = [m.to_dict() for m in matches]
    version.parties = parties
    version.classified_at = now
    article = version.article
    if stories is not None and joins_story:
        new_story = assign_story(session, article, analysis.minhash, stories, now)
        if not new_story and matches and article.story_id is None:
            session.flush()  # it joined a story started in this transaction: get its id
        if story_alerts is not None:
            story_alerts.joined(article)
        if (
            not new_story
            and matches
            and (
                story_alerts.alerted(session, article.story_id)
                if story_alerts is not None
                else story_alerted(session, article.story_id)
            )
        ):
            logger.info(
                "%s is a repost of story %s: attached, not alerted", article.url, article.story_id
            )
            return False
    if not matches or version.baseline or not allow_alert:
        return False
    key = alert_key(article.canonical_url, version.content_hash)
    if session.scalar(select(Alert.id).where(Alert.idempotency_key == key)) is not None:
        return False
    source = session.get(Source, article.source_id)
    assert source is not None
    message = build_message(version, article, source, matches, parties, key, topics)
    # Digest channels get their alerts bundled by monitor.digest, not one by one.
    states = {
        channel: "pending" if channels[channel].mode == "instant" else "digest"
        for channel in subscribed_channels(channels, [m.name for m in matches])
    }
    queue_alert(session, message, states, now, version_id=version.id)
    if story_alerts is not None:
        story_alerts.queued(article)
    return True


def queue_alert(
    session: Session,
    message: AlertMessage,
    deliveries: Mapping[str, str],
    now: datetime,
    version_id: int | None = None,
) -> Alert:
    """Write `message` to the outbox with one delivery per channel (channel -> first state)."""
    alert = Alert(
        article_version_id=version_id,
        idempotency_key=message.idempotency_key,
        kind=message.kind,
        payload=message.to_payload(),
        created_at=now,
    )
    session.add(alert)
    session.flush()
    for channel, state in deliveries.items():
        session.add(
            Delivery(
                alert_id=alert.id, channel=channel, state=state, attempts=0, next_attempt_at=now
            )
        )
    return alert


def story_alerted(session: Session, story_id: int | None) -> bool:
    """Return True when some post of the story has already produced an alert."""
    if story_id is None:
        return False
    found = session.scalar(
        select(Alert.id)
        .join(ArticleVersion, ArticleVersion.id == Alert.article_version_id)
        .join(Article, Article.id == ArticleVersion.article_id)
        .where(Article.story_id == story_id)
        .limit(1)
    )
    return found is not None


class StoryAlerts:
    """Whether stories have alerted, for the versions classified in one transaction.

    `story_alerted` answers per story with a query after an autoflush; here each story is
    queried at most once per transaction, without an autoflush, and what the transaction
    itself does keeps the answers current. Its alerts are flushed as they are queued, and
    mark their post's story. A post whose story is not flushed yet has no alert, unless a
    later version of it was classified before its first: one query per transaction finds
    those posts, and they mark the story they join. Inside one (SQLite) write transaction
    nobody else adds alerts, so the answers are those of `story_alerted` for each version.
    """

    def __init__(self, article_ids: list[int]) -> None:
        self._article_ids = article_ids  # the posts whose first version the transaction does
        self._with_alerts: set[int] | None = None
        self._known: dict[int, bool] = {}
        self._joined: list[tuple[int, int]] = []

    def alerted(self, session: Session, story_id: int | None) -> bool:
        """Return True when some post of the story has already produced an alert."""
        if story_id is None:
            return False
        known = self._known.get(story_id)
        if known is None:
            with session.no_autoflush:
                if self._with_alerts is None:
                    self._with_alerts = set(
                        session.scalars(
                            select(ArticleVersion.article_id)
                            .join(Alert, Alert.article_version_id == ArticleVersion.id)
                            .where(ArticleVersion.article_id.in_(self._article_ids))
                        )
                    )
                    for article_id, joined in self._joined:
                        if article_id in self._with_alerts:
                            self._known[joined] = True
                known = self._known.get(story_id)
                if known is None:
                    known = self._known[story_id] = story_alerted(session, story_id)
        return known

    def joined(self, article: Article) -> None:
        """Note that `article` was put into its story (before `alerted` is asked about it)."""
        # A new story (no id yet) is asked about only after a flush, by a query that sees it.
        if article.story_id is None:
            return
        if self._with_alerts is None:
            self._joined.append((article.id, article.story_id))
        elif article.id in self._with_alerts:
            self._known[article.story_id] = True

    def queued(self, article: Article) -> None:
        """Note that an alert was queued for a version of `article` (and flushed)."""
        if article.story_id is not None:
            self._known[article.story_id] = True


def process_new_versions(
    sessions: sessionmaker[Session],
    topics: TopicSet,
    channels: dict[str, ChannelConfig],
    *,
    batch: int = 200,
    stories: StoryIndex | None = None,
) -> ClassifyResult:
    """Classify every unclassified version, oldest first, `batch` versions per transaction.

    A batch that fails (another process classified one of its versions first) is rolled back
    and done again one version per transaction, so each version is still classified once.
    """
    result = ClassifyResult()
    last_id = 0
    while True:
        with sessions() as session:
            ids = session.scalars(
                select(ArticleVersion.id)
                .where(ArticleVersion.classified_at.is_(None), ArticleVersion.id > last_id)
                .order_by(ArticleVersion.id)
                .limit(batch)
            ).all()
        if not ids:
            return result
        if stories is not None:
            # Only now: a cycle with nothing new never reads the signatures back.
            stories.load(sessions, datetime.now(UTC))
        last_id = ids[-1]
        try:
            done = _classify_ids(sessions, list(ids), topics, channels, stories)
        except IntegrityError:
            logger.info("a batch of %d versions met a concurrent classifier: one by one", len(ids))
            done = ClassifyResult()
            for version_id in ids:
                try:
                    one = _classify_ids(sessions, [version_id], topics, channels, stories)
                except IntegrityError:
                    logger.info("version %s was classified by another process", version_id)
                    continue
                done.classified += one.classified
                done.alerts += one.alerts
        result.classified += done.classified
        result.alerts += done.alerts


def _classify_ids(
    sessions: sessionmaker[Session],
    ids: list[int],
    topics: TopicSet,
    channels: dict[str, ChannelConfig],
    stories: StoryIndex | None,
) -> ClassifyResult:
    """Classify the unclassified versions among `ids` in one transaction."""
    done = ClassifyResult()
    if stories is not None:
        stories.begin()
    try:
        with sessions.begin() as session:
            _classify_versions(session, ids, topics, channels, stories, done)
    except Exception:
        if stories is not None:
            stories.rollback()
        raise
    return done


def _classify_versions(
    session: Session,
    ids: list[int],
    topics: TopicSet,
    channels: dict[str, ChannelConfig],
    stories: StoryIndex | None,
    done: ClassifyResult,
) -> None:
    """Classify the unclassified versions among `ids` in `session`, counting into `done`."""
    versions = session.scalars(
        select(ArticleVersion)
        .where(ArticleVersion.id.in_(ids), ArticleVersion.classified_at.is_(None))
        .options(selectinload(ArticleVersion.article))
        .order_by(ArticleVersion.id)
    ).all()
    # Reads only so far: SQLite takes its write lock at the first write, so the CPU work
    # comes first and a crawl writing at the same time waits only for the writes.
    analyses = [
        analyse(v, topics, with_signature=stories is not None and v.version_no == 1)
        for v in versions
    ]
    story_alerts = (
        StoryAlerts([v.article_id for v in versions if v.version_no == 1])
        if stories is not None
        else None
    )
    for version, analysis in zip(versions, analyses, strict=True):
        queued = classify_version(
            session,
            version,
            topics,
            channels,
            stories=stories,
            analysis=analysis,
            story_alerts=story_alerts,
        )
        done.classified += 1
        done.alerts += int(queued)
