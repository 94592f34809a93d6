"""`monitor` subcommands that read and repair: alerts, articles, extract, classify, reclassify."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler.config import AppSettings

# The database commands import SQLAlchemy and the models when they run: `monitor run` builds
# this parser too, and starts its crawl child sooner without them (0.1 s before each cycle).

MAX_FETCH_BYTES = 20 * 1024 * 1024


def cmd_alerts(args: argparse.Namespace, settings: AppSettings) -> int:
    """List alert deliveries by state (`monitor alerts [--state failed]`) or retry failed ones."""
    from sqlalchemy import select

    from crawler.db import session_factory
    from crawler.migrate import upgrade
    from crawler.models import Alert, Delivery

    upgrade(settings.database_url)
    sessions = session_factory(settings.database_url)
    if args.action == "retry":
        with sessions.begin() as session:
            query = select(Delivery).where(Delivery.state == "failed")
            if args.ids:
                query = query.where(Delivery.id.in_(args.ids))
            rows = session.scalars(query).all()
            for delivery in rows:
                delivery.state = "pending"
                delivery.attempts = 0
                delivery.next_attempt_at = datetime.now(UTC)
        print(
            f"{len(rows)} failed deliveries queued again; the daemon sends them on its next sweep"
        )
        return 0
    with sessions() as session:
        query = select(Delivery).join(Alert).order_by(Delivery.id.desc()).limit(args.limit)
        if args.state:
            query = query.where(Delivery.state == args.state)
        for delivery in session.scalars(query):
            payload = delivery.alert.payload
            print(
                f"{delivery.id}\t{delivery.state}\t{delivery.channel}\t"
                f"attempts={delivery.attempts}\t{payload.get('title', '')}\t"
                f"{payload.get('url', '')}\t{delivery.last_error or ''}"
            )
    return 0


def cmd_articles(args: argparse.Namespace, settings: AppSettings) -> int:
    """List stored articles, newest first; filter by --source, --topic, --since, --search."""
    from sqlalchemy import func, select

    from crawler.db import session_factory
    from crawler.migrate import upgrade
    from crawler.models import Article, ArticleVersion
    from crawler.normalize import normalize_text

    upgrade(settings.database_url)
    sessions = session_factory(settings.database_url)
    latest = (
        select(ArticleVersion.article_id, func.max(ArticleVersion.id).label("vid"))
        .group_by(ArticleVersion.article_id)
        .subquery()
    )
    query = (
        select(Article, ArticleVersion)
        .join(latest, latest.c.article_id == Article.id)
        .join(ArticleVersion, ArticleVersion.id == latest.c.vid)
        .order_by(Article.published_at.desc().nulls_last(), Article.id.desc())
    )
    if args.source:
        query = query.where(Article.source_id == args.source)
    if args.since:
        since = datetime.fromisoformat(args.since)
        if since.tzinfo is None:
            from zoneinfo import ZoneInfo

            since = since.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
        query = query.where(Article.published_at >= since)
    # Search on the matching form, so 医药 finds 醫藥 and 醫(yī)藥 alike.
    needle = normalize_text(args.search) if args.search else None
    shown = 0
    with sessions() as session:
        for article, version in session.execute(query):
            names = [t["name"] for t in version.topics or []]
            if args.topic and args.topic not in names:
                continue
            if needle and needle not in normalize_text(version.title + "\n" + version.body):
                continue
            when = article.published_at.astimezone().isoformat() if article.published_at else "-"
            print(
                f"{article.id}\t{article.source_id}\t{when}\t{','.join(names) or '-'}\t"
                f"{article.title}\t{article.url}"
            )
            shown += 1
            if shown >= args.limit:
                break
    return 0


def _extracted_json(path: str, article: Any) -> dict[str, Any]:
    return {
        "path": path,
        "title": article.title,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "source": article.source,
        "body": article.body,
        "attachments": [
            {"url": a.url, "name": a.name, "type": a.type} for a in article.attachments
        ],
        "doc_number": article.doc_number,
    }


def cmd_extract(args: argparse.Namespace, settings: AppSettings) -> int:
    """Print one JSON object per page: `--jsonl FILE...` for saved pages, or one URL to fetch."""
    from crawler.pages.article import extract_article

    if args.jsonl:
        for name in args.targets:
            html = Path(name).read_bytes()
            article = extract_article(Path(name).resolve().as_uri(), html, {})
            print(json.dumps(_extracted_json(name, article), ensure_ascii=False))
        return 0
    if len(args.targets) != 1:
        print("monitor extract: give one URL, or --jsonl FILE...", file=sys.stderr)
        return 2
    url = args.targets[0]
    request = urllib.request.Request(url, headers={"User-Agent": "govmonitor/0.1"})
    with urllib.request.urlopen(request, timeout=30) as response:
        html = response.read(MAX_FETCH_BYTES)
        headers = {k.lower(): v for k, v in response.headers.items()}
        final_url = response.geturl()
    article = extract_article(final_url, html, headers)
    print(json.dumps(_extracted_json(url, article), ensure_ascii=False))
    return 0


def cmd_classify(args: argparse.Namespace, settings: AppSettings) -> int:
    """Read JSONL {id, title, text}; print JSONL {id, topics, parties} (stable interface)."""
    from monitor.topics import classify_jsonl, load_topics

    topics = load_topics(settings.topics_file)
    stream = sys.stdin if args.jsonl == "-" else open(args.jsonl, encoding="utf-8")  # noqa: SIM115
    with stream:
        for line in classify_jsonl(stream, topics):
            print(line)
    return 0


def cmd_reclassify(args: argparse.Namespace, settings: AppSettings) -> int:
    """Re-run the topics over every stored article's latest version (no new alerts unless --alert)."""
    from sqlalchemy import func, select

    from crawler.db import session_factory
    from crawler.migrate import upgrade
    from crawler.models import ArticleVersion
    from monitor.alerting import classify_version
    from monitor.channels import load_channels
    from monitor.topics import load_topics

    upgrade(settings.database_url)
    topics = load_topics(settings.topics_file)
    channels = load_channels(settings.resolved_channels_file())
    sessions = session_factory(settings.database_url)
    with sessions() as session:
        version_ids = session.scalars(
            select(func.max(ArticleVersion.id)).group_by(ArticleVersion.article_id)
        ).all()
    changed = alerts = 0
    for version_id in sorted(version_ids):
        with sessions.begin() as session:
            version = session.get(ArticleVersion, version_id)
            assert version is not None
            before = [t["name"] for t in version.topics or []]
            alerts += classify_version(session, version, topics, channels, allow_alert=args.alert)
            changed += before != [t["name"] for t in version.topics or []]
    print(
        f"{len(version_ids)} articles reclassified, {changed} changed topics, "
        f"{alerts} alerts queued"
    )
    return 0


