"""The item a crawl yields for each article page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ArticleItem:
    """One fetched article page, extracted; `published_at` is ISO 8601 with +08:00 or None."""

    source_id: str
    url: str
    title: str
    body: str
    published_at: str | None = None
    source_name: str | None = None
    doc_number: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    fetched_at: str = ""
    http_status: int = 200
    list_url: str | None = None
    # SHA-256 of the normalised title and body (crawler.normalize.content_hash), computed
    # where the page was extracted; None lets the store compute it. A pipeline placed before
    # the store that changes the title or body must set it to None.
    content_hash: str | None = None


@dataclass
class WithdrawnItem:
    """A known post that is gone: its page answers 404/410, or its list dropped it."""

    source_id: str
    url: str
    reason: str
    seen_at: str
