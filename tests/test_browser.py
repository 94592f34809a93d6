"""The browser path: challenges solved once and their cookies reused, script-built lists, and a
missing, hung or crashed Chromium that fails only the sources needing it.

End-to-end tests run `scrapy crawl` (and the daemon) as a user does, against the local site in
tests/browser_site.py, with the machine's real Chromium. They fail, never skip, when Chromium is
missing: `make test` installs it first (`make chromium`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from crawler.browser import (
    BrowserMiddleware,
    _descendants,
    browser_memory,
    cookie_from_dict,
    cookie_to_dict,
    is_challenge,
    should_abort_request,
)
from crawler.browser_settings import CHROMIUM, merge_browser_settings
from crawler.config import PROJECT_ROOT
from tests.browser_site import (
    COOKIE_NAME,
    BrowserSite,
    article_html,
    challenge_html,
    list_html,
    seed_yaml,
)

BLOCKED_FILES = ("logo.png", "body.woff2", "clip.mp4")
CLEARANCE = {  # a cookie as Playwright reports it
    "name": COOKIE_NAME,
    "value": "n1-7",
    "domain": "127.0.0.1",
    "path": "/",
    "expires": 4102444800.0,
    "httpOnly": False,
    "secure": False,
}


@pytest.fixture
def site() -> Iterator[BrowserSite]:
    """Return a running test site with three posts per column."""
    with BrowserSite(articles=3) as running:
        yield running


def crawl_env(tmp_path: Path, sources: dict[str, str]) -> dict[str, str]:
    """Write a source file per site (site -> `browser:` value); return an isolated environment."""
    seeds = tmp_path / "seeds"
    seeds.mkdir(exist_ok=True)
    for old in seeds.glob("*.yaml"):
        old.unlink()
    for name, browser in sources.items():
        (seeds / f"{name}.yaml").write_text(seed_yaml(name, browser), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'monitor.db'}",
        MONITOR_SEEDS_DIR=str(seeds),
        MONITOR_DATA_DIR=str(tmp_path / "data"),
    )
    return env


def crawl(
    env: dict[str, str], site: BrowserSite, *settings: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `scrapy crawl sources` over every source file against the site; return the process."""
    argv = [sys.executable, "-m", "scrapy", "crawl", "sources", "-s", f"REPLAY_URL={site.url}"]
    for setting in settings:
        argv += ["-s", setting]
    done = subprocess.run(
        argv,
        check=False,
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def last_runs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Return each source's latest crawl run: status, error and its `source/<id>/` stats."""
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        rows = db.execute("SELECT source_id, status, error, stats FROM crawl_runs ORDER BY id")
        return {
            sid: {"status": status, "error": error, "stats": json.loads(stats or "{}")}
            for sid, status, error, stats in rows
        }


def stored_titles(tmp_path: Path, source_id: str) -> list[str]:
    """Return the titles of the source's stored articles, sorted."""
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        rows = db.execute(
            "SELECT v.title FROM article_versions v JOIN articles a ON a.id = v.article_id "
            "WHERE a.source_id = ? ORDER BY v.title",
            (source_id,),
        )
        return [title for (title,) in rows]


def chromium_main(root: int) -> int | None:
    """Return the pid of the Chromium browser process descended from `root`, if any."""
    for pid in _descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"chromium") and not any(a.startswith(b"--type=") for a in argv):
            return pid
    return None


# --- Chromium itself -------------------------------------------------------------------------


def test_chromium_is_installed() -> None:
    """The machine's Chromium runs; `make test` installs it (`make chromium`) when missing."""
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: run `make chromium` (as root)"
    done = subprocess.run(
        [CHROMIUM, "--version"], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "Chromium" in done.stdout, done.stderr


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (202, challenge_html("0123abcd").encode(), True),
        (412, b"<html><head><script src='/x.js'></script></head><body></body></html>", True),
        (521, b"<script>document.cookie='__jsl=1';location.href=location.href</script>", True),
        (200, b"<script>document.cookie='c=1';location.reload()</script>", True),
        (200, b"<SCRIPT>Document.Cookie = 'c=1'; Location.Replace('/')</SCRIPT>", True),
        (200, article_html("plain", 1001).encode(), False),
        (200, list_html("plain", [1001, 1002]).encode(), False),
        (202, b"accepted", False),
        (404, b"<script>location.reload()</script>", False),
    ],
)
def test_is_challenge(status: int, body: bytes, expected: bool) -> None:
    """Challenge pages are told apart from real pages by status, script and lack of text."""
    assert is_challenge(status, body) is expected


