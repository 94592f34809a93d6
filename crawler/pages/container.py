"""Finding the article body: CMS anchors first (TRS, Hanweb, Guangdong platform, common containers), then readability-lxml."""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import lxml.html
from lxml import etree
from lxml.html import HtmlElement

from crawler.pages.clean import boilerplate_attr, link_density
from crawler.pages.document import ElementRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchor:
    """A known body container (class tokens, ids or tags) of a CMS, and how much a match is trusted."""

    name: str
    classes: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset(("div",))
    trusted: bool = True
    gated: bool = False  # Hanweb: only matches holding a ContentStart marker

    def matches(self, element: HtmlElement, classes: set[str], element_id: str) -> bool:
        """Return True when `element` (with its class tokens and id) is this kind of container."""
        if element.tag not in self.tags:
            return False
        return bool(classes & self.classes) or element_id in self.ids


def _anchor(name: str, classes: str = "", ids: str = "", tags: str = "div", **kw: bool) -> Anchor:
    """Return an Anchor from space-separated class tokens, ids and tags."""
    return Anchor(
        name, frozenset(classes.split()), frozenset(ids.split()), frozenset(tags.split()), **kw
    )


TRS_ANCHORS = (_anchor("trs", "TRS_Editor TRS_UEDITOR trs_editor"),)
HANWEB_ANCHORS = (
    _anchor("hanweb", ids="zoom", tags="div td span section", gated=True),
    _anchor("hanweb-zoom", ids="zoom", tags="div td span section"),
)
GD_PLATFORM_ANCHORS = (
    _anchor(
        "gd-platform",
        "article-content zw zoomcon news_cont_d_wrap tyxxy_main content_detail zw-con article_con",
        "zoomcon ivs_content",
    ),
)
NEWS_ANCHORS = (
    _anchor("chinanews", "left_zw"),
    _anchor("wechat", ids="js_content"),
    _anchor(
        "news",
        # gov.cn, generic news CMSs, people.cn, xinhua, sina, netease, tencent
        "pages_content article-body article_body entry-content post-content news-content "
        "news_content detail-content main-text text-content rm_txt_con show_text box_con "
        "post_body post_text content-article",
        "UCAP-CONTENT artibody detailContent",
        tags="div span section",
    ),
)
COMMON_ANCHORS = (
    _anchor("common", "content article detail con text", "content", "div td", trusted=False),
    _anchor("article-tag", tags="article", trusted=False),
)
ALL_ANCHORS = TRS_ANCHORS + HANWEB_ANCHORS + GD_PLATFORM_ANCHORS + NEWS_ANCHORS + COMMON_ANCHORS


@dataclass
class Body:
    """The chosen body: container elements in page order, optional Hanweb gate markers, and how found."""

    containers: list[HtmlElement]
    method: str
    start_marker: HtmlElement | None = None
    end_marker: HtmlElement | None = None
    notes: list[str] = field(default_factory=list)


def _text_size(element: HtmlElement) -> int:
    """Return the number of non-space characters of text under `element`."""
    return len("".join(element.text_content().split()))


