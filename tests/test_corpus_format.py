"""Validate the evaluation corpus in tests/corpus itself (not any extractor).

Every case in tests/corpus/cases.yaml must point at a saved page that decodes with the
declared encoding, and its expected values must be consistent with that page:
every line of the expected body, every ``must_contain`` string, the title, the source
and the doc number occur in the page's visible text; every ``must_not_contain`` string
occurs in the page but not in the expected body; attachment URLs are links on the page.

The page text used here: comments, <script> and <style> removed; inline tags removed
without a gap, all other tags replaced by a space; entities unescaped; runs of
whitespace (including U+3000 and no-break spaces) collapsed to one space.
"""

from __future__ import annotations

import codecs
import html
import re
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

CORPUS = Path(__file__).parent / "corpus"
PAGES = CORPUS / "pages"
CASES_FILE = CORPUS / "cases.yaml"

REQUIRED = {
    "file": str,
    "url": str,
    "encoding": str,
    "title": str,
    "published_at": (str, type(None)),
    "source": (str, type(None)),
    "doc_number": (str, type(None)),
    "attachments": list,
    "body": str,
    "must_contain": list,
    "must_not_contain": list,
}
OPTIONAL = {
    "content_type": str,
    "cms": str,
    "topic": str,
    "features": list,
    "notes": str,
}
CMS_VALUES = {
    "trs",
    "hanweb",
    "gd-platform",
    "chinanews",
    "sznews",
    "people",
    "wechat",
    "xinhua",
    "southcn",
    "none",
}
ATTACHMENT_TYPES = {
    "pdf",
    "doc",
    "docx",
    "xls",
    "xlsx",
    "wps",
    "et",
    "ofd",
    "zip",
    "rar",
    "7z",
    "txt",
    "ppt",
    "pptx",
    "jpg",
    "png",
}
ISO_CST = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
FILE_NAME = re.compile(r"^pages/\d{3}_[a-z0-9][a-z0-9-]*\.html$")

INLINE_TAGS = [
    "a",
    "span",
    "strong",
    "b",
    "em",
    "i",
    "u",
    "font",
    "sup",
    "sub",
    "small",
    "big",
    "label",
    "abbr",
    "code",
    "s",
    "strike",
    "ins",
    "del",
    "mark",
    "cite",
    "q",
    "o:p",
    "nobr",
    "tt",
]
_INLINE_NAMES = "|".join(re.escape(t) for t in INLINE_TAGS)
_INLINE_RE = re.compile(rf"</?(?:{_INLINE_NAMES})(?:\s[^>]*)?/?>", re.IGNORECASE)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_SCRIPT_RE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]+>")
_WS_RE = re.compile(r"\s+")
_META_CHARSET_RE = re.compile(
    r"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_-]+)""", re.IGNORECASE
)
_HREF_RE = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)

GB_FAMILY = {"gb2312", "gbk", "gb18030"}


def load_cases() -> list[dict]:
    with CASES_FILE.open(encoding="utf-8") as fh:
        cases = yaml.safe_load(fh)
    assert isinstance(cases, list)
    return cases


