"""The local replay of the seed sites, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin

import pytest

from crawler.seeds import load_seed
from replay import ReplayServer
from replay.handler import site_challenge
from replay.resources import seed_text
from replay.sites import site_ids
from replay.store import Column, Post, now_cst

SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"
KAIPING_LIST = "/kaiping/kpskgsj/zwgk/dwdt/index.html"
ARTICLE_RE = re.compile(r'href="(/kaiping/kpskgsj/zwgk/dwdt/content/post_\d{7}\.html)"')


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Return status, headers and body of a GET (errors included)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def text(url: str) -> str:
    """Return the UTF-8 page at `url`, HTML entities decoded; fail unless 200."""
    status, _, body = fetch(url)
    assert status == 200, url
    return html.unescape(body.decode("utf-8"))


def post_json(url: str, data: dict[str, object]) -> tuple[int, dict[str, object]]:
    """Return status and JSON answer of a POST of `data`."""
    request = urllib.request.Request(
        url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def list_rows(page_html: str) -> list[tuple[str, str, str]]:
    """Return (href, title attribute, date) of each row of a Kaiping list page."""
    return re.findall(
        r'<li><a href="([^"]+)" target="_blank" title="([^"]+)">[^<]*</a>'
        r'<span class="date">(\d{4}-\d\d-\d\d)</span></li>',
        page_html,
    )


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    """A read-only replay of all sites shared by the tests that do not mutate."""
    with ReplayServer() as server:
        yield server


@pytest.fixture
def kaiping() -> Iterator[ReplayServer]:
    """A fresh Kaiping replay for tests that publish, edit or delete."""
    with ReplayServer(["kaiping"]) as server:
        yield server


def test_url_has_no_trailing_slash_and_index_lists_sites(replay: ReplayServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", replay.url)
    index = text(replay.url + "/")
    for site_id in site_ids():
        assert site_id in index


def test_kaiping_list_pages_paginate_newest_first(replay: ReplayServer) -> None:
    first = text(replay.url + KAIPING_LIST)
    rows = list_rows(first)
    assert len(rows) == 15
    dates = [date for _, _, date in rows]
    assert dates == sorted(dates, reverse=True)
    assert all(ARTICLE_RE.match(f'href="{href}"') for href, _, _ in rows)
    assert '<a class="next" href="index_2.html">下一頁(yè)</a>' in first
    assert '<a class="last" href="index_2.html">尾頁(yè)</a>' in first
    second = text(replay.url + KAIPING_LIST.replace("index.html", "index_2.html"))
    rows2 = list_rows(second)
    assert 7 <= len(rows2) <= 15
    assert rows2[0][2] <= rows[-1][2]
    assert '<a class="prev" href="index.html">' in second
    assert not set(rows) & set(rows2)
    assert fetch(replay.url + KAIPING_LIST.replace("index.html", "index_3.html"))[0] == 404


def test_kaiping_seed_post_is_served_verbatim_with_its_quirks(replay: ReplayServer) -> None:
    seed = seed_text("001_dbf68695d20766c9.txt")
    url = replay.seed_url("kaiping")
    assert url.startswith(replay.url + "/kaiping/kpskgsj/zwgk/dwdt/content/post_")
    status, headers, body = fetch(url)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = html.unescape(body.decode("utf-8"))
    start, end = seed.index("【字體:"), seed.index("相關附件:")
    paragraphs = [line.strip() for line in seed[start:end].splitlines()[1:] if line.strip()]
    assert len(paragraphs) == 7
    for paragraph in paragraphs:
        assert f'<p style="text-indent: 2em;">{paragraph}</p>' in page
    assert '<div class="article-content" id="zoomcon">' in page
    assert "<h1>江門市“邑科匯”科技成果對接會(生物醫(yī)藥領域)在開平舉辦</h1>" in page
    for quirk in [
        "您當前的位置:",
        "開平市科工商務局</a>\xa0>\xa0<a",
        "發(fā)布日期:2024-11-05 17:11:06",
        "來源: 本網(wǎng)",
        ">打印</a>",
        "【字體:",
        "相關附件:",
        "粵ICP備05079694號",
        "網(wǎng)站標識碼:4407830003",
        "黃茅??绾Mǖ",
        "国产精品制服丝袜美腿控",
    ]:
        assert quirk in page, quirk
    assert page.count('<thead id="xudex"></thead>') == 2
    assert page.rstrip().endswith("</html>")
    for name, value in [
        ("SiteName", "開平市人民政府門戶網(wǎng)站"),
        ("SiteIDCode", "4407830003"),
        ("ColumnName", "單位動態(tài)"),
        ("PubDate", "2024-11-05 17:11"),
        ("contentSource", "本網(wǎng)"),
        ("Url", "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_3219467.html"),
    ]:
        assert f'<meta name="{name}" content="{value}">' in page, name
    assert re.search(r'<meta name="description" content="為推進', page)


def test_kaiping_other_posts_are_converted_mixed_and_have_attachments(
    replay: ReplayServer,
) -> None:
    site = replay.site("kaiping")
    posts = site.column.all()
    assert len(posts) >= 21
    titles = " ".join(post.title for post in posts)
    assert "網(wǎng)" in text(replay.url + KAIPING_LIST)
    assert titles.count("生物醫(yī)藥") >= 3
    for word in ["招聘", "交通管制", "採(cǎi)購(gòu)", "召開"]:
        assert word in titles, word
    assert any("?" in p for post in posts for p in post.paragraphs if "黃" in p)
    with_files = [post for post in posts if post.attachments]
    assert len(with_files) >= 5
    magic = {"pdf": b"%PDF", "docx": b"PK", "xlsx": b"PK", "doc": b"\xd0\xcf"}
    for post in with_files:
        for href, ext in re.findall(
            r'href="(/kaiping/attachment/[^"]+\.(\w+))"', text(replay.article_url("kaiping", post))
        ):
            status, headers, body = fetch(replay.url + href)
            assert status == 200 and body.startswith(magic[ext]), href
            assert headers["Content-Type"] != "text/html"


def test_all_links_on_a_kaiping_page_stay_under_the_prefix(replay: ReplayServer) -> None:
    page = text(replay.seed_url("kaiping"))
    for href in re.findall(r'(?:href|src)="([^"]+)"', page):
        assert href.startswith(("/kaiping/", "http://www.", "https://", "javascript:", "#")), href


def test_revalidation_answers_304_until_the_list_changes(kaiping: ReplayServer) -> None:
    list_url = kaiping.list_url("kaiping")
    status, headers, _ = fetch(list_url)
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert fetch(list_url, {"If-None-Match": etag})[0] == 304
    assert fetch(list_url, {"If-Modified-Since": modified})[0] == 304
    assert fetch(list_url, {"If-None-Match": '"other"', "If-Modified-Since": modified})[0] == 200
    article = kaiping.seed_url("kaiping")
    article_etag = fetch(article)[1]["ETag"]
    assert fetch(article, {"If-None-Match": article_etag})[0] == 304
    kaiping.edit("kaiping", article, paragraphs=["只改正文。"])
    status, new_headers, _ = fetch(list_url, {"If-None-Match": etag})
    assert status == 200 and new_headers["ETag"] != etag
    assert fetch(list_url, {"If-Modified-Since": modified})[0] == 200
    assert fetch(article, {"If-None-Match": article_etag})[0] == 200


def test_publish_edit_delete_from_python(kaiping: ReplayServer) -> None:
    url = kaiping.publish(
        "kaiping",
        "開平市與某大學簽訂生物醫藥合作協議",
        ["第一段。", "第二段。"],
        attachments=["協議文本.pdf"],
    )
    assert re.fullmatch(
        re.escape(kaiping.url) + r"/kaiping/kpskgsj/zwgk/dwdt/content/post_\d{7}\.html", url
    )
    rows = list_rows(text(kaiping.list_url("kaiping")))
    assert kaiping.url + rows[0][0] == url
    assert rows[0][2] == f"{now_cst():%Y-%m-%d}"
    page = text(url)
    assert '<p style="text-indent: 2em;">第二段。</p>' in page and "協議文本.pdf" in page
    kaiping.edit("kaiping", url, title="新標題")
    assert "<h1>新標題</h1>" in text(url)
    kaiping.delete("kaiping", url)
    assert fetch(url)[0] == 404
    assert url.removeprefix(kaiping.url) not in text(kaiping.list_url("kaiping"))
    with pytest.raises(KeyError):
        kaiping.delete("kaiping", url)


def test_backdated_publish_lands_in_date_order(kaiping: ReplayServer) -> None:
    url = kaiping.publish(
        "kaiping", "補發舊聞", ["正文。"], published_at=datetime(2024, 11, 6, 9, 0)
    )
    rows = list_rows(text(kaiping.list_url("kaiping")))
    hrefs = [kaiping.url + href for href, _, _ in rows]
    assert url in hrefs and hrefs.index(url) > 0
    assert "發(fā)布日期:2024-11-06 09:00:00" in text(url)


def test_admin_api_over_http(kaiping: ReplayServer) -> None:
    admin = kaiping.url + "/_admin/kaiping"
    status, answer = post_json(
        admin + "/publish",
        {
            "title": "HTTP發布的文章",
            "paragraphs": ["甲。"],
            "published_at": "2030-01-02T10:00:00+08:00",
        },
    )
    assert status == 200
    url = str(answer["url"])
    assert url in [kaiping.url + h for h, _, _ in list_rows(text(kaiping.list_url("kaiping")))]
    assert "發(fā)布日期:2030-01-02 10:00:00" in text(url)
    assert post_json(admin + "/edit", {"url": url, "paragraphs": ["乙。"]})[0] == 200
    assert '2em;">乙。</p>' in text(url)
    assert post_json(admin + "/delete", {"url": url})[0] == 200
    assert fetch(url)[0] == 404
    assert post_json(admin + "/delete", {"url": url})[0] == 404
    assert post_json(admin + "/publish", {"title": "缺正文"})[0] == 400
    assert post_json(kaiping.url + "/_admin/nosuchsite/publish", {})[0] == 404


def test_request_log_records_site_requests_only(kaiping: ReplayServer) -> None:
    kaiping.clear_log()
    fetch(kaiping.list_url("kaiping"), {"X-Probe": "1"})
    fetch(kaiping.url + "/kaiping/missing.html")
    records = kaiping.requests
    assert [(r.method, r.status) for r in records] == [("GET", 200), ("GET", 404)]
    assert records[0].path == KAIPING_LIST and records[0].headers["X-Probe"] == "1"
    status, _, body = fetch(kaiping.url + "/_admin/requests")
    logged = json.loads(body)
    assert status == 200 and [r["path"] for r in logged] == [KAIPING_LIST, "/kaiping/missing.html"]
    kaiping.clear_log()
    assert kaiping.requests == []


def test_size_fills_the_column_and_stays_deterministic() -> None:
    with ReplayServer(["kaiping"], size=1000) as big:
        site = big.site("kaiping")
        assert len(site.column) == 1000 and site.column.page_count(15) == 67
        last = text(big.list_url("kaiping", 67))
        assert len(list_rows(last)) == 1000 - 66 * 15
        assert '<a class="last" href="index_67.html">' in last
        assert big.seed_url("kaiping")
        deep = [big.url + href for href, _, _ in list_rows(text(big.list_url("kaiping", 40)))]
        assert '<p style="text-indent: 2em;">' in text(deep[0])
        titles = [post.title for post in site.column.all()]
    with ReplayServer(["kaiping"], size=1000) as again:
        assert [post.title for post in again.site("kaiping").column.all()] == titles
    with ReplayServer(["kaiping"], size=1000, seed=7) as other:
        assert [post.title for post in other.site("kaiping").column.all()] != titles


def test_kaiping_seed_file_points_at_the_replay_layout(replay: ReplayServer) -> None:
    seed = load_seed(SEEDS_DIR / "kaiping.yaml").with_base(replay.base_url("kaiping"))
    first = text(seed.list_urls[0])
    hrefs = [replay.url + href for href, _, _ in list_rows(first)]
    assert all(re.search(seed.article_pattern, href) for href in hrefs)
    assert re.search(
        seed.list_pattern or "", seed.list_urls[0].replace("index.html", "index_2.html")
    )


# ----- every site ------------------------------------------------------------------------------

ENCODINGS = {"chinanews": "gbk"}
_MARKER = re.compile(r"^\s+(\d+\.|•)\s+")


def site_text(server: ReplayServer, site_id: str, url: str) -> str:
    """Return a page as a reader sees it: decoded, unescaped, past a challenge, rows loaded."""
    challenge = site_challenge(server.site(site_id))
    headers = {"Cookie": challenge.solved_cookie()} if challenge is not None else {}
    status, _, body = fetch(url, headers)
    assert status == 200, url
    page = html.unescape(body.decode(ENCODINGS.get(site_id, "utf-8")))
    return page + scripted_rows(server, site_id, page)


def scripted_rows(server: ReplayServer, site_id: str, page: str) -> str:
    """Return links to the posts a list shell's script would load ("" for other pages)."""
    shell = re.search(r'data-api="([^"]+)".*?data-page="(\d+)" data-per-page="(\d+)"', page)
    if shell is None:
        return ""
    api, number, per_page = shell.group(1), int(shell.group(2)), int(shell.group(3))
    token = server.site(site_id).list_token()  # type: ignore[attr-defined]
    status, _, body = fetch(f"{server.url}{api}&page=1&token={token}")
    assert status == 200
    items = json.loads(body)["articles"][(number - 1) * per_page : number * per_page]
    return "".join(f'<a href="{item["post_url"]}"></a>' for item in items)


