"""Daemon memory: resident set size after 10 cycles and after many, and the peaks.

The daemon (`monitor run --every 1s`) crawls one small replayed source over and over; every
20th cycle finds a new post, so classification and delivery run too. The RSS is read right
after cycle 10 and after the last cycle; growth beyond 10 percent would be a leak.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import MB, DaemonProcess, World, bulk_seed, figure, log, wait_until, write_seeds
from replay import ReplayServer
from replay.sites.bulk import bulk_id

AIM_GROWTH = 1.1
CHECKPOINT = 10  # cycles before the first reading (fewer when the run is shorter)
SOURCE = bulk_id(1)


def finished_cycles(world: World) -> int:
    """Return how many crawl runs of `world` have finished (0 before the tables exist)."""
    try:
        return int(world.scalar("select count(*) from crawl_runs where finished_at is not null"))
    except Exception:  # noqa: BLE001 - the daemon may not have created the tables yet
        return 0


def measure(root: Path, cycles: int) -> dict[str, Any]:
    """Return the daemon's RSS after CHECKPOINT and after `cycles` cycles, and the peaks."""
    log(f"memory: daemon for {cycles} cycles on a 1s schedule")
    rss: dict[int, float] = {}
    first = min(CHECKPOINT, max(1, cycles // 2))
    started = time.monotonic()
    with ReplayServer([], bulk=1, bulk_size=1) as replay:
        world = World(root / "memory", replay.url)
        write_seeds(world.seeds_dir, [bulk_seed(SOURCE)])
        with DaemonProcess(world, ["--every", "1s"], "memory-daemon") as daemon:
            published = 0
            for target in range(1, cycles + 1):
                wait_until(
                    lambda t=target: finished_cycles(world) >= t or not daemon.alive(),
                    300,
                    f"cycle {target}",
                    every=0.05,
                )
                if not daemon.alive():
                    raise RuntimeError("the daemon died:\n" + daemon.log_tail())
                if target in (first, cycles):
                    rss[target] = daemon.rss() / MB
                if target % 20 == 0 and target < cycles:
                    published += 1
                    replay.publish(
                        SOURCE,
                        f"开平市生物医药产业园签约第{published}批项目",
                        ["香港科技大学与开平市共建生物医药联合实验室，推动成果转化。"],
                    )
                if target % 50 == 0:
                    log(f"memory: {target} cycles, RSS {daemon.rss() / MB:.0f} MB")
            daemon_peak = daemon.peak() / MB
            crawl_peak = (daemon.sampler.child_peak if daemon.sampler else 0) / MB
    growth = rss[cycles] / rss[first]
    elapsed = time.monotonic() - started
    log(
        f"memory: RSS {rss[first]:.0f} MB after {first} cycles, "
        f"{rss[cycles]:.0f} MB after {cycles} ({elapsed:.0f}s)"
    )
    return {
        "figures": {
            "memory.daemon_peak_mb": figure([daemon_peak], "MB", digits=0),
            "memory.daemon_rss_first_mb": figure(
                [rss[first]], "MB", digits=0, note=f"after {first} cycles"
            ),
            "memory.daemon_rss_last_mb": figure(
                [rss[cycles]], "MB", digits=0, note=f"after {cycles} cycles"
            ),
            "memory.daemon_growth": figure(
                [growth],
                f"x ({cycles} vs {first} cycles)",
                f"<= {AIM_GROWTH}",
                growth <= AIM_GROWTH,
            ),
            "memory.cycle_crawl_peak_mb": figure(
                [crawl_peak], "MB", digits=0, note="crawl process of one small source"
            ),
        },
        "detail": {"cycles": cycles, "rss_mb": rss, "seconds": elapsed},
    }
