"""Column list pages: the posts they link to (with the list's title and date) and further list pages."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import lxml.html
from lxml import etree
from lxml.html import HtmlElement

from crawler.pages.clean import drop_invisible
from crawler.pages.dates import CST, as_cst, find_year_hint, match_date, resolve
from crawler.pages.document import absolute_http_url, base_url, node_text, parse_html
from crawler.pages.encoding import decode_html_utf8, header_value
from crawler.pages.model import ListEntry, ListPage

log = logging.getLogger(__name__)

_ROW_TAGS = frozenset(("li", "tr", "dd", "dt", "p", "div", "span", "td", "section", "article"))
_MAX_ROW_DEPTH = 4
_DONE = object()
_ELLIPSIS = re.compile(r"(?:\.{2,}|…+|·{2,})\s*$")
# TRS column pages write their pager with a script: createPageHTML(total, current, "index", "html").
_TRS_PAGER = re.compile(
    r"createPageHTML\(\s*['\"]?(\d+)['\"]?\s*,\s*['\"]?(\d+)['\"]?\s*,\s*['\"](\w+)['\"]\s*,\s*['\"](\w+)['\"]"
)
_TRS_PAGER_LIMIT = 50


class _Entries:
    """Entries in page order, one per URL, keeping the first title and date seen for each."""

    def __init__(self) -> None:
        self.by_url: dict[str, dict[str, Any]] = {}

    def add(self, url: str, title: str, published_at: datetime | None) -> None:
        entry = self.by_url.setdefault(url, {"title": "", "published_at": None})
        if not entry["title"] and title:
            entry["title"] = title
        if entry["published_at"] is None and published_at is not None:
            entry["published_at"] = published_at

    def result(self) -> list[ListEntry]:
        return [ListEntry(url=url, **fields) for url, fields in self.by_url.items()]


def _link_title(link: HtmlElement) -> str:
    """Return the link text as title, or the title attribute when the text is empty or cut short."""
    text = node_text(link)
    full = " ".join((link.get("title") or "").split())
    if not text:
        return full
    if full and _ELLIPSIS.search(text):
        stem = _ELLIPSIS.sub("", text)
        if full.startswith(stem) and len(full) > len(stem):
            return full
    return text


def _row_text(row: HtmlElement, link: HtmlElement) -> str:
    """Return the text of a list row without the text of the post link itself."""
    parts: list[str] = []
    below_link = set(link.iterdescendants()) if len(link) else ()
    for node in row.iter():
        if node is link:
            parts.append(" ")
            continue
        if node in below_link:
            continue
        if node.text and node is not link:
            parts.append(node.text)
        if node is not row and node.tail:
            parts.append(node.tail)
    if row is not link and link.tail:
        parts.append(link.tail)
    return " ".join("".join(parts).split())


def _row_date(
    link: HtmlElement, post_links: set[HtmlElement], url: str, reference: datetime | None
) -> datetime | None:
    """Return the date printed in the list row of `link` (its nearest block holding no other post)."""
    row: HtmlElement | None = None
    node = link
    for _ in range(_MAX_ROW_DEPTH):
        parent = node.getparent()
        if parent is None or parent.tag in ("body", "html", "ul", "ol", "table", "tbody"):
            break
        if any(other in post_links and other is not link for other in parent.iter("a")):
            break
        node = parent
        if parent.tag in _ROW_TAGS:
            row = parent
    texts = [_row_text(row, link)] if row is not None else []
    if row is None:
        # A flat list (<a>..</a><span>date</span><a>..</a>): read the text up to the next post link.
        texts.append(link.tail or "")
        for sibling in link.itersiblings():
            if sibling in post_links or sibling.tag == "br":
                break
            texts.append(node_text(sibling))
            texts.append(sibling.tail or "")
    parts = match_date(" ".join(texts), short_numeric=True)
    if parts is None:
        return None
    if parts.year is not None:
        return resolve(parts)
    year = find_year_hint(url)
    return resolve(parts, year=year) if year else resolve(parts, reference=reference)


_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)


def _expand_datastores(root: HtmlElement) -> None:
    """Put the rows of Hanweb datastores (<script type="text/xml"> CDATA records) into the page."""
    for script in list(root.iter("script")):
        text = script.text or ""
        if "<record" not in text and "xml" not in (script.get("type") or "").lower():
            continue
        records = _CDATA.findall(text)
        if not records:
            continue
        try:
            rows = lxml.html.fragment_fromstring("".join(records), create_parent="div")
        except (etree.ParserError, ValueError):
            continue
        script.addnext(rows)


def _trs_pages(url: str, html_text: str) -> list[str]:
    """Return the list pages a TRS script pager would link to (index_1.html, index_2.html, ...)."""
    match = _TRS_PAGER.search(html_text)
    if not match:
        return []
    total, _current, stem, ext = (
        int(match.group(1)),
        int(match.group(2)),
        match.group(3),
        match.group(4),
    )
    base = url.rsplit("/", 1)[0] + "/"
    pages = [f"{base}{stem}.{ext}"]
    pages += [f"{base}{stem}_{n}.{ext}" for n in range(1, min(total, _TRS_PAGER_LIMIT))]
    return pages


def _json_items(data: Any) -> Iterator[dict[str, Any]]:
    """Yield every JSON object nested in `data`, depth first, in document order."""
    stack: list[Iterator[Any]] = [iter([data])]
    while stack:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
        elif isinstance(item, dict):
            yield item
            stack.append(iter(item.values()))
        elif isinstance(item, list):
            stack.append(iter(item))


def _date_key_rank(key: str) -> int:
    """Return how telling a JSON key is of a publish date (lower is better, 9 for unrelated)."""
    lowered = key.lower()
    for rank, word in enumerate(("publish", "pub", "date", "time")):
        if word in lowered:
            return rank
    return 9


def _json_date(item: Mapping[str, Any]) -> datetime | None:
    """Return the publish date of a JSON list item (text or epoch seconds/milliseconds), or None."""
    keys = sorted(
        (k for k in item if _date_key_rank(str(k)) < 9), key=lambda k: _date_key_rank(str(k))
    )
    for key in keys:
        value = item[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            seconds = value / 1000 if value > 1e11 else value
            try:
                return datetime.fromtimestamp(seconds, CST)
            except (OverflowError, OSError, ValueError):
                continue
        if isinstance(value, str):
            parts = match_date(value)
            if parts is not None and parts.year is not None:
                return resolve(parts)
    return None


def _parse_json_list(url: str, text: str, article_re: re.Pattern[str]) -> ListPage | None:
    """Return the posts of a JSON column list (the gkmlpt API), or None when `text` is not JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    entries = _Entries()
    for item in _json_items(data):
        for key in ("url", "link", "href", "post_url", "docpuburl", "path"):
            link = absolute_http_url(url, item.get(key)) if isinstance(item.get(key), str) else None
            if link and article_re.search(link):
                title = item.get("title") or item.get("name") or ""
                entries.add(link, " ".join(str(title).split()), _json_date(item))
                break
    return ListPage(url=url, entries=entries.result())


