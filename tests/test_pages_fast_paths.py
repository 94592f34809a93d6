"""Fast paths of page reading and normalisation give exactly what the plain code they stand for gives.

Each test states the plain version (regular expressions, unicodedata, urljoin, XPath), as
the code read before it was made faster, and compares it with the fast one on the saved
pages and on generated text.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.normalize import (
    _PINYIN,
    _SPACES,
    _fold_spaces,
    content_hash,
    nfkc,
    normalize_line,
    normalize_text,
    strip_pinyin,
    to_simplified,
)
from crawler.pages import text as text_module
from crawler.pages.clean import (
    _HIDDEN_XPATH,
    _PUNCT,
    _SPAM_STRONG,
    _WORD_CHAR,
    _hidden_candidates,
    _strong_spam,
)
from crawler.pages.document import absolute_http_url, node_text, parse_html
from crawler.pages.encoding import decode_html, decode_html_utf8
from crawler.pages.text import CELL_SEP, clean_line

TESTS = Path(__file__).parent
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _saved_pages() -> list[tuple[str, bytes]]:
    """Return (url, bytes) of the saved test pages and the corpus pages."""
    cases = json.loads((TESTS / "pages" / "cases.json").read_text(encoding="utf-8"))
    urls = {case["file"]: case["url"] for case in cases.values()}
    pages = [
        (urls.get(path.name, "http://www.example.gov.cn/" + path.name), path.read_bytes())
        for path in sorted((TESTS / "pages").glob("*.*htm*"))
    ]
    corpus = yaml.safe_load((TESTS / "corpus" / "cases.yaml").read_text(encoding="utf-8"))
    pages += [(case["url"], (TESTS / "corpus" / case["file"]).read_bytes()) for case in corpus]
    return pages


PAGES = _saved_pages()


def _page_texts() -> list[str]:
    """Return the decoded text of every saved page."""
    return [decode_html(html)[0] for _, html in PAGES]


TEXTS = _page_texts()
# Characters the fast paths treat specially, mixed into generated text.
TRICKY = (
    "，：；（）！？％…\u3000\xa0\t\n\r \x1f\x00\u200b\u00ad\ufeff國語網開發佈時間中文abcAVav"
    "ǎàǜ(wǎng)（）ſKİı\u0301\u0308e\u00a8\uff21\uff10①㋀℃ﬁ\u1100\u1161\u11a8가"
)
tricky_text = st.text(alphabet=st.sampled_from(TRICKY), max_size=60) | st.text(max_size=60)


# --- text lines ----------------------------------------------------------------------------

_CJK = r"\u2e80-\u2fff\u3001-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t\r\f\v]*\n\s*(?=[{_CJK}])")
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_LINE_SPACES = re.compile(r"[\s\u3000\xa0]+")


def plain_clean_line(raw: str) -> str:
    """Return clean_line(raw) as written with regular expressions."""
    if raw.isspace():
        return ""
    raw = _INVISIBLE.sub("", raw)
    if "\n" in raw:
        raw = _CJK_BREAK.sub("", raw)
    if CELL_SEP in raw:
        raw = raw.replace(CELL_SEP, " ")
    return _LINE_SPACES.sub(" ", raw).strip()


@FUZZ
@given(st.lists(tricky_text, max_size=6))
def test_clean_lines_equal_the_regular_expressions(raws: list[str]) -> None:
    assert [clean_line(raw) for raw in raws] == [plain_clean_line(raw) for raw in raws]
    assert text_module._clean_lines(raws) == [plain_clean_line(raw) for raw in raws]


def test_clean_lines_equal_the_regular_expressions_on_page_text() -> None:
    for text in TEXTS:
        raws = text.split("<")
        assert text_module._clean_lines(raws) == [plain_clean_line(raw) for raw in raws]


# --- normalisation ---------------------------------------------------------------------------

_PLAIN_PINYIN = re.compile(rf"(?<=[\u3400-\u9fff\uf900-\ufaff])\(([{_PINYIN}]{{1,6}})\)")


def plain_normalize_text(text: str) -> str:
    """Return normalize_text(text) as written with unicodedata and regular expressions."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("（", "(").replace("）", ")")
    text = _PLAIN_PINYIN.sub("", text)
    text = to_simplified(text)
    return _SPACES.sub(" ", text).strip()


def plain_content_hash(title: str, body: str) -> str:
    """Return content_hash(title, body) computed on the whole texts."""
    text = plain_normalize_text(title) + "\n" + plain_normalize_text(body)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@FUZZ
@given(tricky_text)
def test_normalisation_steps_equal_the_plain_ones(text: str) -> None:
    assert nfkc(text) == unicodedata.normalize("NFKC", text)
    assert strip_pinyin(text) == _PLAIN_PINYIN.sub("", text.replace("（", "(").replace("）", ")"))
    assert _fold_spaces(text) == _SPACES.sub(" ", text)
    assert normalize_text(text) == plain_normalize_text(text)
    assert normalize_line(text) == plain_normalize_text(text)


@FUZZ
@given(tricky_text, st.lists(tricky_text, max_size=8))
def test_content_hash_equals_the_hash_of_the_whole_texts(title: str, lines: list[str]) -> None:
    body = "\n".join(lines)
    for line in lines:  # as extraction leaves them: line forms remembered
        normalize_line(line)
    assert content_hash(title, body) == plain_content_hash(title, body)