def links(page: str, base: str, pattern: str) -> list[str]:
    """Return the absolute URLs of every href in `page` (CDATA included) matching `pattern`."""
    urls = [urljoin(base, href) for href in re.findall(r'href="([^"]+)"', page)]
    return [url for url in urls if re.search(pattern, url)]


@pytest.mark.parametrize("site_id", site_ids())
def test_each_site_lists_its_seed_post_and_paginates(replay: ReplayServer, site_id: str) -> None:
    seed = load_seed(SEEDS_DIR / f"{site_id}.yaml").with_base(replay.base_url(site_id))
    site = replay.site(site_id)
    assert len(site.column) >= 21
    first = site_text(replay, site_id, seed.list_urls[0])
    articles = links(first, seed.list_urls[0], seed.article_pattern)
    assert len(articles) >= site.per_page
    next_pages = links(first, seed.list_urls[0], seed.list_pattern or "$^")
    assert replay.list_url(site_id, 2) in next_pages
    second = site_text(replay, site_id, replay.list_url(site_id, 2))
    articles += links(second, replay.list_url(site_id, 2), seed.article_pattern)
    assert replay.seed_url(site_id) in articles
    page = site_text(replay, site_id, replay.seed_url(site_id))
    for paragraph in site.seed_post().paragraphs:
        assert _MARKER.sub("", paragraph).strip() in page, paragraph[:30]


