"""Source health after each crawl: ok, failing, empty or silent; one alert going bad, one on recovery.

States, worst first (the first that applies wins):

- `failing`: the last `health_failures` (default 3) finished crawls of the source all failed
  or timed out. Runs a killed daemon left `running` are not counted.
- `empty`: the latest crawl that got a list page back with content (not a 304) found no post
  on it: a new page layout, or a column the site emptied. A crawl answered only 304s repeats
  the previous verdict, since the page it would judge is the one already judged. A run
  recorded as failed because its list was empty counts here, not towards `failing`.
- `silent`: no new post for longer than max(`health_silent_days`, `health_silent_factor` x the
  median gap between the publication dates of its last 20 posts), counted from its newest post
  or from when monitoring began, whichever is later (a new source with an old back catalogue
  is not silent on its first day).
- `ok` otherwise.

The state lives in `source_health`. A change of state is written together with its alert
(kind "health", for the channels subscribed to the `health` topic, delivered at once whatever
the channel's mode) in one transaction, keyed by source, state and since: it goes through the
outbox and is retried like any alert, and sent once. Entering a bad state alerts once (also
when moving from one bad state to another); a return to ok sends one recovery notice; nothing
more is sent while a source stays in a state.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.config import AppSettings
from crawler.models import Article, CrawlRun, Source, SourceHealth
from monitor.alerting import HEALTH_TOPIC, queue_alert, subscribed_channels
from monitor.channels import ChannelConfig
from monitor.render import AlertMessage

logger = logging.getLogger(__name__)
CST = ZoneInfo("Asia/Shanghai")

STATE_LABELS = {"ok": "正常", "failing": "采集失败", "empty": "列表为空", "silent": "长期无更新"}
RECENT_RUNS = 20
RHYTHM_POSTS = 20
MIN_POSTS_FOR_RHYTHM = 3


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds of the health states (see the module docstring)."""

    failures: int = 3
    silent_days: float = 7.0
    silent_factor: float = 4.0

    @classmethod
    def from_settings(cls, settings: AppSettings) -> HealthPolicy:
        """Return the policy configured by MONITOR_HEALTH_* settings."""
        return cls(
            settings.health_failures, settings.health_silent_days, settings.health_silent_factor
        )


@dataclass(frozen=True)
class RunSummary:
    """What health needs of one finished crawl run."""

    status: str
    error: str | None
    stats: Mapping[str, Any]

    def list_verdict(self) -> bool | None:
        """Return True if its list pages showed no post, False if they showed some, None if unknown."""
        pages = int(self.stats.get("list_pages") or 0)
        not_modified = int(self.stats.get("list_not_modified") or 0)
        if pages == 0 or not_modified > 0:
            return None
        return int(self.stats.get("list_entries") or 0) == 0

    def failed(self) -> bool:
        """Return True if the crawl failed for another reason than an empty list page."""
        return self.status != "ok" and self.list_verdict() is not True


@dataclass(frozen=True)
class Verdict:
    """A source's state and, for a bad state, why (Chinese, shown in the alert)."""

    state: str
    reason: str | None = None


@dataclass(frozen=True)
class Transition:
    """A change of a source's state, as stored and alerted."""

    source_id: str
    previous: str
    state: str
    reason: str | None
    since: datetime


def _days(delta: timedelta) -> str:
    """Return a duration in days as short text, e.g. '12' or '0.5'."""
    days = delta.total_seconds() / 86400
    return f"{days:.0f}" if days >= 10 else f"{days:.1f}".rstrip("0").rstrip(".")


def silence_threshold(published: Sequence[datetime], policy: HealthPolicy) -> timedelta:
    """Return how long a source with these post dates may go without a new post."""
    floor = timedelta(days=policy.silent_days)
    dates = sorted(published)
    if len(dates) < MIN_POSTS_FOR_RHYTHM:
        return floor
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(dates)]
    return max(floor, timedelta(seconds=statistics.median(gaps) * policy.silent_factor))


def judge_failures(runs: Sequence[RunSummary], policy: HealthPolicy) -> Verdict | None:
    """Return the `failing` verdict if the latest runs (newest first) all failed, else None."""
    latest = runs[: policy.failures]
    if len(latest) < policy.failures or not all(run.failed() for run in latest):
        return None
    last = latest[0]
    what = "超时" if last.status == "timeout" else "失败"
    return Verdict(
        "failing", f"连续 {policy.failures} 次采集失败，最近一次{what}：{last.error or '原因不明'}"
    )


def judge_list(runs: Sequence[RunSummary], current: str) -> Verdict | None:
    """Return the `empty` verdict if the latest list page with content showed no post, else None."""
    for run in runs:
        verdict = run.list_verdict()
        if verdict is None:
            continue
        if not verdict:
            return None
        pages = int(run.stats.get("list_pages") or 0)
        return Verdict(
            "empty",
            f"列表页可以打开（{pages} 页），但没有识别出任何公告：可能是网站改版或栏目被清空",
        )
    # Nothing but 304s and failures lately: the page judged before has not changed.
    return (
        Verdict("empty", "列表页仍没有识别出任何公告（页面未变化）") if current == "empty" else None
    )


def judge_silence(
    published: Sequence[datetime], watched_since: datetime, now: datetime, policy: HealthPolicy
) -> Verdict | None:
    """Return the `silent` verdict if the source has posted nothing for too long, else None."""
    newest = max(published, default=None)
    reference = max(newest, watched_since) if newest is not None else watched_since
    threshold = silence_threshold(published, policy)
    if now - reference <= threshold:
        return None
    last = newest.astimezone(CST).strftime("%Y-%m-%d") if newest else "无"
    return Verdict(
        "silent",
        f"已 {_days(now - reference)} 天没有新公告（最近一篇：{last}；超过 {_days(threshold)} 天即视为异常，"
        f"按近期发文间隔的 {policy.silent_factor:g} 倍、至少 {policy.silent_days:g} 天计）",
    )


