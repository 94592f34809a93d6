"""The publish time of an article: meta tags, labelled and unlabelled page dates, scripts, URL, list."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, time

from crawler.normalize import strip_pinyin
from crawler.pages.clean import is_end_line
from crawler.pages.dates import (
    CST,
    DateParts,
    as_cst,
    find_url_date,
    find_year_hint,
    match_date,
    resolve,
)

_DATE_META = (
    "pubdate",
    "publishdate",
    "publish_date",
    "publishtime",
    "publish-date",
    "article:published_time",
    "og:article:published_time",
    "og:release_date",
    "firstpublishedtime",
    "pubtime",
    "releasedate",
    "dc.date.issued",
    "dcterms.issued",
    "dc.date",
    "date",
    "maketime",
    "createdate",
)
_PUBLISH_LABEL = re.compile(
    r"(?:[发發][布佈]|[发發]表|公[开開]|公[布佈]|[发發]稿|上[线線])\s*(?:日期|[时時][间間])\s*[:：]?"
)
# Dates of writing or revision: the post's own date only when no publish date is shown.
_OTHER_LABEL = re.compile(r"(?:成文|印[发發]|[发發]文|更新|生成)\s*(?:日期|[时時][间間])\s*[:：]?")
_WEAK_LABEL = re.compile(r"(?:日期|[时時][间間])\s*[:：]")
_YEAR = re.compile(r"(?:19|20)\d{2}")
# WeChat articles carry their publish time only in a script: var ct = "1724144700";
_SCRIPT_EPOCH = re.compile(r"""\bvar\s+ct\s*=\s*["'](\d{10})["']""")


def script_times(html_text: str) -> list[datetime]:
    """Return publish times that page scripts give as Unix timestamps (WeChat's `var ct`)."""
    times = []
    for match in _SCRIPT_EPOCH.finditer(html_text):
        try:
            times.append(datetime.fromtimestamp(int(match.group(1)), CST))
        except (OverflowError, OSError, ValueError):
            continue
    return times


def _has_label_chars(line: str) -> bool:
    """Return True when `line` has 期, 间 or 間, one of which every date label has."""
    return "期" in line or "间" in line or "間" in line


def _date_after_label(text: str, pattern: re.Pattern[str]) -> DateParts | None:
    """Return the date right after a label matched by `pattern` in a line without pinyin, or None."""
    for label in pattern.finditer(text):
        parts = match_date(text[label.end() : label.end() + 40])
        if parts is not None:
            return parts
    return None


def _meta_year(meta: Mapping[str, str]) -> int | None:
    """Return a year shown by any date-like meta tag, or None."""
    for key, value in meta.items():
        if "date" in key or "time" in key or "year" in key:
            match = _YEAR.search(value)
            if match:
                return int(match.group(0))
    return None


def _until_end(lines: Sequence[str]) -> list[str]:
    """Return the lines before the first related-posts heading or prev/next link."""
    kept = []
    for line in lines:
        if is_end_line(line):
            break
        kept.append(line)
    return kept


class DateEvidence:
    """The page's date sources, in the order they are trusted."""

    def __init__(
        self,
        meta: Mapping[str, str],
        header_lines: Sequence[str],
        near_title: Sequence[str],
        leading_body: Sequence[str],
        trailing: Sequence[str],
        html_text: str = "",
    ) -> None:
        self.meta = meta
        self.header_lines = [ln for ln in header_lines if not is_end_line(ln)]
        self.near_title = near_title
        self.leading_body = leading_body
        self.trailing = _until_end(trailing)
        self.html_text = html_text

    @property
    def script_times(self) -> list[datetime]:
        """Return the publish times page scripts give (looked up only when needed)."""
        return script_times(self.html_text)

    def candidates(self) -> list[DateParts]:
        """Return every date shown on the page, most trusted first (full dates before yearless ones)."""
        found: list[DateParts] = []
        for key in _DATE_META:
            parts = match_date(self.meta.get(key, ""))
            if parts is not None:
                found.append(parts)
        # Lines without 期/间 hold no label: leave them out of the three label passes, which
        # read each line without its pinyin annotations.
        header = [strip_pinyin(ln) for ln in self.header_lines if _has_label_chars(ln)]
        labelled = header + [
            strip_pinyin(ln) for ln in (*self.leading_body, *self.trailing) if _has_label_chars(ln)
        ]
        passes = ((labelled, _PUBLISH_LABEL), (labelled, _OTHER_LABEL), (header, _WEAK_LABEL))
        for texts, pattern in passes:
            for text in texts:
                parts = _date_after_label(text, pattern)
                if parts is not None:
                    found.append(parts)
        for line in [*self.near_title, *self.leading_body]:
            parts = match_date(line)
            if parts is not None:
                found.append(parts)
        return [p for p in found if p.year is not None] + [p for p in found if p.year is None]


def find_published(
    evidence: DateEvidence,
    url: str,
    *,
    list_date: datetime | None = None,
    crawl_time: datetime | None = None,
) -> datetime | None:
    """Return the CST publish time: page evidence (yearless dates get a year from URL, list, meta, crawl), else URL, else list date."""
    candidates = evidence.candidates()
    if candidates and candidates[0].year is not None:
        first = best = candidates[0]
        for other in candidates[1:]:
            same_day = (other.year, other.month, other.day) == (first.year, first.month, first.day)
            if same_day and other.precision > best.precision and _agrees(best, other):
                best = other
        moment = resolve(best)
        if moment is not None:
            if best.precision == 0:
                return _refine_with_script(moment, evidence.script_times)
            return moment
    from_script = evidence.script_times
    if from_script:
        return as_cst(from_script[0])
    if candidates:
        return _resolve_yearless(candidates[0], url, evidence.meta, list_date, crawl_time)
    from_url = find_url_date(url)
    if from_url is not None:
        return from_url
    return as_cst(list_date) if list_date is not None else None


def _refine_with_script(day: datetime, script_times: Sequence[datetime]) -> datetime:
    """Return the script-given time when it falls on `day`, else `day`."""
    for moment in script_times:
        if as_cst(moment).date() == day.date():
            return as_cst(moment)
    return day


def _agrees(coarse: DateParts, fine: DateParts) -> bool:
    """Return True when `fine` refines `coarse` (same fields wherever `coarse` has them)."""
    return coarse.precision < 2 or (coarse.hour, coarse.minute) == (fine.hour, fine.minute)


def _resolve_yearless(
    parts: DateParts,
    url: str,
    meta: Mapping[str, str],
    list_date: datetime | None,
    crawl_time: datetime | None,
) -> datetime | None:
    """Return a yearless date placed in the year given by the URL, list date, meta tags or crawl time."""
    year = find_year_hint(url)
    if year is not None:
        return resolve(parts, year=year)
    if list_date is not None:
        end_of_day = datetime.combine(as_cst(list_date).date(), time(23, 59, 59))
        return resolve(parts, reference=end_of_day)
    year = _meta_year(meta)
    if year is not None:
        return resolve(parts, year=year)
    return resolve(parts, reference=crawl_time)
