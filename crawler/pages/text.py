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


class Line(NamedTuple):
    """One line of page text, where it lies (PRE before the body, BODY, POST) and if in page chrome."""

    text: str
    zone: int
    chrome: bool = False


def clean_line(raw: str) -> str:
    """Return `raw` with invisible characters removed and whitespace collapsed."""
    return _collapse(_without_invisible(raw))


def _is_data_cell(cell: HtmlElement) -> bool:
    """Return True for a table cell holding a value, not a page region laid out with tables."""
    for _ in cell.iterdescendants("table", "div"):
        return False
    row = cell.getparent()
    if row is None or sum(1 for _ in row.iterchildren("td", "th")) < 2:
        return False
    return len(cell.text_content()) <= _LAYOUT_CELL_TEXT


_SKIP, _CELL, _BLOCK, _BREAK = 1, 2, 3, 4
# What a tag does to the lines, in one lookup: absent for inline tags.
_TAG_KIND = (
    dict.fromkeys(SKIP_TAGS, _SKIP)
    | dict.fromkeys(CELL_TAGS, _CELL)
    | dict.fromkeys(BLOCK_TAGS, _BLOCK)
    | {"br": _BREAK}
)


# Joins the raw lines of a page, so that invisible characters are looked for once: it is
# no invisible character, and lxml never holds it in text (XML forbids it).
_LINE_SEP = "\x00"
_INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad"  # what _INVISIBLE matches


def _without_invisible(text: str) -> str:
    """Return `text` without the characters `_INVISIBLE` matches."""
    if not text.isascii() and any(char in text for char in _INVISIBLE_CHARS):
        return _INVISIBLE.sub("", text)
    return text


def _collapse(line: str) -> str:
    """Return a line without invisible characters with its CJK line breaks removed, spaces folded.

    The same as removing `_CJK_BREAK`, turning CELL_SEP into a space, replacing each run of
    `[\\s\\u3000\\xa0]` by one space and stripping; but a regular expression scans a character
    at a time, and most lines need none: str.split folds exactly the whitespace `\\s` matches
    (CELL_SEP, the ideographic and the no-break space included), and a break in leading or
    trailing whitespace joins no CJK characters.
    """
    if "\n" in line:
        line = line.strip()
        if "\n" in line:
            line = _CJK_BREAK.sub("", line)
    return " ".join(line.split())


def _clean_lines(raws: list[str]) -> list[str]:
    """Return `[clean_line(raw) for raw in raws]`, looking for invisible characters once."""
    joined = _LINE_SEP.join(raws)
    if joined.count(_LINE_SEP) != len(raws) - 1:  # a line holds the separator: one by one
        return [clean_line(raw) for raw in raws]
    return [_collapse(line) for line in _without_invisible(joined).split(_LINE_SEP)]


def _flush(
    parts: list[str], raws: list[str], places: list[tuple[int, bool]], zone: int, chrome: int
) -> None:
    """Cut the pending fragments in `parts` into a raw line of `zone` (in chrome when `chrome` > 0)."""
    raw = "".join(parts)
    parts.clear()
    if not raw.isspace():  # only whitespace: nothing survives clean_line
        raws.append(raw)
        places.append((zone, chrome > 0))


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
    # Raw lines and their (zone, in chrome) places, cleaned all together at the end.
    raws: list[str] = []
    places: list[tuple[int, bool]] = []
    parts: list[str] = []
    add = parts.append
    zone = PRE
    chrome_depth = 0
    container_set = set(containers)
    chrome_set = set(chrome)
    # Elements whose start or end can change the zone or the chrome flag.
    watched = container_set | chrome_set
    if start_marker is not None:
        watched.add(start_marker)
    if end_marker is not None:
        watched.add(end_marker)
    inside = 0
    seen_body = False
    # One entry per open table cell: True while inside a data cell, whose blocks stay on its row.
    cells: list[bool] = []
    gate_open = start_marker is None
    walker = etree.iterwalk(root, events=("start", "end", "comment", "pi"))
    # A line's leading whitespace (CELL_SEP included) is stripped by clean_line, so fragments of
    # only whitespace are not collected while no text is pending: fewer empty lines to clean.
    for event, element in walker:
        tag = element.tag
        if event == "start":
            if not isinstance(tag, str):
                walker.skip_subtree()
                tail = element.tail
                if tail and (parts or not tail.isspace()):
                    add(tail)
                continue
            if element in watched:
                if element in container_set:
                    inside += 1
                    new_zone = BODY if gate_open else (POST if seen_body else PRE)
                    if new_zone != zone:
                        if parts:
                            _flush(parts, raws, places, zone, chrome_depth)
                        zone = new_zone
                if element is start_marker or (element is end_marker and gate_open):
                    gate_open = element is start_marker
                    seen_body = seen_body or not gate_open
                    new_zone = BODY if inside and gate_open else (POST if seen_body else PRE)
                    if new_zone != zone:
                        if parts:
                            _flush(parts, raws, places, zone, chrome_depth)
                        zone = new_zone
                if element in chrome_set:
                    if parts:
                        _flush(parts, raws, places, zone, chrome_depth)
                    chrome_depth += 1
            kind = _TAG_KIND.get(tag)
            if kind is not None:
                if kind == _SKIP:
                    walker.skip_subtree()
                    continue
                if kind == _CELL:
                    if parts:
                        add(CELL_SEP)
                    cells.append(_is_data_cell(element))
                elif cells and cells[-1]:
                    if parts:
                        add(CELL_SEP)
                elif parts:
                    _flush(parts, raws, places, zone, chrome_depth)
            text = element.text
            if text and (parts or not text.isspace()):
                add(text)
        elif event == "end":
            if not isinstance(tag, str):
                tail = element.tail
                if tail and (parts or not tail.isspace()):
                    add(tail)
                continue
            kind = _TAG_KIND.get(tag)
            if kind == _CELL:
                if parts:
                    add(CELL_SEP)
                if cells:
                    cells.pop()
            elif kind == _BLOCK:
                if cells and cells[-1]:
                    if parts:
                        add(CELL_SEP)
                elif parts:
                    _flush(parts, raws, places, zone, chrome_depth)
            if element in watched:
                if element in chrome_set:
                    if parts:
                        _flush(parts, raws, places, zone, chrome_depth)
                    chrome_depth -= 1
                if element in container_set:
                    inside -= 1
                    if inside == 0 and gate_open:
                        seen_body = True
                    new_zone = BODY if inside and gate_open else (POST if seen_body else PRE)
                    if new_zone != zone:
                        if parts:
                            _flush(parts, raws, places, zone, chrome_depth)
                        zone = new_zone
            if element is not root:
                tail = element.tail
                if tail and (parts or not tail.isspace()):
                    add(tail)
        else:
            tail = element.tail
            if tail and (parts or not tail.isspace()):
                add(tail)
    if parts:
        _flush(parts, raws, places, zone, chrome_depth)
    return [
        Line(text, zone, chrome)
        for text, (zone, chrome) in zip(_clean_lines(raws), places, strict=True)
        if text
    ]
