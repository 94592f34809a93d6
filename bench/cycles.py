"""Idle cycles over many sources, and the cost of a cycle as the stored history grows.

One replay serves `sources` bulk sources (`bulk0001`...) of one post each. After a baseline
crawl (one stored article per source), each phase measures `monitor run --once` when nothing
is new (idle) and when 10 posts are new (2 on each of 5 sources); then synthetic history is
written straight into the database until it holds `history` articles, and both are measured
again. The ratio of each run at the large history to the same run at the small one shows
whether any step scans the history.
"""

from __future__ import annotations

import collections
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text

from bench.common import MB, Measured, World, bulk_seed, figure, log, write_seeds
from crawler.models import Article, ArticleVersion
from crawler.urls import canonical_url
from replay import ReplayServer
from replay.sites.bulk import bulk_id

AIM_IDLE_SECONDS = 30.0
AIM_GROWTH = 1.2
LIST_PATH = "/kpskgsj/zwgk/dwdt/index.html"
NEW_TITLE = "{source}召开生物医药产业合作推进会（第{number}次）"
NEW_PARAGRAPHS = [
    "{source}与香港科技大学签署合作协议，共建生物医药联合实验室，推动创新药物研发与成果转化。",
    "会议介绍了第{number}批产学研合作项目，涉及医疗器械、临床研究和产业孵化。",
]

# The look-ups a cycle makes on tables that grow with the history, as crawler/ and monitor/
# write them. (The list-page validators are read whole, once per crawl: one row per list page.)
QUERIES = {
    "due revisits (CrawlMemory.due_revisits)": (
        "select source_id, url, list_url from articles "
        "where next_check_at <= :now and withdrawn_at is null order by next_check_at, id"
    ),
    "known posts (CrawlMemory.known)": (
        "select canonical_url, title from articles where canonical_url in (:canonical)"
    ),
    "gone from list (CrawlMemory.missing_from_list)": (
        "select url, canonical_url, published_at from articles where source_id = :source "
        "and list_url = :list_url and withdrawn_at is null "
        "and published_at >= :oldest and published_at < :newest"
    ),
    "store lookup (store_article)": "select id from articles where canonical_url = :canonical",
    "latest runs (CrawlRunner._outcomes)": (
        "select id from crawl_runs where source_id in (:source) and started_at >= :now order by id"
    ),
    "unclassified versions (process_new_versions)": (
        "select id from article_versions where classified_at is null and id > 0 "
        "order by id limit 200"
    ),
    "story window (StoryIndex.load)": (
        "select id, minhash, story_id from articles where minhash is not null "
        "and story_id is not null and first_seen_at >= :now"
    ),
    "latest posts (health._post_dates)": (
        "select published_at from articles where source_id = :source "
        "and published_at is not null order by published_at desc limit 20"
    ),
    "undated posts (health._post_dates)": (
        "select first_seen_at from articles where source_id = :source "
        "and published_at is null order by first_seen_at desc limit 20"
    ),
    "due deliveries (dispatch_due)": (
        "select id from deliveries where state = 'pending' and next_attempt_at <= :now"
    ),
}


def requests_per_source(replay: ReplayServer) -> tuple[dict[str, int], int]:
    """Return the requests each source received since the log was cleared, and how many got 304."""
    counts: collections.Counter[str] = collections.Counter()
    not_modified = 0
    for record in replay.requests:
        site = record.path.split("/")[1]
        if site.startswith("bulk"):
            counts[site] += 1
            not_modified += record.status == 304
    return dict(counts), not_modified


def publish_new(replay: ReplayServer, sources: list[str], number: int) -> None:
    """Publish two new posts on each of `sources`."""
    for source in sources:
        for extra in range(2):
            count = number * 10 + extra
            replay.publish(
                source,
                NEW_TITLE.format(source=source, number=count),
                [p.format(source=source, number=count) for p in NEW_PARAGRAPHS],
            )


