"""How a source's crawl is judged from its stats: fetched lists, posts shown, articles got."""

from __future__ import annotations

from typing import Any

from crawler.pipelines import run_verdict

LIST = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/index.html"


def verdict(**stats: Any) -> tuple[bool, str | None]:
    return run_verdict(lambda name: stats.get(name, 0), LIST)


def test_a_clean_crawl_is_ok() -> None:
    assert verdict(list_pages=2, list_entries=30, articles=30) == (True, None)


def test_an_unchanged_list_is_ok() -> None:
    assert verdict(list_pages=1, list_not_modified=1) == (True, None)


def test_no_list_page_fails_with_the_first_error() -> None:
    ok, reason = verdict(first_error="HTTP 500 at " + LIST)
    assert not ok and reason == "HTTP 500 at " + LIST


def test_an_empty_list_fails() -> None:
    ok, reason = verdict(list_pages=1, list_entries=0)
    assert not ok and reason == f"list page shows no posts at {LIST}"


FIRST = "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)"


def test_every_article_failing_fails_the_crawl() -> None:
    ok, reason = verdict(list_pages=1, list_entries=3, article_errors=3, first_error=FIRST)
    assert not ok and reason == f"every article page failed: {FIRST}"


def test_some_articles_failing_is_ok_with_the_error_kept() -> None:
    ok, reason = verdict(
        list_pages=1, list_entries=3, articles=2, article_errors=1, first_error=FIRST
    )
    assert ok and reason == FIRST