def parse_list(
    url: str,
    html: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    article_pattern: str,
    list_pattern: str | None = None,
    encoding: str | None = None,
    crawl_time: datetime | None = None,
) -> ListPage:
    """Return the posts a column list page links to, in page order, and its further list pages."""
    try:
        return parse_list_strict(
            url, html, headers, article_pattern, list_pattern, encoding, crawl_time
        )
    except re.error:
        raise
    except Exception:
        log.warning("list parsing failed for %s", url, exc_info=True)
        return ListPage(url=url)


def parse_list_strict(
    url: str,
    html: bytes,
    headers: Mapping[str, Any] | None,
    article_pattern: str,
    list_pattern: str | None,
    encoding: str | None,
    crawl_time: datetime | None,
) -> ListPage:
    """Return the ListPage of `html` (see parse_list), letting every error propagate."""
    article_re = re.compile(article_pattern)
    list_re = re.compile(list_pattern) if list_pattern else None
    text, _, utf8 = decode_html_utf8(html or b"", headers, encoding)
    content_type = (header_value(headers, "content-type") or "").lower()
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        page = _parse_json_list(url, text, article_re)
        if page is not None:
            return page
    root = parse_html(text, utf8)
    if root is None:
        return ListPage(url=url)
    drop_invisible(root)
    _expand_datastores(root)
    base = base_url(root, url)
    reference = as_cst(crawl_time) if crawl_time is not None else None
    posts: list[tuple[HtmlElement, str]] = []
    next_pages: list[str] = []
    for link in root.iter("a"):
        target = absolute_http_url(base, link.get("href"))
        if target is None:
            continue
        if article_re.search(target):
            posts.append((link, target))
        elif (
            list_re is not None
            and list_re.search(target)
            and target != url
            and target not in next_pages
        ):
            next_pages.append(target)
    if list_re is not None:
        for target in _trs_pages(url, text):
            if list_re.search(target) and target != url and target not in next_pages:
                next_pages.append(target)
    post_links = {link for link, _ in posts}
    entries = _Entries()
    for link, target in posts:
        entries.add(target, _link_title(link), _row_date(link, post_links, target, reference))
    return ListPage(url=url, entries=entries.result(), next_pages=next_pages)