def insert_history(world: World, replay: ReplayServer, sources: int, total: int) -> int:
    """Write synthetic old articles (one version each) until the database holds `total`."""
    engine = create_engine(world.database_url)
    rng = random.Random(7)
    try:
        with engine.begin() as conn:
            present = conn.execute(select(func.count()).select_from(Article)).scalar_one()
            first_id = (conn.execute(select(func.max(Article.id))).scalar_one() or 0) + 1
            oldest = conn.execute(select(func.min(Article.published_at))).scalar_one()
        missing = max(0, total - present)
        oldest = (oldest or datetime(2024, 1, 1)).replace(tzinfo=UTC) - timedelta(days=1)
        now = datetime.now(UTC)
        batch = 5000
        for start in range(0, missing, batch):
            articles, versions = [], []
            for index in range(start, min(missing, start + batch)):
                source = bulk_id(index % sources + 1)
                url = (
                    f"{replay.url}/{source}/kpskgsj/zwgk/dwdt/content/post_{9_000_000 + index}.html"
                )
                published = oldest - timedelta(hours=6 * (index // sources) + rng.randint(0, 5))
                digest = f"{rng.getrandbits(256):064x}"
                title = f"{source}历史动态第{index}条：产业园区座谈会召开"
                due = now + timedelta(days=rng.randint(1, 7)) if index % 20 == 0 else None
                article_id = first_id + index
                articles.append(
                    {
                        "id": article_id,
                        "source_id": source,
                        "canonical_url": canonical_url(url),
                        "url": url,
                        "title": title,
                        "published_at": published,
                        "content_hash": digest,
                        "first_seen_at": now,
                        "last_seen_at": now,
                        "next_check_at": due,
                        "checks": 4 if due else 5,
                        "list_url": f"{replay.url}/{source}{LIST_PATH}",
                    }
                )
                versions.append(
                    {
                        "article_id": article_id,
                        "version_no": 1,
                        "title": title,
                        "body": f"{title}。" * 8,
                        "published_at": published,
                        "source_name": "开平市科工商务局",
                        "attachments": [],
                        "content_hash": digest,
                        "fetched_at": now,
                        "baseline": True,
                        "classified_at": now,
                        "topics": [],
                        "parties": [],
                    }
                )
            with engine.begin() as conn:
                conn.execute(insert(Article), articles)
                conn.execute(insert(ArticleVersion), versions)
        with engine.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(Article)).scalar_one())
    finally:
        engine.dispose()


def query_plans(world: World, replay: ReplayServer) -> dict[str, list[str]]:
    """Return SQLite's plan of each look-up a cycle makes (`QUERIES`)."""
    source = bulk_id(1)
    list_url = f"{replay.url}/{source}{LIST_PATH}"
    params = {
        "source": source,
        "list_url": list_url,
        "now": datetime.now(UTC).isoformat(),
        "canonical": canonical_url(list_url),
        "oldest": "2000-01-01",
        "newest": "2100-01-01",
    }
    engine = create_engine(world.database_url)
    try:
        with engine.connect() as conn:
            return {
                name: [row[-1] for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql), params)]
                for name, sql in QUERIES.items()
            }
    finally:
        engine.dispose()


def full_scans(plans: dict[str, list[str]]) -> list[str]:
    """Return the look-ups whose plan reads a whole table (SQLite's SCAN, even over an index)."""
    return [
        name
        for name, steps in plans.items()
        if any(step.startswith("SCAN") and "(subquery" not in step for step in steps)
    ]