def test_cookie_round_trip() -> None:
    """A Playwright cookie survives the trip through Scrapy's jar form and back."""
    assert cookie_to_dict(cookie_from_dict(CLEARANCE)) == CLEARANCE
    session = {**CLEARANCE, "domain": ".gov.cn", "expires": -1, "httpOnly": True}
    cookie = cookie_from_dict(session)
    assert cookie.discard and cookie.domain_specified
    assert cookie_to_dict(cookie) == session


def test_blocked_resource_types() -> None:
    """Images, fonts and media are aborted; documents, scripts and XHR go through."""
    for kind, blocked in [
        ("image", True),
        ("font", True),
        ("media", True),
        ("document", False),
        ("script", False),
        ("xhr", False),
        ("fetch", False),
    ]:
        assert should_abort_request(SimpleNamespace(resource_type=kind)) is blocked


def test_merge_browser_settings() -> None:
    """Dict settings are merged (the project's entries win); scalars are only defaulted."""
    namespace: dict[str, Any] = {"DOWNLOADER_MIDDLEWARES": {"x.Y": 10}, "MEMUSAGE_LIMIT_MB": 512}
    merge_browser_settings(namespace)
    assert namespace["DOWNLOADER_MIDDLEWARES"]["x.Y"] == 10
    assert namespace["DOWNLOADER_MIDDLEWARES"]["crawler.browser.BrowserMiddleware"] == 700
    assert namespace["MEMUSAGE_LIMIT_MB"] == 512
    assert namespace["DOWNLOAD_HANDLERS"]["https"] == "crawler.browser.BrowserDownloadHandler"


