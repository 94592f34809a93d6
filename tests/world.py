"""A world for outbox tests: a replayed source already past its baseline, real sinks, the monitor
as subprocesses (one cycle, or the daemon), and helpers to wait for and inspect what happened.

The baseline crawl (about 20 posts stored, none alerted) is made once per test process and
copied into each test; every test gets a fresh replay on the same fixed port, so the stored
URLs stay valid and the copy behaves as if it had just crawled that replay.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from crawler.config import PROJECT_ROOT
from replay.server import ReplayServer
from replay.sinks import SmtpSink, WebhookSink
from tests.e2e import BIOMED_PARAGRAPHS, BIOMED_TITLE, monitor_env, run_monitor

T = TypeVar("T")
SOURCE = "kaiping"

# Three biomedical-cooperation stories, distinct enough not to be taken for reposts.
POSTS: list[tuple[str, list[str]]] = [
    (BIOMED_TITLE, BIOMED_PARAGRAPHS),
    (
        "開平市舉辦生物醫藥產業項目對接會 12家企業現場集中簽約",
        [
            (
                "11月25日，開平市生物醫藥產業項目對接會在市會議中心舉行，來自廣州、深圳和香港的"
                "30多家醫藥企業、投資機構參會，12個生物醫藥項目現場集中簽約，總投資約18億元。"
            ),
            "簽約項目涵蓋中成藥生產、體外診斷試劑、康復器材等領域，將陸續落戶翠山湖新區。",
        ],
    ),
    (
        "翠山湖科技產業園與廣東省科學院簽訂合作框架協議 組建醫療器械孵化聯盟",
        [
            (
                "近日，翠山湖科技產業園管委會與廣東省科學院簽訂合作框架協議，雙方聯合組建"
                "醫療器械創新孵化聯盟，為初創醫療器械企業提供檢測認證、中試熟化和注冊申報服務。"
            ),
            "聯盟首批成員包括8家醫療器械企業和3家高校院所，將共同推進高端醫療裝備國產化。",
        ],
    ),
]

_BASELINE: dict[str, tuple[int, Path]] = {}


def query(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Return the rows of a query on the database at `database_url`."""
    engine = create_engine(database_url, connect_args={"timeout": 30})
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def with_source(
    database_url: str,
    source_id: str = "kaiping",
    name: str = "单位动态",
    base_url: str = "http://www.kaiping.gov.cn",
    created_at: datetime | None = None,
) -> sessionmaker[Session]:
    """Migrate the database at `database_url`, add one source, and return sessions on it."""
    from crawler.db import session_factory
    from crawler.migrate import upgrade
    from crawler.models import Source

    upgrade(database_url)
    sessions = session_factory(database_url)
    with sessions.begin() as session:
        session.add(
            Source(
                id=source_id,
                name=name,
                base_url=base_url,
                created_at=created_at or datetime.now(UTC),
                consecutive_failures=0,
            )
        )
    return sessions


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.2) -> T:
    """Return check()'s first truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def fixed_port() -> int:
    """Return a free loopback port below the ephemeral range, so no client socket takes it."""
    for port in range(20000 + os.getpid() % 9000, 30000):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 30000")


def channel_yaml(
    name: str, kind: str, topics: list[str], mode: str = "instant", **extra: Any
) -> str:
    """Return one channel entry of a channels file."""
    lines = [f"  {name}:", f"    kind: {kind}", f"    topics: {topics!r}", f"    mode: {mode}"]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def mail_channel(name: str, smtp: SmtpSink, topics: list[str], mode: str = "instant") -> str:
    """Return an email channel entry sending to the local SMTP sink."""
    return channel_yaml(
        name,
        "email",
        topics,
        mode,
        host="127.0.0.1",
        port=smtp.port,
        security="none",
        **{"from": "monitor@example.org", "to": "[analyst@example.org]"},
    )


def hook_channel(name: str, hook: WebhookSink, topics: list[str], mode: str = "instant") -> str:
    """Return a webhook channel entry posting to the local webhook sink."""
    return channel_yaml(name, "webhook", topics, mode, url=hook.url + name)


def baseline(tmp_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """Return (replay port, database file) of a kaiping source past its baseline crawl."""
    if "db" not in _BASELINE:
        folder = tmp_factory.mktemp("baseline")
        port = fixed_port()
        with ReplayServer([SOURCE], port=port) as replay:
            env = monitor_env(folder, replay.url, None)
            done = run_monitor(["run", "--once", "--sources", SOURCE], env)
        assert done.returncode == 0, done.stderr[-3000:]
        _BASELINE["db"] = (port, folder / "monitor.db")
    return _BASELINE["db"]


@dataclass
class World:
    """One test's replay, sinks, database and environment."""

    tmp: Path
    replay: ReplayServer
    smtp: SmtpSink
    hook: WebhookSink
    env: dict[str, str]
    published: list[str] = field(default_factory=list)

    def channels(self, *entries: str) -> None:
        """Write the channels file from channel entries."""
        (self.tmp / "channels.yaml").write_text("channels:\n" + "".join(entries), encoding="utf-8")

    def publish(self, number: int) -> str:
        """Publish story `number` of POSTS on the replay and return its URL."""
        title, paragraphs = POSTS[number]
        url = self.replay.publish(SOURCE, title, paragraphs)
        self.published.append(url)
        return url

    def run_once(self, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run one `monitor run --once` cycle and return the finished process."""
        return run_monitor(["run", "--once", "--sources", SOURCE], {**self.env, **extra})

    def monitor(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run `monitor ARGS` and return the finished process."""
        return run_monitor(list(args), {**self.env, **extra})

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Return the rows of a query on the monitor's database."""
        return query(self.env["DATABASE_URL"], sql, **params)

    def scalar(self, sql: str, **params: Any) -> Any:
        """Return the single value of a query on the monitor's database."""
        return self.rows(sql, **params)[0][0]

    @contextmanager
    def daemon(self, every: str = "1h", **extra: str) -> Iterator[Daemon]:
        """Run `monitor run --every EVERY` for the block; stop it (SIGTERM) afterwards."""
        log = (self.tmp / "daemon.log").open("a", encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--every", every, "--sources", SOURCE],
            env={**self.env, **extra},
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=log,
            text=True,
        )
        daemon = Daemon(process, log, self.tmp / "daemon.log")
        try:
            yield daemon
        finally:
            daemon.stop()


@dataclass
class Daemon:
    """A running monitor daemon started by a test."""

    process: subprocess.Popen[str]
    log_handle: IO[str]
    log_path: Path

    def log(self) -> str:
        """Return what the daemon logged so far."""
        self.log_handle.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def crawl_child(self) -> int | None:
        """Return the pid of the daemon's running crawl child, or None."""
        return crawl_child_of(self.process.pid)

    def kill(self) -> None:
        """SIGKILL the daemon and its crawl child's process group, as a power cut would."""
        child = self.crawl_child()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        if child is not None:
            try:
                os.killpg(child, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Stop the daemon with SIGTERM (SIGKILL if it does not end in 60 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log_handle.close()


@contextmanager
def make_world(
    tmp_path: Path, tmp_factory: pytest.TempPathFactory, **extra: str
) -> Iterator[World]:
    """Yield a world whose database is a copy of the baseline, with fast retries."""
    port, database = baseline(tmp_factory)
    for suffix in ("", "-wal", "-shm"):
        if Path(str(database) + suffix).exists():
            shutil.copy(str(database) + suffix, tmp_path / ("monitor.db" + suffix))
    with ReplayServer([SOURCE], port=port) as replay, SmtpSink() as smtp, WebhookSink() as hook:
        env = monitor_env(
            tmp_path,
            replay.url,
            tmp_path / "channels.yaml",
            MONITOR_RETRY_BASE_SECONDS="0.1",
            MONITOR_RETRY_MAX_SECONDS="0.5",
            MONITOR_DISPATCH_EVERY_SECONDS="0.5",
            **extra,
        )
        world = World(tmp_path, replay, smtp, hook, env)
        world.channels(
            mail_channel("mail", smtp, ["biomed_coop"]), hook_channel("hook", hook, ["*"])
        )
        yield world


def crawl_child_of(parent: int) -> int | None:
    """Return the pid of a `scrapy crawl` child of process `parent`, or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"scrapy" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def settle(seconds: float = 2.0) -> None:
    """Wait a moment so that anything wrongly sent twice has time to arrive."""
    time.sleep(seconds)
