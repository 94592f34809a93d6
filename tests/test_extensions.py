"""The crawl's own Scrapy extensions (crawler/extensions.py), in a real `scrapy runspider`:
log levels, and the garbage collector's tuning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.config import PROJECT_ROOT
from crawler.gc_tuning import GC_THRESHOLD

SPIDER = """
import gc
import logging
import scrapy


class Levels(scrapy.Spider):
    name = "levels"

    async def start(self):
        # What a crawl's loggers do with a debug message once the engine runs.
        yield {
            "spider_debug": self.logger.isEnabledFor(logging.DEBUG),
            "scrapy_debug": logging.getLogger("scrapy.core.scraper").isEnabledFor(logging.DEBUG),
            "info": logging.getLogger("scrapy.core.engine").isEnabledFor(logging.INFO),
            "gc_threshold": list(gc.get_threshold()),
            "gc_frozen": gc.get_freeze_count(),
        }
"""


@pytest.mark.parametrize(("level", "debug"), [("INFO", False), ("DEBUG", True)])
def test_messages_below_log_level_are_dropped_by_their_loggers(
    tmp_path: Path, level: str, debug: bool
) -> None:
    spider = tmp_path / "levels.py"
    spider.write_text(SPIDER, encoding="utf-8")
    out = tmp_path / "levels.jsonl"
    log = tmp_path / "crawl.log"
    argv = [sys.executable, "-m", "scrapy", "runspider", str(spider), "-o", f"{out}:jsonlines"]
    argv += ["-s", "STORE_ENABLED=0", "-s", f"LOG_LEVEL={level}", "-s", f"LOG_FILE={log}"]
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "crawler.settings"}
    env["MONITOR_SEEDS_DIR"] = str(tmp_path / "seeds")
    done = subprocess.run(
        argv, check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (seen,) = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    frozen = seen.pop("gc_frozen")
    assert seen.pop("gc_threshold") == list(GC_THRESHOLD)
    assert frozen > 10_000  # Scrapy, Twisted and the settings: out of every collection
    assert seen == {"spider_debug": debug, "scrapy_debug": debug, "info": True}
    # What the level lets through is still logged: the item, at DEBUG; the stats, at INFO.
    text = log.read_text("utf-8")
    assert ("Scraped from" in text) is debug
    assert "Dumping Scrapy stats" in text
