"""Dates on Chinese government pages: parsing to China Standard Time, and year hints from URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from crawler.normalize import nfkc

CST = ZoneInfo("Asia/Shanghai")

_YEAR = r"(?:19|20)\d{2}"
# Optional time of day after a date: "17:11", "17:11:06", "上午10:12", "17时11分", "T17:11:06+08:00".
_TIME = (
    r"(?:\s*(?:T|,)?\s*(?P<ampm>上午|下午|中午|晚上|凌晨|早上|AM|PM|am|pm)?\s*"
    r"(?P<hour>\d{1,2})\s*(?::|时|點|点)\s*(?P<minute>\d{1,2})"
    r"(?:\s*(?::|分)\s*(?P<second>\d{1,2})(?:\.\d+)?)?\s*(?:分|秒)?"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?)?"
)
_FULL_DATE = re.compile(
    rf"(?<!\d)(?P<year>{_YEAR})\s*(?:[-/.]|年)\s*(?P<month>\d{{1,2}})\s*(?:[-/.]|月)\s*"
    rf"(?P<day>\d{{1,2}})(?!\d)\s*(?:日|号|號)?{_TIME}"
)
# "2024 11/05 17:11:06", as a date split over several <span>s reads once the tags are gone.
_SPACED_DATE = re.compile(
    rf"(?<!\d)(?P<year>{_YEAR})\s+(?P<month>\d{{1,2}})\s*[/-]\s*(?P<day>\d{{1,2}})(?![\d/-]){_TIME}"
)
_MONTH_DAY = re.compile(
    rf"(?<![\d年./-])(?P<month>\d{{1,2}})\s*月\s*(?P<day>\d{{1,2}})\s*(?:日|号|號){_TIME}"
)
# "11-05" or "11/05" alone, as column lists print them; only used where a date is expected.
_SHORT_NUMERIC = re.compile(
    rf"(?<![\d./:-])(?P<month>[01]?\d)[-/.](?P<day>[0-3]?\d)(?![\d./:-]){_TIME}"
)
_CN_DIGITS = {c: str(i) for i, c in enumerate("〇一二三四五六七八九")} | {
    "零": "0",
    "○": "0",
    "Ｏ": "0",
}
_CN_DATE = re.compile(
    r"(?P<year>[〇○Ｏ零一二三四五六七八九]{4})\s*年\s*(?P<month>[一二三四五六七八九十]{1,2})\s*月"
    r"\s*(?P<day>[一二三四五六七八九十]{1,3})\s*日"
)
_CN_NUMBER = {
    "一": 1,
    "二": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}


@dataclass(frozen=True)
class DateParts:
    """A date as written: year may be missing; precision counts the time fields given (0-3)."""

    year: int | None
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0
    precision: int = 0
    offset_minutes: int | None = None


def _cn_number(text: str) -> int:
    """Return the value of a small Chinese numeral such as 十一 or 二十五."""
    if "十" not in text:
        return _CN_NUMBER.get(text, 0)
    tens, _, ones = text.partition("十")
    return (_CN_NUMBER.get(tens, 0) if tens else 1) * 10 + _CN_NUMBER.get(ones, 0)


def _replace_cn_date(match: re.Match[str]) -> str:
    """Return a Chinese-numeral date rewritten with Arabic digits."""
    year = "".join(_CN_DIGITS.get(c, c) for c in match.group("year"))
    return f"{year}年{_cn_number(match.group('month'))}月{_cn_number(match.group('day'))}日"


def _prepare(text: str) -> str:
    """Return `text` with full-width forms folded and Chinese-numeral dates in digits."""
    text = nfkc(text)
    if "年" in text and "月" in text:
        text = _CN_DATE.sub(_replace_cn_date, text)
    return text


def _parts_from(match: re.Match[str], year: int | None) -> DateParts | None:
    """Return the validated DateParts of a regex match, or None when the values are impossible."""
    month_text, day_text, hour_text, minute_text, second_text, ampm_text, tz = match.group(
        "month", "day", "hour", "minute", "second", "ampm", "tz"
    )
    month, day = int(month_text), int(day_text)
    hour = minute = second = 0
    precision = 0
    offset: int | None = None
    if hour_text is not None:
        hour, minute = int(hour_text), int(minute_text)
        precision = 2
        if second_text is not None:
            second = int(second_text)
            precision = 3
        ampm = (ampm_text or "").lower()
        if ampm in ("下午", "晚上", "pm") and hour < 12 or ampm == "中午" and hour < 11:
            hour += 12
        if tz:
            if tz == "Z":
                offset = 0
            else:
                sign = -1 if tz[0] == "-" else 1
                digits = tz[1:].replace(":", "")
                offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    try:
        date(year or 2000, month, day)  # 2000 is a leap year, so 2月29日 passes without a year
    except ValueError:
        return None
    return DateParts(year, month, day, hour, minute, min(second, 59), precision, offset)


def match_date(text: str, *, short_numeric: bool = False) -> DateParts | None:
    """Return the first full date in `text`, else the first yearless one, or None."""
    if not text:
        return None
    text = _prepare(text)
    if not short_numeric and "月" not in text and "19" not in text and "20" not in text:
        # Every full date starts with its year (19xx, 20xx); every yearless one has 月.
        return None
    for pattern in (_FULL_DATE, _SPACED_DATE):
        for match in pattern.finditer(text):
            parts = _parts_from(match, int(match.group("year")))
            if parts is not None:
                return parts
    for match in _MONTH_DAY.finditer(text):
        parts = _parts_from(match, None)
        if parts is not None:
            return parts
    if short_numeric:
        for match in _SHORT_NUMERIC.finditer(text):
            parts = _parts_from(match, None)
            if parts is not None:
                return parts
    return None


def as_cst(moment: datetime) -> datetime:
    """Return `moment` in China Standard Time, reading a naive value as already CST."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=CST)
    return moment.astimezone(CST)