def test_browser_memory_counts_child_processes() -> None:
    """The memory limit's count includes child processes (the browser's are children)."""
    before = browser_memory()
    child = subprocess.Popen(
        [sys.executable, "-c", "b = bytearray(80 * 2**20); print(1, flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"1"
        assert browser_memory() - before > 60 * 2**20
    finally:
        child.kill()
        child.wait()


# --- the middleware's decisions, without a browser -------------------------------------------


def _middleware(tmp_path: Path) -> BrowserMiddleware:
    """Return a BrowserMiddleware on a test crawler saving cookies under `tmp_path`."""
    crawler = get_crawler(settings_dict={"BROWSER_COOKIES_DIR": str(tmp_path / "cookies")})
    return BrowserMiddleware.from_crawler(crawler)


def _request(url: str) -> Request:
    return Request(url, meta={"source_id": "guarded", "page_kind": "article", "browser": False})


def _challenge(request: Request) -> HtmlResponse:
    return HtmlResponse(
        request.url, status=202, body=challenge_html("n1").encode(), request=request
    )


def test_middleware_solves_once_then_reuses_then_falls_back(tmp_path: Path) -> None:
    """One solve per challenge; its cookies go on plain requests; cookies that do not pass
    plain requests send the source to the browser; the jar is saved and reloaded."""
    base = "http://127.0.0.1:9/guarded/news/"
    mw = _middleware(tmp_path)
    stats = mw.crawler.stats

    async def flow() -> None:
        first, second = _request(base + "index.html"), _request(base + "content/post_1.html")
        for request in (first, second):
            assert await mw.process_request(request) is None
            assert request.meta["cookiejar"] == "guarded" and "playwright" not in request.meta
        solve = await mw.process_response(first, _challenge(first))
        assert isinstance(solve, Request) and solve.meta["browser_solve"] and solve.dont_filter
        retry = await mw.process_response(second, _challenge(second))  # while solving
        assert isinstance(retry, Request) and not retry.meta.get("browser_solve")

        waiting = asyncio.create_task(mw.process_request(retry))
        await mw.process_request(solve)
        assert solve.meta["playwright"] and solve.meta["dont_merge_cookies"]
        await asyncio.sleep(0.05)
        assert not waiting.done(), "a plain request of the source waits for the solve"
        assert stats.get_value("source/guarded/browser_pages") == 1
        solve.meta["playwright_page_methods"][0].result = {
            "status": 200,
            "met": True,
            "remains": False,
            "cookies": [CLEARANCE],
        }
        page = HtmlResponse(
            solve.url, status=202, body=list_html("guarded", [1]).encode(), request=solve
        )
        answered = await mw.process_response(solve, page)
        assert isinstance(answered, HtmlResponse) and answered.status == 200
        assert stats.get_value("source/guarded/browser_solves") == 1

        await asyncio.wait_for(waiting, 1)  # the waiting request now carries the cookie
        assert f"{COOKIE_NAME}=n1-7" in retry.headers.get("Cookie", b"").decode()
        again = await mw.process_response(retry, _challenge(retry))  # cookie did not pass
        assert isinstance(again, Request) and not again.meta.get("browser_solve")
        await mw.process_request(again)
        assert again.meta.get("playwright"), "a source whose cookies fail goes by browser"

    asyncio.run(flow())
    mw.save_cookies()
    saved = tmp_path / "cookies" / "guarded.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text())[0]["value"] == "n1-7"

    fresh = _middleware(tmp_path)  # the next crawl starts with the saved cookie
    later = _request(base + "index.html")
    asyncio.run(fresh.process_request(later))
    assert f"{COOKIE_NAME}=n1-7" in later.headers.get("Cookie", b"").decode()
    assert "playwright" not in later.meta


# --- end to end with Chromium ----------------------------------------------------------------


def test_challenge_solved_once_then_cookies_reused_until_expired(
    tmp_path: Path, site: BrowserSite
) -> None:
    """Cycle 1 solves the challenge in one browser page and stores the real articles; cycle 2
    reuses the saved cookies with no browser page; after the site expires them, one again."""
    env = crawl_env(tmp_path, {"guarded": "none"})

    crawl(env, site)
    run = last_runs(tmp_path)["guarded"]
    assert run["status"] == "ok", run
    assert run["stats"]["browser_pages"] == 1 and run["stats"]["browser_solves"] == 1
    assert run["stats"]["articles"] == 3
    assert stored_titles(tmp_path, "guarded") == sorted(
        f"市卫健委与香港大学签署生物医药合作协议（第{n}号通报）" for n in (1001, 1002, 1003)
    )
    articles = [h for h in site.hits("guarded") if "/content/" in h.path]
    assert len(articles) == 3 and all(
        h.status == 200 and COOKIE_NAME in h.cookie for h in articles
    ), "articles went plain, with the cookie"
    fetched = {h.path.rsplit("/", 1)[-1] for h in site.hits("guarded")}
    assert "site.js" in fetched, "the browser ran the page"
    assert not fetched & set(BLOCKED_FILES), f"blocked resources were requested: {fetched}"
    assert (tmp_path / "data" / "cookies" / "guarded.json").exists()

    crawl(env, site)
    run = last_runs(tmp_path)["guarded"]
    assert run["status"] == "ok", run
    assert run["stats"].get("browser_pages", 0) == 0 and "challenges" not in run["stats"]

    site.expire()
    crawl(env, site)
    run = last_runs(tmp_path)["guarded"]
    assert run["status"] == "ok", run
    assert run["stats"]["challenges"] == 1 and run["stats"]["browser_pages"] == 1


def test_script_built_list_is_crawled_with_browser_lists(tmp_path: Path, site: BrowserSite) -> None:
    """Plain HTTP sees an empty list shell; `browser: lists` runs its script and finds the posts,
    while the article pages stay plain."""
    crawl(crawl_env(tmp_path, {"scripted": "none"}), site)
    run = last_runs(tmp_path)["scripted"]
    assert run["stats"].get("list_entries", 0) == 0 and run["stats"].get("articles", 0) == 0

    crawl(crawl_env(tmp_path, {"scripted": "lists"}), site)
    run = last_runs(tmp_path)["scripted"]
    assert run["status"] == "ok", run
    assert run["stats"]["browser_pages"] == 1 and run["stats"]["articles"] == 3
    assert len(stored_titles(tmp_path, "scripted")) == 3
    api = [h for h in site.hits("scripted") if "/api/list" in h.path]
    assert [h.status for h in api] == [200], "only the browser's script could call the API"
    fetched = {h.path.rsplit("/", 1)[-1] for h in site.hits("scripted")}
    assert not fetched & set(BLOCKED_FILES), f"blocked resources were requested: {fetched}"


def test_missing_chromium_fails_only_browser_sources(tmp_path: Path, site: BrowserSite) -> None:
    """Without Chromium, browser sources fail with one error saying how to install it; a plain
    source in the same crawl still succeeds."""
    env = crawl_env(tmp_path, {"scripted": "lists", "guarded": "none", "plain": "none"})
    missing = json.dumps({"executable_path": str(tmp_path / "no-such-chromium")})
    done = crawl(env, site, f"PLAYWRIGHT_LAUNCH_OPTIONS={missing}")
    runs = last_runs(tmp_path)
    for source_id in ("scripted", "guarded"):
        assert runs[source_id]["status"] == "failed"
        assert "apt-get install chromium" in runs[source_id]["error"]
        errors = re.findall(rf"ERROR: source {source_id} needs a browser: .*", done.stderr)
        assert len(errors) == 1 and "Chromium is not installed" in errors[0], done.stderr[-2000:]
    assert runs["plain"]["status"] == "ok" and runs["plain"]["stats"]["articles"] == 3


def test_hung_page_fails_its_source_without_hanging(tmp_path: Path, site: BrowserSite) -> None:
    """A page whose script never yields fails within the time limit; others go on."""
    env = crawl_env(tmp_path, {"stuck": "lists", "plain": "none"})
    started = time.monotonic()
    crawl(env, site, "BROWSER_CHALLENGE_TIMEOUT=3", "BROWSER_PAGE_TIMEOUT=20", timeout=90)
    assert time.monotonic() - started < 60
    runs = last_runs(tmp_path)
    assert runs["stuck"]["status"] == "failed" and "did not respond" in runs["stuck"]["error"]
    assert runs["plain"]["status"] == "ok" and runs["plain"]["stats"]["articles"] == 3


def test_browser_crash_mid_page_does_not_hang(tmp_path: Path) -> None:
    """Chromium killed while a page loads: the crawl relaunches it or fails the page, and ends;
    no Chromium process outlives the crawl."""
    with BrowserSite(articles=2, delay=4) as slow_site:
        env = crawl_env(tmp_path, {"slow": "lists", "plain": "none"})
        argv = [
            sys.executable,
            "-m",
            "scrapy",
            "crawl",
            "sources",
            "-s",
            f"REPLAY_URL={slow_site.url}",
        ]
        started = time.monotonic()
        child = subprocess.Popen(
            argv,
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            browser = None
            while browser is None and time.monotonic() - started < 60:
                browser = chromium_main(child.pid)
                time.sleep(0.1)
            assert browser is not None, "Chromium never started"
            time.sleep(1.5)  # the list page is now waiting on the slow server
            os.kill(browser, signal.SIGKILL)
            _, stderr = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, stderr[-3000:]
        assert time.monotonic() - started < 100
        runs = last_runs(tmp_path)
        assert runs["plain"]["status"] == "ok"
        assert runs["slow"]["status"] == "ok" or runs["slow"]["error"], runs["slow"]
        assert chromium_main(os.getpid()) is None


def test_daemon_cycle_reuses_cookies(tmp_path: Path, site: BrowserSite) -> None:
    """The daemon crawls a challenged source like any other; its second cycle opens no page."""
    env = crawl_env(tmp_path, {"guarded": "none"})
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        f"channels:\n  file:\n    kind: file\n    path: {tmp_path / 'alerts.jsonl'}\n",
        encoding="utf-8",
    )
    env.update(MONITOR_REPLAY_URL=site.url, MONITOR_CHANNELS_FILE=str(channels))
    pages = []
    for _cycle in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "run", "--once"],
            check=False,
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        run = last_runs(tmp_path)["guarded"]
        assert run["status"] == "ok", run
        pages.append(run["stats"].get("browser_pages", 0))
    assert pages == [1, 0]


def test_memory_limit_counts_the_browser(tmp_path: Path, site: BrowserSite) -> None:
    """MEMUSAGE_LIMIT_MB stops a crawl whose browser pushes it over, though Python alone is under."""
    env = crawl_env(tmp_path, {"plain": "all"})
    done = crawl(env, site, "MEMUSAGE_LIMIT_MB=400", "MEMUSAGE_CHECK_INTERVAL_SECONDS=0.2")
    assert "Memory usage exceeded 400MiB" in done.stderr, done.stderr[-3000:]
    assert "'finish_reason': 'memusage_exceeded'" in done.stderr
    browser = re.search(r"'memusage/browser_max': (\d+)", done.stderr)
    assert browser and int(browser.group(1)) > 100 * 2**20
    python_peak = re.search(r"'memusage/startup': (\d+)", done.stderr)
    assert python_peak and int(python_peak.group(1)) < 400 * 2**20
