"""Attachments (相关附件): links to PDF, Word, Excel, WPS, OFD and archive files that belong to the article."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from lxml.html import HtmlElement

from crawler.pages.clean import boilerplate_attr, norm
from crawler.pages.document import absolute_http_url, node_text
from crawler.pages.model import Attachment

ATTACHMENT_TYPES = ("pdf", "doc", "docx", "xls", "xlsx", "wps", "ofd", "zip", "rar", "et")
_EXTENSION = re.compile(r"\.(pdf|docx?|xlsx?|wps|ofd|zip|rar|et)\s*$", re.IGNORECASE)
_EXTENSION_IN_QUERY = re.compile(r"\.(pdf|docx?|xlsx?|wps|ofd|zip|rar|et)(?:$|[&#])", re.IGNORECASE)
_MAYBE_FILE = re.compile(r"\.(?:pdf|docx?|xlsx?|wps|ofd|zip|rar|et)\b", re.IGNORECASE)
_ATTACHMENT_BLOCK = re.compile(
    r"fj|fujian|attach|appendix|enclosure|download|xiazai|file", re.IGNORECASE
)
_PAGE_CHROME = frozenset(("nav", "header", "footer", "aside"))
_MAX_CLIMB = 6


def attachment_type(url: str, *names: str) -> str | None:
    """Return the lower-case file type of an attachment link from its URL or its names, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    match = _EXTENSION.search(unquote(parts.path)) or _EXTENSION_IN_QUERY.search(
        unquote(parts.query)
    )
    if match is None:
        for name in names:
            match = _EXTENSION.search(name or "")
            if match:
                break
    return match.group(1).lower() if match else None


def _belongs_to_article(link: HtmlElement, containers: set[HtmlElement]) -> bool:
    """Return True when a file link sits in the body or in an attachment block, not in page chrome."""
    ancestors = list(link.iterancestors())
    if any(ancestor in containers for ancestor in ancestors):
        return True
    for depth, ancestor in enumerate(ancestors):
        if depth >= _MAX_CLIMB or ancestor.tag in ("body", "html"):
            return False
        attrs = f"{ancestor.get('class') or ''} {ancestor.get('id') or ''}"
        if _ATTACHMENT_BLOCK.search(attrs):
            return True
        if ancestor.tag in _PAGE_CHROME or boilerplate_attr(ancestor):
            return False
        if "附件" in norm(node_text(ancestor)[:40]):
            return True
    return False


def _file_name(url: str) -> str:
    """Return the file name at the end of a URL path."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def may_have_attachments(html_text: str) -> bool:
    """Return False when the page source names no file of an attachment type at all."""
    return bool(_MAYBE_FILE.search(html_text))


def find_attachments(
    root: HtmlElement, base: str, containers: Sequence[HtmlElement]
) -> list[Attachment]:
    """Return the article's attachments in page order, one per URL."""
    inside = set(containers)
    found: dict[str, Attachment] = {}
    for link in root.iter("a"):
        href = link.get("href") or ""
        title = (link.get("title") or "").strip()
        named = link.get("download") or ""
        # Most links are menus and news items: skip them before resolving any URL.
        if not _MAYBE_FILE.search(f"{href} {title} {named}"):
            text = node_text(link)
            if not _MAYBE_FILE.search(text):
                continue
        else:
            text = node_text(link)
        url = absolute_http_url(base, href)
        if url is None or url in found:
            continue
        kind = attachment_type(url, text, title, named)
        if kind is None or not _belongs_to_article(link, inside):
            continue
        found[url] = Attachment(url=url, name=text or title or _file_name(url), type=kind)
    return list(found.values())
