"""Article fields besides the body and date: title, issuing source, description, document number."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from lxml.html import HtmlElement

from crawler.normalize import strip_pinyin
from crawler.pages.clean import norm
from crawler.pages.document import ElementRow, element_rows, node_text

# --- title ----------------------------------------------------------------------------------

_TITLE_META = ("articletitle", "og:title", "twitter:title", "title", "headline")
_SITE_WORDS = re.compile(
    r"网|网站|政府|门户|官网|新闻|频道|平台|在线|中心|资讯|首页|客户端|日报|晚报"
)
_TITLE_SEPARATORS = ("_", "|", "｜", " - ", " — ", "——", " – ", "-", "—")
_HEADING_TAGS = frozenset(("h1", "h2", "h3"))


def page_title(root: HtmlElement) -> str:
    """Return the text of the <title> element, whitespace collapsed."""
    element = root.find(".//title")
    return " ".join((element.text_content() if element is not None else "").split())


def heading_texts(
    root: HtmlElement, limit: int = 40, rows: list[ElementRow] | None = None
) -> list[str]:
    """Return the texts of headings and title-classed elements, in page order.

    `rows` are the page's `element_rows`, when already read.
    """
    texts = []
    for element in _headings(root, limit, rows):
        text = node_text(element)
        if 4 <= len(text) <= 200:
            texts.append(text)
    return texts


def _headings(
    root: HtmlElement, limit: int, rows: list[ElementRow] | None = None
) -> list[HtmlElement]:
    """Return the first `limit` <h1>-<h3> and title-classed elements of the page, in page order.

    The same as `root.xpath(...)[:limit]` with the XPath `//h1 | //h2 | //h3 | //*[contains(@class,
    'title') or contains(@id, 'title') or contains(@class, 'Title') or contains(@class, 'biaoti')
    or contains(@class, 'bt')]`, in one pass instead of libxml2's slow attribute tests.
    """
    if rows is None:
        rows = element_rows(root.getroottree().getroot())
    found: list[HtmlElement] = []
    for element, tag, classes, element_id in rows:
        if not (
            tag in _HEADING_TAGS
            or (
                classes is not None
                and (
                    "title" in classes
                    or "Title" in classes
                    or "biaoti" in classes
                    or "bt" in classes
                )
            )
            or (element_id is not None and "title" in element_id)
        ):
            continue
        found.append(element)
        if len(found) == limit:
            break
    return found[:limit]


def strip_site_suffix(title: str, site_name: str = "") -> str:
    """Return `title` without trailing site names such as `_深圳新闻网` or `-开平市人民政府门户网站`."""
    site = norm(site_name) if site_name else ""
    changed = True
    while changed:
        changed = False
        for separator in _TITLE_SEPARATORS:
            head, found, tail = title.rpartition(separator)
            if not found or len(head.strip()) < 4:
                continue
            tail_norm = norm(tail.strip())
            if (site and tail_norm == site) or (
                len(tail_norm) <= 30
                and _SITE_WORDS.search(tail_norm)
                and not re.search(r"\d", tail_norm)
            ):
                title = head.strip()
                changed = True
                break
    return title


def find_title(
    meta: Mapping[str, str], root: HtmlElement, rows: list[ElementRow] | None = None
) -> str:
    """Return the article title: title meta tags, else the heading the <title> quotes, else <title>.

    `rows` are the page's `element_rows`, when already read.
    """
    site_name = meta.get("sitename", "")
    for key in _TITLE_META:
        value = " ".join(meta.get(key, "").split())
        if value:
            return value if key == "articletitle" else strip_site_suffix(value, site_name)
    tag_title = page_title(root)
    headings = heading_texts(root, rows=rows)
    tag_norm = norm(tag_title) if tag_title else ""
    quoted = [h for h in headings if tag_norm and norm(h) in tag_norm]
    if quoted:
        best = max(quoted, key=len)
        if norm(best) != norm(site_name):
            return best
    cleaned = strip_site_suffix(tag_title, site_name) if tag_title else ""
    if cleaned:
        return cleaned
    return headings[0] if headings else ""


# --- source, description ---------------------------------------------------------------------

_SOURCE_META = ("contentsource", "source", "article:source")
_LABEL_START = r"(?:^|(?<=[\s\d】\]|｜丨/:：;；,，.)]))"
_SOURCE_LINES = (
    re.compile(
        _LABEL_START + r"(?:信息|文章|新闻|新聞|稿件|消息)?[来來]\s*源\s*[:：]\s*(?P<value>.+)"
    ),
    re.compile(
        _LABEL_START
        + r"(?:[发發][布佈](?:单位|單位|机构|機構)|[发發]文(?:机关|機關|单位|單位))\s*[:：]\s*(?P<value>.+)"
    ),
)
_VALUE_END = re.compile(
    r"\s+[^\s:：]{1,8}\s*[:：]|[【\[|｜]|(?:[发發][布佈]|[时時][间間]|日期|作者|[编編]\s*[辑輯]|[浏瀏][览覽]|[点點][击擊]"
    r"|打印|字[体體号號]|分享|阅读|閱讀|访问|訪問)\s*[:：]?"
)
# Words after a source that belong to the info bar: font controls, dates, view counts.
_NOT_SOURCE = re.compile(r"^(?:[大中小]字?[体體]?|A[+-]|[+-]|\d.*|[\W_]+)$")
_SOURCE_HINT = re.compile(r"源|[布文]")
# A pinyin annotation after a CJK character, as in 網(wǎng).
_ANNOTATION = r"(?:\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ]{1,6}\))?"
_LABEL_PREFIX = re.compile(r"^\s*(?:[来來]\s*源|稿源|出[处處])\s*[:：]\s*")


def _clean_value(raw: str) -> str:
    """Return a label value cut at the next label, widget, date or counter, trimmed."""
    value = _VALUE_END.split(raw, maxsplit=1)[0]
    words = value.split()
    kept = words[:1]
    for word in words[1:]:
        if _NOT_SOURCE.match(word):
            break
        kept.append(word)
    return " ".join(kept).strip(" :：,，;；。")


def find_source(
    meta: Mapping[str, str],
    lines: Sequence[str],
    root: HtmlElement | None = None,
    rows: list[ElementRow] | None = None,
) -> str | None:
    """Return the issuing source as written: ContentSource meta, a `来源:` line, else a byline element.

    `rows` are the page's `element_rows`, when already read.
    """
    for key in _SOURCE_META:
        value = _LABEL_PREFIX.sub("", meta.get(key, "")).strip()
        if value:
            return " ".join(value.split())
    for pattern in _SOURCE_LINES:
        for line in lines:
            if not _SOURCE_HINT.search(line):
                continue
            # Labels are matched without pinyin annotations; the value is cut from the line as written.
            match = pattern.search(strip_pinyin(line))
            if match:
                value = _clean_value(match.group("value"))
                if 1 <= len(value) <= 40:
                    return _as_written(value, line)
    for text in byline_texts(root, rows=rows) if root is not None else ():
        value = _clean_value(_LABEL_PREFIX.sub("", text))
        if 2 <= len(value) <= 30:
            return value
    return None


def _as_written(value: str, line: str) -> str:
    """Return `value` (cut from the pinyin-free line) with its annotations as `line` shows them."""
    if "(" not in line and "（" not in line:
        return value
    match = _annotated(value).search(line.replace("（", "(").replace("）", ")"))
    return match.group(0) if match else value


@lru_cache(maxsize=1024)
def _annotated(value: str) -> re.Pattern[str]:
    """Return a pattern matching `value` with optional pinyin after each CJK character."""
    return re.compile(
        "".join(re.escape(ch) + (_ANNOTATION if "\u3400" <= ch <= "\u9fff" else "") for ch in value)
    )


_DESCRIPTION_LINE = re.compile(r"^\s*元描述\s*[:：]\s*(?P<value>.+)$")


def description_line(line: str) -> str | None:
    """Return the value of a `元描述:` line, or None for any other line."""
    match = _DESCRIPTION_LINE.match(line)
    return match.group("value").strip() if match else None


def find_description(meta: Mapping[str, str], lines: Sequence[str]) -> str | None:
    """Return the Description meta tag, else the value of a `元描述:` line, or None."""
    for key in ("description", "og:description"):
        value = " ".join(meta.get(key, "").split())
        if value:
            return value
    for line in lines:
        value = description_line(line)
        if value:
            return value
    return None


def _byline_elements(
    root: HtmlElement, limit: int, rows: list[ElementRow] | None = None
) -> list[HtmlElement]:
    """Return the first `limit` elements that may name the publisher, in page order.

    The same as `root.xpath(...)[:limit]` with the XPath `//*[@id='js_name'] | //*[contains(@class,
    'source') or contains(@id, 'source') or contains(@class, 'entity') or contains(@class,
    'laiyuan')]`, in one pass.
    """
    if rows is None:
        rows = element_rows(root.getroottree().getroot())
    found: list[HtmlElement] = []
    for element, _, classes, element_id in rows:
        if not (
            (element_id is not None and (element_id == "js_name" or "source" in element_id))
            or (
                classes is not None
                and ("source" in classes or "entity" in classes or "laiyuan" in classes)
            )
        ):
            continue
        found.append(element)
        if len(found) == limit:
            break
    return found[:limit]


def byline_texts(
    root: HtmlElement, limit: int = 5, rows: list[ElementRow] | None = None
) -> list[str]:
    """Return the texts of elements that name the publisher without a label (WeChat account, .source).

    `rows` are the page's `element_rows`, when already read.
    """
    texts = []
    for element in _byline_elements(root, limit, rows):
        text = node_text(element)
        if 2 <= len(text) <= 40:
            texts.append(text)
    return texts


# --- document number --------------------------------------------------------------------------

_DOC_NUMBER = re.compile(
    r"[\u4e00-\u9fff]{1,10}\s*[〔\[［【(（]\s*(?:19|20)\d{2}\s*[〕\]］】)）]\s*(?:第\s*)?\d{1,5}\s*[号號]"
)
_DOC_LABEL = re.compile(
    r"(?:[发發]文字[号號]|[发發]文[号號]|文[号號]|文件[编編][号號])\s*[:：]?\s*"
)


def _tidy_number(value: str) -> str:
    """Return a document number with inner spaces removed."""
    return re.sub(r"\s+", "", value)


def find_doc_number(title: str, labelled: Sequence[str], leading: Sequence[str]) -> str | None:
    """Return the document number (文号): a labelled one, else one in the title or a leading body line."""
    for line in labelled:
        if "号" not in line and "號" not in line:
            continue
        text = strip_pinyin(line)
        for label in _DOC_LABEL.finditer(text):
            match = _DOC_NUMBER.match(text, label.end())
            if match:
                return _tidy_number(match.group(0))
    match = _DOC_NUMBER.search(strip_pinyin(title)) if "号" in title or "號" in title else None
    if match:
        return _tidy_number(match.group(0))
    for line in leading:
        if "号" not in line and "號" not in line:
            continue
        text = strip_pinyin(line)
        match = _DOC_NUMBER.search(text)
        if match and len(text) <= len(match.group(0)) + 8:
            return _tidy_number(match.group(0))
    return None
