"""Idle cycles over many sources, and the cost of a cycle as the stored history grows.

One replay serves `sources` bulk sources (`bulk0001`...) of one post each, watched by two
installations. Both make a baseline crawl (one stored article per source); then synthetic
history is written straight into one of them until it holds `history` articles. Each round
measures `monitor run --once` of both, back to back, when nothing is new (idle) and when 10
posts are new (2 on each of 5 sources). The ratio of each cycle at the large history to the
same cycle at the small one, seconds apart, shows whether any step scans the history.
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


def idle_cycle(world: World, replay: ReplayServer, name: str, sources: int) -> dict[str, Any]:
    """Run one idle cycle of `world`; return it measured, with its requests and 304 share."""
    replay.clear_log()
    done = world.once(name).check("idle cycle")
    counts, not_modified = requests_per_source(replay)
    total = sum(counts.values())
    log(
        f"{name}: {done.wall:.1f}s wall, {done.cpu:.1f}s CPU, "
        f"{total} requests to {len(counts)} sources, {not_modified} answered 304"
    )
    return {
        "measured": done,
        "per_source": total / sources,
        "share_304": not_modified / total if total else 0.0,
    }


def new_cycle(world: World, name: str) -> Measured:
    """Run one cycle of `world` after 10 posts were published; check that it stored all 10."""
    before = int(world.scalar("select count(*) from articles"))
    done = world.once(name).check("cycle with new posts")
    added = int(world.scalar("select count(*) from articles")) - before
    if added != 10:
        raise RuntimeError(f"{name}: the cycle with 10 new posts stored {added}")
    log(f"{name}: {done.wall:.1f}s wall, {done.cpu:.1f}s CPU")
    return done


def run_rounds(
    small: World, large: World, replay: ReplayServer, runs: int, sources: int
) -> dict[str, list[Any]]:
    """Measure `runs` rounds, each an idle cycle and a cycle with 10 new posts of both worlds.

    The two worlds run back to back within each round, in alternating order, so that a ratio
    compares cycles seconds apart: this machine's speed drifts by more than the aim's margin
    over the minutes a whole phase takes. Each world stores the same 10 new posts of a round.
    """
    results: dict[str, list[Any]] = {
        "idle_small": [],
        "idle_large": [],
        "new_small": [],
        "new_large": [],
    }
    for number in range(runs):
        pair = [("small", small), ("large", large)]
        if number % 2:
            pair.reverse()
        for label, world in pair:
            results[f"idle_{label}"].append(
                idle_cycle(world, replay, f"idle-{label}-{number}", sources)
            )
        first = number * 5 % sources
        publish_new(replay, [bulk_id((first + k) % sources + 1) for k in range(5)], number)
        for label, world in pair:
            results[f"new_{label}"].append(new_cycle(world, f"new-{label}-{number}"))
    return results


def measure(root: Path, sources: int, history: int, runs: int) -> dict[str, Any]:
    """Return the idle-cycle and history-growth figures.

    Two installations watch the same replay: one keeps the baseline crawl's history, the other
    gets synthetic history up to `history` articles. Their cycles alternate (`run_rounds`).
    """
    log(f"cycles: replay of {sources} bulk sources; baseline crawls")
    with ReplayServer([], bulk=sources, bulk_size=1) as replay:
        seeds = [bulk_seed(bulk_id(n)) for n in range(1, sources + 1)]
        small = World(root / "cycles-small", replay.url)
        large = World(root / "cycles-large", replay.url)
        for world in (small, large):
            write_seeds(world.seeds_dir, seeds)
        baseline = small.once("baseline-small").check("baseline crawl")
        large.once("baseline-large").check("baseline crawl")
        articles_small = int(small.scalar("select count(*) from articles"))
        log(f"baseline crawl: {articles_small} articles in {baseline.wall:.1f}s")
        stored = insert_history(large, replay, sources, history)
        log(f"history: {stored} articles stored in the large installation")
        rounds = run_rounds(small, large, replay, runs, sources)
        plans = query_plans(large, replay)
    idle_small = [r["measured"] for r in rounds["idle_small"]]
    idle_large = [r["measured"] for r in rounds["idle_large"]]
    idle_all = rounds["idle_small"] + rounds["idle_large"]
    before = {"idle": idle_small, "new": rounds["new_small"]}
    after = {"idle": idle_large, "new": rounds["new_large"]}
    per_source = [r["per_source"] for r in idle_all]
    share_304 = [r["share_304"] for r in idle_all]
    idle_walls = [m.wall for m in before["idle"]]
    idle_ratio = [b.wall / a.wall for a, b in zip(before["idle"], after["idle"], strict=True)]
    new_ratio = [b.wall / a.wall for a, b in zip(before["new"], after["new"], strict=True)]
    scans = full_scans(plans)
    figures = {
        "idle.requests_per_source": figure(
            per_source, "requests", "1 (a 304)", all(v == 1 for v in per_source)
        ),
        "idle.not_modified_share": figure(
            share_304, "share", "1.0", all(v == 1 for v in share_304)
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
        "history.idle_small_s": figure(
            idle_walls, "s", digits=2, note=f"{articles_small} articles"
        ),
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
            "articles_small": articles_small,
            "articles_large": stored,
            "baseline_wall": baseline.wall,
            "query_plans": plans,
            "full_scans": scans,
        },
    }
