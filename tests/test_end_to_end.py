"""The whole path with real parts: replay site, crawl, store, topics, outbox, SMTP and webhook."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from crawler.config import PROJECT_ROOT
from replay.server import ReplayServer
from replay.sinks import SmtpSink, WebhookSink
from tests.e2e import BIOMED_PARAGRAPHS, BIOMED_TITLE, channels_yaml, monitor_env, run_monitor


@pytest.fixture
def world(tmp_path: Path):
    """Start a kaiping replay, an SMTP sink and a webhook sink; yield them with an environment."""
    with ReplayServer(["kaiping"]) as replay, SmtpSink() as smtp, WebhookSink() as hook:
        channels = tmp_path / "channels.yaml"
        channels.write_text(
            channels_yaml(smtp.port, hook.url, tmp_path / "alerts.jsonl"), encoding="utf-8"
        )
        env = monitor_env(tmp_path, replay.url, channels, MONITOR_RETRY_BASE_SECONDS="1")
        yield replay, smtp, hook, env


def _count(env: dict, sql: str) -> int:
    engine = create_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def _execute(env: dict, sql: str) -> None:
    engine = create_engine(env["DATABASE_URL"])
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _cycle(env: dict) -> subprocess.CompletedProcess:
    done = run_monitor(["run", "--once", "--sources", "kaiping"], env)
    assert done.returncode == 0, done.stderr
    return done


def test_new_post_alerts_once_by_email_and_webhook_and_edit_is_a_version(world) -> None:
    replay, smtp, hook, env = world
    first = _cycle(env)
    assert "source kaiping:" in first.stderr
    assert _count(env, "select count(*) from articles") >= 21
    # The first crawl is the baseline: stored and classified, not alerted.
    assert _count(env, "select count(*) from article_versions where classified_at is null") == 0
    assert smtp.messages == [] and hook.deliveries == []

    url = replay.publish("kaiping", BIOMED_TITLE, BIOMED_PARAGRAPHS)
    _cycle(env)
    mails = smtp.wait_for(1)
    posts = hook.wait_for(1)
    assert len(mails) == 1 and len(posts) == 1
    message = mails[0].message
    assert BIOMED_TITLE in str(message["Subject"])
    text_part = message.get_body(preferencelist=("plain",)).get_content()
    assert url in text_part and "[biomed_coop]" in text_part and "生物医药合作" in text_part
    payload = posts[0].json
    assert payload["title"] == BIOMED_TITLE
    assert payload["url"] == url
    assert payload["kind"] == "new"
    assert payload["published_at"].startswith(time.strftime("%Y-"))
    assert payload["topics"][0]["name"] == "biomed_coop"
    assert posts[0].headers["idempotency-key"] == payload["idempotency_key"]

    _cycle(env)
    time.sleep(0.5)
    assert len(smtp.messages) == 1 and len(hook.deliveries) == 1

    replay.edit("kaiping", url, paragraphs=[*BIOMED_PARAGRAPHS, "首批5個合作項目同步簽約落地。"])
    # An edit of the body alone is caught by the article's revisit; make it due now.
    _execute(env, f"update articles set next_check_at = '2000-01-01' where url = '{url}'")
    _cycle(env)
    assert (
        _count(
            env,
            "select count(*) from article_versions v join articles a "
            f"on a.id = v.article_id where a.url = '{url}'",
        )
        == 2
    )
    changed = hook.wait_for(2)[1].json
    assert changed["kind"] == "changed"
    assert "+首批5個合作項目同步簽約落地。" in changed["diff"]
    lines = (Path(env["MONITOR_DATA_DIR"]).parent / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["new", "changed"]


def test_scrapy_crawl_kaiping_feed_export_against_replay(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with ReplayServer(["kaiping"]) as replay:
        env = monitor_env(tmp_path, replay.url, None)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "scrapy",
                "crawl",
                "kaiping",
                "-O",
                str(out),
                "-s",
                f"REPLAY_URL={replay.url}",
                "-s",
                "STORE_ENABLED=0",
                "-s",
                "LOG_LEVEL=INFO",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
        )
        seed_url = replay.seed_url("kaiping")
    assert done.returncode == 0, done.stderr[-2000:]
    items = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(items) >= 21
    seed = next(item for item in items if item["url"] == seed_url)
    assert seed["title"] == "江門市“邑科匯”科技成果對接會(生物醫(yī)藥領域)在開平舉辦"
    assert seed["published_at"] == "2024-11-05T17:11:06+08:00"
    assert seed["body"].startswith("為推進科技成果轉移轉化進程")
    for junk in ("打印", "字體", "版權所有", "ICP", "国产精品", "您當前的位置", "相關附件"):
        assert junk not in seed["body"]


def test_daemon_keeps_running_when_a_source_is_unreachable_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "kaiping.yaml").write_text(
        (PROJECT_ROOT / "seeds" / "kaiping.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    # Port 9 on loopback: nothing listens, so every request is refused at once.
    env = monitor_env(tmp_path, "http://127.0.0.1:9", None, MONITOR_SEEDS_DIR=str(seeds))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--every", "2s"],
        env=env,
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while (
            time.monotonic() < deadline
            and sum("source kaiping: crawl failed" in x for x in lines) < 2
        ):
            line = daemon.stderr.readline()
            if not line:
                break
            lines.append(line)
        failures = [x for x in lines if "source kaiping: crawl failed" in x]
        assert len(failures) >= 2, "".join(lines)
        assert "127.0.0.1:9" in failures[0] and "Connection" in failures[0]
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0