def _build(parts: DateParts, year: int) -> datetime | None:
    """Return the CST datetime of `parts` in `year`, or None if that day does not exist."""
    try:
        if parts.offset_minutes is not None:
            tz = timezone(timedelta(minutes=parts.offset_minutes))
            moment = datetime(year, parts.month, parts.day, parts.hour, parts.minute, parts.second)
            return moment.replace(tzinfo=tz).astimezone(CST)
        return datetime(
            year, parts.month, parts.day, parts.hour, parts.minute, parts.second, tzinfo=CST
        )
    except ValueError:
        return None


def resolve(
    parts: DateParts, *, year: int | None = None, reference: datetime | None = None
) -> datetime | None:
    """Return the CST datetime of `parts`; a yearless date takes `year`, else the latest year not after `reference`."""
    if parts.year is not None:
        return _build(parts, parts.year)
    if year is not None:
        return _build(parts, year)
    ref = as_cst(reference) if reference is not None else datetime.now(CST)
    for candidate_year in range(ref.year, ref.year - 8, -1):
        moment = _build(parts, candidate_year)
        if moment is not None and moment <= ref:
            return moment
    return None


def parse_date(text: str, *, reference: datetime | None = None) -> datetime | None:
    """Return the first date in `text` as a CST datetime (a yearless one resolved against `reference`), or None."""
    try:
        parts = match_date(text)
    except (TypeError, ValueError):
        return None
    return resolve(parts, reference=reference) if parts is not None else None


_URL_FULL_DATES = (
    re.compile(rf"/art/(?P<year>{_YEAR})/(?P<month>\d{{1,2}})/(?P<day>\d{{1,2}})/"),
    re.compile(rf"(?:^|[/_])t(?P<year>{_YEAR})(?P<month>\d{{2}})(?P<day>\d{{2}})_"),
    re.compile(rf"/(?P<year>{_YEAR})-(?P<month>\d{{1,2}})/(?P<day>\d{{1,2}})/"),
    re.compile(rf"/(?P<year>{_YEAR})/(?P<month>\d{{2}})-(?P<day>\d{{2}})/"),
    re.compile(rf"/(?P<year>{_YEAR})/(?P<month>\d{{2}})(?P<day>\d{{2}})/"),
    re.compile(rf"/(?P<year>{_YEAR})-(?P<month>\d{{1,2}})-(?P<day>\d{{1,2}})/"),
    re.compile(rf"/(?P<year>{_YEAR})/(?P<month>\d{{1,2}})/(?P<day>\d{{1,2}})/"),
    re.compile(rf"/(?P<year>{_YEAR})(?P<month>\d{{2}})/(?P<day>\d{{2}})/"),
    re.compile(rf"/(?P<year>{_YEAR})(?P<month>\d{{2}})(?P<day>\d{{2}})/"),
    re.compile(rf"content_(?P<year>{_YEAR})(?P<month>\d{{2}})(?P<day>\d{{2}})"),
)
_URL_YEARS = (
    re.compile(rf"content_(?P<year>{_YEAR})(?:0[1-9]|1[0-2])"),
    re.compile(rf"/(?P<year>{_YEAR})(?:0[1-9]|1[0-2])/"),
    re.compile(rf"/(?P<year>{_YEAR})/(?:0?[1-9]|1[0-2])/"),
    re.compile(rf"/(?P<year>{_YEAR})-(?:0?[1-9]|1[0-2])/"),
)


def find_url_date(url: str) -> datetime | None:
    """Return the publication day a URL spells out (/art/2021/6/9/, t20211014_, /2021-10/14/), or None."""
    path = url.split("?", 1)[0]
    for pattern in _URL_FULL_DATES:
        for match in pattern.finditer(path):
            try:
                return datetime(
                    int(match.group("year")),
                    int(match.group("month")),
                    int(match.group("day")),
                    tzinfo=CST,
                )
            except ValueError:
                continue
    return None


def find_year_hint(url: str) -> int | None:
    """Return the year a URL path shows (/art/2021/6/9/, t20211014_, /2021-10/14/, content_2021...), or None."""
    if not url:
        return None
    full = find_url_date(url)
    if full is not None:
        return full.year
    path = url.split("?", 1)[0]
    for pattern in _URL_YEARS:
        match = pattern.search(path)
        if match:
            return int(match.group("year"))
    return None
