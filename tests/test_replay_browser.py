"""The replays that need a browser, crawled as a user crawls them, with the machine's Chromium.

`zhongshan` lists its column only in the browser: each list page is an empty shell whose script
fetches the posts from the gkmlpt API with a token it computes. `liangjiang` puts every page
behind a WAF cookie challenge (202, a script that sets a cookie and reloads). Like
tests/test_browser.py these tests fail, never skip, when Chromium is missing (`make chromium`).
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from crawler.browser_settings import CHROMIUM, CHROMIUM_ARGS
from crawler.config import PROJECT_ROOT
from crawler.pages.listing import parse_list
from crawler.seeds import load_seed
from replay.challenge import COOKIE_NAME
from replay.handler import site_challenge
from replay.server import ReplayServer, RequestRecord
from replay.sinks import WebhookSink
from replay.sites.zhongshan import ZhongshanSite
from tests.e2e import monitor_env, run_monitor

SEEDS = PROJECT_ROOT / "seeds"
ZS_TITLE = "香港大学与中山市人民政府签署合作协议 共建生物医药技术创新研究院"
ZS_PARAGRAPHS = [
    (
        "12月2日，香港大学与中山市人民政府在翠亨新区签署合作协议，双方将共建“港大中山生物医药"
        "技术创新研究院”，聚焦创新药物研发和医疗器械成果转化。"
    ),
    (
        "根据协议，研究院将引进香港大学医学院的科研团队，与中山国家健康科技产业基地的医药企业"
        "联合攻关，推动临床研究和产学研合作。"
    ),
]
LJ_TITLE = "两江新区与香港中文大学签约 共建生物医药创新中心"
LJ_PARAGRAPHS = [
    (
        "两江新区管委会与香港中文大学日前在水土新城签署战略合作协议，双方将共建“港中大两江"
        "生物医药创新中心”，围绕抗体药物、高端医疗器械和精准医学开展联合研发。"
    ),
    (
        "根据协议，创新中心将引入香港中文大学医学院团队，与新区生物医药企业共建中试平台，"
        "推动科研成果在两江新区转化落地。"
    ),
]


# ----- helpers ---------------------------------------------------------------------------------


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """Return status, headers and UTF-8 text of a GET (errors included)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def site_log(replay: ReplayServer, site_id: str) -> list[RequestRecord]:
    """Return the replay's requests for one site, oldest first."""
    return [r for r in replay.requests if r.path.startswith(f"/{site_id}/")]


def cookie_of(record: RequestRecord) -> str:
    """Return the Cookie header a request carried ("" if none)."""
    return next((v for k, v in record.headers.items() if k.lower() == "cookie"), "")


def from_browser(record: RequestRecord) -> bool:
    """Return True for a request Chromium sent (it sends Sec-Fetch-* headers; Scrapy does not)."""
    return any(k.lower() == "sec-fetch-mode" for k in record.headers)


def runs(env: dict[str, str], source_id: str) -> list[dict[str, Any]]:
    """Return the source's finished crawl runs, oldest first: status, error, per-source stats."""
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        rows = db.execute(
            "SELECT status, error, stats FROM crawl_runs"
            " WHERE source_id = ? AND finished_at IS NOT NULL ORDER BY id",
            (source_id,),
        ).fetchall()
    return [{"status": s, "error": e, "stats": json.loads(st or "{}")} for s, e, st in rows]


def pages(run: dict[str, Any]) -> int:
    """Return the browser pages a crawl run opened."""
    return int(run["stats"].get("browser_pages", 0))


