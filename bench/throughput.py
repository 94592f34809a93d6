"""Full crawl throughput: `monitor run --once` over five replayed sources, beside a bare spider.

Our side fetches, extracts, normalises, stores and classifies every post of five sources; the
bare spider (bench/bare_spider.py, same settings) fetches exactly the URLs our crawl fetched and
drops them. Runs alternate which goes first; each run's ratio is ours / bare.

The sources are the replayed sites that plain HTTP can read (kaiping, chinanews, sznews) and
two Kaiping-layout bulk columns: the zhongshan replay draws its lists with a script and the
liangjiang replay sits behind a cookie challenge, so both go through the browser, which a
bare spider cannot match.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import (
    MB,
    Measured,
    World,
    bulk_seed,
    figure,
    log,
    python,
    run_measured,
    shipped_seed,
    write_seeds,
)
from crawler.config import PROJECT_ROOT
from crawler.migrate import upgrade
from replay import ReplayServer
from replay.sites.bulk import bulk_id

BARE_SPIDER = PROJECT_ROOT / "bench" / "bare_spider.py"
# The replay serves every site from one host (127.0.0.1:port), where real sites are five hosts
# with a per-host limit of 4 each: both sides get the five hosts' worth on the one.
PER_HOST = 4 * 5
AIM_RATIO = 0.7
PLAIN_SITES = ["kaiping", "chinanews", "sznews"]
BULK_COLUMNS = 2


def fetched_urls(replay: ReplayServer) -> list[str]:
    """Return the site URLs the replay served since its log was last cleared, in order."""
    return [
        replay.url + record.path
        for record in replay.requests
        if record.method == "GET" and not record.path.startswith("/robots.txt")
    ]


def run_ours(
    root: Path, replay: ReplayServer, seeds: list[dict[str, Any]], number: int | str, expected: int
) -> Measured:
    """Crawl and classify every post of the five sources into a new, empty database."""
    world = World(
        root / f"ours{number}",
        replay.url,
        extra={
            "MONITOR_CRAWL_SETTINGS": json.dumps({"CONCURRENT_REQUESTS_PER_DOMAIN": str(PER_HOST)})
        },
    )
    write_seeds(world.seeds_dir, seeds)
    # The schema is created first, as `monitor db upgrade` does once on installing: a cycle
    # of a running monitor never creates it (alembic's 0.3 s would count against each run).
    upgrade(world.database_url)
    replay.clear_log()
    done = world.once(f"ours{number}").check("monitor run --once (throughput)")
    stored = int(world.scalar("select count(*) from articles"))
    classified = int(
        world.scalar("select count(*) from article_versions where classified_at is not null")
    )
    if stored != expected or classified != expected:
        raise RuntimeError(
            f"expected {expected} articles, stored {stored}, classified {classified}"
        )
    # The crawl child's share of the wall time; the rest is start-up and classification.
    done.inner = float(
        world.scalar(
            "select (julianday(max(finished_at)) - julianday(min(started_at))) * 86400 "
            "from crawl_runs"
        )
    )
    return done


def run_bare(root: Path, replay: ReplayServer, urls_file: Path, number: int) -> Measured:
    """Fetch the URLs of `urls_file` with the bare spider and the project's settings."""
    world = World(root / f"bare{number}", replay.url)
    world.seeds_dir.mkdir(parents=True, exist_ok=True)
    argv = python(
        "-m",
        "scrapy",
        "runspider",
        str(BARE_SPIDER),
        "-a",
        f"urls={urls_file}",
        "-s",
        f"REPLAY_URL={replay.url}",
        "-s",
        "STORE_ENABLED=0",
        "-s",
        f"SEEDS_DIR={world.seeds_dir}",
        "-s",
        "LOG_LEVEL=INFO",
        "-s",
        f"CONCURRENT_REQUESTS_PER_DOMAIN={PER_HOST}",
    )
    return run_measured(argv, world.env(), world.root / "bare.log").check("bare spider")


def measure(root: Path, posts: int, runs: int) -> dict[str, Any]:
    """Return the throughput figures over five sources of `posts` posts each."""
    per_page = 15
    max_pages = min(500, math.ceil(posts / per_page) + 2)
    seeds = [shipped_seed(site, max_pages=max_pages) for site in PLAIN_SITES]
    seeds += [bulk_seed(bulk_id(n), max_pages=max_pages) for n in range(1, BULK_COLUMNS + 1)]
    expected = posts * len(seeds)
    ours_rates: list[float] = []
    bare_rates: list[float] = []
    ratios: list[float] = []
    crawl_peaks: list[float] = []
    runs_raw = []
    log(f"throughput: replay of {len(seeds)} sources x {posts} posts")
    # The replay keeps each page it renders: a real site's rendering costs the crawling
    # machine nothing, and here it would take CPU from whichever side uses both cores.
    replay = ReplayServer(
        PLAIN_SITES, size=posts, bulk=BULK_COLUMNS, bulk_size=posts, cache_pages=True
    )
    with replay:
        urls_file = root / "urls.txt"
        # A warm-up crawl, not measured: it renders every page once, gives the bare spider
        # its URL list, and leaves both sides the same warm caches (files, lexicon).
        log("throughput: warm-up crawl")
        run_ours(root, replay, seeds, "warm-up", expected)
        urls_file.write_text("\n".join(fetched_urls(replay)) + "\n", "utf-8")
        for number in range(runs):
            # Runs alternate which side goes first.
            if number % 2 == 1:
                bare = run_bare(root, replay, urls_file, number)
                ours = run_ours(root, replay, seeds, number, expected)
            else:
                ours = run_ours(root, replay, seeds, number, expected)
                bare = run_bare(root, replay, urls_file, number)
            ours_rate, bare_rate = expected / ours.wall, expected / bare.wall
            ours_rates.append(ours_rate)
            bare_rates.append(bare_rate)
            ratios.append(ours_rate / bare_rate)
            crawl_peaks.append(ours.child_peak / MB)
            runs_raw.append(
                {
                    "ours_wall": ours.wall,
                    "ours_cpu": ours.cpu,
                    "ours_crawl_process_s": ours.inner,
                    "bare_wall": bare.wall,
                    "bare_cpu": bare.cpu,
                    "crawl_peak_mb": ours.child_peak / MB,
                }
            )
            log(
                f"throughput run {number + 1}/{runs}: ours {ours_rate:.1f}/s "
                f"({ours.wall:.1f}s, {ours.cpu:.1f}s CPU), bare {bare_rate:.1f}/s "
                f"({bare.wall:.1f}s), ratio {ours_rate / bare_rate:.2f}"
            )
        fetched = len(urls_file.read_text("utf-8").split())
    ratio = figure(ratios, "x bare", f">= {AIM_RATIO}", digits=3)
    ratio["ok"] = ratio["median"] is not None and ratio["median"] >= AIM_RATIO
    return {
        "figures": {
            "throughput.ours_articles_per_s": figure(ours_rates, "articles/s", digits=1),
            "throughput.bare_articles_per_s": figure(bare_rates, "articles/s", digits=1),
            "throughput.ratio": ratio,
            "memory.crawl_peak_mb": figure(
                crawl_peaks, "MB", digits=0, note=f"crawl process of the {expected}-post crawl"
            ),
        },
        "detail": {
            "sources": [seed["id"] for seed in seeds],
            "posts_per_source": posts,
            "articles": expected,
            "urls_fetched": fetched,
            "runs": runs_raw,
        },
    }
