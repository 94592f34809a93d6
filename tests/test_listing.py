"""Column list pages: entries in order with list dates, pagination, JSON lists, junk."""

from __future__ import annotations

import json
import random
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from crawler.pages.dates import CST
from crawler.pages.listing import parse_list
from crawler.pages.model import ListEntry, ListPage

PAGES = Path(__file__).parent / "pages"
KAIPING_LIST = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/index.html"
KAIPING_ARTICLES = r"/kpskgsj/zwgk/dwdt/content/post_\d+\.html$"
KAIPING_LISTS = r"/kpskgsj/zwgk/dwdt/index_\d+\.html$"


def _kaiping() -> ListPage:
    return parse_list(
        KAIPING_LIST,
        (PAGES / "kaiping_list_index.html").read_bytes(),
        {"Content-Type": "text/html; charset=utf-8"},
        article_pattern=KAIPING_ARTICLES,
        list_pattern=KAIPING_LISTS,
    )


def test_kaiping_list_entries_in_page_order() -> None:
    page = _kaiping()
    base = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/"
    assert page.url == KAIPING_LIST
    assert page.entries == [
        ListEntry(
            base + "post_3215678.html",
            "江門市“邑科匯”科技成果對接會(生物醫(yī)藥領域)在開平舉辦",
            datetime(2024, 11, 5, tzinfo=CST),
        ),
        ListEntry(
            base + "post_3211002.html",
            "開平市召開2024年規(guī)上工業(yè)企業(yè)培育工作會議",
            datetime(2024, 10, 28, tzinfo=CST),
        ),
        ListEntry(
            base + "post_3208815.html",
            "市科工商務局開展安全生產(chǎn)大檢查",
            datetime(2024, 10, 21, tzinfo=CST),
        ),
        # The row date wins over the date written in the title.
        ListEntry(
            base + "post_3201440.html",
            "2024年11月起施行的新規(guī)解讀",
            datetime(2024, 10, 9, tzinfo=CST),
        ),
        # An image link and a text link to the same post: one entry, titled by the text link.
        ListEntry(
            base + "post_3198760.html",
            "開平市外貿(mào)企業(yè)座談會召開",
            datetime(2024, 9, 30, tzinfo=CST),
        ),
    ]


def test_kaiping_next_pages_are_absolute_and_unique() -> None:
    assert _kaiping().next_pages == [
        "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/index_2.html",
        "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/index_3.html",
        "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/index_12.html",
    ]


def test_trs_list_yearless_dates_flat_rows_and_script_pager() -> None:
    url = "http://kjj.example.gov.cn/xwzx/gzdt/index.html"
    page = parse_list(
        url,
        (PAGES / "trs_list_index.html").read_bytes(),
        None,
        article_pattern=r"/t\d{8}_\d+\.html$",
        list_pattern=r"/gzdt/index_\d+\.html$",
        crawl_time=datetime(2021, 10, 20, 9, 0),
    )
    assert [(e.url, e.published_at) for e in page.entries] == [
        (
            "http://kjj.example.gov.cn/xwzx/gzdt/202110/t20211014_9912345.html",
            datetime(2021, 10, 14, tzinfo=CST),
        ),
        (
            "http://kjj.example.gov.cn/xwzx/gzdt/202110/t20211008_9911870.html",
            datetime(2021, 10, 8, tzinfo=CST),
        ),
        (
            "http://kjj.example.gov.cn/art/202109/t20210930_9910001.html",
            datetime(2021, 9, 30, tzinfo=CST),
        ),
        (
            "http://kjj.example.gov.cn/xwzx/gzdt/202109/t20210921_9909000.html",
            datetime(2021, 9, 21, tzinfo=CST),
        ),
        (
            "http://kjj.example.gov.cn/xwzx/gzdt/202109/t20210915_9908000.html",
            datetime(2021, 9, 15, tzinfo=CST),
        ),
    ]
    assert page.entries[0].title == "河套深港科技创新合作区科创园区开园"
    assert page.next_pages == [
        "http://kjj.example.gov.cn/xwzx/gzdt/index_1.html",
        "http://kjj.example.gov.cn/xwzx/gzdt/index_2.html",
        "http://kjj.example.gov.cn/xwzx/gzdt/index_3.html",
    ]


def test_yearless_list_date_is_never_in_the_future() -> None:
    html = (
        '<ul><li><a href="/news/1.html">新闻一</a><span>12-30</span></li>'
        '<li><a href="/news/2.html">新闻二</a><span>01-02</span></li></ul>'
    ).encode()
    page = parse_list(
        "http://x.gov.cn/news/index.html",
        html,
        None,
        article_pattern=r"/news/\d+\.html$",
        crawl_time=datetime(2025, 1, 3, 10, 0, tzinfo=CST),
    )
    assert [e.published_at for e in page.entries] == [
        datetime(2024, 12, 30, tzinfo=CST),
        datetime(2025, 1, 2, tzinfo=CST),
    ]


def test_gkmlpt_json_list() -> None:
    page = parse_list(
        "http://www.kaiping.gov.cn/gkmlpt/api/all/2910?page=1&sid=757",
        (PAGES / "gkmlpt_list.json").read_bytes(),
        {"Content-Type": "application/json;charset=UTF-8"},
        article_pattern=r"kaiping\.gov\.cn/gkmlpt/content/\d+/\d+/post_\d+\.html$",
    )
    assert page.entries == [
        ListEntry(
            "http://www.kaiping.gov.cn/gkmlpt/content/3/3215/post_3215001.html",
            "开平市科工商务局关于开展2024年度科技型中小企业评价工作的通知",
            datetime(2024, 11, 5, 17, 11, tzinfo=CST),
        ),
        ListEntry(
            "http://www.kaiping.gov.cn/gkmlpt/content/3/3201/post_3201999.html",
            "关于印发《开平市生物医药产业发展扶持办法》的通知",
            datetime(2024, 10, 9, 10, 0, tzinfo=CST),
        ),
    ]
    assert page.next_pages == []


