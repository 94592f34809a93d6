"""Pages are read in the extraction worker before their callback (ReadAheadMiddleware).

The callbacks of the sources spider are plain functions: the downloader middleware awaits the
spider's `read_ahead`, which leaves the worker's answer in the request's meta. Without it (no
worker, the middleware removed, a reading that failed) a callback reads the page itself, and
says so in the stat `extraction/read_in_crawl`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import scrapy
from scrapy.crawler import Crawler
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from crawler.extract_pool import ExtractionPool
from crawler.items import ArticleItem
from crawler.linkpolicy import CHECKED_KEY
from crawler.middlewares import ReadAheadMiddleware
from crawler.migrate import upgrade
from crawler.pages.dates import CST
from crawler.seeds import Seed, load_seeds
from crawler.spiders.sources import READ_KEY, PageRead, SourcesSpider
from replay.server import ReplayServer
from tests.e2e import crawl_argv, monitor_env, start_crawl

SEEDS = Path(__file__).parent.parent / "seeds"
CORPUS = Path(__file__).parent / "corpus"
PAGES = Path(__file__).parent / "pages"
ARTICLE_URL = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_3198765.html"
LIST_URL = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/index.html"
HEADERS = {"Content-Type": "text/html; charset=utf-8"}
READ_IN_CRAWL = "extraction/read_in_crawl"


def _kaiping() -> Seed:
    seeds, errors = load_seeds(SEEDS)
    assert not errors
    return seeds["kaiping"]


@contextmanager
def _spider(seed: Seed, workers: int) -> Iterator[tuple[SourcesSpider, Crawler]]:
    """Yield a sources spider of `seed` with a pool of `workers`, attached to a crawler."""
    crawler = get_crawler(SourcesSpider)
    spider = SourcesSpider(seeds=[seed])
    spider._set_crawler(crawler)
    crawler.spider = spider
    spider.extraction = ExtractionPool(workers)
    try:
        yield spider, crawler
    finally:
        spider.extraction.close()


def _article(spider: SourcesSpider, seed: Seed) -> tuple[scrapy.Request, HtmlResponse]:
    list_date = datetime(2025, 3, 14, tzinfo=CST)
    request = spider._article_request(seed, ARTICLE_URL, LIST_URL, list_date)
    body = (CORPUS / "pages" / "002_kaiping-biomed-fair.html").read_bytes()
    return request, HtmlResponse(ARTICLE_URL, body=body, headers=HEADERS, request=request)


def _list(spider: SourcesSpider, seed: Seed) -> tuple[scrapy.Request, HtmlResponse]:
    request = spider._list_request(seed, LIST_URL, depth=1, conditional=False)
    body = (PAGES / "kaiping_list_index.html").read_bytes()
    return request, HtmlResponse(LIST_URL, body=body, headers=HEADERS, request=request)


def _through_middleware(crawler: Crawler, request: scrapy.Request, response: HtmlResponse) -> None:
    async def run() -> object:
        return await ReadAheadMiddleware.from_crawler(crawler).process_response(request, response)

    assert asyncio.run(run()) is response


def test_an_article_read_ahead_in_the_worker_is_the_article_its_callback_reads_itself() -> None:
    seed = _kaiping()
    with _spider(seed, workers=1) as (spider, crawler):
        request, response = _article(spider, seed)
        _through_middleware(crawler, request, response)
        read = request.meta[READ_KEY]
        assert isinstance(read, PageRead) and read.job.url == ARTICLE_URL
        assert spider.extraction.pids()  # read in the worker process
        [ahead] = spider.parse_article(response, **request.cb_kwargs)
        assert READ_KEY not in request.meta  # taken by the callback, not kept with the request
        assert crawler.stats.get_value(READ_IN_CRAWL) is None

        # The same page, not read ahead: the callback reads it in the crawl, and counts it.
        request, response = _article(spider, seed)
        [here] = spider.parse_article(response, **request.cb_kwargs)
        assert crawler.stats.get_value(READ_IN_CRAWL) == 1

    assert isinstance(ahead, ArticleItem) and ahead.title and "生物醫" in ahead.body
    assert replace(ahead, fetched_at="") == replace(here, fetched_at="")


def test_a_list_read_ahead_gives_the_requests_its_callback_would_make() -> None:
    seed = _kaiping()
    with _spider(seed, workers=1) as (spider, crawler):
        request, response = _list(spider, seed)
        _through_middleware(crawler, request, response)
        ahead = spider.parse_list(response, **request.cb_kwargs)
        assert crawler.stats.get_value(READ_IN_CRAWL) is None
    # Another spider (a spider remembers the list pages it asked for), reading it itself.
    with _spider(seed, workers=1) as (spider, crawler):
        request, response = _list(spider, seed)
        here = spider.parse_list(response, **request.cb_kwargs)
        assert crawler.stats.get_value(READ_IN_CRAWL) == 1

    assert len(ahead) > 3 and ahead[-1].url.endswith("index_2.html")  # posts, then page 2
    assert [(r.url, r.cb_kwargs) for r in ahead] == [(r.url, r.cb_kwargs) for r in here]
    # The link policy allowed each of them on the list: its middleware need not check again.
    assert all(r.meta[CHECKED_KEY] == r.url for r in ahead)


def test_without_a_worker_nothing_is_read_ahead_and_the_callback_reads_the_page() -> None:
    seed = _kaiping()
    with _spider(seed, workers=0) as (spider, crawler):
        request, response = _article(spider, seed)
        _through_middleware(crawler, request, response)
        assert READ_KEY not in request.meta
        [item] = spider.parse_article(response, **request.cb_kwargs)
        assert item.title and crawler.stats.get_value(READ_IN_CRAWL) == 1


def test_the_middleware_leaves_other_requests_and_spiders_alone() -> None:
    seed = _kaiping()
    with _spider(seed, workers=1) as (spider, crawler):
        robots = scrapy.Request("http://www.kaiping.gov.cn/robots.txt")
        answer = HtmlResponse(robots.url, body=b"User-agent: *\n", request=robots)
        _through_middleware(crawler, robots, answer)
        assert READ_KEY not in robots.meta
        # A page of a source answered 404 (a revisit of a removed post) is not read either.
        request, response = _article(spider, seed)
        gone = response.replace(status=404)
        _through_middleware(crawler, request, gone)
        assert READ_KEY not in request.meta
        assert not spider.extraction.pids()  # no page went to the worker

    other = get_crawler(scrapy.Spider)
    other.spider = scrapy.Spider(name="other")
    request = scrapy.Request(ARTICLE_URL, meta={"page_kind": "article"})
    _through_middleware(other, request, HtmlResponse(ARTICLE_URL, body=b"<p>x</p>"))
    assert READ_KEY not in request.meta


def test_a_list_whose_reading_fails_ahead_raises_in_its_callback_as_before() -> None:
    seed = _kaiping().model_copy(update={"article_pattern": "post_(\\d+"})
    with _spider(seed, workers=1) as (spider, crawler):
        request, response = _list(spider, seed)
        _through_middleware(crawler, request, response)
        assert READ_KEY not in request.meta
        with pytest.raises(re.error):
            spider.parse_list(response, **request.cb_kwargs)


def _stat(log: str, name: str) -> int | None:
    found = re.search(rf"'{re.escape(name)}': (\d+)", log)
    return int(found.group(1)) if found else None


def test_a_crawl_reads_every_page_in_its_worker_and_none_in_the_crawl(tmp_path: Path) -> None:
    logs = {}
    with ReplayServer(["kaiping"]) as replay:
        for workers in (1, 0):
            folder = tmp_path / f"workers{workers}"
            folder.mkdir()
            env = monitor_env(folder, replay.url, None)
            upgrade(env["DATABASE_URL"])
            argv = crawl_argv(
                replay.url,
                ["kaiping"],
                EXTRACT_WORKERS=workers,
                LOG_FILE=folder / "crawl.log",
                LOG_LEVEL="INFO",
            )
            crawl = start_crawl(argv, env)
            assert crawl.wait(timeout=120) == 0
            logs[workers] = (folder / "crawl.log").read_text(encoding="utf-8")

    for log in logs.values():
        assert "Dumping Scrapy stats" in log and (_stat(log, "source/kaiping/articles") or 0) > 10
    assert _stat(logs[1], READ_IN_CRAWL) is None
    pages = _stat(logs[0], "source/kaiping/list_pages") + _stat(logs[0], "source/kaiping/articles")
    assert _stat(logs[0], READ_IN_CRAWL) == pages