@pytest.mark.parametrize("site_id", site_ids())
def test_each_site_publishes_over_http(site_id: str) -> None:
    with ReplayServer([site_id]) as server:
        status, answer = post_json(
            f"{server.url}/_admin/{site_id}/publish",
            {"title": "新合作发布", "paragraphs": ["正文一。"]},
        )
        assert status == 200 and str(answer["url"]).startswith(server.base_url(site_id) + "/")
        first = site_text(server, site_id, server.list_url(site_id))
        assert str(answer["url"]).removeprefix(server.url) in first
        assert "正文一。" in site_text(server, site_id, str(answer["url"]))


def test_zhongshan_gkmlpt_api_and_meta_description(replay: ReplayServer) -> None:
    api = replay.base_url("zhongshan") + "/gkmlpt/api/all/2915?page=1&sid=760001"
    assert fetch(api)[0] == 403  # the list shells' script adds a token
    api += "&token=" + replay.site("zhongshan").list_token()  # type: ignore[attr-defined]
    data = json.loads(fetch(api)[2])
    assert data["classify"]["post_count"] == len(data["articles"]) == data["total"]
    assert json.loads(fetch(api.replace("page=1", "page=0"))[2]) == data
    assert json.loads(fetch(api.replace("page=1", "page=2"))[2])["articles"] == []
    entry = next(a for a in data["articles"] if a["post_url"] == replay.seed_url("zhongshan"))
    assert re.search(r"/zhongshan/gkmlpt/content/2/2456/post_2456318\.html$", entry["url"])
    assert "香港理工大学中山技术创新研究院" in text(entry["url"])
    assert "window._CONFIG" in text(replay.base_url("zhongshan") + "/gkmlpt/index")
    page = text(replay.seed_url("zhongshan"))
    assert '<meta name="Description" content="香港理工大学与中山市政府签署合作协议,' in page
    assert "<li>搭建科技成果转化平台: " in page


