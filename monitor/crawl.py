"""Run one crawl of several sources as a `scrapy crawl` subprocess with a wall-clock limit.

The child runs in its own process group; on overrun the whole group gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.config import PROJECT_ROOT, AppSettings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceOutcome:
    """How one source's crawl ended."""

    source_id: str
    status: str
    items: int
    new: int
    changed: int
    error: str | None


def crawl_command(source_ids: list[str], settings: AppSettings, log_file: Path) -> list[str]:
    """Return the argv of the `scrapy crawl` child for `source_ids`."""
    argv = [
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        "sources",
        "-a",
        "sources=" + ",".join(source_ids),
        "-s",
        f"SEEDS_DIR={settings.seeds_dir}",
        "-s",
        f"LOG_FILE={log_file}",
        "-s",
        f"LOG_LEVEL={settings.crawl_log_level}",
    ]
    if settings.replay_url:
        argv += ["-s", f"REPLAY_URL={settings.replay_url}"]
    for name, value in settings.crawl_settings.items():
        argv += ["-s", f"{name}={value}"]
    return argv


class CrawlRunner:
    """Start crawls, enforce their time limit, and report per-source outcomes."""

    def __init__(
        self, settings: AppSettings, sessions: sessionmaker[Session] | None = None
    ) -> None:
        self.settings = settings
        # None: made from the settings' database URL when the first crawl ends (`monitor run
        # --once` starts its child before importing SQLAlchemy).
        self._sessions = sessions
        self.current: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self._source_ids: list[str] = []
        self._started = datetime.now(UTC)
        self._deadline = 0.0

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Return the session factory of the database the crawls write into."""
        if self._sessions is None:
            from crawler.db import session_factory

            self._sessions = session_factory(self.settings.database_url)
        return self._sessions

    def run(self, source_ids: list[str]) -> list[SourceOutcome]:
        """Crawl `source_ids` in one child process and return each source's outcome."""
        self.start(source_ids)
        return self.finish()

    def start(self, source_ids: list[str]) -> None:
        """Start the crawl of `source_ids` in a child process (`finish` waits for it).

        `monitor run --once` starts the child as soon as the configuration is checked and
        the database migrated, then loads the rest of the daemon while the child loads Scrapy.
        """
        if self.current is not None:
            raise RuntimeError("a crawl is already running")
        log_dir = self.settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = crawl_command(source_ids, self.settings, log_dir / "crawl.log")
        # The database URL may hold a password: the environment, unlike argv, is not public.
        env = {
            **os.environ,
            "SCRAPY_SETTINGS_MODULE": "crawler.settings",
            "DATABASE_URL": self.settings.database_url,
        }
        self._source_ids = list(source_ids)
        self._started = datetime.now(UTC)
        self._deadline = time.monotonic() + self.settings.crawl_timeout
        self.current = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=env,
            process_group=0,  # its own group (killed whole on a timeout), in our session
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self) -> list[SourceOutcome]:
        """Wait for the started crawl (killing it at its time limit); return each source's outcome."""
        current = self.current
        if current is None:
            raise RuntimeError("no crawl was started")
        source_ids = self._source_ids
        timed_out = False
        try:
            _, stderr = current.communicate(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
            _, stderr = current.communicate()
        code = current.returncode
        self.current = None
        if code not in (0, None) and not timed_out and stderr:
            logger.error(
                "crawl of %s exited with %s: %s",
                ",".join(source_ids),
                code,
                stderr.decode("utf-8", "replace").strip().splitlines()[-1:],
            )
        return self._outcomes(source_ids, self._started, timed_out, code)

    def stop(self) -> None:
        """End the running crawl because the daemon is shutting down."""
        self.stopping = True
        self.kill()

    def kill(self) -> None:
        """Terminate the running crawl's whole process group (SIGTERM, then SIGKILL)."""
        proc = self.current
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reason(self, timed_out: bool, code: int | None, when: str) -> str:
        """Return why a crawl child ended without closing its runs."""
        if timed_out:
            return f"timed out after {self.settings.crawl_timeout:.0f}s"
        if self.stopping:
            return "interrupted: the monitor is shutting down"
        return f"crawl process exited with code {code} {when}".strip()

    def _outcomes(
        self, source_ids: list[str], started: datetime, timed_out: bool, code: int | None
    ) -> list[SourceOutcome]:
        """Return each source's latest run since `started`, closing runs the child left open."""
        from sqlalchemy import select  # the models load while the child runs, not before it

        from crawler.models import CrawlRun

        outcomes = []
        with self.sessions.begin() as session:
            # One query for the whole batch: the latest run of each source since `started`.
            latest: dict[str, CrawlRun] = {}
            for found in session.scalars(
                select(CrawlRun)
                .where(CrawlRun.source_id.in_(source_ids), CrawlRun.started_at >= started)
                .order_by(CrawlRun.id)
            ):
                latest[found.source_id] = found
            for source_id in source_ids:
                run = latest.get(source_id)
                if run is None:
                    reason = self._reason(timed_out, code, "before starting")
                    outcomes.append(SourceOutcome(source_id, "failed", 0, 0, 0, reason))
                    continue
                if run.status == "running":
                    run.status = "timeout" if timed_out else "failed"
                    run.finished_at = datetime.now(UTC)
                    run.error = self._reason(timed_out, code, "")
                outcomes.append(
                    SourceOutcome(
                        source_id,
                        run.status,
                        run.items_found,
                        run.new_articles,
                        run.changed_articles,
                        run.error,
                    )
                )
        return outcomes
