"""Date parsing (all formats of SOURCES.md, always CST) and year hints from URLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crawler.pages.dates import CST, find_url_date, find_year_hint, match_date, parse_date

REF = datetime(2024, 11, 20, 12, 0, tzinfo=CST)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("发布日期：2024-11-05", datetime(2024, 11, 5)),
        ("發布日期:2024-11-05 17:11:06", datetime(2024, 11, 5, 17, 11, 6)),
        ("發(fā)布日期:2024-11-05 17:11:06", datetime(2024, 11, 5, 17, 11, 6)),
        ("发布时间:2024年11月5日 17:11", datetime(2024, 11, 5, 17, 11)),
        ("时间：2024/11/05", datetime(2024, 11, 5)),
        ("深圳新闻网2021年10月14日讯(记者 许诗妍)", datetime(2021, 10, 14)),
        ("上一篇 2022年10月20日 上午10:12", datetime(2022, 10, 20, 10, 12)),
        ("2022年10月20日 下午3:05", datetime(2022, 10, 20, 15, 5)),
        ("2024.11.05", datetime(2024, 11, 5)),
        ("2024-11-05T17:11:06+08:00", datetime(2024, 11, 5, 17, 11, 6)),
        ("2024-11-05T09:11:06Z", datetime(2024, 11, 5, 17, 11, 6)),
        ("２０２４－１１－０５　１７：１１", datetime(2024, 11, 5, 17, 11)),
        ("2024年11月5日17时11分", datetime(2024, 11, 5, 17, 11)),
        ("二〇二四年十一月五日", datetime(2024, 11, 5)),
        ("二〇二一年六月二十九日", datetime(2021, 6, 29)),
        ("2025-05-28 16:21:57", datetime(2025, 5, 28, 16, 21, 57)),
        ("日期：[2024-02-29]", datetime(2024, 2, 29)),
    ],
)
def test_full_dates(text: str, expected: datetime) -> None:
    parsed = parse_date(text, reference=REF)
    assert parsed == expected.replace(tzinfo=CST)
    assert parsed is not None and parsed.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        ("6月9日", datetime(2021, 7, 1, tzinfo=CST), datetime(2021, 6, 9)),
        ("6月9日", datetime(2022, 3, 1, tzinfo=CST), datetime(2021, 6, 9)),
        ("6月9日", datetime(2021, 6, 9, 0, 0, tzinfo=CST), datetime(2021, 6, 9)),
        ("6月9日", datetime(2021, 6, 8, 23, 59, tzinfo=CST), datetime(2020, 6, 9)),
        ("12月31日 23:30", datetime(2025, 1, 1, 8, 0, tzinfo=CST), datetime(2024, 12, 31, 23, 30)),
        ("2月29日", datetime(2023, 6, 1, tzinfo=CST), datetime(2020, 2, 29)),
        ("中新网上海5月28日电", datetime(2025, 5, 28, 18, tzinfo=CST), datetime(2025, 5, 28)),
        # A naive reference is read as CST.
        ("6月9日", datetime(2021, 6, 9, 12), datetime(2021, 6, 9)),
        # An aware reference in another zone is compared in CST: 2021-06-08 20:00 UTC is 6月9日 04:00 CST.
        ("6月9日", datetime(2021, 6, 8, 20, tzinfo=UTC), datetime(2021, 6, 9)),
    ],
)
def test_yearless_dates_never_in_the_future(
    text: str, reference: datetime, expected: datetime
) -> None:
    parsed = parse_date(text, reference=reference)
    assert parsed == expected.replace(tzinfo=CST)
    assert parsed is not None and parsed <= (
        reference if reference.tzinfo else reference.replace(tzinfo=CST)
    )


def test_yearless_without_reference_uses_now() -> None:
    parsed = parse_date("1月1日")
    assert parsed is not None and parsed <= datetime.now(CST)
    assert datetime.now(CST) - parsed < timedelta(days=366)


def test_full_date_preferred_over_yearless_one() -> None:
    assert parse_date("中新网上海5月28日电 2025-05-28 16:21:57", reference=REF) == datetime(
        2025, 5, 28, 16, 21, 57, tzinfo=CST
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "无日期",
        "2024-13-05",
        "2024-02-30",
        "13月40日",
        "电话：0750-2212345",
        "第2024号",
        "1.5.3版本",
    ],
)
def test_no_date(text: str) -> None:
    assert parse_date(text, reference=REF) is None


def test_precision_and_year_are_reported() -> None:
    assert match_date("2024-11-05").precision == 0  # type: ignore[union-attr]
    assert match_date("2024-11-05 17:11").precision == 2  # type: ignore[union-attr]
    assert match_date("2024-11-05 17:11:06").precision == 3  # type: ignore[union-attr]
    assert match_date("6月9日").year is None  # type: ignore[union-attr]
    assert match_date("[11-05]") is None
    assert match_date("[11-05]", short_numeric=True).month == 11  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "year"),
    [
        ("http://www.liangjiang.gov.cn/art/2021/6/9/art_1459_345678.html", 2021),
        ("http://www.most.gov.cn/xxgk/202110/t20211014_177532.html", 2021),
        ("http://www.sznews.com/news/content/2021-10/14/content_24645389.htm", 2021),
        ("http://www.example.cn/news/content_20211014_1234.htm", 2021),
        ("https://www.chinanews.com.cn/ga/2025/05-28/10423456.shtml", 2025),
        ("http://health.people.com.cn/n1/2024/0311/c14739-40193321.html", 2024),
        ("http://www.example.cn/news/content_2021101412.htm", 2021),
        ("http://www.example.gov.cn/xwzx/202306/abc.html", 2023),
        ("http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_3219467.html", None),
        ("http://www.sznews.com/news/content/content_24645389.htm", None),
        ("", None),
    ],
)
def test_year_hints(url: str, year: int | None) -> None:
    assert find_year_hint(url) == year


@pytest.mark.parametrize(
    ("url", "day"),
    [
        ("http://www.liangjiang.gov.cn/art/2021/6/9/art_1459_345678.html", datetime(2021, 6, 9)),
        ("http://www.most.gov.cn/xxgk/202110/t20211014_177532.html", datetime(2021, 10, 14)),
        (
            "http://www.sznews.com/news/content/2021-10/14/content_24645389.htm",
            datetime(2021, 10, 14),
        ),
        ("http://www.example.cn/2024/02/30/a.html", None),
        ("http://www.kaiping.gov.cn/content/post_3219467.html", None),
    ],
)
def test_url_dates(url: str, day: datetime | None) -> None:
    assert find_url_date(url) == (day.replace(tzinfo=CST) if day else None)