def run_phase(
    world: World, replay: ReplayServer, label: str, runs: int, offset: int, sources: int
) -> dict[str, list[Any]]:
    """Measure `runs` idle cycles and `runs` cycles with 10 new posts; return the raw results."""
    idle: list[Measured] = []
    new: list[Measured] = []
    per_source: list[float] = []
    share_304: list[float] = []
    for number in range(runs):
        replay.clear_log()
        done = world.once(f"idle-{label}-{number}").check("idle cycle")
        counts, not_modified = requests_per_source(replay)
        total = sum(counts.values())
        per_source.append(total / sources)
        share_304.append(not_modified / total if total else 0.0)
        idle.append(done)
        log(
            f"idle cycle ({label}) {number + 1}/{runs}: {done.wall:.1f}s wall, "
            f"{done.cpu:.1f}s CPU, "
            f"{total} requests to {len(counts)} sources, {not_modified} answered 304"
        )
    for number in range(runs):
        first = (offset + number) * 5 % sources
        chosen = [bulk_id((first + k) % sources + 1) for k in range(5)]
        publish_new(replay, chosen, offset + number)
        before = int(world.scalar("select count(*) from articles"))
        done = world.once(f"new-{label}-{number}").check("cycle with new posts")
        added = int(world.scalar("select count(*) from articles")) - before
        if added != 10:
            raise RuntimeError(f"cycle with 10 new posts stored {added}")
        new.append(done)
        log(
            f"cycle with 10 new posts ({label}) {number + 1}/{runs}: {done.wall:.1f}s wall, "
            f"{done.cpu:.1f}s CPU"
        )
    return {"idle": idle, "new": new, "per_source": per_source, "share_304": share_304}


def measure(root: Path, sources: int, history: int, runs: int) -> dict[str, Any]:
    """Return the idle-cycle and history-growth figures."""
    log(f"cycles: replay of {sources} bulk sources; baseline crawl")
    with ReplayServer([], bulk=sources, bulk_size=1) as replay:
        world = World(root / "cycles", replay.url)
        write_seeds(world.seeds_dir, (bulk_seed(bulk_id(n)) for n in range(1, sources + 1)))
        baseline = world.once("baseline").check("baseline crawl")
        small = int(world.scalar("select count(*) from articles"))
        log(f"baseline crawl: {small} articles in {baseline.wall:.1f}s")
        before = run_phase(world, replay, "small", runs, 0, sources)
        stored = insert_history(world, replay, sources, history)
        log(f"history: {stored} articles stored")
        after = run_phase(world, replay, "large", runs, runs, sources)
        plans = query_plans(world, replay)
    idle_walls = [m.wall for m in before["idle"]]
    idle_ratio = [b.wall / a.wall for a, b in zip(before["idle"], after["idle"], strict=True)]
    new_ratio = [b.wall / a.wall for a, b in zip(before["new"], after["new"], strict=True)]
    scans = full_scans(plans)
    figures = {
        "idle.requests_per_source": figure(
            before["per_source"], "requests", "1 (a 304)", all(v == 1 for v in before["per_source"])
        ),
        "idle.not_modified_share": figure(
            before["share_304"], "share", "1.0", all(v == 1 for v in before["share_304"])
        ),
        "idle.wall_s": figure(
            idle_walls,
            "s",
            f"< {AIM_IDLE_SECONDS:.0f}",
            digits=2,
            note=f"{sources} sources, `monitor run --once`",
        ),
        "idle.cpu_s": figure([m.cpu for m in before["idle"]], "s CPU", digits=2),
        "memory.idle_crawl_peak_mb": figure(
            [m.child_peak / MB for m in before["idle"]],
            "MB",
            digits=0,
            note=f"crawl process of {sources} sources",
        ),
        "history.idle_small_s": figure(idle_walls, "s", digits=2, note=f"{small} articles"),
        "history.idle_large_s": figure(
            [m.wall for m in after["idle"]], "s", digits=2, note=f"{stored} articles"
        ),
        "history.idle_ratio": figure(idle_ratio, "x", f"<= {AIM_GROWTH}"),
        "history.new10_small_s": figure([m.wall for m in before["new"]], "s", digits=2),
        "history.new10_large_s": figure([m.wall for m in after["new"]], "s", digits=2),
        "history.new10_ratio": figure(new_ratio, "x", f"<= {AIM_GROWTH}"),
    }
    for key in ("history.idle_ratio", "history.new10_ratio"):
        median = figures[key]["median"]
        figures[key]["ok"] = median is not None and median <= AIM_GROWTH and not scans
    figures["idle.wall_s"]["ok"] = max(idle_walls) < AIM_IDLE_SECONDS
    return {
        "figures": figures,
        "detail": {
            "sources": sources,
            "articles_small": small,
            "articles_large": stored,
            "baseline_wall": baseline.wall,
            "query_plans": plans,
            "full_scans": scans,
        },
    }
