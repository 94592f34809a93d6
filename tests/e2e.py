"""Helpers for end-to-end tests: the monitor as a user runs it, against replays and real sinks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from crawler.config import PROJECT_ROOT

BIOMED_TITLE = "香港科技大學與開平市簽署協議 共建生物醫藥聯合實驗室"
BIOMED_PARAGRAPHS = [
    (
        "11月20日，香港科技大學與開平市人民政府在翠山湖科技產業園簽署合作協議，"
        "雙方將共建“港科大開平生物醫藥聯合實驗室”，聚焦創新藥物研發與醫療器械成果轉化。"
    ),
    (
        "根據協議，實驗室將引入香港科技大學在生物醫藥領域的科研團隊，與本地藥企開展聯合攻關，"
        "推動臨床研究和產學研合作，助力開平生物醫藥產業集群發展。"
    ),
]


def channels_yaml(smtp_port: int, webhook_url: str, alerts_file: Path) -> str:
    """Return a channels file sending to a local SMTP server, a webhook and a JSONL file."""
    return textwrap.dedent(f"""\
        channels:
          mail:
            kind: email
            host: 127.0.0.1
            port: {smtp_port}
            security: none
            from: monitor@example.org
            to: [analyst@example.org]
            topics: [biomed_coop]
          hook:
            kind: webhook
            url: {webhook_url}
            topics: ['*']
          file:
            kind: file
            path: {alerts_file}
        """)


def monitor_env(tmp_path: Path, replay_url: str, channels_file: Path | None, **extra: str) -> dict:
    """Return the environment of a `monitor` process isolated in `tmp_path` (no channels file:
    the default console and file channels)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'monitor.db'}",
        MONITOR_REPLAY_URL=replay_url,
        MONITOR_DATA_DIR=str(tmp_path / "data"),
        MONITOR_SEEDS_DIR=str(PROJECT_ROOT / "seeds"),
    )
    if channels_file is not None:
        env["MONITOR_CHANNELS_FILE"] = str(channels_file)
    env.update(extra)
    return env


def run_monitor(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `monitor ARGS` to completion and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )


def crawl_argv(replay_url: str, sources: list[str], **settings: object) -> list[str]:
    """Return the argv of `scrapy crawl sources` of `sources` on a replay, with extra settings."""
    argv = [sys.executable, "-m", "scrapy", "crawl", "sources"]
    argv += ["-a", "sources=" + ",".join(sources)]
    for name, value in {"REPLAY_URL": replay_url, **settings}.items():
        argv += ["-s", f"{name}={value}"]
    return argv


def start_crawl(
    argv: list[str], env: dict, *, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """Start a crawl child as the daemon does (monitor/crawl.py): in a session of its own, so
    that its process group id is its pid, with no stdin or stdout."""
    return subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