def judge(
    runs: Sequence[RunSummary],
    published: Sequence[datetime],
    watched_since: datetime,
    now: datetime,
    policy: HealthPolicy,
    current: str = "ok",
) -> Verdict:
    """Return a source's state from its finished runs (newest first) and its posts' dates."""
    if not runs:
        return Verdict("ok")
    return (
        judge_failures(runs, policy)
        or judge_list(runs, current)
        or judge_silence(published, watched_since, now, policy)
        or Verdict("ok")
    )


def health_key(source_id: str, state: str, since: datetime) -> str:
    """Return the idempotency key of the alert for `source_id` entering `state` at `since`."""
    text = f"{source_id}|{state}|{since.astimezone(UTC).isoformat()}"
    return "health-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _when(moment: datetime) -> str:
    """Return a time as Beijing time text."""
    return moment.astimezone(CST).strftime("%Y-%m-%d %H:%M") + "（北京时间）"


def health_message(source: Source, change: Transition) -> AlertMessage:
    """Return the health alert (or recovery notice) for one change of state."""
    name = source.name or source.id
    if change.state == "ok":
        title = "来源「" + name + "」已恢复正常"
        excerpt = (
            "此前状态：" + STATE_LABELS[change.previous] + "（" + change.previous + "）；"
            "恢复时间：" + _when(change.since)
        )
    else:
        title = "来源「" + name + "」" + STATE_LABELS[change.state]
        excerpt = (
            "状态：" + STATE_LABELS[change.state] + "（" + change.state + "）；"
            "原因：" + (change.reason or "") + "；开始时间：" + _when(change.since)
        )
    return AlertMessage(
        idempotency_key=health_key(source.id, change.state, change.since),
        kind="health",
        title=title,
        url=source.base_url,
        source_id=source.id,
        source_name=name,
        excerpt=excerpt,
    )


def _recent_runs(session: Session, source_id: str) -> list[RunSummary]:
    """Return the source's latest finished crawl runs, newest first."""
    runs = session.scalars(
        select(CrawlRun)
        .where(CrawlRun.source_id == source_id, CrawlRun.status != "running")
        .order_by(CrawlRun.id.desc())
        .limit(RECENT_RUNS)
    ).all()
    return [RunSummary(run.status, run.error, run.stats or {}) for run in runs]


def _post_dates(session: Session, source_id: str) -> list[datetime]:
    """Return the publication dates (first sight when unknown) of the source's latest posts."""
    # Two range reads of ix_articles_source_published (dated posts, newest first; undated
    # ones), not a sort of the source's whole history: the cost must not grow with it.
    dated = session.scalars(
        select(Article.published_at)
        .where(Article.source_id == source_id, Article.published_at.is_not(None))
        .order_by(Article.published_at.desc())
        .limit(RHYTHM_POSTS)
    ).all()
    undated = session.scalars(
        select(Article.first_seen_at)
        .where(Article.source_id == source_id, Article.published_at.is_(None))
        .order_by(Article.first_seen_at.desc())
        .limit(RHYTHM_POSTS)
    ).all()
    return sorted([*dated, *undated], reverse=True)[:RHYTHM_POSTS]


def _queue_alert(
    session: Session, channels: Mapping[str, ChannelConfig], message: AlertMessage, now: datetime
) -> int:
    """Write a health alert and its deliveries to the outbox; return how many channels get it."""
    # Health alerts are few and urgent: sent at once even on digest channels.
    names = subscribed_channels(dict(channels), [HEALTH_TOPIC])
    queue_alert(session, message, dict.fromkeys(names, "pending"), now)
    return len(names)


def check_source(
    session: Session,
    channels: Mapping[str, ChannelConfig],
    source_id: str,
    policy: HealthPolicy,
    now: datetime,
) -> Transition | None:
    """Judge one source in `session`, store its state and queue an alert; return the change, if any."""
    source = session.get(Source, source_id)
    if source is None:
        return None
    row = session.get(SourceHealth, source_id)
    current = row.state if row is not None else "ok"
    verdict = judge(
        _recent_runs(session, source_id),
        _post_dates(session, source_id),
        source.created_at,
        now,
        policy,
        current,
    )
    if row is None:
        row = SourceHealth(source_id=source_id, state="ok", since=now)
        session.add(row)
    if verdict.state == current:
        row.reason = verdict.reason  # the latest details; no second alert
        return None
    change = Transition(source_id, current, verdict.state, verdict.reason, now)
    row.state, row.reason, row.since = verdict.state, verdict.reason, now
    recipients = _queue_alert(session, channels, health_message(source, change), now)
    row.notified_at = now if recipients else None
    return change


def check_sources(
    sessions: sessionmaker[Session],
    channels: Mapping[str, ChannelConfig],
    source_ids: Sequence[str],
    policy: HealthPolicy,
    now: datetime | None = None,
) -> list[Transition]:
    """Judge each source after its crawl, each in its own transaction; return the changes of state."""
    now = now or datetime.now(UTC)
    changes = []
    for source_id in source_ids:
        with sessions.begin() as session:
            change = check_source(session, channels, source_id, policy, now)
        if change is None:
            continue
        changes.append(change)
        log = logger.info if change.state == "ok" else logger.warning
        log(
            "source %s: health %s -> %s%s",
            source_id,
            change.previous,
            change.state,
            ": " + change.reason if change.reason else "",
        )
    return changes
