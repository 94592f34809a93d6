"""The offline tour (`make demo`): replay sites, local SMTP and webhook, the daemon, a new post, its alert.

Everything runs on 127.0.0.1 in a temporary folder and stops by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from crawler.config import PROJECT_ROOT
from replay.server import ReplayServer
from replay.sinks import SmtpSink, WebhookSink

TITLE = "香港理工大學與開平市簽署協議 共建生物醫藥技術創新研究院"
PARAGRAPHS = [
    (
        "11月21日，香港理工大學與開平市人民政府簽署合作協議，雙方將在翠山湖新區共建"
        "“香港理工大學開平生物醫藥技術創新研究院”，聚焦創新藥物研發、醫療器械與臨床轉化。"
    ),
    "研究院將搭建科技成果轉化平台，與本地醫藥企業開展產學研合作，推動生物醫藥產業集群發展。",
]


def say(line: str) -> None:
    """Print one line of the tour."""
    print(f"[demo] {line}", flush=True)


def wait_until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Return check()'s first truthy value, polling; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")


def crawled_ok(database_url: str) -> int:
    """Return how many crawl runs ended well so far."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("select count(*) from crawl_runs where status = 'ok'")
                ).scalar_one()
            )
    except SQLAlchemyError:  # the daemon has not created its tables yet
        return 0
    finally:
        engine.dispose()


def main() -> int:
    """Run the tour; return 0 when the alert arrived by email and by webhook."""
    workdir = Path(tempfile.mkdtemp(prefix="govmonitor-demo-"))
    database_url = f"sqlite:///{workdir / 'monitor.db'}"
    with ReplayServer(["kaiping"]) as replay, SmtpSink() as smtp, WebhookSink() as hook:
        say(f"replay of the kaiping site at {replay.url}/kaiping/kpskgsj/zwgk/dwdt/index.html")
        say(f"SMTP server on 127.0.0.1:{smtp.port}, webhook receiver at {hook.url}")
        channels = workdir / "channels.yaml"
        channels.write_text(
            textwrap.dedent(f"""\
            channels:
              email:
                kind: email
                host: 127.0.0.1
                port: {smtp.port}
                security: none
                from: monitor@example.org
                to: [analyst@example.org]
              webhook:
                kind: webhook
                url: {hook.url}
              console:
                kind: console
            """),
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.update(
            DATABASE_URL=database_url,
            MONITOR_REPLAY_URL=replay.url,
            MONITOR_CHANNELS_FILE=str(channels),
            MONITOR_DATA_DIR=str(workdir / "data"),
            MONITOR_DISPATCH_EVERY_SECONDS="2",
        )
        say("starting the daemon: monitor run --every 5s")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--every", "5s"], env=env, cwd=PROJECT_ROOT
        )
        try:
            wait_until(lambda: crawled_ok(database_url), 90, "the first crawl")
            say("first crawl done: the column's existing posts are the baseline (no alerts)")
            url = replay.publish("kaiping", TITLE, PARAGRAPHS)
            say(f"published a new post on the replay: {url}")
            mail = wait_until(lambda: smtp.messages, 90, "the email")[0].message
            post = wait_until(lambda: hook.deliveries, 30, "the webhook")[0]
            say("email arrived:")
            print(f"  Subject: {mail['Subject']}\n  To: {mail['To']}")
            body = mail.get_body(preferencelist=("plain",)).get_content()
            print(textwrap.indent(body.strip(), "  | "))
            say("webhook arrived:")
            print(textwrap.indent(json.dumps(post.json, ensure_ascii=False, indent=2), "  | "))
            say("done: the alert arrived by email and by webhook")
            return 0
        except TimeoutError as exc:
            say(f"FAILED: {exc}")
            return 1
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()


if __name__ == "__main__":
    raise SystemExit(main())
