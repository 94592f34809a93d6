"""Turning a cleaned lxml tree into lines of text, marked as before, inside or after the article body."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import NamedTuple

from lxml import etree
from lxml.html import HtmlElement

PRE, BODY, POST = 0, 1, 2


def _names(text: str) -> frozenset[str]:
    """Return the set of the space-separated names in `text`."""
    return frozenset(text.split())


BLOCK_TAGS = _names(
    "address article aside blockquote body caption center dd details dialog div dl dt "
    "fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li "
    "main nav ol p pre section summary table tbody tfoot thead tr ul"
)
CELL_TAGS = frozenset(("td", "th"))
SKIP_TAGS = _names(
    "applet audio button canvas embed frame frameset head iframe input map noscript object "
    "option script select style svg template textarea title video"
)

_CJK = r"\u2e80-\u2fff\u3001-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef"
# Source line breaks between two CJK characters are not word spaces in Chinese.
_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t\r\f\v]*\n\s*(?=[{_CJK}])")
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
# Marks a boundary between table cells; unlike a source line break it always becomes a space.
CELL_SEP = "\x1f"
_LAYOUT_CELL_TEXT = 300
_SPACES = re.compile(r"[\s\u3000\xa0]+")


class Line(NamedTuple):
    """One line of page text, where it lies (PRE before the body, BODY, POST) and if in page chrome."""

    text: str
    zone: int
    chrome: bool = False


def clean_line(raw: str) -> str:
    """Return `raw` with invisible characters removed and whitespace collapsed."""
    raw = _INVISIBLE.sub("", raw)
    if "\n" in raw:
        raw = _CJK_BREAK.sub("", raw)
    if CELL_SEP in raw:
        raw = raw.replace(CELL_SEP, " ")
    return _SPACES.sub(" ", raw).strip()


def _is_data_cell(cell: HtmlElement) -> bool:
    """Return True for a table cell holding a value, not a page region laid out with tables."""
    if cell.find(".//table") is not None or cell.find(".//div") is not None:
        return False
    row = cell.getparent()
    if row is None or sum(1 for sibling in row if sibling.tag in CELL_TAGS) < 2:
        return False
    return len(cell.text_content()) <= _LAYOUT_CELL_TEXT


class _LineBuilder:
    """Accumulates text fragments and cuts them into zoned lines."""

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.parts: list[str] = []
        self.zone = PRE
        self.chrome = 0

    def add(self, text: str | None) -> None:
        if text:
            self.parts.append(text)

    def flush(self) -> None:
        if self.parts:
            text = clean_line("".join(self.parts))
            self.parts.clear()
            if text:
                self.lines.append(Line(text, self.zone, self.chrome > 0))

    def set_zone(self, zone: int) -> None:
        if zone != self.zone:
            self.flush()
            self.zone = zone

    def enter_chrome(self, step: int) -> None:
        self.flush()
        self.chrome += step


def text_lines(
    root: HtmlElement,
    containers: Collection[HtmlElement] = (),
    *,
    chrome: Collection[HtmlElement] = (),
    start_marker: HtmlElement | None = None,
    end_marker: HtmlElement | None = None,
) -> list[Line]:
    """Return the lines of text under `root`, zoned by the body `containers` and optional gate markers.

    Lines inside `chrome` elements (navigation, share bars, footers) are flagged, not dropped:
    they may still show the publish date or source.
    """
    builder = _LineBuilder()
    container_set = set(containers)
    chrome_set = set(chrome)
    inside = 0
    seen_body = False
    # One entry per open table cell: True while inside a data cell, whose blocks stay on its row.
    cells: list[bool] = []
    gate_open = start_marker is None
    walker = etree.iterwalk(root, events=("start", "end", "comment", "pi"))

    def current_zone() -> int:
        if inside and gate_open:
            return BODY
        return POST if seen_body else PRE

    for event, element in walker:
        tag = element.tag
        if event in ("comment", "pi") or not isinstance(tag, str):
            if event == "start":
                walker.skip_subtree()
            builder.add(element.tail)
            continue
        if event == "start":
            if element in container_set:
                inside += 1
                builder.set_zone(current_zone())
            if element is start_marker:
                gate_open = True
                builder.set_zone(current_zone())
            elif element is end_marker and gate_open:
                gate_open = False
                seen_body = True
                builder.set_zone(current_zone())
            if element in chrome_set:
                builder.enter_chrome(1)
            if tag in SKIP_TAGS:
                walker.skip_subtree()
                continue
            if tag in CELL_TAGS:
                builder.add(CELL_SEP)
                cells.append(_is_data_cell(element))
            elif tag in BLOCK_TAGS or tag == "br":
                if cells and cells[-1]:
                    builder.add(CELL_SEP)
                else:
                    builder.flush()
            builder.add(element.text)
        else:
            if tag in CELL_TAGS:
                builder.add(CELL_SEP)
                if cells:
                    cells.pop()
            elif tag in BLOCK_TAGS:
                if cells and cells[-1]:
                    builder.add(CELL_SEP)
                else:
                    builder.flush()
            if element in chrome_set:
                builder.enter_chrome(-1)
            if element in container_set:
                inside -= 1
                if inside == 0 and gate_open:
                    seen_body = True
                builder.set_zone(current_zone())
            if element is not root:
                builder.add(element.tail)
    builder.flush()
    return builder.lines
