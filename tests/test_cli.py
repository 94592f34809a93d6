"""The read-and-repair commands on a database past a real baseline crawl: `monitor alerts`,
`monitor articles`, `monitor notify-test`, `monitor reclassify`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from crawler.config import get_settings
from crawler.db import session_factory
from crawler.models import Alert, Delivery
from monitor.cli import main
from replay.sinks import WebhookSink
from tests.world import baseline, hook_channel, query

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
SEED_TITLE = "江門市“邑科匯”科技成果對接會(生物醫(yī)藥領域)在開平舉辦"
SAFETY_TOPIC = """\
version: 1
topics:
  work_safety:
    label: 安全生产
    threshold: 3
    groups:
      safety:
        terms:
          安全生产: 3
"""


class Cli:
    """Runs `monitor` commands in this process against one database and channels file."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        """Return (exit status, stdout, stderr) of `monitor ARGS`."""
        get_settings.cache_clear()
        self.capsys.readouterr()
        status = main(list(args))
        out, err = self.capsys.readouterr()
        return status, out, err

    def lines(self, *args: str) -> list[str]:
        """Return the output lines of a command that must succeed."""
        status, out, err = self(*args)
        assert status == 0, err
        return out.splitlines()


@pytest.fixture
def hook() -> Iterator[WebhookSink]:
    """Return a running webhook sink."""
    with WebhookSink() as sink:
        yield sink


@pytest.fixture
def cli(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hook: WebhookSink,
) -> Iterator[Cli]:
    """Return a `monitor` runner on a copy of the baseline database, with one webhook channel."""
    _, database = baseline(tmp_path_factory)
    shutil.copy(database, tmp_path / "monitor.db")
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    channels = tmp_path / "channels.yaml"
    channels.write_text("channels:\n" + hook_channel("hook", hook, ["*"]), encoding="utf-8")
    for name in [name for name in os.environ if name.startswith("MONITOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MONITOR_CHANNELS_FILE", str(channels))
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path / "data"))
    yield Cli(url, capsys)
    get_settings.cache_clear()


def test_articles_by_source_topic_search_and_limit(cli: Cli) -> None:
    every = cli.lines("articles", "--source", "kaiping")
    assert len(every) == 22
    assert all(line.split("\t")[1] == "kaiping" for line in every)
    assert cli.lines("articles", "--source", "nowhere") == []
    biomed = cli.lines("articles", "--topic", "biomed_coop")
    assert len(biomed) == 3 and all(line.split("\t")[3] == "biomed_coop" for line in biomed)
    assert SEED_TITLE in "\n".join(biomed)
    (found,) = cli.lines("articles", "--search", "邑科匯")
    assert found.split("\t")[4] == SEED_TITLE
    # Simplified search words find the traditional, pinyin-annotated seed (醫(yī)藥領域).
    assert SEED_TITLE in "\n".join(cli.lines("articles", "--search", "生物医药领域"))
    newest = cli.lines("articles", "--limit", "2")
    assert len(newest) == 2 and newest[0].split("\t")[2].startswith("2025-01-16")
    assert len(cli.lines("articles", "--since", "2025-01-01")) == 3


def add_deliveries(url: str, states: list[str]) -> list[int]:
    """Add one alert per state, each delivered on channel `hook` in that state; return their ids."""
    sessions = session_factory(url)
    ids = []
    with sessions.begin() as session:
        for number, state in enumerate(states):
            alert = Alert(
                idempotency_key=f"key-{number}",
                kind="new",
                payload={"title": f"公告 {number}", "url": f"http://kaiping.test/{number}"},
                created_at=NOW,
            )
            session.add(alert)
            session.flush()
            delivery = Delivery(
                alert_id=alert.id,
                channel="hook",
                state=state,
                attempts=10 if state == "failed" else 1,
                next_attempt_at=NOW,
                last_error="HTTP 503 (retryable)" if state == "failed" else None,
            )
            session.add(delivery)
            session.flush()
            ids.append(delivery.id)
    return ids


def test_alerts_lists_by_state_and_retry_requeues_dead_letters(cli: Cli) -> None:
    sent, failed, pending, other_failed = add_deliveries(
        cli.url, ["sent", "failed", "pending", "failed"]
    )
    listed = cli.lines("alerts")
    assert [int(line.split("\t")[0]) for line in listed] == [other_failed, pending, failed, sent]
    dead = cli.lines("alerts", "--state", "failed")
    assert [line.split("\t")[:4] for line in dead] == [
        [str(other_failed), "failed", "hook", "attempts=10"],
        [str(failed), "failed", "hook", "attempts=10"],
    ]
    assert dead[1].split("\t")[4:] == ["公告 1", "http://kaiping.test/1", "HTTP 503 (retryable)"]
    assert len(cli.lines("alerts", "--limit", "1")) == 1

    assert cli.lines("alerts", "retry", str(failed)) == [
        "1 failed deliveries queued again; the daemon sends them on its next sweep"
    ]
    rows = query(cli.url, "select id, state, attempts from deliveries order by id")
    assert rows == [
        (sent, "sent", 1),
        (failed, "pending", 0),
        (pending, "pending", 1),
        (other_failed, "failed", 10),
    ]
    assert cli.lines("alerts", "retry", str(sent))[0].startswith("0 failed deliveries")
    assert cli.lines("alerts", "retry")[0].startswith("1 failed deliveries")
    assert cli.lines("alerts", "--state", "failed") == []


def test_notify_test_reports_success_unknown_channel_and_failures(
    cli: Cli, hook: WebhookSink
) -> None:
    assert cli.lines("notify-test", "hook") == ["test alert sent to hook"]
    (request,) = hook.wait_for(1)
    assert request.json["kind"] == "test" and "测试消息" in request.json["title"]
    assert request.headers["idempotency-key"] == request.json["idempotency_key"]

    status, _, err = cli("notify-test", "nope")
    assert status == 2 and "no channel 'nope'; channels: hook" in err

    hook.fail_next(1, status=503)
    status, _, err = cli("notify-test", "hook")
    assert status == 1 and "test alert to hook failed (temporary)" in err
    hook.fail_next(1, status=404)
    status, _, err = cli("notify-test", "hook")
    assert status == 1 and "failed (permanent)" in err
    assert len(hook.deliveries) == 1


def test_reclassify_changes_topics_and_alerts_only_when_asked(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.lines("reclassify") == [
        "22 articles reclassified, 0 changed topics, 0 alerts queued"
    ]
    # Pretend the posts came after the baseline: now only --alert keeps them from alerting.
    sessions = session_factory(cli.url)
    with sessions.begin() as session:
        session.execute(text("update article_versions set baseline = 0"))
    topics = tmp_path / "topics.yaml"
    topics.write_text(SAFETY_TOPIC, encoding="utf-8")
    monkeypatch.setenv("MONITOR_TOPICS_FILE", str(topics))

    assert cli.lines("reclassify") == [
        "22 articles reclassified, 2 changed topics, 0 alerts queued"
    ]
    assert query(cli.url, "select count(*) from alerts") == [(0,)]
    safety = cli.lines("articles", "--topic", "work_safety")
    assert len(safety) == 2 and all("安全生產(chǎn)" in line for line in safety)

    # Every matching post (3 biomedical, 2 work safety) alerts once, however often it is run.
    assert cli.lines("reclassify", "--alert") == [
        "22 articles reclassified, 0 changed topics, 5 alerts queued"
    ]
    assert cli.lines("reclassify", "--alert")[0].endswith("0 alerts queued")
    assert query(cli.url, "select count(*), count(distinct alert_id) from deliveries") == [(5, 5)]
