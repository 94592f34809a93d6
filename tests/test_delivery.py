"""Delivery reliability with real parts: replay, SMTP and webhook sinks, the monitor as subprocesses.

Outages, retries, dead letters, and crashes (SIGKILL) at several points of a cycle: every alert
arrives, in order, and a crash can at most repeat the same alert (same idempotency key, same
Message-ID), never send two different alerts for one story.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Self

import pytest

from crawler.config import PROJECT_ROOT
from monitor.dispatcher import CRASH_EXIT_CODE
from tests.e2e import monitor_env
from tests.world import (
    POSTS,
    World,
    crawl_child_of,
    hook_channel,
    mail_channel,
    make_world,
    query,
    settle,
    wait_until,
)


@pytest.fixture
def world(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Return a world past its baseline, with `mail` (biomed_coop) and `hook` ('*') channels."""
    with make_world(tmp_path, tmp_path_factory) as made:
        yield made


def alerts(world: World) -> int:
    """Return how many alerts the outbox holds."""
    return int(world.scalar("select count(*) from alerts"))


def has_alerts(world: World, count: int) -> bool:
    """Return True once the outbox holds `count` alerts."""
    return alerts(world) >= count


def test_smtp_down_for_several_cycles_then_every_alert_once_in_order(world: World) -> None:
    world.smtp.stop()
    # Retries every half second: enough attempts that no email becomes a dead letter meanwhile.
    with world.daemon(every="1s", MONITOR_MAX_ATTEMPTS="100000") as daemon:
        for number in range(3):
            world.publish(number)
            wait_until(partial(has_alerts, world, number + 1), 120, f"alert {number + 1}")
        # The oldest email is retried; the later ones wait behind it, in order.
        mail = world.rows(
            "select state, attempts from deliveries where channel = 'mail' order by id"
        )
        assert [state for state, _ in mail] == ["pending"] * 3 and mail[0][1] >= 2
        assert world.smtp.messages == []
        assert len(world.hook.wait_for(3, timeout=30)) == 3
        world.smtp.start()
        mails = world.smtp.wait_for(3, timeout=60)
        settle()
        assert "Traceback" not in daemon.log()
    mails = world.smtp.messages
    assert [str(mail.message["Subject"]).split("】", 1)[1] for mail in mails] == [
        title for title, _ in POSTS
    ]
    assert len({mail.message["Message-ID"] for mail in mails}) == 3
    assert [request.json["title"] for request in world.hook.deliveries] == [t for t, _ in POSTS]
    assert world.rows("select channel, state, count(*) from deliveries group by 1, 2") == [
        ("hook", "sent", 3),
        ("mail", "sent", 3),
    ]


def test_webhook_500_three_times_then_200_delivers_once(world: World) -> None:
    world.channels(hook_channel("hook", world.hook, ["*"]))
    world.hook.fail_next(3, status=500)
    world.publish(0)
    with world.daemon():
        world.hook.wait_for(1, timeout=120)
        settle()
    attempts = world.hook.attempts
    assert [request.status for request in attempts] == [500, 500, 500, 200]
    assert len({request.headers["idempotency-key"] for request in attempts}) == 1
    assert world.rows("select state, attempts from deliveries") == [("sent", 4)]


def test_dead_letter_is_listed_and_sent_again_by_retry(world: World) -> None:
    world.channels(hook_channel("hook", world.hook, ["*"]))
    world.hook.fail_next(1000, status=503)
    world.publish(0)
    with world.daemon(MONITOR_MAX_ATTEMPTS="2"):
        wait_until(
            lambda: world.rows("select state from deliveries") == [("failed",)],
            120,
            "the dead letter",
        )
    assert len(world.hook.attempts) == 2 and world.hook.deliveries == []

    listed = world.monitor("alerts", "--state", "failed")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert "\tfailed\thook\tattempts=2\t" + POSTS[0][0] in line and "503" in line
    assert world.monitor("alerts", "--state", "sent").stdout == ""

    world.hook.clear()
    retried = world.monitor("alerts", "retry")
    assert retried.returncode == 0 and retried.stdout.startswith("1 failed deliveries queued")
    assert world.monitor("alerts", "--state", "failed").stdout == ""
    assert world.run_once().returncode == 0
    (delivery,) = world.hook.wait_for(1)
    assert delivery.json["title"] == POSTS[0][0]
    assert world.rows("select state, attempts from deliveries") == [("sent", 1)]


