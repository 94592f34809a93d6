"""Hostile and broken servers: one crawl of many hostile sources; each fails alone, with its reason.

One `scrapy crawl sources` process crawls every case of tests/hostile_server.py at once (a short
DOWNLOAD_TIMEOUT keeps it quick); each source's crawl run must name what went wrong, and the
well-behaved sources in the same crawl must finish normally.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scrapy import Request
from sqlalchemy import create_engine, text
from twisted.internet.defer import Deferred

from crawler.config import PROJECT_ROOT
from crawler.middlewares import SourceRobotsTxtMiddleware, binary_kind
from tests.hostile_server import GBK_TITLE, GOOD_TITLE, PARAGRAPH, HostileServer, Trap, seed_yaml

TIMEOUT = 3
CASES = {
    # case: (status, reason expected in crawl_runs.error, path the reason names)
    "http500": ("failed", "HTTP 500", "/http500/list.html"),
    "slow": ("failed", f"timed out after {TIMEOUT}s", "/slow/list.html"),
    "drip": ("failed", f"timed out after {TIMEOUT}s", "/drip/list.html"),
    "reset": ("failed", "connection reset or closed by the server", "/reset/list.html"),
    "cut": ("failed", "connection closed before the whole page arrived", "/cut/list.html"),
    "loop": ("failed", "redirect loop (2 redirects, back to", "/loop/b.html"),
    "chain": ("failed", "redirect loop (gave up after 5 redirects)", "/chain/list.html?step=5"),
    "huge": ("failed", "page larger than 20 MB", "/huge/list.html"),
    "huge_chunked": ("failed", "page larger than 20 MB", "/huge_chunked/list.html"),
    "bomb": ("failed", "gzip bomb: decompressed size over 20 MB", "/bomb/list.html"),
    "binary": ("failed", "not HTML (binary content)", "/binary/list.html"),
    "empty": ("failed", "empty page (HTTP 200 with no content)", "/empty/list.html"),
    "tags": ("failed", "page too large to parse (240004 tags", "/tags/list.html"),
    "noposts": ("failed", "list page shows no posts", "/noposts/list.html"),
    "blank": (
        "failed",
        "every article page failed: no title or text could be extracted",
        "/blank/content/post_1.html",
    ),
    "robots": ("failed", "disallowed by robots.txt (set `robots_txt: ignore`", "/robots/list.html"),
}
GOOD_CASES = ("good", "robots_ignored", "charset", "links")


@dataclass
class CrawlResult:
    """What one crawl of every hostile source left behind."""

    server_url: str
    runs: dict[str, dict[str, Any]]
    titles: dict[str, str]
    bodies: dict[str, str]
    requests: list[str]
    trap_connections: list[tuple[str, int]]
    seconds: float
    log: str


def _query(database_url: str, sql: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def crawl_env(tmp: Path, seeds: Path) -> dict[str, str]:
    """Return the environment of a crawl child isolated in `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        MONITOR_SEEDS_DIR=str(seeds),
        DATABASE_URL=f"sqlite:///{tmp / 'monitor.db'}",
        MONITOR_DATA_DIR=str(tmp / "data"),
    )
    return env


def run_crawl(
    env: dict[str, str], sources: list[str], *settings: str
) -> subprocess.CompletedProcess:
    """Run one `scrapy crawl sources` child to completion and return it."""
    argv = [
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        "sources",
        "-a",
        "sources=" + ",".join(sources),
    ]
    for setting in ("LOG_LEVEL=INFO", *settings):
        argv += ["-s", setting]
    return subprocess.run(
        argv, check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrawlResult]:
    """Crawl every hostile case and the good ones in one process; return what it recorded."""
    tmp = tmp_path_factory.mktemp("hostile")
    seeds = tmp / "seeds"
    seeds.mkdir()
    for case in [*CASES, *GOOD_CASES]:
        extra = {"robots_txt": "ignore"} if case == "robots_ignored" else {}
        (seeds / f"{case}.yaml").write_text(seed_yaml(case, **extra), encoding="utf-8")
    env = crawl_env(tmp, seeds)
    with Trap() as trap, HostileServer(trap_port=trap.port) as server:
        started = time.monotonic()
        done = run_crawl(
            env,
            [*CASES, *GOOD_CASES],
            f"REPLAY_URL={server.url}",  # the one allowance of a loopback host: the server's
            f"DOWNLOAD_TIMEOUT={TIMEOUT}",
            "RETRY_TIMES=0",
            "CONCURRENT_REQUESTS_PER_DOMAIN=32",
        )
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-3000:]
        runs = {
            row["source_id"]: row
            for row in _query(env["DATABASE_URL"], "select * from crawl_runs order by id")
        }
        versions = _query(
            env["DATABASE_URL"],
            "select a.url, v.title, v.body from articles a join article_versions v "
            "on v.article_id = a.id",
        )
        yield CrawlResult(
            server.url,
            runs,
            {row["url"].removeprefix(server.url): row["title"] for row in versions},
            {row["url"].removeprefix(server.url): row["body"] for row in versions},
            server.requests,
            list(trap.connections),
            seconds,
            done.stderr,
        )


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_hostile_source_fails_alone_with_a_clear_reason(crawl: CrawlResult, case: str) -> None:
    status, reason, path = CASES[case]
    run = crawl.runs[case]
    assert run["status"] == status
    assert run["error"] == f"{run['error'].split(' at ')[0]} at {crawl.server_url}{path}"
    assert run["error"].startswith(reason), run["error"]
    assert run["finished_at"] is not None


def test_good_sources_in_the_same_crawl_finish_normally(crawl: CrawlResult) -> None:
    for case in GOOD_CASES:
        assert crawl.runs[case]["status"] == "ok", crawl.runs[case]
    assert crawl.runs["good"]["error"] is None
    assert crawl.titles["/good/content/post_1.html"] == f"{GOOD_TITLE}（1）"
    assert crawl.bodies["/good/content/post_2.html"].startswith(PARAGRAPH)
    # The slow cases end at the download timeout, not at the server's 20 s hang.
    assert crawl.seconds < 60


def test_robots_txt_is_obeyed_unless_the_source_file_says_ignore(crawl: CrawlResult) -> None:
    assert "/robots/list.html" not in crawl.requests
    assert crawl.titles["/robots_ignored/content/post_1.html"] == f"{GOOD_TITLE}（1）"


def test_wrong_or_missing_charset_and_malformed_html_still_extract(crawl: CrawlResult) -> None:
    assert crawl.runs["charset"]["error"] is None
    assert crawl.titles["/charset/content/post_1.html"] == GBK_TITLE  # GBK declared UTF-8
    assert crawl.titles["/charset/content/post_2.html"] == GBK_TITLE  # GBK, no charset at all
    assert PARAGRAPH in crawl.bodies["/charset/content/post_1.html"]
    assert PARAGRAPH in crawl.bodies["/charset/content/post_2.html"]
    malformed = crawl.bodies["/charset/content/post_3.html"]
    assert crawl.titles["/charset/content/post_3.html"] == GOOD_TITLE
    assert PARAGRAPH in malformed and "document.write" not in malformed


def test_links_off_site_or_to_private_hosts_are_never_requested(crawl: CrawlResult) -> None:
    run = crawl.runs["links"]
    stats = run["stats"] if isinstance(run["stats"], dict) else json.loads(run["stats"])
    assert (
        stats["links_refused"] == 7
    )  # evil host, 127.0.0.1/.2, localhost, 2130706433, ::1, user:pw
    assert crawl.trap_connections == []
    followed = sorted(p for p in crawl.requests if p.startswith("/links/"))
    assert followed == [
        "/links/content/post_1.html",
        "/links/content/post_2.html",
        "/links/list.html",
    ]
    # The on-site post that redirects to another loopback port is refused, with the reason.
    assert run["error"].startswith("link policy: loopback address 127.0.0.1:")
    assert "/links/content/post_1.html" in crawl.titles


def test_every_request_waiting_for_robots_txt_gets_the_parser() -> None:
    robots = SourceRobotsTxtMiddleware.__new__(SourceRobotsTxtMiddleware)
    pending: Deferred[str] = Deferred()
    robots._parsers = {"www.kaiping.gov.cn": pending}

    async def three_requests_then_robots_txt() -> list[object]:
        waiters = [
            asyncio.ensure_future(robots.robot_parser(Request(f"http://www.kaiping.gov.cn/{n}")))
            for n in range(3)
        ]
        await asyncio.sleep(0)
        robots._parsers["www.kaiping.gov.cn"] = "parser"
        pending.callback("parser")
        return await asyncio.gather(*waiters)

    # Scrapy's own middleware answers ["parser", None, None]: two requests skip robots.txt.
    assert asyncio.run(three_requests_then_robots_txt()) == ["parser"] * 3


def test_binary_sniffing_tells_pages_from_garbage() -> None:
    assert binary_kind(b"%PDF-1.7\n...") == "PDF"
    assert binary_kind(bytes(range(256)) * 8) == "binary content"
    assert binary_kind("<html><body>中文网页</body></html>".encode("gbk") * 40) is None
    assert binary_kind("<html>中文</html>".encode("utf-16")) is None
    assert binary_kind(b"") is None