def _acceptable(
    element: HtmlElement, trusted: bool, page_size: int, sizes: dict[HtmlElement, int] | None = None
) -> bool:
    """Return True when a matched container holds enough text and is not a link list or page wrapper."""
    size = _cached_size(element, sizes) if sizes is not None else _text_size(element)
    if size < (20 if trusted else max(80, page_size // 4)):
        return False
    # link_density(element), with its text size (never 0 here) already known.
    linked = sum(len("".join(a.text_content().split())) for a in element.iter("a"))
    density = min(1.0, linked / size)
    if density > (0.5 if trusted else 0.3):
        return False
    if not trusted:
        # A page wrapper holds menus: several link lists of five or more entries.
        menus = sum(1 for lst in element.iter("ul", "ol") if len(lst.findall(".//a")) >= 5)
        if menus >= 2:
            return False
    return True


def _cached_size(element: HtmlElement, sizes: dict[HtmlElement, int]) -> int:
    """Return `_text_size(element)`, computed once per element of one page in `sizes`."""
    size = sizes.get(element)
    if size is None:
        size = sizes[element] = _text_size(element)
    return size


def _pick(matches: list[HtmlElement], sizes: dict[HtmlElement, int] | None = None) -> HtmlElement:
    """Return the match with most text, or a nested match holding nearly all of it."""
    if sizes is None:
        sizes = {}
    sized = sorted(
        ((_cached_size(m, sizes), i, m) for i, m in enumerate(matches)), key=lambda t: (-t[0], t[1])
    )
    best_size, _, best = sized[0]
    for size, _, element in sized[1:]:
        if size >= 0.8 * best_size and best in element.iterancestors():
            best, best_size = element, size
    return best


def _gate(container: HtmlElement) -> tuple[HtmlElement | None, HtmlElement | None]:
    """Return the Hanweb ContentStart and ContentEnd <meta> markers inside `container`."""
    start = end = None
    for meta in container.iter("meta"):
        name = (meta.get("name") or "").strip().lower()
        if name == "contentstart" and start is None:
            start = meta
        elif name == "contentend" and start is not None:
            end = meta
            break
    return start, end


_AnchorIndex = tuple[dict[str, list[int]], dict[str, list[int]], list[Anchor], list[Anchor]]
_ANCHOR_INDEXES: dict[tuple[Anchor, ...], _AnchorIndex] = {}


def _anchor_index(anchors: tuple[Anchor, ...]) -> _AnchorIndex:
    """Return the class-token and id lookups of the attribute anchors, and the tag-only anchors."""
    index = _ANCHOR_INDEXES.get(anchors)
    if index is None:
        tag_anchors = [a for a in anchors if not a.classes and not a.ids]
        attr_anchors = [a for a in anchors if a.classes or a.ids]
        by_class: dict[str, list[int]] = {}
        by_id: dict[str, list[int]] = {}
        for position, anchor in enumerate(attr_anchors):
            for token in anchor.classes:
                by_class.setdefault(token, []).append(position)
            for element_id in anchor.ids:
                by_id.setdefault(element_id, []).append(position)
        index = _ANCHOR_INDEXES[anchors] = (by_class, by_id, attr_anchors, tag_anchors)
    return index


_CANDIDATE_XPATH = etree.XPath("//*[@class or @id] | //article")
# Attribute nodes are found much faster than elements with an attribute test.
_ITEMPROP_XPATH = etree.XPath("//@itemprop")


def _candidates(
    root: HtmlElement, anchors: tuple[Anchor, ...], rows: list[ElementRow] | None = None
) -> dict[str, list[HtmlElement]]:
    """Return, per anchor name, the elements of the page it matches, in page order (one scan).

    `rows` are the page's `element_rows`, when already read.
    """
    found: dict[str, list[HtmlElement]] = {anchor.name: [] for anchor in anchors}
    by_class, by_id, attr_anchors, tag_anchors = _anchor_index(anchors)
    if rows is None:
        rows = [(e, e.tag, e.get("class"), e.get("id")) for e in _CANDIDATE_XPATH(root)]
    for element, tag, class_attr, element_id in rows:
        if class_attr is None and element_id is None and tag != "article":
            continue
        hits: set[int] = set()
        if class_attr:
            for token in class_attr.split():
                positions = by_class.get(token)
                if positions:
                    hits.update(positions)
        if element_id:
            positions = by_id.get(element_id.strip())
            if positions:
                hits.update(positions)
        if hits:
            for position in sorted(hits):
                anchor = attr_anchors[position]
                if tag in anchor.tags:
                    found[anchor.name].append(element)
        for anchor in tag_anchors:
            if tag in anchor.tags:
                found[anchor.name].append(element)
    # `//*[@itemprop='articleBody']`: an element has one itemprop, so parents come in page order.
    for value in _ITEMPROP_XPATH(root):
        if value == "articleBody":
            found.setdefault("news", []).append(value.getparent())
    return found


def find_by_anchors(
    root: HtmlElement, anchors: tuple[Anchor, ...], rows: list[ElementRow] | None = None
) -> Body | None:
    """Return the body found by the first anchor with an acceptable match, or None.

    `rows` are the page's `element_rows`, when already read.
    """
    found = _candidates(root, anchors, rows)
    sizes: dict[HtmlElement, int] = {}
    page_size = -1  # measured when first needed: only untrusted anchors compare with it
    for anchor in anchors:
        matches = found.get(anchor.name, [])
        if not matches:
            continue
        if anchor.gated:
            matches = [m for m in matches if _gate(m)[0] is not None]
        if not anchor.trusted and page_size < 0 and matches:
            page = root.find("body")
            page_size = _text_size(page if page is not None else root)
        matches = [m for m in matches if _acceptable(m, anchor.trusted, page_size, sizes)]
        if not matches:
            continue
        container = _pick(matches, sizes)
        start, end = _gate(container) if anchor.name.startswith("hanweb") else (None, None)
        return Body([container], anchor.name, start, end)
    return None


# --- readability fallback ---------------------------------------------------------------------

_ID_ATTR = "data-gm-node"
# Clause punctuation: readability-lxml counts only ASCII commas, which Chinese text rarely has.
_CLAUSES = re.compile(r"[,，、;；。！？!?]")


def _chinese_document_class() -> type:
    """Return a readability Document subclass whose paragraph scores count Chinese clause punctuation."""
    from readability import Document
    from readability.readability import clean

    class ChineseDocument(Document):  # type: ignore[misc]
        """readability-lxml Document scoring `，、；。` like the ASCII commas it counts by itself."""

        def score_paragraphs(self) -> dict[HtmlElement, dict[str, Any]]:
            """Return readability's candidate scores, with clauses counted by Chinese punctuation."""
            candidates: dict[HtmlElement, dict[str, Any]] = {}
            ordered: list[HtmlElement] = []
            for elem in self.tags(self._html(), "p", "pre", "td", "blockquote"):
                parent = elem.getparent()
                if parent is None:
                    continue
                grand_parent = parent.getparent()
                inner_text = clean(elem.text_content() or "")
                if len(inner_text) < self.min_text_length:
                    continue
                for node in (parent, grand_parent):
                    if node is not None and node not in candidates:
                        candidates[node] = self.score_node(node)
                        ordered.append(node)
                score = 2 + len(_CLAUSES.findall(inner_text)) + min(len(inner_text) / 100, 3)
                candidates[parent]["content_score"] += score
                if grand_parent is not None:
                    candidates[grand_parent]["content_score"] += score / 2.0
            for node in ordered:
                candidates[node]["content_score"] *= 1 - self.get_link_density(node)
            return candidates

    return ChineseDocument


_DOCUMENT_CLASS: list[type] = []
_PRUNE_XPATH = etree.XPath(
    "//script | //style | //noscript | //iframe | //nav | //footer | //aside | //form"
)
_ATTRIBUTED_XPATH = etree.XPath("//*[@class or @id]")


def _prune_chrome(shadow: HtmlElement) -> None:
    """Remove scripts, menus, footers and link lists from a copy of the page before scoring.

    They cannot hold the article, and readability-lxml spends most of its time cleaning and
    measuring link density; without them it runs faster and is not tempted by them.
    """
    doomed = list(_PRUNE_XPATH(shadow))
    for element in _ATTRIBUTED_XPATH(shadow):
        if element.tag in ("html", "body") or not boilerplate_attr(element):
            continue
        if len(element.findall(".//a")) >= 3 and link_density(element) > 0.5:
            doomed.append(element)
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()


def find_by_readability(root: HtmlElement) -> Body | None:
    """Return the body readability-lxml selects (scored with Chinese punctuation), mapped onto `root`."""
    from readability.readability import Unparseable

    if not _DOCUMENT_CLASS:
        _DOCUMENT_CLASS.append(_chinese_document_class())
    nodes: list[HtmlElement] = []
    for element in root.iter():
        if isinstance(element.tag, str):
            element.set(_ID_ATTR, str(len(nodes)))
            nodes.append(element)
    shadow = copy.deepcopy(root)
    _prune_chrome(shadow)
    try:
        summary = _DOCUMENT_CLASS[0](shadow).summary(html_partial=True)
        fragment = lxml.html.fragment_fromstring(summary, create_parent="div")
    # lxml asserts when readability's summary has no body (a page cut short after <head>).
    except (Unparseable, etree.ParserError, ValueError, TypeError, AssertionError) as exc:
        log.debug("readability failed: %s", exc)
        return None
    chosen: set[int] = set()
    pending = [fragment]
    while pending:
        element = pending.pop()
        key = element.get(_ID_ATTR) if isinstance(element.tag, str) else None
        if key is not None and key.isdigit() and int(key) < len(nodes):
            chosen.add(int(key))
        else:
            pending.extend(element)
    picked = [nodes[i] for i in sorted(chosen) if nodes[i].tag not in ("html", "head")]
    return Body(picked, "readability") if picked else None
