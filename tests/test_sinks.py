"""The local alert sinks: a real SMTP server and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage

import pytest

from replay.sinks import SmtpSink, WebhookSink


def _mail(subject: str) -> EmailMessage:
    """Return a small UTF-8 message."""
    message = EmailMessage()
    message["From"] = "bot@example.cn"
    message["To"] = "ops@example.cn"
    message["Subject"] = subject
    message.set_content("正文")
    return message


def _send_mail(sink: SmtpSink, subject: str = "主题") -> None:
    """Send one message to the sink with the standard library client."""
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as client:
        client.send_message(_mail(subject))


def _post(url: str, payload: object) -> int:
    """Return the HTTP status of one JSON POST."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"X-Test": "1"}, method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_smtp_sink_stores_parsed_message_and_envelope() -> None:
    with SmtpSink() as sink:
        assert sink.port > 0
        _send_mail(sink, "你好")
        [received] = sink.messages
    assert received.mail_from == "bot@example.cn"
    assert received.rcpt_tos == ["ops@example.cn"]
    assert received.message["Subject"] == "你好"
    assert received.message.get_content().strip() == "正文"


def test_smtp_sink_fails_with_the_given_code_until_reset() -> None:
    with SmtpSink() as sink:
        sink.fail_with(451)
        with pytest.raises(smtplib.SMTPDataError) as temporary:
            _send_mail(sink)
        sink.fail_with(550)
        with pytest.raises(smtplib.SMTPDataError) as permanent:
            _send_mail(sink)
        sink.fail_with(None)
        _send_mail(sink)
        assert len(sink.messages) == 1
    assert temporary.value.smtp_code == 451
    assert permanent.value.smtp_code == 550


def test_smtp_sink_restarts_on_the_same_port() -> None:
    sink = SmtpSink().start()
    try:
        port = sink.port
        _send_mail(sink, "一")
        sink.stop()
        with pytest.raises(OSError):
            _send_mail(sink, "停机")
        sink.start()
        assert sink.port == port
        _send_mail(sink, "二")
        assert [m.message["Subject"] for m in sink.messages] == ["一", "二"]
    finally:
        sink.stop()


def test_webhook_sink_records_requests_and_fails_on_demand() -> None:
    with WebhookSink() as sink:
        sink.fail_next(2, status=503)
        statuses = [_post(sink.url + "hook", {"n": n}) for n in range(3)]
        assert statuses == [503, 503, 200]
        assert [r.status for r in sink.attempts] == [503, 503, 200]
        [delivered] = sink.deliveries
    assert delivered.path == "/hook"
    assert delivered.json == {"n": 2}
    assert delivered.headers["x-test"] == "1"
    assert json.loads(delivered.body) == {"n": 2}


def test_webhook_sink_restarts_on_the_same_port() -> None:
    sink = WebhookSink().start()
    try:
        port = sink.port
        assert _post(sink.url, {"n": 1}) == 200
        sink.stop()
        with pytest.raises(urllib.error.URLError):
            _post(sink.url, {"n": 2})
        sink.start()
        assert sink.port == port
        assert _post(sink.url, {"n": 3}) == 200
        assert [r.json for r in sink.wait_for(2)] == [{"n": 1}, {"n": 3}]
    finally:
        sink.stop()