def test_chinanews_is_gbk_declared_only_in_meta(replay: ReplayServer) -> None:
    _, headers, body = fetch(replay.seed_url("chinanews"))
    assert headers["Content-Type"] == "text/html"
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    page = body.decode("gbk")
    assert '<meta http-equiv="Content-Type" content="text/html; charset=gb2312" />' in page
    assert '<span class="author">创始人</span><span class="time">2025-05-28 16:21:57</span>' in page
    assert (
        page.index("相关内容")
        < page.index("热门资讯")
        < page.index("vivo钱包遭用户投诉贷款利率...")
    )
    assert (
        '<p class="pictext" align="center">香港养和医疗集团与联影医疗正式签署战略合作备忘录。'
        in page
    )
    listing = site_text(replay, "chinanews", replay.list_url("chinanews"))
    assert '<div class="dd_time">5-28 16:21</div>' in listing


def test_liangjiang_is_hanweb_with_yearless_text(replay: ReplayServer) -> None:
    listing = site_text(replay, "liangjiang", replay.list_url("liangjiang"))
    datastore = listing[listing.index('<script type="text/xml">') : listing.index("</datastore>")]
    assert datastore.count("<record><![CDATA[") == 15
    assert replay.seed_url("liangjiang").endswith("/art/2021/6/9/art_1459_345678.html")
    page = site_text(replay, "liangjiang", replay.seed_url("liangjiang"))
    zoom = page[page.index('<div id="zoom">') :]
    body = zoom[zoom.index('<meta name="ContentStart">') : zoom.index('<meta name="ContentEnd">')]
    assert "<strong>6月9日</strong>" in body and not re.search(r"20\d\d年", body)
    assert "科技創(chuàng)新的重要領(lǐng)域?!笆奈濉" in body
    assert '<meta name="PubDate" content="2021-06-09 19:12">' in page
    assert "渝ICP備2020014939號-1" in page[page.index("ContentEnd") :]


