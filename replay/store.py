"""The posts of one replayed column: a thread-safe, newest-first store that tracks when the
column last changed, so list pages can answer conditional requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

CST = timezone(timedelta(hours=8), "CST")

MIME_TYPES = {
    "pdf": "application/pdf",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "wps": "application/kswps",
    "ofd": "application/ofd",
    "zip": "application/zip",
}


def now_cst() -> datetime:
    """Return the current time in China Standard Time, to the second."""
    return datetime.now(CST).replace(microsecond=0)


def as_cst(moment: datetime) -> datetime:
    """Return `moment` in CST; a naive datetime is taken to be CST already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=CST)
    return moment.astimezone(CST)


def parse_cst(text: str) -> datetime:
    """Return the CST datetime written as `2024-11-05 17:11:06` or ISO 8601."""
    return as_cst(datetime.fromisoformat(text.strip().replace("/", "-")))


@dataclass(frozen=True)
class Attachment:
    """A file linked from a post: platform attachment id, visible name and file type."""

    attachment_id: int
    name: str

    @property
    def ext(self) -> str:
        """Return the lower-case file type taken from the name (pdf, docx, ...)."""
        return self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "pdf"

    @property
    def mime(self) -> str:
        """Return the MIME type served for this file."""
        return MIME_TYPES.get(self.ext, "application/octet-stream")


@dataclass
class Post:
    """One article of a column, holding the text exactly as the site displays it."""

    post_id: int
    title: str
    published_at: datetime
    source: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    modified_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    _paragraphs: list[str] | None = None
    _make_paragraphs: Callable[[], list[str]] | None = None

    @property
    def paragraphs(self) -> list[str]:
        """Return the body paragraphs, generating them on first use for generated posts."""
        if self._paragraphs is None:
            self._paragraphs = self._make_paragraphs() if self._make_paragraphs else []
        return self._paragraphs

    @paragraphs.setter
    def paragraphs(self, value: list[str]) -> None:
        self._paragraphs = list(value)

    @property
    def last_modified(self) -> datetime:
        """Return when the article page last changed."""
        return self.modified_at or self.published_at

    def sort_key(self) -> tuple[datetime, int]:
        """Return the key that orders a column newest first (date, then id)."""
        return (self.published_at, self.post_id)


class Column:
    """The posts of one column, newest first, guarded by a lock for concurrent requests."""

    def __init__(self, posts: Iterable[Post]):
        self._lock = threading.RLock()
        self._posts = sorted(posts, key=Post.sort_key, reverse=True)
        self._by_id = {post.post_id: post for post in self._posts}
        # Each post's index in `_posts`, built when first needed after an insert or removal
        # (an article page shows its neighbours: `list.index` compared every post before it).
        self._positions: dict[int, int] | None = None
        self._version = 0
        latest = max((p.last_modified for p in self._posts), default=now_cst())
        self._changed_at = latest

    @property
    def version(self) -> int:
        """Return a counter bumped by every publish, edit and delete."""
        return self._version

    @property
    def changed_at(self) -> datetime:
        """Return when the column's list pages last changed."""
        return self._changed_at

    def __len__(self) -> int:
        """Return the number of posts."""
        return len(self._posts)

    def page(self, number: int, per_page: int) -> list[Post]:
        """Return the posts of 1-based list page `number`."""
        with self._lock:
            start = (number - 1) * per_page
            return list(self._posts[start : start + per_page])

    def page_count(self, per_page: int) -> int:
        """Return how many list pages the column has (at least one)."""
        with self._lock:
            return max(1, -(-len(self._posts) // per_page))

    def all(self) -> list[Post]:
        """Return a snapshot of every post, newest first."""
        with self._lock:
            return list(self._posts)

    def get(self, post_id: int) -> Post | None:
        """Return the post with this id, or None if it does not exist (or was deleted)."""
        with self._lock:
            return self._by_id.get(post_id)

    def neighbours(self, post_id: int) -> tuple[Post | None, Post | None]:
        """Return the (newer, older) posts next to `post_id` in list order."""
        with self._lock:
            if post_id not in self._by_id:
                return None, None
            if self._positions is None:
                self._positions = {post.post_id: i for i, post in enumerate(self._posts)}
            index = self._positions[post_id]
            newer = self._posts[index - 1] if index > 0 else None
            older = self._posts[index + 1] if index + 1 < len(self._posts) else None
            return newer, older

    def next_id(self) -> int:
        """Return a fresh post id above every id in use (ids grow with time on these CMSs)."""
        with self._lock:
            highest = max(self._by_id, default=1_000_000)
            return highest + 1 + highest % 7

    def add(self, post: Post) -> None:
        """Insert `post` at its place in date order."""
        with self._lock:
            key = post.sort_key()
            # New posts usually go first: scan from the top rather than re-sort everything.
            index = next(
                (i for i, other in enumerate(self._posts) if other.sort_key() < key),
                len(self._posts),
            )
            self._posts.insert(index, post)
            self._by_id[post.post_id] = post
            self._positions = None
            self._touch()

    def edit(self, post_id: int, title: str | None, paragraphs: list[str] | None) -> Post:
        """Change a post's title and/or body; raise KeyError if it does not exist."""
        with self._lock:
            post = self._by_id[post_id]
            if title is not None:
                post.title = title
            if paragraphs is not None:
                post.paragraphs = paragraphs
            post.modified_at = self._touch()
            return post

    def delete(self, post_id: int) -> Post:
        """Remove a post; raise KeyError if it does not exist."""
        with self._lock:
            post = self._by_id.pop(post_id)
            self._posts.remove(post)
            self._positions = None
            self._touch()
            return post

    def _touch(self) -> datetime:
        """Record a change and return its time."""
        # Last-Modified has one-second resolution: a change in the same second as the last
        # one must still move it forward, or If-Modified-Since would hide the change.
        self._version += 1
        self._changed_at = max(now_cst(), self._changed_at + timedelta(seconds=1))
        return self._changed_at
