"""Result types of the page objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Attachment:
    """A linked file (相关附件): absolute URL, visible name and lower-case type (pdf, docx, ...)."""

    url: str
    name: str
    type: str


@dataclass
class ExtractedArticle:
    """What an article page says: title, CST publish time, issuing agency, clean body."""

    url: str
    title: str
    body: str
    published_at: datetime | None = None
    source: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    doc_number: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class ListEntry:
    """One post linked from a column list page, with what the list tells about it."""

    url: str
    title: str = ""
    published_at: datetime | None = None


@dataclass
class ListPage:
    """A column list page: its posts, in page order, and further list pages to follow."""

    url: str
    entries: list[ListEntry] = field(default_factory=list)
    next_pages: list[str] = field(default_factory=list)