def test_only_http_links_and_base_href() -> None:
    html = (
        b'<html><head><base href="http://cdn.x.gov.cn/col/"></head><body>'
        b'<a href="javascript:open(\'post_1.html\')">js</a><a href="mailto:a@post_2.html">mail</a>'
        b'<a href="ftp://x.gov.cn/post_3.html">ftp</a><a href="post_4.html">ok</a>'
        b'<a href="  post_5.html#comments ">spaces</a><a href="http://[bad/post_6.html">bad</a>'
        b"</body></html>"
    )
    page = parse_list(
        "http://x.gov.cn/col/index.html", html, None, article_pattern=r"post_\d+\.html$"
    )
    assert [e.url for e in page.entries] == [
        "http://cdn.x.gov.cn/col/post_4.html",
        "http://cdn.x.gov.cn/col/post_5.html",
    ]


@pytest.mark.parametrize(
    "html",
    [
        b"",
        b"\x00\xff" * 100,
        bytes(random.Random(3).randrange(256) for _ in range(4000)),
        b"<html><body><ul><li><a href='post_1.html'>unclosed",
        b"{not json",
        json.dumps({"articles": [{"url": 5, "title": None, "publish_time": "soon"}]}).encode(),
    ],
)
def test_never_raises_on_junk(html: bytes) -> None:
    page = parse_list(
        "http://x.gov.cn/col/index.html",
        html,
        None,
        article_pattern=r"post_\d+\.html$",
        list_pattern=r"index_\d+",
    )
    assert isinstance(page, ListPage)


def test_kaiping_replay_list() -> None:
    server_module = pytest.importorskip("replay.server")
    with server_module.ReplayServer(["kaiping"]) as server:
        url = server.list_url("kaiping")
        seed_url = server.seed_url("kaiping")
        with urllib.request.urlopen(url, timeout=10) as response:
            html, headers = response.read(), dict(response.headers)
    page = parse_list(
        url, html, headers, article_pattern=KAIPING_ARTICLES, list_pattern=KAIPING_LISTS
    )
    assert len(page.entries) >= 10
    assert all(e.published_at is not None and e.title for e in page.entries)
    dates = [e.published_at for e in page.entries]
    assert dates == sorted(dates, reverse=True)
    assert seed_url in [e.url for e in page.entries]
    assert page.next_pages and all(p.startswith(url.rsplit("/", 1)[0]) for p in page.next_pages)


def test_hanweb_datastore_rows() -> None:
    url = "http://www.liangjiang.gov.cn/col/col1459/index.html"
    page = parse_list(
        url,
        (PAGES / "hanweb_list_datastore.html").read_bytes(),
        None,
        article_pattern=r"/art/\d{4}/\d{1,2}/\d{1,2}/art_1459_\d+\.html$",
        list_pattern=r"/col/col1459/index\.html\?uid=5218&pageNum=\d+$",
    )
    assert page.entries == [
        ListEntry(
            "http://www.liangjiang.gov.cn/art/2021/6/18/art_1459_346531.html",
            "水土新城今年新增3家生物醫(yī)藥規(guī)上企業(yè)",
            datetime(2021, 6, 18, tzinfo=CST),
        ),
        ListEntry(
            "http://www.liangjiang.gov.cn/art/2021/6/9/art_1459_345678.html",
            "2021中科院先進醫(yī)療器械產(chǎn)業(yè)孵化聯(lián)盟論壇在兩江新區(qū)水土新城舉行",
            datetime(2021, 6, 9, tzinfo=CST),
        ),
    ]
    assert page.next_pages == [url + "?uid=5218&pageNum=2"]


def test_every_replayed_seed_lists_and_extracts() -> None:
    server_module = pytest.importorskip("replay.server")
    replayed = pytest.importorskip("replay.sites").site_ids()
    from crawler.pages.article import extract_article
    from crawler.seeds import load_seeds

    seeds, _ = load_seeds(Path(__file__).parents[1] / "seeds")
    served = [sid for sid in seeds if sid in replayed]
    # A list built by its page's script (zhongshan) is parsed as Chromium renders it in
    # tests/test_replay_browser.py; a challenged site (liangjiang) gets its clearance cookie.
    served = [sid for sid in served if not seeds[sid].needs_browser("list")]
    with server_module.ReplayServer(served) as server:
        for source_id in served:
            seed = seeds[source_id]
            url = server.list_url(source_id)
            challenge = getattr(server.site(source_id), "challenge", None)
            cookie = {"Cookie": challenge.solved_cookie()} if challenge is not None else {}
            request = urllib.request.Request(url, headers=cookie)
            with urllib.request.urlopen(request, timeout=10) as response:
                html, headers = response.read(), dict(response.headers)
            page = parse_list(
                url,
                html,
                headers,
                article_pattern=seed.article_pattern,
                list_pattern=seed.list_pattern,
                encoding=seed.encoding,
            )
            assert len(page.entries) >= 10 and page.next_pages, source_id
            for entry in page.entries[:5]:
                request = urllib.request.Request(entry.url, headers=cookie)
                with urllib.request.urlopen(request, timeout=10) as response:
                    body, article_headers = response.read(), dict(response.headers)
                article = extract_article(
                    entry.url, body, article_headers, list_date=entry.published_at
                )
                assert article.title and article.body, entry.url
                assert article.published_at is not None and entry.published_at is not None
                assert article.published_at.date() == entry.published_at.date(), entry.url
