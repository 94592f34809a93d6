"""The daemon: sources due together share one crawl process; it stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from crawler.config import PROJECT_ROOT
from monitor.daemon import FOLLOW_NICE, _lower_thread_priority
from replay.server import ReplayServer
from tests.e2e import monitor_env
from tests.world import query


def _runs(database_url: str) -> list[tuple[str, str, str]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [
                tuple(map(str, row))
                for row in conn.execute(
                    text("select source_id, started_at, status from crawl_runs order by id")
                )
            ]
    except SQLAlchemyError:  # the daemon has not created its tables yet
        return []
    finally:
        engine.dispose()


def test_sources_due_together_share_one_crawl_and_cycles_repeat(tmp_path: Path) -> None:
    with ReplayServer(["kaiping", "sznews"]) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "run",
                "--every",
                "3s",
                "--sources",
                "kaiping,sznews",
            ],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(_runs(env["DATABASE_URL"])) < 4:
                time.sleep(1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr[-2000:]
    runs = [run for run in _runs(env["DATABASE_URL"]) if run[2] != "running"]
    assert len(runs) >= 4, stderr[-2000:]
    by_start: dict[str, set[str]] = {}
    for source_id, started_at, _ in runs:
        by_start.setdefault(started_at, set()).add(source_id)
    # Each crawl process opens the runs of all its sources at one instant.
    assert all(sources == {"kaiping", "sznews"} for sources in by_start.values()), by_start
    assert len(by_start) >= 2
    assert "crawling kaiping, sznews" in stderr
    assert "monitor stopped" in stderr


def test_classifying_during_a_crawl_lowers_the_priority_of_that_thread_alone() -> None:
    """The follow thread yields the CPU to the crawl; the daemon's other threads keep theirs."""
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def follow() -> None:
        _lower_thread_priority(FOLLOW_NICE)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=follow)
    thread.start()
    thread.join()
    assert seen == [min(19, before + FOLLOW_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


_WARM_UP_PROBE = """
import dataclasses, sys
from monitor.daemon import warm_up
from monitor.topics import load_topics
from monitor.topics_text import segmenter
topics = load_topics()
if sys.argv[1] == "none":
    topics = dataclasses.replace(topics, topics=())
warm_up(topics)
print(segmenter()._tokenizer is not None, "jieba" in sys.modules)
"""


def test_warming_up_loads_the_word_dictionary_only_when_topics_need_it() -> None:
    """A crawl's start warms the classifier up; with no topic enabled, jieba stays unloaded."""
    results = {}
    for kind in ("topics", "none"):
        done = subprocess.run(
            [sys.executable, "-c", _WARM_UP_PROBE, kind],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        results[kind] = done.stdout.split()
    assert results == {"topics": ["True", "True"], "none": ["False", "False"]}


def _probe(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run a Python `script` with `args` in the monitor's environment `env`; return it finished."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


ORDER_PROBE = """
import subprocess, sys

events = []
popen_init = subprocess.Popen.__init__


def popen(self, args, *rest, **options):
    if "scrapy" in args:
        events.append("crawl started")
    popen_init(self, args, *rest, **options)


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "monitor.daemon":
            events.append("daemon imported")
        return None


subprocess.Popen.__init__ = popen
sys.meta_path.insert(0, Watch())
from monitor.cli import main

code = main(["run", "--once", "--sources", "kaiping"])
print(events, code)
"""


def test_once_starts_the_crawl_before_loading_the_daemons_modules(tmp_path: Path) -> None:
    # The crawl child loads Scrapy on one core while `--once` loads classification and
    # delivery on the other, instead of one after the other.
    with ReplayServer(["kaiping"], size=3) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        done = _probe(ORDER_PROBE, env)
    assert done.stdout.strip().splitlines()[-1] == "['crawl started', 'daemon imported'] 0", (
        done.stdout + done.stderr[-3000:]
    )
    assert _runs(env["DATABASE_URL"])[-1][::2] == ("kaiping", "ok")


GC_PROBE = """
import gc
from monitor.cli import main

code = main(["run", "--once", "--sources", "kaiping"])
print(code, gc.get_threshold(), gc.get_freeze_count(), sep="|")
"""


def test_a_cycle_freezes_the_monitors_start_up_and_collects_garbage_less_often(
    tmp_path: Path,
) -> None:
    from crawler.gc_tuning import GC_THRESHOLD

    with ReplayServer(["kaiping"], size=3) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        done = _probe(GC_PROBE, env)
    code, threshold, frozen = done.stdout.strip().splitlines()[-1].split("|")
    assert code == "0", done.stdout + done.stderr[-3000:]
    assert threshold == str(GC_THRESHOLD)
    # The modules, topics and word dictionary loaded before the cycle: out of every collection.
    assert int(frozen) > 100_000


ENTRY_PROBE = """
import atexit, sys
from monitor.cli import entry

atexit.register(lambda: print("interpreter torn down", flush=True))
sys.argv = ["monitor", *sys.argv[1:]]
entry()
"""


def test_once_exits_without_tearing_down_and_loses_no_log_line(tmp_path: Path) -> None:
    with ReplayServer(["kaiping"], size=3) as replay:
        env = {**monitor_env(tmp_path, replay.url, None), "MONITOR_LOG_LEVEL": "INFO"}
        once = _probe(ENTRY_PROBE, env, "run", "--once", "--sources", "kaiping")
        listing = _probe(ENTRY_PROBE, env, "sources")
    assert once.returncode == 0, once.stderr[-3000:]
    assert "interpreter torn down" not in once.stdout
    # The cycle's last lines reached stderr (flushed before the exit), and its work is stored.
    assert "source kaiping: 3 posts, 3 new" in once.stderr
    # The database file alone holds it all (its write-ahead log was moved into it): a copy of
    # the file, as a backup takes it, has the posts.
    database = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
    copy = tmp_path / "copy.db"
    shutil.copy(database, copy)
    assert _runs(f"sqlite:///{copy}")[-1][::2] == ("kaiping", "ok")
    assert query(f"sqlite:///{copy}", "select count(*) from articles") == [(3,)]
    # Any other command exits as usual.
    assert listing.returncode == 0 and "interpreter torn down" in listing.stdout


def test_a_runner_runs_one_crawl_at_a_time(tmp_path: Path) -> None:
    from crawler.config import AppSettings
    from crawler.db import session_factory
    from crawler.migrate import upgrade
    from monitor.crawl import CrawlRunner

    with ReplayServer(["kaiping"], size=3) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        settings = AppSettings(
            database_url=env["DATABASE_URL"],
            replay_url=replay.url,
            data_dir=tmp_path / "data",
            seeds_dir=PROJECT_ROOT / "seeds",
        )
        upgrade(settings.database_url)
        runner = CrawlRunner(settings, session_factory(settings.database_url))
        with pytest.raises(RuntimeError, match="no crawl was started"):
            runner.finish()
        runner.start(["kaiping"])
        with pytest.raises(RuntimeError, match="already running"):
            runner.start(["kaiping"])
        (outcome,) = runner.finish()
        assert (outcome.source_id, outcome.status, outcome.new) == ("kaiping", "ok", 3)
        assert runner.current is None
