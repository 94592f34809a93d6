"""Article extraction in worker processes (crawler/extract_pool.py, ExtractionPool): the same
articles as in process, failures logged with their traceback, a killed worker replaced with
nothing lost, and no worker outliving its crawl (a normal exit or a SIGKILL of its group)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from crawler.extract_pool import ExtractionPool
from crawler.migrate import upgrade
from crawler.normalize import content_hash
from crawler.pages.article import EXTRACTORS
from crawler.pages.dates import CST
from crawler.pages.listing import parse_list
from crawler.pages.model import ExtractedArticle, ListPage
from replay.server import ReplayServer
from tests.e2e import crawl_argv, monitor_env, start_crawl
from tests.world import query, wait_until

CORPUS = Path(__file__).parent / "corpus"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
# Every page is read with "generic" (the kind tests/test_extract.py scores the corpus with, and
# every seed in seeds/ uses) and, where its CMS has one, with that CMS's own kind ("readability"
# for pages with no CMS marks).
CMS_KIND = {"trs": "trs", "hanweb": "hanweb", "gd-platform": "gd_platform", "none": "readability"}
CRAWL_TIME = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
# Replayed sources that need no browser, so a crawl of them takes a few seconds.
CRAWLED = ["kaiping", "sznews", "chinanews"]
POOL_LOG = "crawler.extract_pool"


def _page(case: dict[str, Any]) -> bytes:
    return (CORPUS / case["file"]).read_bytes()


def _jobs() -> list[tuple[str, str, bytes, dict[str, Any]]]:
    """Return (kind, url, html, options) for every corpus page, once per kind it is read with.

    Every other job also passes a list date and the page's true charset as the forced encoding,
    so that each option crosses the process boundary."""
    jobs = []
    for case in CASES:
        headers = {"Content-Type": case["content_type"]} if case.get("content_type") else {}
        kinds = dict.fromkeys(["generic", CMS_KIND.get(case.get("cms", ""), "generic")])
        for kind in kinds:
            options: dict[str, Any] = {"headers": headers, "crawl_time": CRAWL_TIME}
            if len(jobs) % 2:
                options["list_date"] = datetime(2024, 6, 1, tzinfo=CST)
                options["encoding"] = case["encoding"]
            jobs.append((kind, case["url"], _page(case), options))
    return jobs


def _direct(kind: str, url: str, html: bytes, options: dict[str, Any]) -> ExtractedArticle:
    """Return what the registered extractor itself gives (the crawl's extraction before pools)."""
    return EXTRACTORS[kind](
        url,
        html,
        options.get("headers"),
        crawl_time=options["crawl_time"],
        list_date=options.get("list_date"),
        encoding=options.get("encoding"),
    )


def _assert_same(got: ExtractedArticle, want: ExtractedArticle, what: str) -> None:
    """Assert equal articles; repr() also tells apart equal instants in other time zones."""
    assert got == want, what
    assert repr(got) == repr(want), what


def _pids(pool: ExtractionPool) -> set[int]:
    """Return the pids of the pool's worker processes (none before its first page)."""
    return pool.pids()


def _alive(pid: int) -> bool:
    """Return True while `pid` is a process that has not ended (zombies count as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@contextmanager
def _pool(workers: int) -> Iterator[ExtractionPool]:
    pool = ExtractionPool(workers)
    try:
        yield pool
    finally:
        pool.close()


# ----- the same articles in a worker as in process ----------------------------------------------


def test_worker_gives_the_same_article_as_in_process_for_every_corpus_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = _jobs()
    assert len(jobs) > len(CASES)
    direct = [_direct(*job) for job in jobs]
    caplog.set_level(logging.WARNING)

    async def extract_all(pool: ExtractionPool, together: bool) -> list[ExtractedArticle]:
        calls = [pool.extract(kind, url, html, **options) for kind, url, html, options in jobs]
        if together:  # all pages queued at once: each answer must still reach its own page
            return list(await asyncio.gather(*calls))
        return [await call for call in calls]

    with _pool(0) as in_process:
        local = asyncio.run(extract_all(in_process, together=False))
        assert not in_process.pids()
    with _pool(1) as pool:
        pooled = asyncio.run(extract_all(pool, together=True))
        workers = _pids(pool)
        assert len(workers) == 1 and os.getpid() not in workers
        assert pool.restarts == 0

    for job, want, got_local, got_pooled in zip(jobs, direct, local, pooled, strict=True):
        what = f"{job[0]} on {job[1]}"
        _assert_same(got_local, want, what)
        _assert_same(got_pooled, want, what)
    # The comparison is worth something: the corpus pages are read, not emptied.
    assert sum(1 for article in direct if article.title and article.body) >= len(jobs) * 0.9
    assert not caplog.records, [r.getMessage()[:300] for r in caplog.records]


# ----- a page whose extraction raises ------------------------------------------------------------

_GBK_POST = (
    '<html><head><meta charset="{charset}"><title>通知</title></head><body>'
    '<div class="TRS_Editor"><p>开平市科工商务局发布生物医药产业合作通知，欢迎企业参加。</p></div>'
    "</body></html>"
)
# Real responses a site could send: GBK bytes declaring a charset Python knows as a codec but
# that is no page encoding (found by probing crawler/pages/encoding.py, which used to raise on
# them and so stored an empty article).
CODEC_PAGES = [
    ("meta idna", _GBK_POST.format(charset="idna").encode("gbk"), {}),
    (
        "header punycode",
        _GBK_POST.format(charset="gbk").encode("gbk"),
        {"Content-Type": "text/html; charset=punycode"},
    ),
    ("meta undefined", _GBK_POST.format(charset="undefined").encode("gbk"), {}),
]


@pytest.mark.parametrize(("name", "html", "headers"), CODEC_PAGES, ids=[c[0] for c in CODEC_PAGES])
def test_a_declared_codec_that_is_no_page_encoding_is_ignored(
    name: str, html: bytes, headers: dict[str, str]
) -> None:
    article = EXTRACTORS["generic"]("http://127.0.0.1/post.html", html, headers)
    assert article.title == "通知", name
    assert "生物医药产业合作通知" in article.body, name


@pytest.mark.parametrize("workers", [1, 0])
def test_a_page_whose_extraction_raises_gives_an_empty_article_and_a_warning(
    workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Not bytes at all: nothing the extractor can read (no page found raises any more).
    name, html, headers = "a number, not bytes", cast(bytes, 12345), {}
    url = "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_3299001.html"
    good_case = CASES[1]
    caplog.set_level(logging.WARNING, logger=POOL_LOG)

    async def run(pool: ExtractionPool) -> tuple[ExtractedArticle, ExtractedArticle]:
        broken = await pool.extract("generic", url, html, headers=headers, crawl_time=CRAWL_TIME)
        good = await pool.extract(
            "generic", good_case["url"], _page(good_case), crawl_time=CRAWL_TIME
        )
        return broken, good

    with _pool(workers) as pool:
        broken, good = asyncio.run(run(pool))
        assert pool.restarts == 0  # an exception in a worker does not break the pool
        assert len(_pids(pool)) == workers

    assert broken == ExtractedArticle(url=url, title="", body=""), name
    _assert_same(
        good,
        _direct("generic", good_case["url"], _page(good_case), {"crawl_time": CRAWL_TIME}),
        "after",
    )
    warnings = [r for r in caplog.records if r.name == POOL_LOG and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert message.startswith(f"extraction failed for {url}\nTraceback (most recent call last):")
    assert "crawler/pages/" in message  # the frames where it was raised
    assert message.rstrip().splitlines()[-1].startswith("AttributeError")


# ----- a worker that dies ------------------------------------------------------------------------


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _alive(pid), timeout=10, what=f"worker {pid} to die", every=0.02)


def test_a_killed_idle_worker_is_replaced_and_no_page_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = _jobs()[:12]
    caplog.set_level(logging.WARNING, logger=POOL_LOG)

    async def run(pool: ExtractionPool) -> None:
        first = await pool.extract(jobs[0][0], jobs[0][1], jobs[0][2], **jobs[0][3])
        _assert_same(first, _direct(*jobs[0]), "before the kill")
        (old,) = _pids(pool)
        _kill(old)
        for number, job in enumerate(jobs[1:], 1):
            got = await pool.extract(job[0], job[1], job[2], **job[3])
            _assert_same(got, _direct(*job), f"page {number} after the kill: {job[1]}")
            assert pool.restarts == 1
            if number == 1:  # the page that found the pool broken went to a new worker
                assert pool.pids()
                assert f"an extraction worker died (at {job[1]})" in caplog.text
        new = _pids(pool)
        assert len(new) == 1 and old not in new and all(_alive(pid) for pid in new)

    with _pool(1) as pool:
        asyncio.run(run(pool))
    assert caplog.text.count("an extraction worker died") == 1


def test_a_worker_killed_with_a_page_in_hand_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = _jobs()[:8]
    caplog.set_level(logging.WARNING, logger=POOL_LOG)

    async def run(pool: ExtractionPool) -> None:
        await pool.extract(jobs[0][0], jobs[0][1], jobs[0][2], **jobs[0][3])
        (old,) = _pids(pool)
        # Stopped, the worker cannot finish the page it is sent: the page is surely in its
        # hands (in the call queue or being read) when it is killed.
        os.kill(old, signal.SIGSTOP)
        try:
            held = asyncio.create_task(
                pool.extract(jobs[1][0], jobs[1][1], jobs[1][2], **jobs[1][3])
            )
            await asyncio.sleep(0.2)  # the task has sent the page and waits for the worker
            assert not held.done()
        finally:
            _kill(old)
        _assert_same(await held, _direct(*jobs[1]), "the page held by the killed worker")
        assert pool.restarts == 1
        assert f"an extraction worker died (at {jobs[1][1]})" in caplog.text
        assert pool.pids()  # the held page was read by the new worker
        for job in jobs[2:]:
            got = await pool.extract(job[0], job[1], job[2], **job[3])
            _assert_same(got, _direct(*job), job[1])
        new = _pids(pool)
        assert len(new) == 1 and old not in new and all(_alive(pid) for pid in new)
        assert pool.restarts == 1

    with _pool(1) as pool:
        asyncio.run(run(pool))


async def _kill_with_pages_in_hand(
    pool: ExtractionPool, jobs: list[tuple[str, str, bytes, dict[str, Any]]]
) -> tuple[int, list[ExtractedArticle]]:
    """Start the pool's worker, stop it, hand it all `jobs` at once, kill it; return the dead
    worker's pid and the articles of the jobs."""
    first = jobs[0]
    await pool.extract(first[0], first[1], first[2], **first[3])
    (old,) = _pids(pool)
    os.kill(old, signal.SIGSTOP)
    try:
        held = [
            asyncio.create_task(pool.extract(kind, url, html, **options))
            for kind, url, html, options in jobs
        ]
        await asyncio.sleep(0.2)  # every task has sent its page and waits for the worker
        assert not any(task.done() for task in held)
    finally:
        _kill(old)
    return old, list(await asyncio.gather(*held))


def test_a_worker_killed_with_several_pages_in_hand_loses_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = _jobs()[:10]
    held, later = jobs[:6], jobs[6:]
    caplog.set_level(logging.WARNING, logger=POOL_LOG)

    async def run(pool: ExtractionPool) -> None:
        old, articles = await _kill_with_pages_in_hand(pool, held)
        for job, got in zip(held, articles, strict=True):
            _assert_same(got, _direct(*job), f"held page {job[1]}")
        assert pool.restarts == 1
        for job in later:
            got = await pool.extract(job[0], job[1], job[2], **job[3])
            _assert_same(got, _direct(*job), f"later page {job[1]}")
        new = _pids(pool)
        assert len(new) == 1 and old not in new and all(_alive(pid) for pid in new)

    with _pool(1) as pool:
        asyncio.run(run(pool))


def test_one_worker_death_is_one_restart_however_many_pages_it_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=POOL_LOG)
    with _pool(1) as pool:
        asyncio.run(_kill_with_pages_in_hand(pool, _jobs()[:6]))
        assert (pool.restarts, caplog.text.count("an extraction worker died")) == (1, 1)