def assert_one_story_delivered_once(world: World, url: str) -> None:
    """Assert one alert for `url`, sent once on each channel (a resend keeps key and Message-ID)."""
    settle()
    assert world.scalar("select count(*) from alerts") == 1
    payload_url = world.scalar("select json_extract(payload, '$.url') from alerts")
    assert payload_url == url
    assert world.rows("select channel, state from deliveries order by channel") == [
        ("hook", "sent"),
        ("mail", "sent"),
    ]
    keys = {request.headers["idempotency-key"] for request in world.hook.deliveries}
    message_ids = {mail.message["Message-ID"] for mail in world.smtp.messages}
    assert len(keys) == 1 and len(message_ids) == 1
    assert 1 <= len(world.hook.deliveries) <= 2 and 1 <= len(world.smtp.messages) <= 2


def test_sigkill_during_the_crawl_loses_and_repeats_nothing(world: World) -> None:
    url = world.publish(0)
    list_path = world.replay.list_url("kaiping").split(str(world.replay.port), 1)[1]
    # A download delay holds the crawl between the list page and the new article, so the
    # kill below lands in the middle of the crawl however loaded the machine is.
    slow = {"MONITOR_CRAWL_SETTINGS": '{"DOWNLOAD_DELAY": "20"}'}
    with world.daemon(**slow) as daemon:
        wait_until(
            lambda: (
                daemon.crawl_child() and any(r.path == list_path for r in world.replay.requests)
            ),
            120,
            "the crawl reading the list page",
            every=0.02,
        )
        daemon.kill()
    assert world.rows("select status from crawl_runs order by id desc limit 1") == [("running",)]
    assert world.smtp.messages == [] and world.hook.deliveries == []
    with world.daemon():
        world.smtp.wait_for(1, timeout=120)
        world.hook.wait_for(1, timeout=30)
    assert_one_story_delivered_once(world, url)
    assert len(world.hook.deliveries) == 1 and len(world.smtp.messages) == 1


def test_sigkill_after_classification_loses_and_repeats_nothing(world: World) -> None:
    world.smtp.stop()
    world.hook.fail_next(1000, status=503)
    url = world.publish(0)
    with world.daemon() as daemon:
        wait_until(lambda: alerts(world) == 1, 120, "the alert queued")
        daemon.kill()
    assert world.hook.deliveries == []
    world.smtp.start()
    world.hook.clear()
    with world.daemon():
        world.smtp.wait_for(1, timeout=120)
        world.hook.wait_for(1, timeout=30)
    assert_one_story_delivered_once(world, url)
    assert len(world.hook.deliveries) == 1 and len(world.smtp.messages) == 1


def test_crash_between_send_and_record_resends_the_same_alert(world: World) -> None:
    url = world.publish(0)
    # Channels are dispatched in name order: the mail goes first, then the webhook.
    world.channels(
        mail_channel("a-mail", world.smtp, ["biomed_coop"]),
        hook_channel("b-hook", world.hook, ["*"]),
    )
    crashed = world.run_once(MONITOR_TEST_CRASH_AFTER_SEND="1")
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    assert len(world.smtp.messages) == 1 and world.hook.attempts == []

    # The resent email is refused this time, so the next crash comes after the webhook.
    world.smtp.fail_with(451)
    crashed = world.run_once(MONITOR_TEST_CRASH_AFTER_SEND="1")
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    assert len(world.smtp.messages) == 1 and len(world.hook.deliveries) == 1

    world.smtp.fail_with(None)
    assert world.run_once().returncode == 0
    settle()
    assert world.scalar("select count(*) from alerts") == 1
    assert world.rows("select channel, state from deliveries order by channel") == [
        ("a-mail", "sent"),
        ("b-hook", "sent"),
    ]
    mails, posts = world.smtp.messages, world.hook.deliveries
    assert len(mails) == 2 and len(posts) == 2
    assert mails[0].message["Message-ID"] == mails[1].message["Message-ID"]
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert posts[0].json == posts[1].json and posts[0].json["url"] == url


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        """Accept connections until the socket is closed, holding each one open."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def __enter__(self) -> Self:
        """Start accepting; return self."""
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop accepting and drop every held connection."""
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_crawl_overrunning_its_timeout_is_killed_with_its_group_and_recorded(
    tmp_path: Path,
) -> None:
    with SilentServer() as server:
        env = monitor_env(
            tmp_path, f"http://127.0.0.1:{server.port}", None, MONITOR_CRAWL_TIMEOUT="12"
        )
        started = time.monotonic()
        monitor = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--once", "--sources", "kaiping"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        child = wait_until(lambda: crawl_child_of(monitor.pid), 60, "the crawl child", every=0.05)
        _, stderr = monitor.communicate(timeout=120)
        elapsed = time.monotonic() - started
        assert server.held, "the crawl never connected"
    assert monitor.returncode == 1, stderr[-2000:]
    assert "crawl timeout" in stderr and "timed out after 12s" in stderr
    assert child is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(child, 0)
    assert elapsed < 60
    runs = query(env["DATABASE_URL"], "select status, error from crawl_runs")
    assert runs == [("timeout", "timed out after 12s")]