def collapse(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def page_text(markup: str) -> str:
    """Visible text of a page, flattened to one whitespace-collapsed line."""
    markup = _COMMENT_RE.sub(" ", markup)
    markup = _SCRIPT_RE.sub(" ", markup)
    markup = _INLINE_RE.sub("", markup)
    markup = _TAG_RE.sub(" ", markup)
    return collapse(html.unescape(markup))


def codec_family(name: str) -> str:
    name = codecs.lookup(name).name
    if name in GB_FAMILY:
        return "gb"
    return name


def declared_meta_charset(raw: bytes) -> str | None:
    m = _META_CHARSET_RE.search(raw[:4096].decode("ascii", "replace"))
    return m.group(1).lower() if m else None


def header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = re.search(r"charset\s*=\s*([A-Za-z0-9_-]+)", content_type, re.IGNORECASE)
    return m.group(1).lower() if m else None


CASES = load_cases()


def _case_id(case: dict) -> str:
    return Path(str(case.get("file", "?"))).stem


def decoded(case: dict) -> str:
    """The page decoded with the case's encoding (strict)."""
    return (CORPUS / case["file"]).read_bytes().decode(case["encoding"])


def test_corpus_size_and_files():
    assert len(CASES) >= 45
    files = [c["file"] for c in CASES]
    assert len(files) == len(set(files)), "duplicate file entries"
    on_disk = {f"pages/{p.name}" for p in PAGES.glob("*.html")}
    assert on_disk == set(files), "pages/ and cases.yaml disagree"
    urls = [c["url"] for c in CASES]
    assert len(urls) == len(set(urls)), "duplicate urls"


def test_corpus_mix():
    """The corpus keeps the mix it was built for (see README)."""
    gb = [c for c in CASES if codec_family(c["encoding"]) == "gb"]
    assert len(gb) >= 10
    wrong = [c for c in CASES if "wrong-charset" in c.get("features", [])]
    assert len(wrong) >= 2
    spam = [c for c in CASES if "spam" in c.get("features", [])]
    assert len(spam) >= 3
    cms = {c.get("cms") for c in CASES}
    assert {"trs", "hanweb", "gd-platform", "none", "wechat"} <= cms
    assert any(c["published_at"] is None for c in CASES)
    assert any(c["doc_number"] for c in CASES)
    assert any(c["attachments"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_case_schema(case):
    for key, typ in REQUIRED.items():
        assert key in case, f"missing {key}"
        assert isinstance(case[key], typ), f"{key} has type {type(case[key]).__name__}"
    for key, typ in OPTIONAL.items():
        if key in case:
            assert isinstance(case[key], typ), f"{key} has type {type(case[key]).__name__}"
    unknown = set(case) - set(REQUIRED) - set(OPTIONAL)
    assert not unknown, f"unknown keys {unknown}"
    assert FILE_NAME.match(case["file"]), case["file"]
    url = urlparse(case["url"])
    assert url.scheme in ("http", "https") and url.netloc
    codecs.lookup(case["encoding"])
    if "cms" in case:
        assert case["cms"] in CMS_VALUES
    if case["published_at"] is not None:
        assert ISO_CST.match(case["published_at"]), case["published_at"]
        dt = datetime.fromisoformat(case["published_at"])
        assert dt.utcoffset() == timedelta(hours=8)
    assert 2 <= len(case["must_contain"]) <= 4
    assert 3 <= len(case["must_not_contain"]) <= 8
    for s in case["must_contain"] + case["must_not_contain"]:
        assert isinstance(s, str) and s.strip() == s and s
    for att in case["attachments"]:
        assert set(att) == {"url", "type"}
        parsed = urlparse(att["url"])
        assert parsed.scheme in ("http", "https") and parsed.netloc
        assert att["type"] in ATTACHMENT_TYPES


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_body_format(case):
    body = case["body"]
    assert body, "empty body"
    for line in body.split("\n"):
        assert line, "blank line in body"
        assert line == line.strip(), f"untrimmed line: {line!r}"
        assert not re.search(r"\s{2,}", line), f"whitespace run in: {line!r}"
        assert "\t" not in line and "\u3000" not in line and "\xa0" not in line


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_page_decodes(case):
    raw = (CORPUS / case["file"]).read_bytes()
    raw.decode(case["encoding"])  # strict: raises on a wrong label
    features = case.get("features", [])
    true_family = codec_family(case["encoding"])
    declared = declared_meta_charset(raw)
    from_header = header_charset(case.get("content_type"))
    if "wrong-charset" in features:
        assert declared is not None
        assert codec_family(declared) != true_family, "page is labelled wrong-charset but is not"
    elif declared is not None:
        assert codec_family(declared) == true_family, f"meta declares {declared}"
    if from_header is not None:
        assert codec_family(from_header) == true_family
    if "charset-meta-only" in features:
        assert declared is not None and from_header is None
    if "no-charset-declared" in features:
        assert declared is None and from_header is None
    if "gbk" in features:
        assert true_family == "gb"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_expected_values_occur_in_page(case):
    text = page_text(decoded(case))
    body = case["body"]
    for line in body.split("\n"):
        assert collapse(line) in text, f"body line not on page: {line[:60]!r}"
    for s in case["must_contain"]:
        assert s in text, f"must_contain not on page: {s!r}"
        assert s in body, f"must_contain not in body: {s!r}"
    for s in case["must_not_contain"]:
        assert s in text, f"must_not_contain not on page: {s!r}"
        assert s not in body, f"must_not_contain found in body: {s!r}"
    assert collapse(case["title"]) in text, "title not on page"
    if case["source"] is not None:
        assert case["source"] in text, "source not on page"
    if case["doc_number"] is not None:
        assert case["doc_number"] in text, "doc_number not on page"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_attachments_are_links_on_page(case):
    if not case["attachments"]:
        return
    hrefs = {urljoin(case["url"], html.unescape(h)) for h in _HREF_RE.findall(decoded(case))}
    for att in case["attachments"]:
        assert att["url"] in hrefs, f"attachment not linked from page: {att['url']}"