def cmd_notify_test(args: argparse.Namespace, settings: AppSettings) -> int:
    """Send a test alert to one channel now and report the result."""
    from monitor.channels import load_channels
    from monitor.notifiers import send_test

    channels = load_channels(settings.resolved_channels_file())
    if args.channel not in channels:
        print(
            f"monitor: no channel {args.channel!r}; channels: {', '.join(channels)}",
            file=sys.stderr,
        )
        return 2
    from monitor.notifiers.base import DeliveryError

    try:
        send_test(args.channel, channels[args.channel])
    except DeliveryError as exc:
        kind = "temporary" if exc.retryable else "permanent"
        print(f"monitor: test alert to {args.channel} failed ({kind}): {exc}", file=sys.stderr)
        return 1
    print(f"test alert sent to {args.channel}")
    return 0


def register(add: Callable[[str, Callable[..., int]], argparse.ArgumentParser]) -> None:
    """Add these subcommands to the `monitor` parser."""
    p = add("alerts", cmd_alerts)
    p.add_argument("action", nargs="?", choices=["list", "retry"], default="list")
    p.add_argument("ids", nargs="*", type=int, help="delivery ids to retry (default: all failed)")
    p.add_argument("--state", choices=["pending", "digest", "sent", "failed"])
    p.add_argument("--limit", type=int, default=50)

    p = add("articles", cmd_articles)
    p.add_argument("--source")
    p.add_argument("--topic")
    p.add_argument("--since", help="ISO date, e.g. 2024-11-01")
    p.add_argument("--search", help="text in title or body")
    p.add_argument("--limit", type=int, default=50)

    p = add("extract", cmd_extract)
    p.add_argument("--jsonl", action="store_true", help="targets are saved HTML files")
    p.add_argument("targets", nargs="+")

    p = add("classify", cmd_classify)
    p.add_argument("--jsonl", required=True, help="JSONL file, or - for standard input")

    p = add("reclassify", cmd_reclassify)
    p.add_argument("--alert", action="store_true", help="also queue alerts for new matches")

    p = add("notify-test", cmd_notify_test)
    p.add_argument("channel")
