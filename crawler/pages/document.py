"""Parsing decoded HTML into an lxml tree once, and reading its <meta> tags and links."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urljoin, urlparse, urlsplit

import lxml.html
from lxml import etree
from lxml.html import HtmlElement

# collect_ids=False: no table of id attributes is built, which only the XPath id() function
# (used nowhere) reads.
_PARSER = lxml.html.HTMLParser(
    encoding="utf-8",
    remove_comments=True,
    remove_pis=True,
    no_network=True,
    recover=True,
    collect_ids=False,
)
# lxml.html picks an element class per tag through a Python callback, about a microsecond per
# element each time a node is touched; one C-level default class keeps the HtmlElement API
# (text_content, drop_tree, ...) that readability-lxml relies on at a fraction of the cost.
_PARSER.set_element_class_lookup(
    etree.ElementDefaultClassLookup(
        element=lxml.html.HtmlElement,
        comment=lxml.html.HtmlComment,
        pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity,
    )
)


def parse_html(text: str, utf8: bytes | None = None) -> HtmlElement | None:
    """Return the root <html> element of `text`, or None when nothing parseable is left.

    `utf8`, when given, is `text` encoded as UTF-8 already (see `decode_html_utf8`).
    """
    if not text or not text.strip():
        return None
    if utf8 is not None and b"\x00" not in utf8:
        data = utf8
    else:
        data = text.replace("\x00", "").encode("utf-8", "replace")
    try:
        root = lxml.html.document_fromstring(data, parser=_PARSER)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None
    return root if isinstance(root, HtmlElement) else None


# One page element with its tag, class and id attributes (None when absent).
ElementRow = tuple[HtmlElement, str, str | None, str | None]
# Tags some page scan looks for without a class or id (headings, page chrome, <article>).
_ROW_TAGS = frozenset(("h1", "h2", "h3", "nav", "footer", "aside", "form", "article"))


def element_rows(root: HtmlElement) -> list[ElementRow]:
    """Return, in page order, the elements under `root` that have a class or id or a tag in _ROW_TAGS.

    Read once per page (after `drop_invisible`), they stand in for the libxml2 scans with
    attribute tests (`//*[@class or @id]`, `contains(@class, ...)`), which cost more than
    reading each element's attributes in Python; valid until the tree is changed.
    """
    rows: list[ElementRow] = []
    for element in root.iter(etree.Element):
        classes = element.get("class")
        element_id = element.get("id")
        tag = element.tag
        if classes is not None or element_id is not None or tag in _ROW_TAGS:
            rows.append((element, tag, classes, element_id))
    return rows


def meta_tags(root: HtmlElement) -> dict[str, str]:
    """Return <meta> contents keyed by lower-case name, property or http-equiv (first non-empty wins)."""
    found: dict[str, str] = {}
    for meta in root.iter("meta"):
        content = (meta.get("content") or "").strip()
        if not content:
            continue
        for attr in ("name", "property", "http-equiv", "itemprop"):
            key = (meta.get(attr) or "").strip().lower()
            if key and key not in found:
                found[key] = content
    return found


def base_url(root: HtmlElement, url: str) -> str:
    """Return the URL relative links resolve against (<base href> if present)."""
    for base in root.iter("base"):
        href = (base.get("href") or "").strip()
        if href:
            try:
                return urljoin(url, href)
            except ValueError:
                return url
    return url


# A path-only reference: no scheme, authority, parameters, query or fragment (no ":;?#"),
# nothing urlsplit strips or removes (control characters, spaces), not "//" first.
_PLAIN_PATH = re.compile(r"(?!//)[^\x00-\x20:;?#]+")


@lru_cache(maxsize=256)
def _http_base(base: str) -> tuple[str, str, str] | None:
    """Return the scheme, host and path of an http(s) `base` with a host, else None."""
    try:
        scheme, netloc, path = urlparse(base)[:3]
    except ValueError:
        return None
    return (scheme, netloc, path) if scheme in ("http", "https") and netloc else None


def _join_plain_path(base: tuple[str, str, str], path: str) -> str:
    """Return `urljoin` of a _PLAIN_PATH against an http(s) base (its scheme, host, path).

    The steps urllib's urljoin takes for such a reference (dot segments resolved as in
    RFC 3986), without parsing the reference, nor the result again to check it; a test
    compares the two on many references.
    """
    scheme, netloc, base_path = base
    if path[:1] == "/":
        segments = path.split("/")
    else:
        base_segments = base_path.split("/")
        if base_segments[-1] != "":
            del base_segments[-1]
        segments = base_segments + path.split("/")
        segments[1:-1] = filter(None, segments[1:-1])
    resolved: list[str] = []
    for segment in segments:
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    if segments[-1] in (".", ".."):
        resolved.append("")
    joined = "/".join(resolved) or "/"
    return f"{scheme}://{netloc}{joined if joined[:1] == '/' else '/' + joined}"


def absolute_http_url(base: str, href: str | None) -> str | None:
    """Return `href` resolved against `base` without its fragment, or None unless it is http(s)."""
    if not href:
        return None
    href = href.strip().replace("\\", "/")
    if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
        return None
    if _PLAIN_PATH.fullmatch(href):
        http_base = _http_base(base)
        if http_base is not None:
            return _join_plain_path(http_base, href)
    try:
        absolute = urljoin(base, href)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return absolute.split("#", 1)[0]


def node_text(element: HtmlElement) -> str:
    """Return the whitespace-collapsed text content of `element`."""
    try:
        if type(element) is HtmlElement and not len(element):
            # No child node but text (as most links): that text is all of text_content(),
            # which an XPath evaluation would return.
            text = element.text
            return " ".join(text.split()) if text else ""
        return " ".join(element.text_content().split())
    except (ValueError, TypeError):
        return ""
