"""Alert latency: from a post published on the replay to its webhook arriving, daemon running.

The daemon (`monitor run`) watches the five replayed sources on an `every` schedule and posts
alerts to a local webhook receiver. Each sample publishes a matching post right after the
crawl has fetched the column list, so it misses that crawl: the worst phase, the one the aim
(schedule interval + 10 s) bounds.
"""

from __future__ import annotations

import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import (
    SITES,
    DaemonProcess,
    World,
    figure,
    log,
    shipped_seed,
    wait_until,
    write_seeds,
)
from replay import ReplayServer
from replay.sinks import WebhookSink

SOURCE = "kaiping"
LIST_PATH = "/kaiping/kpskgsj/zwgk/dwdt/index.html"
# Distinct texts: a post too close to an earlier one joins its story and does not alert again.
POSTS = [
    (
        "香港大學與開平市簽署協議 共建生物醫藥聯合實驗室",
        (
            "香港大學醫學院與開平市人民政府簽約，雙方在翠山湖新區共建生物醫藥聯合實驗室，"
            "首期聚焦抗體藥物篩選、細胞治療工藝開發與臨床前評價。"
        ),
    ),
    (
        "香港中文大學醫療器械創新中心落戶開平",
        (
            "香港中文大學工程學院攜手開平市科工商務局成立醫療器械創新中心，圍繞手術機器人、"
            "可穿戴監測設備和康復輔具開展聯合研發，並設立產業孵化基金。"
        ),
    ),
    (
        "開平舉辦粵港澳生物醫藥產業對接會 港科大參與",
        (
            "二十餘家港澳藥企與本地園區在對接會上簽署意向書，香港科技大學介紹了其在基因檢測、"
            "疫苗佐劑和中藥現代化方面的轉化成果，現場促成七個合作項目。"
        ),
    ),
    (
        "香港理工大學與開平共建中醫藥研究院",
        (
            "理大應用生物及化學科技學系將與開平企業共建中醫藥研究院，開展嶺南道地藥材質量標準、"
            "經典名方二次開發與智能製藥裝備研究，培養研究生與工程師。"
        ),
    ),
    (
        "香港城市大學動物醫學與開平簽約合作",
        (
            "城大獸醫醫學院同開平市政府就動物疫苗、寵物藥品及人獸共患病監測簽署框架協議，"
            "計劃在三年內建成檢測平台並引進國際認證實驗室。"
        ),
    ),
]
AIM_MARGIN = 10.0


def schedule_text(seconds: int) -> str:
    """Return a seed schedule for `seconds` (`1m` for 60, `5s` for 5)."""
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def delivered(hook: WebhookSink, url: str) -> bool:
    """Return True once the webhook received the alert for `url`."""
    return any(isinstance(r.json, dict) and r.json.get("url") == url for r in hook.deliveries)


def list_fetched(replay: ReplayServer) -> bool:
    """Return True once the watched column list was fetched since the log was cleared."""
    return any(record.path == LIST_PATH for record in replay.requests)


def measure(
    root: Path, interval: int, samples: int, sites: list[str] | None = None
) -> dict[str, Any]:
    """Return the latency figure over `samples` worst-phase publications."""
    sites = sites or SITES
    log(f"latency: daemon on a {interval}s schedule over {len(sites)} sources, {samples} samples")
    latencies: list[float] = []
    with ReplayServer(sites) as replay, WebhookSink() as hook:
        world = World(root / "latency", replay.url, channels_file=root / "latency-channels.yaml")
        channels = root / "latency-channels.yaml"
        channels.write_text(
            textwrap.dedent(f"""\
            channels:
              hook:
                kind: webhook
                url: {hook.url}
                topics: ['*']
            """),
            "utf-8",
        )
        schedule = {"every": schedule_text(interval)}
        write_seeds(world.seeds_dir, (shipped_seed(site, schedule=schedule) for site in sites))
        with DaemonProcess(world, [], "latency-daemon") as daemon:
            wait_until(
                lambda: world_ok(world) >= len(sites),
                120 + interval,
                "the baseline crawl",
                every=0.5,
            )
            for number in range(samples):
                if number == 0:
                    # Publish just after a crawl fetched the list: the post waits a whole interval.
                    replay.clear_log()
                    wait_until(
                        partial(list_fetched, replay),
                        interval * 2 + 60,
                        "the next crawl",
                        every=0.02,
                    )
                # Later samples publish as the previous alert arrives, also just after a crawl.
                title, paragraph = POSTS[number % len(POSTS)]
                url = replay.publish(SOURCE, f"{title}（第{number + 1}期）", [paragraph])
                published = time.monotonic()
                wait_until(
                    partial(delivered, hook, url), interval * 2 + 90, "the webhook", every=0.05
                )
                latencies.append(time.monotonic() - published)
                log(f"latency sample {number + 1}/{samples}: {latencies[-1]:.1f}s")
            if not daemon.alive():
                raise RuntimeError("the daemon died:\n" + daemon.log_tail())
    aim = interval + AIM_MARGIN
    latency = figure(
        latencies,
        "s",
        f"< {aim:.0f} (schedule {interval}s + {AIM_MARGIN:.0f}s)",
        max(latencies) < aim,
        digits=1,
        note="post published just after a crawl",
    )
    return {
        "figures": {"latency.publish_to_webhook_s": latency},
        "detail": {"interval_s": interval, "sources": sites, "samples": latencies},
    }


def world_ok(world: World) -> int:
    """Return how many crawl runs of `world` ended well (0 before the database exists)."""
    try:
        return int(world.scalar("select count(*) from crawl_runs where status = 'ok'"))
    except Exception:  # noqa: BLE001 - the daemon may not have created the tables yet
        return 0