def test_sznews_trs_body_prev_next_and_related(replay: ReplayServer) -> None:
    page = text(replay.seed_url("sznews"))
    assert (
        "<title>15万平米空间,18个科研项目签约!河套深港科技创新合作区科创园区开园_深圳新闻网</title>"
        in page
    )
    trs = page[page.index('<div class="TRS_Editor">') : page.index('<div class="copyright">')]
    assert trs.count("<p>") == 1 and "2021年10月14日讯" in trs
    assert "版权声明:本文内容由互联网用户自发贡献" in page and ">(0)</a>" in page
    assert re.search(r">上一篇</a> <span class=\"date\">2021年10月12日 下午5:12</span>", page)
    assert re.search(r">下一篇</a> <span class=\"date\">2021年10月16日 上午9:40</span>", page)
    related = page[page.index("相关推荐") :]
    assert related[: related.index("</ul>")].count("<li>") == 4


def test_column_neighbours_follow_inserts_and_deletes() -> None:
    day = datetime(2024, 5, 1, 9, 0, tzinfo=now_cst().tzinfo)
    posts = [Post(post_id, f"post {post_id}", day.replace(day=post_id)) for post_id in (1, 2, 3)]
    column = Column(posts)
    assert column.neighbours(2) == (posts[2], posts[0])  # (newer, older), newest first
    middle = Post(4, "between 2 and 3", day.replace(day=2, hour=12))
    column.add(middle)
    assert column.neighbours(2) == (middle, posts[0])
    assert column.neighbours(3) == (None, middle)
    column.delete(4)
    assert column.neighbours(3) == (None, posts[1])
    assert column.neighbours(1) == (posts[1], None)
    assert column.neighbours(4) == (None, None)


