"""From stored article versions to outbox alerts: classify each new version once, in one transaction.

A version is classified exactly once (`classified_at` is set in the same transaction that
writes its alert and deliveries), so a crash can neither lose nor double an alert.
Versions stored during a source's first crawl (`baseline`) are classified but not alerted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Alert, Article, ArticleVersion, Delivery, Source, Story
from monitor.channels import ChannelConfig
from monitor.parties import extract_parties
from monitor.render import AlertMessage
from monitor.stories import NewStory, Signature, StoryIndex, StoryRef, sentences_signature, to_bytes
from monitor.topics import TopicMatch, TopicSet

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
    minhash: Signature | None


def analyse(title: str, body: str, topics: TopicSet, *, with_signature: bool) -> Analysis:
    """Return the topics, parties and (for a first version) story signature of a version.

    The three read one normalisation of the post (its sentences), not one each.
    """
    sentences = topics.sentences(title, body)
    matches = topics.classify(title, body, sentences)
    parties = extract_parties(title, body, sentences) if matches else []
    minhash = sentences_signature([s.norm for s in sentences]) if with_signature else None
    return Analysis(matches, parties, minhash)


def subscribed_states(
    channels: dict[str, ChannelConfig], matches: list[TopicMatch]
) -> dict[str, str]:
    """Return channel -> first delivery state of an alert on `matches`.

    Digest channels get their alerts bundled by monitor.digest, not one by one.
    """
    return {
        channel: "pending" if channels[channel].mode == "instant" else "digest"
        for channel in subscribed_channels(channels, [m.name for m in matches])
    }


def classify_version(
    session: Session,
    version: ArticleVersion,
    topics: TopicSet,
    channels: dict[str, ChannelConfig],
    *,
    allow_alert: bool = True,
) -> bool:
    """Classify one version in `session` and queue its alert; return True if an alert was queued.

    The one-version path of `monitor reclassify` (no story grouping); new versions go
    through `process_new_versions`.
    """
    now = datetime.now(UTC)
    analysis = analyse(version.title, version.body, topics, with_signature=False)
    matches, parties = analysis.matches, analysis.parties
    version.topics = [m.to_dict() for m in matches]
    version.parties = parties
    version.classified_at = now
    if not matches or version.baseline or not allow_alert:
        return False
    article = version.article
    key = alert_key(article.canonical_url, version.content_hash)
    if session.scalar(select(Alert.id).where(Alert.idempotency_key == key)) is not None:
        return False
    source = session.get(Source, article.source_id)
    assert source is not None
    message = build_message(version, article, source, matches, parties, key, topics)
    queue_alert(session, message, subscribed_states(channels, matches), now, version_id=version.id)
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


# Built once: a batch asks it about each stored story its posts join.
_STORY_ALERT = (
    select(Alert.id)
    .join(ArticleVersion, ArticleVersion.id == Alert.article_version_id)
    .join(Article, Article.id == ArticleVersion.article_id)
    .where(Article.story_id == bindparam("story_id"))
    .limit(1)
)


def story_alerted(session: Session, story_id: int | None) -> bool:
    """Return True when some post of the story has already produced an alert."""
    if story_id is None:
        return False
    return session.scalar(_STORY_ALERT, {"story_id": story_id}) is not None


class StoryAlerts:
    """Whether stories have alerted, for the versions classified in one transaction.

    The transaction writes nothing until its versions are all classified, so the database
    knows only the stories' stored posts: it is asked once per stored story (`story_alerted`)
    and what the transaction does is added here. A story has alerted when a stored post of
    it has an alert, or a post put into it by this transaction has one (from an earlier
    version: one query per transaction finds those posts, among the posts whose first
    version the transaction does), or an alert this transaction queued is for a post of it.
    These are the answers `story_alerted` would give after writing each version in turn.
    """

    def __init__(self, session: Session, article_ids: list[int]) -> None:
        self._session = session
        self._article_ids = article_ids  # the posts whose first version the transaction does
        self._with_alerts: set[int] | None = None
        self._known: dict[StoryRef, bool] = {}
        self._joined: list[tuple[int, StoryRef]] = []

    def alerted(self, story: StoryRef) -> bool:
        """Return True when some post of the story has already produced an alert."""
        known = self._known.get(story)
        if known is None:
            if self._with_alerts is None:
                self._with_alerts = set(
                    self._session.scalars(
                        select(ArticleVersion.article_id)
                        .join(Alert, Alert.article_version_id == ArticleVersion.id)
                        .where(ArticleVersion.article_id.in_(self._article_ids))
                    )
                )
                for article_id, joined in self._joined:
                    if article_id in self._with_alerts:
                        self._known[joined] = True
                known = self._known.get(story)
            if known is None:
                # A new story has no stored post: only this transaction can have alerted it.
                stored = isinstance(story, int) and story_alerted(self._session, story)
                known = self._known[story] = stored
        return known

    def joined(self, article_id: int, story: StoryRef) -> None:
        """Note that post `article_id` is in `story` (before `alerted` is asked about it)."""
        if self._with_alerts is None:
            self._joined.append((article_id, story))
        elif article_id in self._with_alerts:
            self._known[story] = True

    def queued(self, story: StoryRef | None) -> None:
        """Note that an alert was queued for a post of `story`."""
        if story is not None:
            self._known[story] = True


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


@dataclass(frozen=True, slots=True)
class _QueuedAlert:
    """An alert decided on: what its message and deliveries are made of."""

    version_id: int
    article_id: int
    source_id: str
    matches: list[TopicMatch]
    parties: list[str]
    key: str
    states: dict[str, str]  # channel -> first delivery state
    now: datetime


@dataclass
class _Writes:
    """What classifying a batch writes, gathered while it reads and written at the end."""

    versions: list[dict[str, Any]] = field(default_factory=list)
    stories: list[NewStory] = field(default_factory=list)
    # (article id, story, signature bytes or None when the post has no signature)
    articles: list[tuple[int, StoryRef, bytes | None]] = field(default_factory=list)
    alerts: list[_QueuedAlert] = field(default_factory=list)
    reposts: list[tuple[str, StoryRef]] = field(default_factory=list)


_VERSIONS = ArticleVersion.__table__
_ARTICLES = Article.__table__
_STORIES = Story.__table__
_UPDATE_VERSION = (
    update(_VERSIONS)
    .where(_VERSIONS.c.id == bindparam("b_id"))
    .values(
        classified_at=bindparam("b_classified_at", type_=_VERSIONS.c.classified_at.type),
        topics=bindparam("b_topics", type_=_VERSIONS.c.topics.type),
        parties=bindparam("b_parties", type_=_VERSIONS.c.parties.type),
    )
)
_UPDATE_STORY = (
    update(_ARTICLES)
    .where(_ARTICLES.c.id == bindparam("b_id"))
    .values(story_id=bindparam("b_story_id", type_=_ARTICLES.c.story_id.type))
)
_UPDATE_STORY_SIGNATURE = _UPDATE_STORY.values(
    minhash=bindparam("b_minhash", type_=_ARTICLES.c.minhash.type)
)
# Each id comes back beside its story's first post (one story per post), so the rows may come
# back in any order: sorting them (`sort_by_parameter_order`) would make SQLAlchemy insert one
# row per statement on SQLite.
_INSERT_STORY = insert(_STORIES).returning(_STORIES.c.id, _STORIES.c.first_article_id)


def _classify_versions(
    session: Session,
    ids: list[int],
    topics: TopicSet,
    channels: dict[str, ChannelConfig],
    stories: StoryIndex | None,
    done: ClassifyResult,
) -> None:
    """Classify the unclassified versions among `ids` in `session`, counting into `done`.

    Plain rows and statements rather than ORM objects, whose loading, change tracking and
    flushing took about a quarter of the time of classifying a version: the batch reads its
    versions, does the CPU work and the few reads it needs (stored stories' alerts,
    existing alert keys), then writes everything with one statement per kind of row, in
    the same transaction. SQLite takes its write lock at the first write, so a crawl
    writing at the same time waits only for the writes.
    """
    rows = session.execute(
        select(
            ArticleVersion.id,
            ArticleVersion.article_id,
            ArticleVersion.version_no,
            ArticleVersion.title,
            ArticleVersion.body,
            ArticleVersion.baseline,
            ArticleVersion.content_hash,
            Article.canonical_url,
            Article.url,
            Article.source_id,
            Article.story_id,
        )
        .join(Article, Article.id == ArticleVersion.article_id)
        .where(ArticleVersion.id.in_(ids), ArticleVersion.classified_at.is_(None))
        .order_by(ArticleVersion.id)
    ).all()
    analyses = [
        analyse(
            row.title,
            row.body,
            topics,
            with_signature=stories is not None and row.version_no == 1 and row.story_id is None,
        )
        for row in rows
    ]
    writes = _Writes()
    story_alerts = (
        StoryAlerts(session, [row.article_id for row in rows if row.version_no == 1])
        if stories is not None
        else None
    )
    stories_of: dict[int, StoryRef] = {}  # posts put into a story by this transaction
    keys: set[str] = set()  # alert keys queued by this transaction
    for row, analysis in zip(rows, analyses, strict=True):
        now = datetime.now(UTC)
        matches = analysis.matches
        writes.versions.append(
            {
                "b_id": row.id,
                "b_classified_at": now,
                "b_topics": [m.to_dict() for m in matches],
                "b_parties": analysis.parties,
            }
        )
        done.classified += 1
        story: StoryRef | None = None  # the post's story, when posts are grouped into stories
        if story_alerts is not None:
            assert stories is not None
            story = stories_of.get(row.article_id, row.story_id)
            if row.version_no == 1:
                # A first version puts its post into a story: a repost joins the story of
                # the post it copies (a post already in a story stays there), and a repost
                # of a story that has alerted is attached to it without alerting again.
                joined = story is not None
                if story is None:
                    story, joined = stories.assign(row.article_id, analysis.minhash, now)
                    stories_of[row.article_id] = story
                    if isinstance(story, NewStory) and not joined:  # started by this post
                        writes.stories.append(story)
                    minhash = analysis.minhash
                    writes.articles.append(
                        (row.article_id, story, to_bytes(minhash) if minhash is not None else None)
                    )
                story_alerts.joined(row.article_id, story)
                if joined and matches and story_alerts.alerted(story):
                    writes.reposts.append((row.url, story))
                    continue
        if not matches or row.baseline:
            continue
        key = alert_key(row.canonical_url, row.content_hash)
        if key in keys or (
            session.scalar(select(Alert.id).where(Alert.idempotency_key == key)) is not None
        ):
            continue
        keys.add(key)
        writes.alerts.append(
            _QueuedAlert(
                row.id,
                row.article_id,
                row.source_id,
                matches,
                analysis.parties,
                key,
                subscribed_states(channels, matches),
                now,
            )
        )
        done.alerts += 1
        if story_alerts is not None:
            story_alerts.queued(story)
    _write(session, writes, topics)


def _story_id(story: StoryRef) -> int:
    """Return the id of a story (a new one is written by now)."""
    if isinstance(story, NewStory):
        assert story.id is not None
        return story.id
    return story


def _write(session: Session, writes: _Writes, topics: TopicSet) -> None:
    """Write a classified batch: new stories first (posts refer to them), then posts, versions
    and alerts with their deliveries."""
    if writes.stories:
        created = {
            first_article_id: story_id
            for story_id, first_article_id in session.execute(
                _INSERT_STORY,
                [
                    {"first_article_id": s.first_article_id, "created_at": s.created_at}
                    for s in writes.stories
                ],
            )
        }
        for story in writes.stories:
            story.id = created[story.first_article_id]
    signed = [
        {"b_id": article_id, "b_story_id": _story_id(story), "b_minhash": minhash}
        for article_id, story, minhash in writes.articles
        if minhash is not None
    ]
    unsigned = [
        {"b_id": article_id, "b_story_id": _story_id(story)}
        for article_id, story, minhash in writes.articles
        if minhash is None
    ]
    if signed:
        session.execute(_UPDATE_STORY_SIGNATURE, signed)
    if unsigned:
        session.execute(_UPDATE_STORY, unsigned)
    if writes.versions:
        session.execute(_UPDATE_VERSION, writes.versions)
    # Alerts are few: they are written as every other alert is, with their ORM objects.
    for alert in writes.alerts:
        version = session.get(ArticleVersion, alert.version_id)
        article = session.get(Article, alert.article_id)
        source = session.get(Source, alert.source_id)
        assert version is not None and article is not None and source is not None
        message = build_message(
            version, article, source, alert.matches, alert.parties, alert.key, topics
        )
        queue_alert(session, message, alert.states, alert.now, version_id=alert.version_id)
    for url, story in writes.reposts:
        logger.info("%s is a repost of story %s: attached, not alerted", url, _story_id(story))
