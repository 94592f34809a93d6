"""A hacked page all the way to people: its markup, scripts and format strings arrive inert.

The daemon crawls a hostile server whose new post carries HTML, script tags, markdown links and
format strings in its title and body, classifies it, and sends it to a real SMTP server, a real
webhook receiver and an IM channel (Apprise `json://` to the same receiver). What arrived is
checked: escaped in HTML and markdown, verbatim in plain text and JSON, nothing evaluated.
"""

from __future__ import annotations

import html
import re
import textwrap
import time
from pathlib import Path

import pytest

from replay.sinks import SmtpSink, WebhookSink
from tests.e2e import BIOMED_PARAGRAPHS, BIOMED_TITLE, monitor_env, run_monitor
from tests.hostile_server import PARAGRAPH, HostileServer, article_page, seed_yaml

FORMAT_STRINGS = "{0}{title!r}%s%(url)s${7*7}"
SCRIPT = '<script>alert("x")</script>'
MD_LINK = "[点我](javascript:alert(1))"
HOSTILE_TITLE = f"{SCRIPT}{FORMAT_STRINGS}{MD_LINK}<b>{BIOMED_TITLE}"
HOSTILE_LINE = "<img src=x onerror=alert(2)> **粗体** # 标题 {__class__} %n"


def hostile_post() -> str:
    """Return the raw HTML of the hacked post: markup as text, and real script and img tags."""
    paragraphs = [html.escape(HOSTILE_LINE) + "<script>document.cookie</script>"]
    paragraphs += [html.escape(p) for p in BIOMED_PARAGRAPHS]
    page = article_page(html.escape(HOSTILE_TITLE), paragraphs)
    return page.replace("</body>", '<img src="x" onerror="alert(3)"></body>')


def channels_file(path: Path, smtp: SmtpSink, hook: WebhookSink) -> Path:
    """Write a channels file for email, webhook and an IM channel; return its path."""
    path.write_text(
        textwrap.dedent(f"""\
            channels:
              mail:
                kind: email
                host: 127.0.0.1
                port: {smtp.port}
                security: none
                from: monitor@example.org
                to: [analyst@example.org]
              hook:
                kind: webhook
                url: {hook.url}hook
              im:
                kind: apprise
                urls: ['json://127.0.0.1:{hook.port}/im']
            """),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def arrived(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run two daemon cycles (baseline, then the hacked post); return what the sinks got."""
    tmp = tmp_path_factory.mktemp("content")
    seeds = tmp / "seeds"
    seeds.mkdir()
    (seeds / "content.yaml").write_text(seed_yaml("content"), encoding="utf-8")
    with HostileServer() as server, SmtpSink() as smtp, WebhookSink() as hook:
        env = monitor_env(
            tmp,
            server.url,
            channels_file(tmp / "channels.yaml", smtp, hook),
            MONITOR_SEEDS_DIR=str(seeds),
        )
        server.posts.append(article_page("开平市召开企业座谈会", [PARAGRAPH]))
        first = run_monitor(["run", "--once"], env)
        assert first.returncode == 0, first.stderr[-3000:]
        server.posts.append(hostile_post())
        second = run_monitor(["run", "--once"], env)
        assert second.returncode == 0, second.stderr[-3000:]
        [mail] = smtp.wait_for(1)
        posts = hook.wait_for(2)
        time.sleep(0.5)  # anything more would be a wrong alert
        counts = (len(smtp.messages), len(hook.attempts))
    return {
        "counts": counts,
        "mail": mail,
        "hook": next(p for p in posts if p.path == "/hook"),
        "im": next(p for p in posts if p.path == "/im"),
        "log": first.stderr + second.stderr,
    }


def test_email_shows_hostile_text_escaped_in_html_and_verbatim_in_text(arrived: dict) -> None:
    mail = arrived["mail"]
    message = mail.message
    assert mail.rcpt_tos == ["analyst@example.org"]
    assert message["Bcc"] is None and message["Cc"] is None
    subject = str(message["Subject"])
    assert SCRIPT in subject and FORMAT_STRINGS in subject and "\n" not in subject
    text_part = message.get_body(preferencelist=("plain",)).get_content()
    assert SCRIPT in text_part and FORMAT_STRINGS in text_part and "{__class__} %n" in text_part
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert not re.search(r"<\s*(script|img|iframe)", html_part, re.IGNORECASE)
    assert "onerror=" not in html_part.replace("onerror=alert(2)", "")
    assert html.escape(SCRIPT) in html_part
    assert "&lt;img src=x onerror=alert(2)&gt;" in html_part
    assert 'href="javascript' not in html_part and "document.cookie" not in html_part


def test_webhook_carries_the_text_as_plain_json_strings(arrived: dict) -> None:
    payload = arrived["hook"].json
    assert payload["title"].startswith(SCRIPT + FORMAT_STRINGS + MD_LINK)
    assert HOSTILE_LINE in payload["excerpt"]
    assert "document.cookie" not in payload["excerpt"] and "alert(3)" not in payload["excerpt"]


def test_im_markdown_has_every_control_character_escaped(arrived: dict) -> None:
    message = arrived["im"].json["message"]
    quoted = re.sub(r"(?m)^> ", "", message)  # the excerpt is a blockquote
    assert not re.search(r"(?<!\\)[<>]", quoted)  # every other angle bracket is escaped
    assert "](javascript:" not in message and "document.cookie" not in message
    assert "\\[点我\\]\\(javascript:alert\\(1\\)\\)" in message
    assert "\\*\\*粗体\\*\\*" in message
    assert "{0}{title\\!r}%s%\\(url\\)s${7\\*7}" in message  # literal, never formatted


def test_only_the_hacked_post_alerted_once_per_channel_and_nothing_crashed(arrived: dict) -> None:
    assert arrived["counts"] == (1, 2)  # the baseline post did not alert
    assert "Traceback" not in arrived["log"]
