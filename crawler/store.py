"""Storing one extracted article: new article, new version (with diff), or just seen again."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.orm import Session

from crawler.items import ArticleItem, WithdrawnItem
from crawler.memory import next_check
from crawler.models import Article, ArticleVersion
from crawler.normalize import content_hash
from crawler.urls import canonical_url

Outcome = Literal["new", "changed", "unchanged"]


@dataclass(frozen=True)
class StoreResult:
    """What storing one item did, and the version it created (None when unchanged)."""

    outcome: Outcome
    article_id: int
    version_id: int | None


def body_diff(old_title: str, old_body: str, new_title: str, new_body: str) -> str:
    """Return a unified diff of two versions (title as the first line)."""
    old = [old_title, "", *old_body.splitlines()]
    new = [new_title, "", *new_body.splitlines()]
    return "\n".join(difflib.unified_diff(old, new, "before", "after", lineterm="", n=1))


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _seen_again(article: Article, item: ArticleItem, fetched_at: datetime, checks: int) -> None:
    """Record that a stored article was fetched again: present, and due after `checks` checks."""
    article.last_seen_at = fetched_at
    article.withdrawn_at = article.withdrawn_reason = None
    article.checks = checks
    article.next_check_at = next_check(fetched_at, checks)
    article.list_url = item.list_url or article.list_url


def store_article(session: Session, item: ArticleItem, *, baseline: bool) -> StoreResult:
    """Write `item` into the session (caller commits) and return what changed."""
    return store_batch(session, [item], lambda _source_id: baseline)[0]


def store_batch(
    session: Session, items: Sequence[ArticleItem], baseline: Callable[[str], bool]
) -> list[StoreResult]:
    """Write `items` into the session (caller commits); return what happened to each, in order.

    One query finds the stored articles of the whole batch. Articles seen for the first time
    (most of a crawl's items) are written with two multi-row INSERTs and no ORM objects; the
    others (seen again, revised, or listed twice in the batch) go through the ORM and one
    flush. `baseline(source_id)` tells whether a source is on its first crawl (its versions
    are not alerted).
    """
    canonicals = [canonical_url(item.url) for item in items]
    known = {
        article.canonical_url: article
        for article in session.scalars(
            select(Article).where(Article.canonical_url.in_(set(canonicals)))
        )
    }
    results: list[StoreResult | None] = [None] * len(items)
    fresh: dict[str, int] = {}  # canonical URL -> index of its first item in the batch
    for index, canonical in enumerate(canonicals):
        if canonical not in known and canonical not in fresh:
            fresh[canonical] = index
    if fresh:
        for index, result in _insert_new(session, items, fresh, baseline):
            results[index] = result
    rest = [index for index, result in enumerate(results) if result is None]
    if rest:
        repeated = {canonicals[index] for index in rest} & fresh.keys()
        if repeated:  # a post listed twice in one batch: its second item sees the first
            known.update(
                (article.canonical_url, article)
                for article in session.scalars(
                    select(Article).where(Article.canonical_url.in_(repeated))
                )
            )
        staged = [
            (
                index,
                _stage(
                    session,
                    items[index],
                    canonicals[index],
                    known,
                    baseline(items[index].source_id),
                ),
            )
            for index in rest
        ]
        session.flush()
        for index, (outcome, article, version) in staged:
            results[index] = StoreResult(
                outcome, article.id, version.id if version is not None else None
            )
    return [result for result in results if result is not None]


def _insert_new(
    session: Session,
    items: Sequence[ArticleItem],
    fresh: dict[str, int],
    baseline: Callable[[str], bool],
) -> list[tuple[int, StoreResult]]:
    """Insert the articles never stored before and their first versions; return their results."""
    indexes = list(fresh.values())
    rows = []
    versions = []
    for canonical, index in fresh.items():
        item = items[index]
        fetched_at = _parse_time(item.fetched_at)
        assert fetched_at is not None, "items carry fetched_at"
        published_at = _parse_time(item.published_at)
        digest = item.content_hash or content_hash(item.title, item.body)
        rows.append(
            {
                "source_id": item.source_id,
                "canonical_url": canonical,
                "url": item.url,
                "title": item.title,
                "published_at": published_at,
                "content_hash": digest,
                "first_seen_at": fetched_at,
                "last_seen_at": fetched_at,
                "checks": 0,
                "next_check_at": next_check(fetched_at, 0),
                "list_url": item.list_url,
            }
        )
        versions.append(
            {
                "version_no": 1,
                "title": item.title,
                "body": item.body,
                "published_at": published_at,
                "source_name": item.source_name,
                "doc_number": item.doc_number,
                "attachments": item.attachments,
                "content_hash": digest,
                "diff": None,
                "fetched_at": fetched_at,
                "baseline": baseline(item.source_id),
            }
        )
    connection = session.connection()
    article_ids = _insert_returning_ids(connection, Article.__table__, rows, "canonical_url")
    for version, article_id in zip(versions, article_ids, strict=True):
        version["article_id"] = article_id
    version_ids = _insert_returning_ids(
        connection, ArticleVersion.__table__, versions, "article_id"
    )
    return [
        (index, StoreResult("new", article_id, version_id))
        for index, article_id, version_id in zip(indexes, article_ids, version_ids, strict=True)
    ]


def _insert_returning_ids(
    connection: Connection, table: Table, rows: list[dict[str, Any]], key: str
) -> list[int]:
    """Insert `rows` into `table` in multi-row statements; return their ids, in row order.

    `key` is a column whose value is unique among `rows`: each id comes back beside its row's
    key, so the order RETURNING gives the rows in does not matter. (Asking SQLAlchemy to sort
    them instead, `sort_by_parameter_order`, makes it insert one row per statement on SQLite,
    which cannot promise an order: two statements per article, a tenth of a crawl's storing.)
    """
    column = table.c[key]
    statement = insert(table).returning(table.c.id, column)
    ids = {row_key: row_id for row_id, row_key in connection.execute(statement, rows)}
    return [ids[row[key]] for row in rows]


def _stage(
    session: Session,
    item: ArticleItem,
    canonical: str,
    known: dict[str, Article],
    baseline: bool,
) -> tuple[Outcome, Article, ArticleVersion | None]:
    """Add one item's article and version to the session; `known` gains new articles."""
    fetched_at = _parse_time(item.fetched_at)
    assert fetched_at is not None, "items carry fetched_at"
    published_at = _parse_time(item.published_at)
    digest = item.content_hash or content_hash(item.title, item.body)
    article = known.get(canonical)
    if article is not None and article.content_hash == digest:
        _seen_again(article, item, fetched_at, checks=article.checks + 1)
        return "unchanged", article, None

    diff = None
    outcome: Outcome
    if article is None:
        article = Article(
            source_id=item.source_id,
            canonical_url=canonical,
            url=item.url,
            title=item.title,
            published_at=published_at,
            content_hash=digest,
            first_seen_at=fetched_at,
            last_seen_at=fetched_at,
            checks=0,
            next_check_at=next_check(fetched_at, 0),
            list_url=item.list_url,
        )
        session.add(article)
        known[canonical] = article
        version_no, outcome = 1, "new"
    else:
        if article.id is None:
            session.flush()  # added earlier in this batch: give it its id before the look-up
        latest = session.scalars(
            select(ArticleVersion)
            .where(ArticleVersion.article_id == article.id)
            .order_by(ArticleVersion.version_no.desc())
            .limit(1)
        ).one()
        if latest.title == item.title and latest.body == item.body:
            # The very same text under a new hash: normalisation itself changed (an OpenCC
            # dictionary update, say). Not a revision: adopt the new hash, alert nobody.
            article.content_hash = digest
            _seen_again(article, item, fetched_at, checks=article.checks + 1)
            return "unchanged", article, None
        diff = body_diff(latest.title, latest.body, item.title, item.body)
        version_no, outcome = latest.version_no + 1, "changed"
        article.title = item.title
        article.url = item.url
        article.published_at = published_at or article.published_at
        article.content_hash = digest
        _seen_again(article, item, fetched_at, checks=0)  # a revision restarts the schedule
    version = ArticleVersion(
        article=article,
        version_no=version_no,
        title=item.title,
        body=item.body,
        published_at=published_at,
        source_name=item.source_name,
        doc_number=item.doc_number,
        attachments=item.attachments,
        content_hash=digest,
        diff=diff,
        fetched_at=fetched_at,
        baseline=baseline,
    )
    session.add(version)
    return outcome, article, version


def mark_withdrawn(session: Session, item: WithdrawnItem) -> bool:
    """Mark a stored article withdrawn (once); return True if it was newly marked."""
    article = session.scalars(
        select(Article).where(Article.canonical_url == canonical_url(item.url))
    ).one_or_none()
    if article is None or article.withdrawn_at is not None:
        return False
    seen_at = _parse_time(item.seen_at)
    assert seen_at is not None
    article.withdrawn_at = seen_at
    article.withdrawn_reason = item.reason[:200]
    article.next_check_at = None
    return True