def test_a_page_cache_renders_each_page_once_until_its_column_changes() -> None:
    """`cache_pages` (the benchmarks): a page is rendered once and served again from memory,
    with the same ETag and 304s; any publish, edit or delete renders the site's pages anew;
    a site whose pages hold the time (zhongshan's list tokens) is never cached."""
    with ReplayServer(["kaiping", "sznews", "zhongshan"], cache_pages=True) as server:
        rendered: list[str] = []
        for site_id in ("kaiping", "sznews", "zhongshan"):
            site = server.site(site_id)
            for method in ("render_article", "render_list"):
                original = getattr(site, method)

                def counted(*args: object, _original=original, _name=f"{site_id}.{method}"):
                    rendered.append(_name)
                    return _original(*args)

                setattr(site, method, counted)
        article = server.seed_url("sznews")
        first = fetch(article)
        again = fetch(article)
        assert rendered == ["sznews.render_article"]
        assert first[0] == again[0] == 200 and first[2] == again[2]
        assert first[1]["ETag"] == again[1]["ETag"]
        assert fetch(article, {"If-None-Match": first[1]["ETag"]})[0] == 304
        list_url = server.list_url("kaiping")
        before = text(list_url)
        text(list_url)
        assert rendered.count("kaiping.render_list") == 1

        # Any change to a column renders its pages anew (an article shows its neighbours).
        url = server.publish("sznews", "深港合作新闻", ["正文。"])
        assert fetch(article)[0] == 200
        assert rendered.count("sznews.render_article") == 2
        assert "深港合作新闻" in text(url)
        server.publish("kaiping", "開平新聞", ["正文。"])
        after = text(list_url)
        assert after != before and "開平新聞" in after
        assert rendered.count("kaiping.render_list") == 2

        zhongshan_list = server.list_url("zhongshan")
        text(zhongshan_list)
        text(zhongshan_list)
        assert rendered.count("zhongshan.render_list") == 2


def test_without_a_page_cache_every_request_is_rendered(kaiping: ReplayServer) -> None:
    assert kaiping.page_cache is None
    site = kaiping.site("kaiping")
    calls = []
    original = site.render_list
    site.render_list = lambda *args: calls.append(1) or original(*args)  # type: ignore[method-assign]
    text(kaiping.list_url("kaiping"))
    text(kaiping.list_url("kaiping"))
    assert len(calls) == 2
