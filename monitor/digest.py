"""Digest channels: a channel's waiting alerts (deliveries in state `digest`) bundled into one message.

Alerting gives channels with `mode: digest_hourly` or `digest_daily` their deliveries in state
`digest` instead of `pending`. The daemon's digest jobs (every hour at minute 0, and every day
at 08:00 China Standard Time) call `queue_digests`, which for each such channel, in one
transaction, writes a "digest" alert (`render.make_digest`) with one pending delivery on the
channel and marks the bundled deliveries `sent`: a crash can neither lose a bundled alert nor
put it in two digests. The dispatcher then sends the digest like any alert, with retries.

Hourly runs also flush what an `instant` channel still holds from when it was a digest channel.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Article, ArticleVersion, Delivery
from monitor.alerting import queue_alert
from monitor.channels import ChannelConfig
from monitor.render import AlertMessage, make_digest

logger = logging.getLogger(__name__)
CST = ZoneInfo("Asia/Shanghai")

PERIODS = ("hourly", "daily")
DAILY_HOUR_CST = 8


@dataclass(frozen=True)
class QueuedDigest:
    """One digest written to the outbox: its channel, alert key and how many alerts it bundles."""

    channel: str
    idempotency_key: str
    entries: int


def digest_channels(channels: Mapping[str, ChannelConfig], period: str) -> list[str]:
    """Return the channels whose waiting alerts the `period` ("hourly" or "daily") job bundles."""
    if period not in PERIODS:
        raise ValueError(f"unknown digest period {period!r}; expected one of {PERIODS}")
    if period == "daily":
        return sorted(name for name, config in channels.items() if config.mode == "digest_daily")
    return sorted(name for name, config in channels.items() if config.mode != "digest_daily")


def period_label(period: str, now: datetime) -> str:
    """Return the Chinese name of a digest, e.g. '11月22日 每日汇总' or '11月22日 10:00 每小时汇总'."""
    local = now.astimezone(CST)
    day = f"{local.month}月{local.day}日"
    return day + " 每日汇总" if period == "daily" else day + f" {local.hour:02d}:00 每小时汇总"


def digest_entries(session: Session, deliveries: Sequence[Delivery]) -> list[AlertMessage]:
    """Return the entries of a digest: one per bundled alert, oldest first, each listing the
    later reposts of its story (monitor/stories.py), which are not alerted themselves."""
    entries = []
    for delivery in deliveries:
        message = AlertMessage.from_payload(delivery.alert.payload)
        version_id = delivery.alert.article_version_id
        version = session.get(ArticleVersion, version_id) if version_id else None
        story_id = version.article.story_id if version is not None else None
        if story_id is not None:
            others = session.scalars(
                select(Article)
                .where(Article.story_id == story_id, Article.id != version.article_id)
                .order_by(Article.first_seen_at)
            ).all()
            reposts = [{"title": a.title, "url": a.url, "source_id": a.source_id} for a in others]
            message = replace(message, reposts=reposts)
        entries.append(message)
    return entries


def topic_labels(entries: Sequence[AlertMessage]) -> dict[str, dict[str, str]]:
    """Return {topic name: {"label": label}} for the labelled topics of `entries`."""
    return {
        str(topic["name"]): {"label": str(topic["label"])}
        for entry in entries
        for topic in entry.topics
        if topic.get("name") and topic.get("label")
    }


def digest_key(channel: str, digest: AlertMessage) -> str:
    """Return the idempotency key of `digest` on `channel` (the same bundle elsewhere differs)."""
    text = channel + "|" + digest.idempotency_key
    return "digest-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def queue_digest(session: Session, channel: str, label: str, now: datetime) -> QueuedDigest | None:
    """Bundle the channel's waiting deliveries into one pending digest; return it, None if none."""
    waiting = session.scalars(
        select(Delivery)
        .where(Delivery.channel == channel, Delivery.state == "digest")
        .order_by(Delivery.id)
    ).all()
    if not waiting:
        return None
    entries = digest_entries(session, waiting)
    bundled = make_digest(entries, label)
    labels = topic_labels(entries)  # make_digest keeps only names; subjects show labels
    message = replace(
        bundled,
        idempotency_key=digest_key(channel, bundled),
        topics=[{**topic, **labels.get(topic["name"], {})} for topic in bundled.topics],
    )
    queue_alert(session, message, {channel: "pending"}, now)
    for delivery in waiting:
        delivery.state = "sent"
        delivery.sent_at = now
        delivery.last_error = None
    return QueuedDigest(channel, message.idempotency_key, len(waiting))


def queue_digests(
    sessions: sessionmaker[Session],
    channels: Mapping[str, ChannelConfig],
    period: str,
    now: datetime | None = None,
) -> list[QueuedDigest]:
    """Queue one digest per channel of `period` that has waiting alerts; return what was queued."""
    now = now or datetime.now(UTC)
    label = period_label(period, now)
    queued = []
    for channel in digest_channels(channels, period):
        try:
            with sessions.begin() as session:
                digest = queue_digest(session, channel, label, now)
        except IntegrityError:
            logger.info("channel %s: digest already queued by another process", channel)
            continue
        if digest is not None:
            logger.info("channel %s: digest of %d alerts queued", channel, digest.entries)
            queued.append(digest)
    return queued
