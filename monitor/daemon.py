"""The daemon: APScheduler fires each source on its schedule; due sources share one crawl process.

After every crawl, the crawled sources' health is checked (monitor/health.py), new versions
are classified into the alert outbox and the outbox is dispatched; a separate job sweeps the
outbox for retries, and digest jobs (hourly, and daily at 08:00) bundle the alerts of digest
channels (monitor/digest.py). One crawl runs at a time, so a
source is never crawled twice at once; sources that fall due meanwhile form the next batch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from crawler.config import AppSettings
from crawler.db import session_factory
from crawler.gc_tuning import tune_gc
from crawler.migrate import upgrade
from crawler.seeds import Seed
from monitor.alerting import process_new_versions
from monitor.channels import ChannelConfig
from monitor.crawl import CrawlRunner, SourceOutcome
from monitor.digest import DAILY_HOUR_CST, queue_digests
from monitor.dispatcher import RetryPolicy, dispatch_due
from monitor.health import HealthPolicy, check_sources
from monitor.notifiers.base import Notifier
from monitor.stories import StoryIndex, signature
from monitor.topics import TopicSet
from monitor.topics_text import segmenter

logger = logging.getLogger("monitor")
CST = ZoneInfo("Asia/Shanghai")
BATCH_WINDOW_SECONDS = 1.0
# While a crawl runs, what it has stored so far is classified and delivered this often.
FOLLOW_SECONDS = 1.0
# ...at this lower CPU priority (a nice increment for that thread alone): on a machine whose
# cores are all busy, the crawl and its extraction worker go first, and classification takes
# the idle time, then catches up at normal priority once the crawl has ended.
FOLLOW_NICE = 10


def _lower_thread_priority(increment: int) -> None:
    """Lower the CPU priority of the calling thread only (Linux: a thread id is a process id)."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + increment)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: run at normal priority
        logger.debug("thread priority unchanged: %s", exc)


# Long enough for a story signature (20 shingles), and naming a topic term or two.
_WARM_UP_TEXT = "香港大学与深圳市合作共建生物医药研究院，推动医疗器械孵化与产业园区签约合作。"


def warm_up(topics: TopicSet) -> None:
    """Load what classifying the first version needs (jieba's dictionary, the signature stack).

    Called as a crawl starts: the crawl child spends its first seconds importing Scrapy on
    one core, so these seconds of loading run beside it instead of beside a busy crawl
    (or, in `monitor run --once`, after it). Loaded once per process; later calls are cheap.
    """
    if topics.topics:
        segmenter().tokenizer  # noqa: B018 - the property loads the dictionary
        topics.classify(_WARM_UP_TEXT, _WARM_UP_TEXT)
    signature(_WARM_UP_TEXT, _WARM_UP_TEXT)


def log_outcome(outcome: SourceOutcome) -> None:
    """Log one clear line for how a source's crawl ended."""
    if outcome.status == "ok":
        logger.info(
            "source %s: %d posts, %d new, %d changed",
            outcome.source_id,
            outcome.items,
            outcome.new,
            outcome.changed,
        )
    else:
        logger.warning(
            "source %s: crawl %s: %s",
            outcome.source_id,
            outcome.status,
            outcome.error or "unknown reason",
        )


