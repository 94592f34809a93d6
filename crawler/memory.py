"""What earlier crawls know, so a cycle fetches only what is new or due.

- List pages are fetched with the ETag / Last-Modified of the last complete crawl; a 304
  ends that list. Validators are saved only after a crawl that finished with no failed
  article, so a killed or partial crawl never hides a post behind a 304.
- Known articles are not fetched again, except on a decaying revisit schedule
  (`REVISIT_AFTER` after first sight, then after each check) to catch revisions and
  withdrawals; a revision restarts the schedule.
- A known post whose title on the list differs from the stored one is fetched again: the
  list reveals the edit without waiting for the revisit.
- Pagination stops at the first list page whose posts are all known.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Article, HttpValidator

REVISIT_AFTER: tuple[timedelta, ...] = (
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(days=7),
)
MAX_REVISITS_PER_SOURCE = 50
# URLs per query when saving list validators (well under any database's parameter limit).
_SAVE_CHUNK = 500
CST = ZoneInfo("Asia/Shanghai")

# The two look-ups of every list page, built once (building a statement costs more than
# SQLite takes to answer it).
_KNOWN = select(Article.canonical_url, Article.title).where(
    Article.canonical_url.in_(bindparam("urls", expanding=True))
)
_ANY_ARTICLE = select(Article.id).limit(1)
_LISTED_BETWEEN = select(Article.url, Article.canonical_url, Article.published_at).where(
    Article.source_id == bindparam("source_id"),
    Article.list_url == bindparam("list_url"),
    Article.withdrawn_at.is_(None),
    Article.published_at >= bindparam("after", type_=Article.published_at.type),
    Article.published_at < bindparam("before", type_=Article.published_at.type),
)


def next_check(fetched_at: datetime, checks: int) -> datetime | None:
    """Return when an article checked `checks` times should be fetched again, or None."""
    if checks >= len(REVISIT_AFTER):
        return None
    return fetched_at + REVISIT_AFTER[checks]


class CrawlMemory:
    """Read access to validators, known articles and due revisits of one database.

    A crawl asks for the validators and due revisits of every source as it starts; both are
    read for all sources in one query each on first use (hundreds of sources would otherwise
    cost hundreds of round trips) and kept for the crawl, which writes neither until it ends.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        # Read-only look-ups made once per list page use a plain connection: an ORM session
        # would cost more than the query itself.
        self.engine: Engine = sessions.kw["bind"]
        self._validators: dict[str, tuple[str | None, str | None]] | None = None
        self._due: dict[str, list[tuple[str, str | None]]] = {}
        self._due_at: datetime | None = None
        self._empty: bool | None = None

    def empty(self) -> bool:
        """Return True when the database held no article as this crawl began (read once).

        The first crawl of an installation, its whole backfill, has nothing to look up:
        what its list pages show can only have been stored by this crawl, from the same list
        response (Scrapy's duplicate filter drops a second request for a post), so the spider
        skips the two look-ups of every list page.
        """
        if self._empty is None:
            with self.engine.connect() as connection:
                self._empty = connection.execute(_ANY_ARTICLE).first() is None
        return self._empty

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """Return the (ETag, Last-Modified) stored for a list page URL."""
        if self._validators is None:
            with self.sessions() as session:
                rows = session.execute(
                    select(HttpValidator.url, HttpValidator.etag, HttpValidator.last_modified)
                )
                self._validators = {row_url: (etag, modified) for row_url, etag, modified in rows}
        return self._validators.get(url, (None, None))

    def known(self, canonical_urls: Iterable[str]) -> dict[str, str]:
        """Return the stored title of each of `canonical_urls` that is a stored article."""
        wanted = list(canonical_urls)
        if not wanted:
            return {}
        with self.engine.connect() as connection:
            rows = connection.execute(_KNOWN, {"urls": wanted})
            return {canonical: title for canonical, title in rows}

    def due_revisits(self, source_id: str, now: datetime) -> list[tuple[str, str | None]]:
        """Return (url, list_url) of the source's articles whose revisit is due, oldest first."""
        if self._due_at != now:
            self._due, self._due_at = self._all_due_revisits(now), now
        return self._due.get(source_id, [])

    def _all_due_revisits(self, now: datetime) -> dict[str, list[tuple[str, str | None]]]:
        """Return every source's due revisits, oldest first, at most MAX_REVISITS_PER_SOURCE each."""
        # One range scan of the next_check_at index, whatever the number of sources; the rows
        # are the articles inside their revisit schedule, never the whole history.
        found: dict[str, list[tuple[str, str | None]]] = {}
        with self.sessions() as session:
            rows = session.execute(
                select(Article.source_id, Article.url, Article.list_url)
                .where(Article.next_check_at <= now, Article.withdrawn_at.is_(None))
                .order_by(Article.next_check_at, Article.id)
            )
            for source_id, url, list_url in rows:
                due = found.setdefault(source_id, [])
                if len(due) < MAX_REVISITS_PER_SOURCE:
                    due.append((url, list_url))
        return found

    def missing_from_list(
        self, source_id: str, list_url: str, shown: set[str], newest: date, oldest: date
    ) -> list[str]:
        """Return URLs last listed on `list_url`, dated strictly between `oldest` and `newest`
        (CST days), that the page no longer shows: posts gone while their neighbours remain."""
        # The day window goes into the query, so an old column's history is never read back.
        after = datetime.combine(oldest + timedelta(days=1), time(), CST)
        before = datetime.combine(newest, time(), CST)
        if after >= before:
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(
                _LISTED_BETWEEN,
                {"source_id": source_id, "list_url": list_url, "after": after, "before": before},
            ).all()
        gone = []
        for url, canonical, published_at in rows:
            if canonical in shown or published_at is None:
                continue
            if oldest < published_at.astimezone(CST).date() < newest:
                gone.append(url)
        return gone

    def save_validators(
        self, validators: dict[str, dict[str, tuple[str | None, str | None]]], now: datetime
    ) -> None:
        """Store the validators of the list pages a complete crawl processed, {source: {url:
        (ETag, Last-Modified)}}, in one transaction.

        The rows already stored are read with one query per `_SAVE_CHUNK` URLs: a look-up per
        URL cost the end of a 636-list-page crawl 0.3 s, on its way out.
        """
        wanted = {
            url: (source_id, pair)
            for source_id, pages in validators.items()
            for url, pair in pages.items()
        }
        if not wanted:
            return
        urls = list(wanted)
        with self.sessions.begin() as session:
            stored: dict[str, HttpValidator] = {}
            for start in range(0, len(urls), _SAVE_CHUNK):
                chunk = urls[start : start + _SAVE_CHUNK]
                stored.update(
                    (row.url, row)
                    for row in session.scalars(
                        select(HttpValidator).where(HttpValidator.url.in_(chunk))
                    )
                )
            for url, (source_id, (etag, last_modified)) in wanted.items():
                row = stored.get(url)
                if row is None:
                    session.add(
                        HttpValidator(
                            url=url,
                            source_id=source_id,
                            etag=etag,
                            last_modified=last_modified,
                            updated_at=now,
                        )
                    )
                else:
                    row.etag, row.last_modified, row.updated_at = etag, last_modified, now
        if self._validators is not None:
            self._validators.update((url, pair) for url, (_source, pair) in wanted.items())


def title_changed(list_title: str, stored_title: str) -> bool:
    """Return True when a list's (possibly truncated) title disagrees with the stored title."""
    from crawler.normalize import normalize_text

    shown = normalize_text(list_title).rstrip(".…").strip()
    if not shown:
        return False
    return not normalize_text(stored_title).startswith(shown)