def test_content_hash_equals_the_hash_of_the_whole_texts_on_pages() -> None:
    for text in TEXTS:
        lines = [" ".join(line.split()) for line in re.split(r"<[^>]*>", text)]
        body = "\n".join(line for line in lines if line)
        assert content_hash(body[:80], body) == plain_content_hash(body[:80], body)
        assert content_hash("", text) == plain_content_hash("", text)


def test_content_hash_of_a_text_that_cannot_be_encoded_fails_as_before() -> None:
    with pytest.raises(UnicodeEncodeError):
        plain_content_hash("title", "a\ud800b\nc")
    with pytest.raises(UnicodeEncodeError):
        content_hash("title", "a\ud800b\nc")


def test_simplified_chinese_conversion_keeps_lines_apart() -> None:
    # content_hash joins the forms of the lines of a body: no t2s phrase spans a line break.
    for text in TEXTS:
        lines = text.splitlines()
        assert to_simplified("\n".join(lines)) == "\n".join(to_simplified(ln) for ln in lines)
    assert to_simplified("乾\n淨") == to_simplified("乾") + "\n" + to_simplified("淨")


# --- line kinds ------------------------------------------------------------------------------


@FUZZ
@given(tricky_text)
def test_line_kind_shortcuts_equal_the_plain_patterns(text: str) -> None:
    assert _strong_spam(text) == (_SPAM_STRONG.search(text) is not None)
    assert (_WORD_CHAR.search(text) is None) == (not _PUNCT.sub("", text))


def test_spam_shortcut_equals_the_plain_pattern_on_page_text() -> None:
    for word in _SPAM_STRONG.pattern.split("|"):
        for text in (word, f"x{word}y", f"中{word.upper()}文", word.upper()):
            assert _strong_spam(text) == (_SPAM_STRONG.search(text) is not None)
    for text in TEXTS:
        for line in text.splitlines():
            assert _strong_spam(line) == (_SPAM_STRONG.search(line) is not None)


# --- pages -----------------------------------------------------------------------------------


def test_hidden_candidates_equal_the_plain_xpath() -> None:
    stray = (
        "<html><body><thead><p style='display:none'>x</p></thead><table><tbody>"
        "<tr><td hidden>y</td></tr></tbody></table><div style='color:red'><tbody>z</tbody>"
        "</div></body></html>"
    )
    extra = [
        stray,
        "<html><body><table><thead><tr><td style='x'>a</td></tr></thead></table></body></html>",
    ]
    for text in [*TEXTS, *extra]:
        root = parse_html(text)
        if root is not None:
            assert _hidden_candidates(root) == _HIDDEN_XPATH(root)


def test_parse_html_reads_the_same_tree_from_the_page_bytes() -> None:
    from lxml import etree

    for _, html in PAGES:
        text, codec, utf8 = decode_html_utf8(html)
        assert (text, codec) == decode_html(html)
        if utf8 is not None:
            assert utf8 == text.encode("utf-8")
            assert etree.tostring(parse_html(text, utf8)) == etree.tostring(parse_html(text))


def plain_absolute_http_url(base: str, href: str | None) -> str | None:
    """Return absolute_http_url(base, href) as written with urljoin for every reference."""
    if not href:
        return None
    href = href.strip().replace("\\", "/")
    if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
        return None
    try:
        absolute = urljoin(base, href)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return absolute.split("#", 1)[0]


BASES = [
    "http://h/",
    "http://h",
    "http://h/a/b/c.html",
    "http://h/a/b/",
    "https://h:8080/a/b?q=1#f",
    "http://h/a;p/b",
    "http://user@h/a/./b/../c",
    "http://h/a//b/",
    "HTTP://H/A",
    "http://h/a/b/..",
    "http://[::1]/a/",
    "http://[::1/a",
    "ftp://h/a",
    "http:///a",
    "/relative/base.html",
    "",
]
REFERENCE_PARTS = [
    "/", "//", ".", "..", "...", "a", "index.html", "%20", "中文", " ", "\t", ":", ";", "?",
    "#", "x=1", "\\", "~", "@", "[", "\x01", "\u3000", "http:", "https://h2",
]  # fmt: skip


@FUZZ
@given(st.sampled_from(BASES), st.lists(st.sampled_from(REFERENCE_PARTS), max_size=7))
def test_absolute_http_url_equals_urljoin(base: str, parts: list[str]) -> None:
    href = "".join(parts)
    assert absolute_http_url(base, href) == plain_absolute_http_url(base, href)


def test_absolute_http_url_equals_urljoin_on_page_links() -> None:
    for url, html in PAGES:
        root = parse_html(decode_html(html)[0])
        for link in root.iter("a", "link", "img"):
            href = link.get("href") or link.get("src")
            assert absolute_http_url(url, href) == plain_absolute_http_url(url, href)


def plain_node_text(element: object) -> str:
    """Return node_text(element) as written with text_content() for every node."""
    try:
        return " ".join(element.text_content().split())  # type: ignore[attr-defined]
    except (ValueError, TypeError):
        return ""


def test_node_text_equals_the_collapsed_text_content() -> None:
    import lxml.html

    extra = "<html><body><p>a<!-- c -->b<a>x&amp;y <b>z</b></a><a> </a><a></a><a><!--c--></a></p></body></html>"
    roots = [parse_html(text) for text in [*TEXTS, extra]]
    roots.append(lxml.html.fromstring(extra))  # other element classes, comments kept
    for root in roots:
        for element in root.iter():
            assert node_text(element) == plain_node_text(element)
