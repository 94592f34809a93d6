"""Secrets come from the environment or an owner-only file and never show in logs, output or stats;
Scrapy's telnet console and remote control are off."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from scrapy.utils.project import get_project_settings
from sqlalchemy import create_engine, text

from crawler.config import AppSettings
from monitor.crawl import crawl_command
from monitor.notifiers.webhook import sign
from replay.sinks import SmtpSink, WebhookSink
from tests.e2e import monitor_env, run_monitor
from tests.hostile_server import HostileServer, seed_yaml

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
SMTP_SECRET = "smtp-Secret-7f3a9c"
HOOK_SECRET = "hook-Secret-51d2e8"
WRONG_SECRET = "wrong-Secret-0b7c44"
SECRETS = (SMTP_SECRET, HOOK_SECRET, WRONG_SECRET)


def channels_yaml(smtp: SmtpSink, hook: WebhookSink, secret_file: Path) -> str:
    """Return a channels file whose password and secret come from the environment and a file."""
    return textwrap.dedent(f"""\
        channels:
          mail:
            kind: email
            host: 127.0.0.1
            port: {smtp.port}
            security: none
            username: monitor
            password_env: SMTP_PASSWORD
            from: monitor@example.org
            to: [analyst@example.org]
          hook:
            kind: webhook
            url: {hook.url}hook
            secret_file: {secret_file}
        """)


def assert_no_secret(*texts: str) -> None:
    """Fail if any secret value appears in any of `texts`."""
    for number, text_ in enumerate(texts):
        for secret in SECRETS:
            assert secret not in text_, f"secret {secret[:6]}… leaked in text #{number}"


@pytest.fixture
def world(tmp_path: Path):
    """Start an SMTP server that requires the password and a webhook receiver; yield an env."""
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(HOOK_SECRET + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    with SmtpSink(credentials={"monitor": SMTP_SECRET}) as smtp, WebhookSink() as hook:
        channels = tmp_path / "channels.yaml"
        channels.write_text(channels_yaml(smtp, hook, secret_file), encoding="utf-8")
        env = monitor_env(
            tmp_path,
            "http://127.0.0.1:9",
            channels,
            SMTP_PASSWORD=SMTP_SECRET,
            MONITOR_LOG_LEVEL="DEBUG",
        )
        yield smtp, hook, env, secret_file


def test_password_from_env_and_secret_from_file_work_and_stay_out_of_output(world) -> None:
    smtp, hook, env, _secret_file = world
    mail = run_monitor(["notify-test", "mail"], env)
    assert mail.returncode == 0, mail.stderr
    assert len(smtp.wait_for(1)) == 1  # the server accepted the password
    posted = run_monitor(["notify-test", "hook"], env)
    assert posted.returncode == 0, posted.stderr
    [request] = hook.wait_for(1)
    timestamp = request.headers["x-monitor-timestamp"]
    assert request.headers["x-monitor-signature"] == sign(HOOK_SECRET, timestamp, request.body)
    assert_no_secret(mail.stdout, mail.stderr, posted.stdout, posted.stderr, request.body.decode())


def test_failures_name_the_problem_without_the_secret(world) -> None:
    smtp, _hook, env, secret_file = world
    wrong = run_monitor(["notify-test", "mail"], {**env, "SMTP_PASSWORD": WRONG_SECRET})
    assert wrong.returncode == 1 and "authentication failed" in wrong.stderr
    assert smtp.messages == []
    missing = run_monitor(["notify-test", "mail"], {**env, "SMTP_PASSWORD": ""})
    assert "environment variable SMTP_PASSWORD is not set" in missing.stderr
    secret_file.chmod(0o644)
    shared = run_monitor(["notify-test", "hook"], env)
    assert shared.returncode == 1 and f"run `chmod 600 {secret_file}`" in shared.stderr
    assert_no_secret(wrong.stdout, wrong.stderr, missing.stderr, shared.stdout, shared.stderr)


def test_a_secret_written_into_the_channels_file_is_refused_and_not_echoed(world) -> None:
    _smtp, _hook, env, _secret_file = world
    inline = Path(env["MONITOR_CHANNELS_FILE"]).with_name("inline.yaml")
    inline.write_text(
        "channels:\n  mail:\n    kind: email\n    host: 127.0.0.1\n    username: monitor\n"
        f"    password: {SMTP_SECRET}\n    from: a@example.org\n    to: [b@example.org]\n",
        encoding="utf-8",
    )
    done = run_monitor(["sources", "--check"], {**env, "MONITOR_CHANNELS_FILE": str(inline)})
    assert done.returncode == 1
    assert f"{inline}:6: channels.mail.password: Extra inputs are not permitted" in done.stderr
    assert_no_secret(done.stdout, done.stderr)


def test_crawl_logs_stats_and_monitor_output_hold_no_secret(tmp_path: Path, world) -> None:
    _smtp, _hook, env, _secret_file = world
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "good.yaml").write_text(seed_yaml("good"), encoding="utf-8")
    with HostileServer() as server:
        env = {
            **env,
            "MONITOR_SEEDS_DIR": str(seeds),
            "MONITOR_REPLAY_URL": server.url,
            "MONITOR_CRAWL_LOG_LEVEL": "DEBUG",
            "WEBHOOK_TOKEN": HOOK_SECRET,
        }
        run = run_monitor(["run", "--once"], env)
    assert run.returncode == 0, run.stderr[-3000:]
    crawl_log = (Path(env["MONITOR_DATA_DIR"]) / "logs" / "crawl.log").read_text("utf-8")
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        runs = [dict(r._mapping) for r in conn.execute(text("select * from crawl_runs"))]
    engine.dispose()
    assert runs and runs[0]["status"] == "ok"
    listings = [run_monitor([*args], env) for args in (["alerts"], ["articles"], ["sources"])]
    assert_no_secret(
        run.stdout,
        run.stderr,
        crawl_log,
        json.dumps(runs, default=str),
        *(x.stdout + x.stderr for x in listings),
    )
    # Neither console listens: Scrapy would log it and list the extension as enabled.
    enabled = crawl_log.split("Enabled extensions:", 1)[1].split("]", 1)[0]
    assert "TelnetConsole" not in enabled and "RemoteControl" not in enabled
    assert "Telnet console listening" not in crawl_log


def test_telnet_and_remote_control_are_off_in_the_settings() -> None:
    settings = get_project_settings()
    assert settings.getbool("TELNETCONSOLE_ENABLED") is False
    assert settings.getbool("REMOTE_CONTROL_ENABLED") is False


def test_the_database_password_is_not_put_on_the_crawl_command_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://monitor:db-Secret-99@127.0.0.1:5432/monitor"
    settings = AppSettings(DATABASE_URL=url, data_dir=tmp_path)
    argv = crawl_command(["kaiping"], settings, tmp_path / "crawl.log")
    assert not any("db-Secret-99" in part for part in argv)
    assert os.environ.get("DATABASE_URL", "") != url