class Daemon:
    """Schedules crawls, turns their results into alerts, and delivers them."""

    def __init__(
        self,
        settings: AppSettings,
        seeds: Mapping[str, Seed],
        topics: TopicSet,
        channels: Mapping[str, ChannelConfig],
        notifiers: Mapping[str, Notifier],
        every: timedelta | None = None,
        runner: CrawlRunner | None = None,
    ) -> None:
        self.settings = settings
        self.seeds = dict(seeds)
        self.topics = topics
        self.channels = dict(channels)
        self.notifiers = dict(notifiers)
        self.every = every
        self.sessions = runner.sessions if runner else session_factory(settings.database_url)
        self.runner = runner or CrawlRunner(settings, self.sessions)
        self.policy = RetryPolicy(
            settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts
        )
        self._due: set[str] = set()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._outbox_lock = threading.Lock()
        self.stories = StoryIndex()

    def request(self, source_id: str) -> None:
        """Mark a source as due; the main loop crawls it with any others due now."""
        with self._wake:
            self._due.add(source_id)
            self._wake.notify()

    def cycle(self, source_ids: list[str], *, started: bool = False) -> list[SourceOutcome]:
        """Crawl `source_ids` once, then classify and dispatch; return per-source outcomes.

        While the crawl runs, a thread classifies and delivers what it has stored so far
        (the crawl child writes in batches as it goes): on a multi-core machine the two run
        side by side, and an alert need not wait for the last page of a long crawl.
        `started`: the runner's crawl of `source_ids` is already running (`monitor run --once`).
        """
        crawl_done = threading.Event()
        follower = threading.Thread(
            target=self._follow_crawl, args=(crawl_done,), name="follow-crawl", daemon=True
        )
        follower.start()
        try:
            outcomes = self.runner.finish() if started else self.runner.run(source_ids)
        finally:
            crawl_done.set()
            follower.join()
        for outcome in outcomes:
            log_outcome(outcome)
        self.check_health([outcome.source_id for outcome in outcomes])
        self.process_outbox()
        return outcomes

    def _follow_crawl(self, crawl_done: threading.Event) -> None:
        """Classify and deliver stored versions every FOLLOW_SECONDS until `crawl_done` is set."""
        _lower_thread_priority(FOLLOW_NICE)
        try:
            with self._outbox_lock:  # the caches it fills are the classifier's
                warm_up(self.topics)
        except Exception:
            logger.exception("warming up the classifier failed; it loads on first use instead")
        # Start-up is over once the classifier is loaded: the crawl's GC tuning (once per
        # process). Without it, the 10,000-post benchmark cycle spent 0.6 of the monitor's
        # 7 CPU-seconds in collections, mostly full ones walking the dictionaries loaded above.
        tune_gc()
        while not crawl_done.wait(FOLLOW_SECONDS):
            try:
                self.process_outbox()
            except Exception:
                logger.exception("classifying during the crawl failed; retried after it")

    def check_health(self, source_ids: list[str]) -> None:
        """Update the health of crawled sources and queue their alerts; never stop the daemon."""
        try:
            check_sources(
                self.sessions, self.channels, source_ids, HealthPolicy.from_settings(self.settings)
            )
        except Exception:
            logger.exception("health check of %s failed", ", ".join(source_ids))

    def send_digests(self, period: str) -> None:
        """Bundle the waiting alerts of the digest channels of `period` and deliver them."""
        with self._outbox_lock:
            queue_digests(self.sessions, self.channels, period)
        self.process_outbox()

    def process_outbox(self) -> None:
        """Classify new versions into alerts and deliver what is due."""
        with self._outbox_lock:
            classified = process_new_versions(
                self.sessions, self.topics, self.channels, stories=self.stories
            )
            if classified.classified:
                logger.info(
                    "classified %d new versions, %d alerts queued",
                    classified.classified,
                    classified.alerts,
                )
            sent = dispatch_due(
                self.sessions,
                self.notifiers,
                self.policy,
                crash_after_send=self.settings.test_crash_after_send,
            )
            if sent.sent or sent.retried or sent.failed:
                logger.info(
                    "outbox: %d sent, %d to retry, %d failed", sent.sent, sent.retried, sent.failed
                )

    def _trigger(self, seed: Seed) -> IntervalTrigger | CronTrigger:
        if self.every is not None:
            return IntervalTrigger(seconds=self.every.total_seconds(), timezone=CST)
        interval = seed.schedule.interval()
        if interval is not None:
            return IntervalTrigger(seconds=interval.total_seconds(), timezone=CST)
        assert seed.schedule.cron is not None
        return CronTrigger.from_crontab(seed.schedule.cron, timezone=CST)

    def stop(self, *_: object) -> None:
        """Ask the daemon to finish: stop scheduling and end a running crawl."""
        self._stop.set()
        with self._wake:
            self._wake.notify()
        self.runner.stop()

    def run(self) -> None:
        """Run until SIGTERM/SIGINT: crawl due sources in batches, sweep the outbox."""
        upgrade(self.settings.database_url)
        scheduler = BackgroundScheduler(timezone=CST)
        now = datetime.now(CST)
        for seed in self.seeds.values():
            scheduler.add_job(
                self.request,
                self._trigger(seed),
                args=[seed.id],
                id=seed.id,
                next_run_time=now,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        scheduler.add_job(
            self.process_outbox,
            IntervalTrigger(seconds=self.settings.dispatch_every_seconds, timezone=CST),
            id="outbox",
            coalesce=True,
            max_instances=1,
        )
        digest_triggers = {
            "hourly": CronTrigger(minute=0, timezone=CST),
            "daily": CronTrigger(hour=DAILY_HOUR_CST, minute=0, timezone=CST),
        }
        for period, trigger in digest_triggers.items():
            scheduler.add_job(
                self.send_digests,
                trigger,
                args=[period],
                id="digest_" + period,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=600,
            )
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        scheduler.start()
        logger.info(
            "monitor running: %d sources, channels: %s",
            len(self.seeds),
            ", ".join(self.channels) or "none",
        )
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    logger.info("crawling %s", ", ".join(batch))
                    self.cycle(batch)
        finally:
            scheduler.shutdown(wait=False)
            logger.info("monitor stopped")

    def _next_batch(self) -> list[str]:
        """Wait for due sources, give others a moment to join, and return them sorted."""
        with self._wake:
            while not self._due and not self._stop.is_set():
                self._wake.wait(timeout=1.0)
            if self._stop.is_set():
                return []
        self._stop.wait(BATCH_WINDOW_SECONDS)
        with self._wake:
            batch, self._due = sorted(self._due), set()
        return batch
