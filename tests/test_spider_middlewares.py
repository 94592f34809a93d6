"""The project's spider middlewares: Scrapy's start and referer middlewares in one."""

from __future__ import annotations

from pathlib import Path

from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from crawler.middlewares import StartRefererMiddleware
from replay import ReplayServer
from tests.e2e import monitor_env
from tests.test_hostile_responses import run_crawl


def test_start_requests_are_marked_and_others_get_the_referer_of_their_page() -> None:
    middleware = StartRefererMiddleware.from_crawler(get_crawler())
    start = middleware.get_processed_request(Request("https://www.kaiping.gov.cn/list.html"), None)
    assert start is not None and start.meta["is_start_request"] is True
    assert b"Referer" not in start.headers
    page = HtmlResponse("https://www.kaiping.gov.cn/list.html#top", body=b"<html></html>")
    followed = middleware.get_processed_request(Request("https://www.kaiping.gov.cn/a.html"), page)
    assert followed is not None and "is_start_request" not in followed.meta
    assert followed.headers[b"Referer"] == b"https://www.kaiping.gov.cn/list.html"
    # The default policy (no-referrer-when-downgrade): nothing from https to http.
    plain = middleware.get_processed_request(Request("http://www.kaiping.gov.cn/b.html"), page)
    assert plain is not None and b"Referer" not in plain.headers


def test_the_settings_replace_scrapys_two_middlewares_with_the_one() -> None:
    middlewares = get_project_settings().getdict("SPIDER_MIDDLEWARES")
    assert middlewares["scrapy.spidermiddlewares.start.StartSpiderMiddleware"] is None
    assert middlewares["scrapy.spidermiddlewares.referer.RefererMiddleware"] is None
    assert middlewares["crawler.middlewares.StartRefererMiddleware"] == 700


def test_a_crawl_sends_each_article_request_with_its_list_page_as_referer(tmp_path: Path) -> None:
    with ReplayServer(["kaiping"], size=8) as replay:
        done = run_crawl(monitor_env(tmp_path, replay.url, None), ["kaiping"])
        assert done.returncode == 0, done.stderr[-2000:]
        pages = [r for r in replay.requests if r.method == "GET" and r.path != "/robots.txt"]
        lists = {replay.url + r.path for r in pages if "Referer" not in r.headers}
    articles = [r for r in pages if "Referer" in r.headers]
    assert len(articles) >= 8
    assert {r.headers["Referer"] for r in articles} <= lists