def crawl(source_id: str, replay: ReplayServer, env: dict[str, str], out: Path) -> tuple[list, str]:
    """Run `scrapy crawl <id> -s STORE_ENABLED=0 -O out`; return the items and the log."""
    argv = [sys.executable, "-m", "scrapy", "crawl", source_id, "-s", f"REPLAY_URL={replay.url}"]
    argv += ["-s", "STORE_ENABLED=0", "-O", str(out)]
    done = subprocess.run(
        argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    items = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return items, done.stderr


def stat(log: str, name: str) -> int:
    """Return a stat from the stats dump at the end of a crawl log (0 when absent)."""
    match = re.search(rf"'{re.escape(name)}': (\d+)", log)
    return int(match.group(1)) if match else 0


def cycle(env: dict[str, str], sources: str) -> None:
    """Run one `monitor run --once` cycle over `sources`."""
    done = run_monitor(["run", "--once", "--sources", sources], env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    """A fresh replay of the two sites that need a browser."""
    with ReplayServer(["zhongshan", "liangjiang"]) as server:
        yield server


# ----- the replays over plain HTTP -------------------------------------------------------------


def test_zhongshan_list_is_a_shell_whose_etag_follows_the_posts(replay: ReplayServer) -> None:
    """Plain HTTP gets no posts; the API wants the token; 304 until a post changes."""
    url = replay.list_url("zhongshan")
    status, headers, shell = fetch(url)
    assert status == 200 and 'id="news-list"' in shell and "/content/post_" not in shell
    etag = headers["ETag"]
    assert fetch(url, {"If-None-Match": etag})[0] == 304
    site = replay.site("zhongshan")
    assert isinstance(site, ZhongshanSite)
    api = replay.base_url("zhongshan") + "/gkmlpt/api/all/2915?page=1&sid=760001"
    assert fetch(api)[0] == 403 and fetch(api + "&token=00000000")[0] == 403
    assert fetch(f"{api}&token={site.list_token()}")[0] == 200
    post = replay.publish("zhongshan", ZS_TITLE, ZS_PARAGRAPHS)
    status, headers, changed = fetch(url, {"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag and "/content/post_" not in changed
    assert fetch(url, {"If-None-Match": headers["ETag"]})[0] == 304
    for change in (
        lambda: replay.edit("zhongshan", post, title="改"),
        lambda: replay.delete("zhongshan", post),
    ):
        before = fetch(url)[1]["ETag"]
        change()
        assert fetch(url, {"If-None-Match": before})[0] == 200


def test_liangjiang_challenge_over_plain_http(replay: ReplayServer) -> None:
    """No cookie: a 202 challenge; a solved cookie: the page (ETags too); rotated: challenged."""
    url = replay.list_url("liangjiang")
    status, headers, page = fetch(url)
    assert status == 202 and "ETag" not in headers
    assert "document.cookie" in page and "location.reload()" in page and "record" not in page
    challenge = site_challenge(replay.site("liangjiang"))
    assert challenge is not None
    cookie = {"Cookie": challenge.solved_cookie()}
    status, headers, page = fetch(url, cookie)
    assert status == 200 and "<record><![CDATA[" in page
    assert fetch(url, {**cookie, "If-None-Match": headers["ETag"]})[0] == 304
    replay.rotate_challenge("liangjiang")
    assert fetch(url, cookie)[0] == 202
    assert [r.status for r in site_log(replay, "liangjiang")] == [202, 200, 304, 202]
    admin = urllib.request.Request(
        f"{replay.url}/_admin/liangjiang/rotate_challenge", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(admin, timeout=10) as answer:
        assert json.loads(answer.read()) == {"rotated": "liangjiang"}
    with pytest.raises(KeyError):
        replay.rotate_challenge("zhongshan")


# ----- Chromium --------------------------------------------------------------------------------


def test_rendered_zhongshan_list_parses_into_the_posts(replay: ReplayServer) -> None:
    """Chromium's rendering of the shell parses into the page's posts, full titles and dates."""
    seed = load_seed(SEEDS / "zhongshan.yaml").with_base(replay.base_url("zhongshan"))
    site = replay.site("zhongshan")
    long_title = (  # longer than the 34 characters a row shows: the parser takes `title`
        "中山市与香港大学签署协议共建生物医药技术创新研究院并联合打造粤港澳大湾区医疗器械成果转化平台"
    )
    replay.publish("zhongshan", long_title, ZS_PARAGRAPHS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            rendered = []
            for number in (1, 2):
                page = browser.new_page()
                page.goto(replay.list_url("zhongshan", number))
                page.wait_for_selector("#news-list li", timeout=15_000)
                rendered.append(page.content().encode())
                page.close()
        finally:
            browser.close()
    for number, html in enumerate(rendered, start=1):
        listing = parse_list(
            replay.list_url("zhongshan", number),
            html,
            {"content-type": "text/html; charset=utf-8"},
            article_pattern=seed.article_pattern,
            list_pattern=seed.list_pattern,
        )
        posts = site.column.page(number, site.per_page)
        shown = [
            (e.url, e.title, e.published_at and e.published_at.date()) for e in listing.entries
        ]
        assert shown == [
            (replay.article_url("zhongshan", p), p.title, p.published_at.date()) for p in posts
        ]
        assert listing.next_pages == ([replay.list_url("zhongshan", 2)] if number == 1 else [])
    api = [r for r in site_log(replay, "zhongshan") if "/gkmlpt/api/" in r.path]
    assert len(api) == 2 and all(r.status == 200 and "token=" in r.path for r in api)


def test_zhongshan_is_listed_only_through_the_browser(replay: ReplayServer, tmp_path: Path) -> None:
    """Without the browser the crawl finds no article; with `browser: lists` every post."""
    plain_seeds = tmp_path / "seeds"
    plain_seeds.mkdir()
    shipped = (SEEDS / "zhongshan.yaml").read_text(encoding="utf-8")
    assert "\nbrowser: lists\n" in shipped
    (plain_seeds / "zhongshan.yaml").write_text(
        shipped.replace("\nbrowser: lists\n", "\nbrowser: none\n"), encoding="utf-8"
    )
    env = monitor_env(tmp_path, replay.url, None, MONITOR_SEEDS_DIR=str(plain_seeds))
    items, log = crawl("zhongshan", replay, env, tmp_path / "plain.jsonl")
    assert items == [] and "list page" in log and "shows no posts" in log
    assert stat(log, "source/zhongshan/browser_pages") == 0
    assert not [r for r in site_log(replay, "zhongshan") if "/gkmlpt/api/" in r.path]

    replay.clear_log()
    env = monitor_env(tmp_path, replay.url, None)
    items, log = crawl("zhongshan", replay, env, tmp_path / "browser.jsonl")
    site = replay.site("zhongshan")
    assert sorted(item["url"] for item in items) == sorted(
        replay.article_url("zhongshan", post) for post in site.column.all()
    )
    assert replay.seed_url("zhongshan") in {item["url"] for item in items}
    assert stat(log, "source/zhongshan/browser_pages") == 2  # list pages 1 and 2
    log_records = site_log(replay, "zhongshan")
    api = [r for r in log_records if "/gkmlpt/api/" in r.path]
    assert len(api) == 2 and all(r.status == 200 and from_browser(r) for r in api)
    articles = [r for r in log_records if "/content/post_" in r.path]
    assert len(articles) == len(site.column) and not any(from_browser(r) for r in articles)


def test_liangjiang_challenge_solved_once_then_cookie_reused(
    replay: ReplayServer, tmp_path: Path
) -> None:
    """Cycle 1 solves in one browser page, cycle 2 reuses the cookie, cycle 3 solves again."""
    env = monitor_env(tmp_path, replay.url, None)
    cycle(env, "liangjiang")
    first = site_log(replay, "liangjiang")
    assert first[0].status == 202 and not cookie_of(first[0]) and not from_browser(first[0])
    solve = [r for r in first if from_browser(r) and r.path == first[0].path]
    assert [r.status for r in solve] == [202, 200] and COOKIE_NAME in cookie_of(solve[1])
    articles = [r for r in first if "/art/" in r.path]
    assert len(articles) == 22 and all(
        r.status == 200 and COOKIE_NAME in cookie_of(r) and not from_browser(r) for r in articles
    )
    assert (tmp_path / "data" / "cookies" / "liangjiang.json").exists()

    replay.clear_log()
    cycle(env, "liangjiang")
    second = site_log(replay, "liangjiang")
    assert second and all(r.status in (200, 304) and COOKIE_NAME in cookie_of(r) for r in second)
    assert not any(from_browser(r) for r in second)

    replay.rotate_challenge("liangjiang")
    replay.clear_log()
    cycle(env, "liangjiang")
    third = site_log(replay, "liangjiang")
    assert third[0].status == 202 and COOKIE_NAME in cookie_of(third[0])  # the expired cookie
    assert any(from_browser(r) and r.status == 200 for r in third)

    history = runs(env, "liangjiang")
    assert [run["status"] for run in history] == ["ok"] * 3, history
    assert [pages(run) for run in history] == [1, 0, 1]
    assert [run["stats"].get("browser_solves", 0) for run in history] == [1, 0, 1]
    assert history[0]["stats"]["articles"] == 22


def test_daemon_alerts_new_posts_on_both_browser_sources(
    replay: ReplayServer, tmp_path: Path
) -> None:
    """A post published on each source while the daemon runs reaches the webhook."""
    with WebhookSink() as hook:
        channels = tmp_path / "channels.yaml"
        channels.write_text(
            f"channels:\n  hook:\n    kind: webhook\n    url: {hook.url}\n    topics: ['*']\n",
            encoding="utf-8",
        )
        env = monitor_env(tmp_path, replay.url, channels, MONITOR_RETRY_BASE_SECONDS="1")
        argv = [sys.executable, "-m", "monitor.cli", "run", "--every", "5s"]
        log = (tmp_path / "daemon.log").open("w", encoding="utf-8")
        daemon = subprocess.Popen(
            [*argv, "--sources", "zhongshan,liangjiang"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=log,
        )
        try:
            wait_for_runs(env, 1)
            assert hook.deliveries == []  # the first cycle is the baseline
            urls = {
                replay.publish("zhongshan", ZS_TITLE, ZS_PARAGRAPHS),
                replay.publish("liangjiang", LJ_TITLE, LJ_PARAGRAPHS),
            }
            delivered = hook.wait_for(2, timeout=120)
            assert {post.json["url"] for post in delivered} == urls
            assert {post.json["title"] for post in delivered} == {ZS_TITLE, LJ_TITLE}
            # One more cycle over the unchanged sites. Alerts go out while the crawl that found
            # the posts still runs, so that crawl may not be counted yet: wait for two.
            wait_for_runs(env, runs_done(env) + 2)
            done = runs_done(env)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            log.close()
    zhongshan, liangjiang = runs(env, "zhongshan")[:done], runs(env, "liangjiang")[:done]
    assert all(run["status"] == "ok" for run in zhongshan + liangjiang)
    assert [pages(run) for run in liangjiang] == [1] + [0] * (len(liangjiang) - 1)
    # A plain conditional request goes first; the browser renders a list only when it
    # changed: 2 pages at first, none on a cycle over the unchanged site.
    assert pages(zhongshan[0]) == 2 and pages(zhongshan[-1]) == 0, [pages(r) for r in zhongshan]
    assert max(pages(run) for run in zhongshan[1:]) >= 1  # the cycle that saw the new post
    assert zhongshan[0]["stats"]["articles"] == liangjiang[0]["stats"]["articles"] == 22


def runs_done(env: dict[str, str]) -> int:
    """Return the number of cycles both sources have completed."""
    return min(len(runs(env, "zhongshan")), len(runs(env, "liangjiang")))


def wait_for_runs(env: dict[str, str], count: int, timeout: float = 120) -> None:
    """Wait until both sources have completed `count` crawl runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if runs_done(env) >= count:
                return
        except sqlite3.OperationalError:  # the daemon has not created its tables yet
            pass
        time.sleep(0.5)
    pytest.fail(f"the daemon did not complete {count} cycles in {timeout:.0f}s")