def test_a_page_two_workers_die_on_is_given_up_not_read_in_the_crawl_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As if the page crashed whatever reads it: the crawl process must not read it itself."""
    job, after = _jobs()[0], _jobs()[1]
    caplog.set_level(logging.WARNING, logger=POOL_LOG)
    killed: list[int] = []
    stop = threading.Event()

    def kill_two_workers(pool: ExtractionPool) -> None:
        # A new worker runs its warm-up before it reads a page: it dies holding the page.
        while not stop.is_set() and len(killed) < 2:
            for pid in _pids(pool) - set(killed):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.002)

    with _pool(1) as pool:
        killer = threading.Thread(target=kill_two_workers, args=(pool,), daemon=True)
        killer.start()
        try:
            given_up = asyncio.run(pool.extract(job[0], job[1], job[2], **job[3]))
        finally:
            stop.set()
            killer.join(timeout=10)
        assert len(killed) == 2 and pool.restarts == 2
        later = asyncio.run(pool.extract(after[0], after[1], after[2], **after[3]))
        (worker,) = _pids(pool)
        assert worker not in killed and worker != os.getpid()
    assert given_up == ExtractedArticle(url=job[1], title="", body="")
    assert f"the extraction worker died twice on this page ({job[1]})" in caplog.text
    _assert_same(later, _direct(*after), "the next page, in a third worker")


# ----- real crawls -------------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, int, str]]:
    """Return {pid: (ppid, process group, command line)} of every live process (not zombies)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X"):
            found[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return found


def _group(pgid: int) -> set[int]:
    """Return the pids of the live processes of process group `pgid`."""
    return {pid for pid, (_, group, _) in _processes().items() if group == pgid}


def _worker_children(pid: int) -> dict[int, tuple[int, str]]:
    """Return {pid: (process group, command line)} of the live extraction workers of `pid`."""
    return {
        child: (group, cmdline)
        for child, (ppid, group, cmdline) in _processes().items()
        if ppid == pid and "crawler.extract_worker" in cmdline
    }


def _workers(children: dict[int, tuple[int, str]]) -> set[int]:
    return set(children)


def _start_crawl(
    replay: ReplayServer, env: dict[str, str], log_file: Path, sources: list[str], **settings: Any
) -> subprocess.Popen[bytes]:
    """Start `scrapy crawl sources` of `sources` on the replay as the daemon does."""
    argv = crawl_argv(replay.url, sources, LOG_FILE=log_file, **settings)
    return start_crawl(argv, env, stderr=subprocess.PIPE)


def _kill_group(crawl: subprocess.Popen[bytes]) -> None:
    """SIGKILL whatever is left of the crawl's process group (nothing, normally)."""
    try:
        os.killpg(crawl.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if crawl.poll() is None:
        crawl.wait(timeout=30)
    if crawl.stderr:
        crawl.stderr.close()


def _crawl_watching_children(
    replay: ReplayServer,
    env: dict[str, str],
    log_file: Path,
    sources: list[str],
    **settings: Any,
) -> tuple[int, dict[int, tuple[int, str]]]:
    """Run one crawl to a normal end; return its pid and the extraction workers it had
    meanwhile, after checking that none of them, nor anything else of its group, is left."""
    crawl = _start_crawl(replay, env, log_file, sources, **settings)
    seen: dict[int, tuple[int, str]] = {}
    try:
        deadline = time.monotonic() + 60
        while crawl.poll() is None and time.monotonic() < deadline:
            seen |= _worker_children(crawl.pid)
            time.sleep(0.02)
        assert crawl.poll() is not None, "the crawl did not end within 60 s"
        stderr = crawl.stderr.read().decode("utf-8", "replace") if crawl.stderr else ""
        assert crawl.returncode == 0, stderr[-3000:]
        wait_until(
            lambda: not _group(crawl.pid) and not any(_alive(pid) for pid in seen),
            timeout=10,
            what="the ended crawl's children and process group to be gone",
            every=0.05,
        )
    finally:
        _kill_group(crawl)
    return crawl.pid, seen


def _stored(database_url: str) -> list[tuple[Any, ...]]:
    """Return (url, title, body, published_at, source, doc number, attachments) of every post."""
    return query(
        database_url,
        "select a.url, v.title, v.body, v.published_at, v.source_name, v.doc_number, "
        "v.attachments from articles a join article_versions v on v.article_id = a.id "
        "order by a.url, v.version_no",
    )


def test_a_crawl_stores_the_same_posts_with_and_without_workers(tmp_path: Path) -> None:
    stored: dict[int, list[tuple[Any, ...]]] = {}
    with ReplayServer(CRAWLED) as replay:
        posts = sorted(
            replay.article_url(site, post)
            for site in CRAWLED
            for post in replay.site(site).column.all()
        )
        for workers in (1, 0):
            folder = tmp_path / f"workers{workers}"
            folder.mkdir()
            env = monitor_env(folder, replay.url, None)
            upgrade(env["DATABASE_URL"])
            _, children = _crawl_watching_children(
                replay, env, folder / "crawl.log", CRAWLED, EXTRACT_WORKERS=workers
            )
            assert len(_workers(children)) == workers  # one worker all along, or none
            stored[workers] = _stored(env["DATABASE_URL"])
            assert [row[0] for row in stored[workers]] == posts
            log = (folder / "crawl.log").read_text(encoding="utf-8")
            assert "extraction failed" not in log and "extraction worker died" not in log

    assert stored[1] == stored[0]
    assert all(row[1] and row[2] for row in stored[1])  # titles and bodies, not empty articles
    assert sum(1 for row in stored[1] if row[3] is not None) >= len(posts) * 0.9


def test_no_worker_outlives_a_crawl_that_ends_normally(tmp_path: Path) -> None:
    with ReplayServer(["kaiping"]) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        upgrade(env["DATABASE_URL"])
        # The helper fails unless, once the crawl has exited with 0, every process it started
        # and every member of its process group is gone (within 10 s).
        crawl_pid, children = _crawl_watching_children(
            replay, env, tmp_path / "crawl.log", ["kaiping"], EXTRACT_WORKERS=1
        )
    assert len(_workers(children)) == 1, children  # there was a worker to outlive it
    assert {group for group, _ in children.values()} == {crawl_pid}


def test_no_worker_outlives_its_crawl_when_the_group_is_killed(tmp_path: Path) -> None:
    with ReplayServer(CRAWLED) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        upgrade(env["DATABASE_URL"])
        log_file = tmp_path / "crawl.log"
        crawl = _start_crawl(
            replay,
            env,
            log_file,
            CRAWLED,
            EXTRACT_WORKERS=1,
            DOWNLOAD_DELAY=0.25,  # about 10 s of pages: killed well before the end
            LOG_LEVEL="DEBUG",  # "Scraped from ...": an article was extracted and yielded
        )
        try:

            def scraped() -> int:
                log = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
                return log.count("Scraped from <200 ")

            wait_until(lambda: scraped() >= 3, timeout=60, what="3 extracted posts", every=0.05)
            children = _worker_children(crawl.pid)
            workers = _workers(children)
            assert len(workers) == 1, children
            # Started with "spawn" but not in a session of their own: in the crawl's group.
            assert {group for group, _ in children.values()} == {crawl.pid}
            assert crawl.poll() is None
            os.killpg(crawl.pid, signal.SIGKILL)  # as CrawlRunner.kill does after its grace time
            crawl.wait(timeout=30)
            assert crawl.returncode == -signal.SIGKILL
            wait_until(
                lambda: not _group(crawl.pid) and not any(_alive(pid) for pid in children),
                timeout=10,
                what="the killed crawl's worker and group to be gone",
                every=0.05,
            )
        finally:
            _kill_group(crawl)
    assert "Spider closed" not in log_file.read_text(encoding="utf-8")  # killed mid-crawl


# ----- list pages and content hashes in the worker ---------------------------------------------

LIST_PAGES = Path(__file__).parent / "pages"
LIST_JOBS = [
    (
        "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/index.html",
        "kaiping_list_index.html",
        {"Content-Type": "text/html; charset=utf-8"},
        {
            "article_pattern": r"/kpskgsj/zwgk/dwdt/content/post_\d+\.html$",
            "list_pattern": r"/kpskgsj/zwgk/dwdt/index_\d+\.html$",
        },
    ),
    (
        "http://www.example.gov.cn/gzdt/index.html",
        "trs_list_index.html",
        {},
        {"article_pattern": r"/t\d{8}_\d+\.html$", "list_pattern": r"/gzdt/index_\d+\.html$"},
    ),
    (
        "http://www.kaiping.gov.cn/gkmlpt/api/all/1",
        "gkmlpt_list.json",
        {"Content-Type": "application/json"},
        {"article_pattern": r"kaiping\.gov\.cn/gkmlpt/content/\d+/\d+/post_\d+\.html$"},
    ),
]


def test_list_pages_read_in_a_worker_are_the_pages_read_in_process() -> None:
    async def read_all(pool: ExtractionPool) -> list[ListPage]:
        return list(
            await asyncio.gather(
                *(
                    pool.read_list(url, (LIST_PAGES / name).read_bytes(), headers, **options)
                    for url, name, headers, options in LIST_JOBS
                )
            )
        )

    want = [
        parse_list(url, (LIST_PAGES / name).read_bytes(), headers, **options)
        for url, name, headers, options in LIST_JOBS
    ]
    assert all(page.entries for page in want)
    with _pool(1) as pool:
        assert asyncio.run(read_all(pool)) == want
        assert len(pool.pids()) == 1
    with _pool(0) as in_process:
        assert asyncio.run(read_all(in_process)) == want


def test_a_bad_list_pattern_raises_from_the_worker_as_in_process() -> None:
    url, name, headers, _ = LIST_JOBS[0]
    html = (LIST_PAGES / name).read_bytes()
    with _pool(1) as pool:
        with pytest.raises(re.error):
            asyncio.run(pool.read_list(url, html, headers, article_pattern="post_(\\d+"))
        assert pool.restarts == 0  # an error raised in a worker does not break it


def test_the_worker_hashes_articles_as_the_store_does() -> None:
    jobs = _jobs()[:6]

    async def hashed(pool: ExtractionPool) -> list[tuple[ExtractedArticle, str | None]]:
        return [await pool.extract_hashed(k, u, h, **o) for k, u, h, o in jobs]

    with _pool(1) as pool:
        got = asyncio.run(hashed(pool))
    for job, (article, digest) in zip(jobs, got, strict=True):
        _assert_same(article, _direct(*job), job[1])
        assert digest == content_hash(article.title, article.body), job[1]


def test_an_idle_worker_seen_dying_is_replaced_by_the_next_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = _jobs()[:2]
    caplog.set_level(logging.WARNING, logger=POOL_LOG)

    async def run(pool: ExtractionPool) -> None:
        await pool.extract(jobs[0][0], jobs[0][1], jobs[0][2], **jobs[0][3])
        (old,) = _pids(pool)
        os.kill(old, signal.SIGKILL)
        for _ in range(500):  # the event loop reads the end of the dead worker's socket
            if pool.restarts:
                break
            await asyncio.sleep(0.01)
        assert pool.restarts == 1 and not _pids(pool)
        assert "an extraction worker died while idle" in caplog.text
        got = await pool.extract(jobs[1][0], jobs[1][1], jobs[1][2], **jobs[1][3])
        _assert_same(got, _direct(*jobs[1]), "the next page")
        (new,) = _pids(pool)
        assert new != old and pool.restarts == 1

    with _pool(1) as pool:
        asyncio.run(run(pool))


def test_a_charset_declared_only_by_the_content_type_header_reaches_the_worker() -> None:
    from scrapy.http import HtmlResponse

    from crawler.spiders.sources import _page_headers

    # A short Shift_JIS page (a Japanese partner's notice): the charset detector misreads it,
    # so only the header's charset decodes it right.
    title = "医薬協力"
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{title}</p>"
    response = HtmlResponse(
        "http://127.0.0.1:1/content/post_1.html",
        body=(html + "</body></html>").encode("shift_jis"),
        headers={"Server": "nginx", "ETag": '"x"', "Content-Type": "text/html; charset=Shift_JIS"},
    )
    headers = _page_headers(response)
    assert headers == {"content-type": "text/html; charset=Shift_JIS"}
    pool = ExtractionPool(workers=1)
    try:
        read = [
            asyncio.run(
                pool.extract(
                    "generic",
                    response.url,
                    response.body,
                    headers=given,
                    crawl_time=datetime.now(UTC),
                )
            ).title
            for given in (headers, {})
        ]
    finally:
        pool.close()
    assert read[0] == title
    assert read[1] != title  # without the header the page is misread: the header matters
    assert _page_headers(HtmlResponse("http://127.0.0.1:1/", body=b"<p>x</p>")) == {}


def test_workers_started_before_the_first_page_are_the_ones_that_read_it() -> None:
    async def main() -> tuple[set[int], set[int], str]:
        pool = ExtractionPool(workers=1)
        try:
            pool.start()
            started = pool.pids()
            article = await pool.extract(
                "generic",
                "http://127.0.0.1:1/content/post_1.html",
                "<html><body><h1>開平生物醫藥對接會</h1><p>雙方簽約。</p></body></html>".encode(),
                crawl_time=datetime.now(UTC),
            )
            return started, pool.pids(), article.title
        finally:
            pool.close()

    started, after, title = asyncio.run(main())
    assert len(started) == 1
    assert after == started  # no second worker was started for the page
    assert title == "開平生物醫藥對接會"

    in_process = ExtractionPool(workers=0)  # one core: pages are read in the crawl itself

    async def start_in_process() -> set[int]:
        in_process.start()
        return in_process.pids()

    assert asyncio.run(start_in_process()) == set()


def test_a_worker_runs_nicer_than_its_crawl() -> None:
    from crawler.children import WORKER_NICE

    async def main() -> set[int]:
        pool = ExtractionPool(workers=1)
        try:
            await pool.extract(
                "generic",
                "http://127.0.0.1:1/content/post_1.html",
                "<html><body><h1>開平</h1><p>雙方簽約。</p></body></html>".encode(),
                crawl_time=datetime.now(UTC),
            )  # answered: the worker has set its priority by now
            return {os.getpriority(os.PRIO_PROCESS, pid) for pid in pool.pids()}
        finally:
            pool.close()

    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert asyncio.run(main()) == {min(ours + WORKER_NICE, 19)}


def test_a_worker_freezes_its_start_up_and_collects_garbage_less_often() -> None:
    import pickle
    import socket
    import struct
    import subprocess
    import sys

    from crawler.gc_tuning import GC_THRESHOLD

    ours, theirs = socket.socketpair()
    probe = (
        "import gc, sys, crawler.extract_pool as pool\n"
        "pool.FUNCTIONS['gc'] = lambda: (gc.get_threshold(), gc.get_freeze_count())\n"
        "pool.serve(int(sys.argv[1]))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", probe, str(theirs.fileno())], pass_fds=[theirs.fileno()]
    )
    theirs.close()
    try:
        frame = pickle.dumps((1, "gc", ()))
        ours.sendall(struct.pack("!I", len(frame)) + frame)
        with ours.makefile("rb") as answers:
            (size,) = struct.unpack("!I", answers.read(4))
            job_id, ok, (threshold, frozen) = pickle.loads(answers.read(size))
    finally:
        ours.close()
        worker.wait(timeout=30)
    assert (job_id, ok) == (1, True)
    assert threshold == GC_THRESHOLD
    assert frozen > 1000  # the modules and warm-up of the worker, out of every collection


# ----- the wire -----------------------------------------------------------------------------


def test_pages_and_answers_cross_the_wire_as_marshal_whole() -> None:
    """Every field of an article and of a list page, and each datetime's zone, survives the
    marshal wire of the per-page functions; a new field of ExtractedArticle must be added to
    the codec (this test then fails)."""
    import dataclasses
    from zoneinfo import ZoneInfo

    from crawler.extract_pool import decode_answer, decode_job, encode_answer, encode_job
    from crawler.pages.model import Attachment, ListEntry

    shanghai = ZoneInfo("Asia/Shanghai")
    crawl_time = datetime(2026, 11, 22, 3, 4, 5, 678, tzinfo=UTC)
    listed = datetime(2026, 11, 21, 9, 30, tzinfo=shanghai)
    args = (
        "trs",
        "http://a.gov.cn/t1.html",
        b"<html>\xe5\x8d\x97</html>",
        {"ETag": '"x"'},
        crawl_time,
        listed,
        "gb18030",
    )
    payload = encode_job(7, "extract", args)
    assert payload[:1] == b"M"
    assert decode_job(payload) == (7, "extract", args)
    assert decode_job(payload)[2][5].tzinfo is shanghai

    article = ExtractedArticle(
        url="http://a.gov.cn/t1.html",
        title="港大与深圳共建生物医药研究院",
        body="第一段\n第二段",
        published_at=listed,
        source="深圳市科技创新局",
        attachments=[Attachment("http://a.gov.cn/f.pdf", "附件1", "pdf")],
        doc_number="深科技〔2026〕12号",
        description="摘要",
    )
    unset = [f.name for f in dataclasses.fields(article) if getattr(article, f.name) in (None, [])]
    assert unset == []  # every field set, so that a field the codec drops shows
    back = decode_answer(encode_answer("extract", (7, True, (article, "hash", None))))
    assert back == (7, True, (article, "hash", None))
    assert back[2][0].published_at.tzinfo is shanghai

    naive = ExtractedArticle(url="u", title="t", body="b", published_at=datetime(2020, 1, 2))
    assert decode_answer(encode_answer("extract", (1, True, (naive, None, "tb"))))[2][0] == naive

    options = {
        "article_pattern": r"t\d+",
        "list_pattern": None,
        "encoding": None,
        "crawl_time": crawl_time,
    }
    list_args = ("http://a.gov.cn/list.html", b"<html></html>", {}, options)
    assert decode_job(encode_job(8, "list", list_args)) == (8, "list", list_args)
    page = ListPage(
        url="http://a.gov.cn/list.html",
        entries=[
            ListEntry("http://a.gov.cn/t1.html", "标题", listed),
            ListEntry("http://a.gov.cn/t2.html"),
        ],
        next_pages=["http://a.gov.cn/list_1.html"],
    )
    assert decode_answer(encode_answer("list", (8, True, (page, None)))) == (8, True, (page, None))


def test_failures_and_other_functions_cross_the_wire_pickled() -> None:
    from crawler.extract_pool import decode_answer, decode_job, encode_answer, encode_job

    failure = re.error("bad pattern")
    payload = encode_answer("list", (3, False, failure))
    assert payload[:1] == b"\x80"
    job_id, ok, value = decode_answer(payload)
    assert (job_id, ok, type(value), str(value)) == (3, False, re.error, "bad pattern")
    other = encode_job(4, "gc", ())
    assert other[:1] == b"\x80" and decode_job(other) == (4, "gc", ())
    assert decode_answer(encode_answer("gc", (4, True, {"any": object.__name__}))) == (
        4,
        True,
        {"any": "object"},
    )


class _OwnHeaders(dict[str, str]):
    """A caller's own mapping type: marshal holds only plain dicts."""


def test_arguments_marshal_cannot_hold_go_pickled() -> None:
    from crawler.extract_pool import decode_job, encode_job

    args = (
        "generic",
        "http://a.gov.cn/",
        b"<html></html>",
        _OwnHeaders(a="1"),
        CRAWL_TIME,
        None,
        None,
    )
    payload = encode_job(5, "extract", args)
    assert payload[:1] == b"\x80"
    assert decode_job(payload) == (5, "extract", args)
