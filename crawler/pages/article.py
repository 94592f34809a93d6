"""Article pages: `extract_article` and the registry of extractor kinds a seed picks with `extractor:`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from lxml.html import HtmlElement

from crawler.pages.attachments import find_attachments, may_have_attachments
from crawler.pages.clean import LineKind, chrome_elements, classify_line, drop_invisible, norm
from crawler.pages.container import (
    ALL_ANCHORS,
    GD_PLATFORM_ANCHORS,
    HANWEB_ANCHORS,
    TRS_ANCHORS,
    Anchor,
    Body,
    find_by_anchors,
    find_by_readability,
)
from crawler.pages.dates import match_date
from crawler.pages.document import ElementRow, base_url, element_rows, meta_tags, parse_html
from crawler.pages.encoding import decode_html_utf8
from crawler.pages.fields import (
    description_line,
    find_description,
    find_doc_number,
    find_source,
    find_title,
)
from crawler.pages.model import ExtractedArticle
from crawler.pages.published import DateEvidence, find_published
from crawler.pages.text import BODY, POST, PRE, Line, text_lines

log = logging.getLogger(__name__)


_PUNCTUATION = re.compile(r"[\W_]+")
_DATE_ONLY_REST = re.compile(
    r"[\d\s:/.\-年月日号時时分秒点TZ+]|星期.|周[一二三四五六日天]|上午|下午|中午|晚上|凌晨|早上|讯|訊"
)


def _is_dateline(line: str) -> bool:
    """Return True for a short line that is a full date with at most a byline or counter: page metadata.

    A yearless date alone on a line (`6月9日`) is the dateline of a WeChat-style post and stays.
    """
    if len(line) > 40:
        return False
    rest = _PUNCTUATION.sub("", _DATE_ONLY_REST.sub("", line))
    if len(rest) > 6:
        return False
    parts = match_date(line)
    return parts is not None and parts.year is not None


def assemble_body(lines: list[str], title: str) -> list[str]:
    """Return the body paragraphs: boilerplate and spam dropped, cut at related lists or prev/next links."""
    kept: list[str] = []
    for line in lines:
        kind = classify_line(line)
        if kind is LineKind.END:
            if kept:
                break
            continue
        if kind is LineKind.TEXT and description_line(line) is None:
            kept.append(line)
    title_norm = norm(title) if title else ""
    while kept and ((title_norm and norm(kept[0]) == title_norm) or _is_dateline(kept[0])):
        kept.pop(0)
    return kept


class GenericExtractor:
    """Any site: government meta tags, then known CMS containers, then readability-lxml.

    Containers tried in order: TRS (div.TRS_Editor), Hanweb (#zoom with ContentStart/ContentEnd
    markers), Guangdong platform (div.article-content, #zoomcon, div.zw), chinanews (div.left_zw),
    WeChat (#js_content), news CMSs, then common ones (div.content, div.article, <article>);
    readability-lxml, scored with Chinese punctuation, when none holds the text.
    """

    name = "generic"
    anchors: tuple[Anchor, ...] = ALL_ANCHORS
    use_readability = True

    def __call__(
        self,
        url: str,
        html: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        crawl_time: datetime | None = None,
        list_date: datetime | None = None,
        encoding: str | None = None,
    ) -> ExtractedArticle:
        """Return what the article page at `url` says; an empty article if it cannot be read."""
        try:
            return self.extract(url, html, headers, crawl_time, list_date, encoding)
        except Exception:
            log.warning("extraction failed for %s", url, exc_info=True)
            return ExtractedArticle(url=url, title="", body="")

    def find_body(self, root: HtmlElement, rows: list[ElementRow] | None = None) -> Body | None:
        """Return the body container chosen by this kind's anchors, else by readability.

        `rows` are the page's `element_rows`, when already read.
        """
        body = find_by_anchors(root, self.anchors, rows) if self.anchors else None
        if body is None and self.use_readability:
            body = find_by_readability(root)
        return body

    def extract(
        self,
        url: str,
        html: bytes,
        headers: Mapping[str, Any] | None,
        crawl_time: datetime | None,
        list_date: datetime | None,
        encoding: str | None,
    ) -> ExtractedArticle:
        """Return the article, letting unexpected errors propagate (see __call__)."""
        text, _, utf8 = decode_html_utf8(html or b"", headers, encoding)
        root = parse_html(text, utf8)
        if root is None:
            return ExtractedArticle(url=url, title="", body="")
        meta = meta_tags(root)
        drop_invisible(root)
        # The tree keeps its elements and their classes and ids from here on.
        rows = element_rows(root)
        title = find_title(meta, root, rows)
        page = root.find("body")
        page = page if page is not None else root
        body = self.find_body(root, rows) or Body([page], "page")
        attachments = (
            find_attachments(root, base_url(root, url), body.containers)
            if may_have_attachments(text)
            else []
        )
        chrome = chrome_elements(root, body.containers, rows)
        lines = text_lines(
            page,
            body.containers,
            chrome=chrome,
            start_marker=body.start_marker,
            end_marker=body.end_marker,
        )
        body_lines = [ln.text for ln in lines if ln.zone == BODY and not ln.chrome]
        paragraphs = assemble_body(body_lines, title)
        head = _header_lines(lines)
        leading = body_lines[:5]
        trailing = [ln.text for ln in lines if ln.zone == POST][:8]
        evidence = DateEvidence(meta, head, _near_title(lines, title), leading[:3], trailing, text)
        info_lines = [*head, *leading, *trailing]
        return ExtractedArticle(
            url=url,
            title=title,
            body="\n".join(paragraphs),
            published_at=find_published(evidence, url, list_date=list_date, crawl_time=crawl_time),
            source=find_source(meta, info_lines, root, rows),
            attachments=attachments,
            doc_number=find_doc_number(title, info_lines, leading),
            description=find_description(meta, [*leading, *head]),
        )


def _header_lines(lines: list[Line], limit: int = 30) -> list[str]:
    """Return the last lines before the body and the chrome lines inside it (title, date, source bars)."""
    before = [ln.text for ln in lines if ln.zone == PRE][-limit:]
    return before + [ln.text for ln in lines if ln.zone == BODY and ln.chrome][:limit]


def _near_title(lines: list[Line], title: str, after: int = 6, before: int = 4) -> list[str]:
    """Return the lines around the title (after it first), where an unlabelled date is the post's."""
    pre = [ln.text for ln in lines if ln.zone == PRE]
    title_norm = norm(title) if title else ""
    if not title_norm:
        return []
    for index in range(len(pre) - 1, -1, -1):
        if norm(pre[index][:200]) == title_norm:
            return pre[index + 1 : index + 1 + after] + pre[max(0, index - before) : index][::-1]
    return []


class TrsExtractor(GenericExtractor):
    """TRS WCM sites (tYYYYMMDD_NNNN.html): body in div.TRS_Editor or div.TRS_UEDITOR first."""

    name = "trs"
    anchors = TRS_ANCHORS + ALL_ANCHORS


class HanwebExtractor(GenericExtractor):
    """Hanweb sites (/art/YYYY/M/D/art_X_Y.html): body between the ContentStart/End markers first."""

    name = "hanweb"
    anchors = HANWEB_ANCHORS + ALL_ANCHORS


class GdPlatformExtractor(GenericExtractor):
    """Guangdong platform (/content/post_NNNNNNN.html): div.article-content, #zoomcon, div.zw first."""

    name = "gd_platform"
    anchors = GD_PLATFORM_ANCHORS + ALL_ANCHORS


class ReadabilityExtractor(GenericExtractor):
    """No CMS containers: readability-lxml, scored with Chinese punctuation, picks the body."""

    name = "readability"
    anchors = ()


EXTRACTORS: dict[str, GenericExtractor] = {
    kind.name: kind()
    for kind in (
        GenericExtractor,
        TrsExtractor,
        HanwebExtractor,
        GdPlatformExtractor,
        ReadabilityExtractor,
    )
}


def extractor_help() -> dict[str, str]:
    """Return each extractor kind's one-line help (its class docstring's first line), by name."""
    return {
        name: (type(kind).__doc__ or "").strip().split("\n", 1)[0]
        for name, kind in EXTRACTORS.items()
    }


def get_extractor(name: str) -> Callable[..., ExtractedArticle]:
    """Return the extractor registered as `name`; raise KeyError listing the known kinds."""
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise KeyError(
            f"unknown extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}"
        ) from None


def extract_article(
    url: str,
    html: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    crawl_time: datetime | None = None,
    list_date: datetime | None = None,
    encoding: str | None = None,
    extractor: str = "generic",
) -> ExtractedArticle:
    """Return what the article page at `url` says (title, CST publish time, source, body, attachments, ...)."""
    return get_extractor(extractor)(
        url, html, headers, crawl_time=crawl_time, list_date=list_date, encoding=encoding
    )
