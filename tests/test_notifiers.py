"""Alert channels against real local receivers (aiosmtpd, an HTTP server), rendering, channels file."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from monitor.channels import ChannelsError, default_channels, load_channels
from monitor.notifiers import DeliveryError, build, kind_help, send_test
from monitor.notifiers.base import ChannelConfig
from monitor.render import (
    AlertMessage,
    make_digest,
    md_escape,
    render_html,
    render_markdown,
    render_subject,
    render_text,
)
from replay.sinks import SmtpSink, WebhookSink

HOSTILE = "<script>alert(1)</script>{0}%s"
PASSWORD = "s3cret-Pa55word"
CST = dt.timezone(dt.timedelta(hours=8))
ROOT = Path(__file__).resolve().parent.parent


def alert(title: str = HOSTILE, **changes: object) -> AlertMessage:
    """Return a changed-post alert with `title`."""
    fields: dict[str, object] = {
        "idempotency_key": "k0123456789abcdef",
        "kind": "changed",
        "title": title,
        "url": "https://www.example.gov.cn/art/2024/5/1/art_1.html",
        "source_id": "example_news",
        "source_name": "示例市政府·通知公告",
        "published_at": dt.datetime(2024, 5, 1, 10, 0, tzinfo=CST),
        "topics": [
            {
                "name": "biomed_coop",
                "label": "生物医药合作",
                "score": 0.87,
                "matched": {"合作": ["战略合作"], "生物医药": ["创新药"]},
                "evidence": "双方签署*战略合作*协议",
            }
        ],
        "parties": ["示例生物医药有限公司", "[某]大学"],
        "excerpt": "正文第一段 <b>粗体</b> {name} %d",
        "diff": "--- a\n+++ b\n-旧的 ```\n+新的 <i>",
    }
    fields.update(changes)
    return AlertMessage(**fields)  # type: ignore[arg-type]


def channel(**fields: object) -> ChannelConfig:
    """Return one validated channel config, as load_channels would."""
    from monitor.channels import ChannelsFile

    return ChannelsFile.model_validate({"channels": {"c": fields}}).channels["c"]


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def hook() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Return (certificate, key) of a self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def mail_channel(sink: SmtpSink, **extra: object) -> ChannelConfig:
    """Return an email channel config pointing at `sink`."""
    fields = {
        "kind": "email",
        "host": "127.0.0.1",
        "port": sink.port,
        "security": "none",
        "from": "监测机器人 <bot@monitor.example.cn>",
        "to": ["ops@example.cn"],
        "timeout": 5,
        "helo": "localhost",  # no reverse DNS lookup of this host
    }
    fields.update(extra)
    return channel(**fields)


# --- email -----------------------------------------------------------------------------------


def test_email_arrives_with_utf8_subject_both_parts_and_key_message_id(smtp: SmtpSink) -> None:
    msg = alert()
    build("mail", mail_channel(smtp)).send(msg)
    [received] = smtp.messages
    email = received.message
    assert email["Subject"] == "【生物医药合作·内容更新】" + HOSTILE
    assert email["Message-ID"] == "<alert-k0123456789abcdef@monitor.example.cn>"
    assert received.rcpt_tos == ["ops@example.cn"]
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert HOSTILE in text and "示例市政府·通知公告" in text and "+新的 <i>" in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;{0}%s" in html
    assert "<b>粗体</b>" not in html and "<i>" not in html.replace("<i>双方", "")
    build("mail", mail_channel(smtp)).send(msg)  # a resend is recognisably the same message
    assert smtp.messages[1].message["Message-ID"] == email["Message-ID"]


def test_email_starttls_with_password_file(
    smtp: SmtpSink, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    password_file = tmp_path / "smtp-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    with SmtpSink(tls_context=server_tls, credentials={"bot": PASSWORD}) as sink:
        config = mail_channel(
            sink,
            security="starttls",
            ca_file=str(cert),
            username="bot",
            password_file=str(password_file),
        )
        build("mail", config).send(alert("标题"))
        assert sink.messages[0].message["Subject"] == "【生物医药合作·内容更新】标题"
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-password")
        wrong.chmod(0o600)
        with pytest.raises(DeliveryError) as failure:
            build(
                "mail",
                mail_channel(
                    sink,
                    security="starttls",
                    ca_file=str(cert),
                    username="bot",
                    password_file=str(wrong),
                ),
            ).send(alert())
    assert not failure.value.retryable
    assert "535" in str(failure.value) and "not-the-password" not in str(failure.value)


def test_email_untrusted_certificate_is_permanent(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    with SmtpSink(tls_context=server_tls) as sink, pytest.raises(DeliveryError) as failure:
        build("mail", mail_channel(sink, security="starttls")).send(alert())
    assert not failure.value.retryable


@pytest.mark.parametrize(("code", "retryable"), [(451, True), (421, True), (550, False)])
def test_email_smtp_reply_codes(smtp: SmtpSink, code: int, retryable: bool) -> None:
    smtp.fail_with(code)
    with pytest.raises(DeliveryError) as failure:
        build("mail", mail_channel(smtp)).send(alert())
    assert failure.value.retryable is retryable
    assert str(code) in str(failure.value)


def test_email_outage_is_retryable_then_delivers_on_restart(smtp: SmtpSink) -> None:
    notifier = build("mail", mail_channel(smtp))
    smtp.stop()
    with pytest.raises(DeliveryError) as failure:
        notifier.send(alert())
    assert failure.value.retryable
    smtp.start()
    notifier.send(alert())
    assert len(smtp.messages) == 1


def test_password_file_readable_by_others_is_refused(smtp: SmtpSink, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o644)
    config = mail_channel(smtp, username="bot", password_file=str(password_file))
    with pytest.raises(DeliveryError) as failure:
        build("mail", config).send(alert())
    assert not failure.value.retryable
    assert "0644" in str(failure.value) and "chmod 600" in str(failure.value)
    assert PASSWORD not in str(failure.value) and smtp.messages == []


def test_missing_password_env_is_permanent(smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    config = mail_channel(smtp, username="bot", password_env="TEST_SMTP_PASSWORD")
    with pytest.raises(DeliveryError) as failure:
        build("mail", config).send(alert())
    assert not failure.value.retryable and "TEST_SMTP_PASSWORD" in str(failure.value)


# --- webhook ---------------------------------------------------------------------------------


def test_webhook_posts_signed_payload_with_idempotency_key(
    hook: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HOOK_SECRET", "hmac-key-123")
    msg = alert()
    build(
        "hook", channel(kind="webhook", url=hook.url + "alerts", secret_env="TEST_HOOK_SECRET")
    ).send(msg)
    [request] = hook.deliveries
    assert request.path == "/alerts"
    assert request.headers["idempotency-key"] == msg.idempotency_key
    assert request.headers["content-type"].startswith("application/json")
    timestamp = request.headers["x-monitor-timestamp"]
    expected = hmac.new(b"hmac-key-123", timestamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["x-monitor-signature"] == "sha256=" + expected.hexdigest()
    assert request.json["schema_version"] == 1
    assert request.json["published_at"] == "2024-05-01T10:00:00+08:00"
    assert AlertMessage.from_payload(request.json) == msg


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False)],
)
def test_webhook_status_codes(
    hook: WebhookSink, status: int, retryable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HOOK_SECRET", "hmac-key-456")
    hook.fail_next(1, status=status)
    url = hook.url + "hook?token=url-token-xyz"
    config = channel(kind="webhook", url=url, secret_env="TEST_HOOK_SECRET")
    with pytest.raises(DeliveryError) as failure:
        build("hook", config).send(alert())
    assert failure.value.retryable is retryable
    assert str(status) in str(failure.value)
    assert "url-token-xyz" not in str(failure.value) and "hmac-key" not in str(failure.value)


def test_webhook_outage_is_retryable(hook: WebhookSink) -> None:
    notifier = build("hook", channel(kind="webhook", url=hook.url, timeout=5))
    hook.stop()
    with pytest.raises(DeliveryError) as failure:
        notifier.send(alert())
    assert failure.value.retryable
    hook.start()
    notifier.send(alert())
    assert len(hook.deliveries) == 1


# --- apprise, console, file -----------------------------------------------------------------


def test_apprise_json_url_reaches_receiver(hook: WebhookSink) -> None:
    msg = alert()
    build("im", channel(kind="apprise", urls=[f"json://127.0.0.1:{hook.port}/im"])).send(msg)
    [request] = hook.deliveries
    assert request.path == "/im"
    assert request.json["title"] == render_subject(msg)
    assert "示例市政府" in request.json["message"]
    hook.fail_next(1, status=500)
    with pytest.raises(DeliveryError) as failure:
        build("im", channel(kind="apprise", urls=[f"json://127.0.0.1:{hook.port}/im"])).send(msg)
    assert failure.value.retryable


def test_apprise_bad_url_is_permanent_and_keeps_the_token_out_of_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for url in ("nosuchservice://tok-abcdef/", "dingtalk://tok-abcdef/"):
        with pytest.raises(DeliveryError) as failure:
            build("im", channel(kind="apprise", urls=[url])).send(alert())
        assert not failure.value.retryable and "tok-abcdef" not in str(failure.value)
    assert "DingTalk" in caplog.text and "tok-abcdef" not in caplog.text


def test_console_and_file_channels(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    build("console", channel(kind="console")).send(alert("控制台标题"))
    assert "控制台标题" in capsys.readouterr().out
    path = tmp_path / "out" / "alerts.jsonl"
    notifier = build("file", channel(kind="file", path=str(path)))
    notifier.send(alert("一"))
    notifier.send(alert("二"))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["title"] for line in lines] == ["一", "二"]


def test_send_test_uses_the_channel(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    message = send_test("file", channel(kind="file", path=str(path)))
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == message.kind == "test"


# --- rendering and payload --------------------------------------------------------------------


def test_renderings_escape_scraped_text() -> None:
    msg = alert(url="javascript:alert(1)")
    html = render_html(msg)
    assert "<script>" not in html and "javascript:" not in html.split("链接")[0]
    assert 'href="javascript' not in html
    markdown = render_markdown(alert(title="[点我](http://evil.example) *粗* # 标题"))
    assert "\\[点我\\]\\(http://evil.example\\)" in markdown and "\\*粗\\*" in markdown
    assert "````\n--- a\n+++ b\n-旧的 ```\n+新的 <i>\n````" in markdown  # fence outgrows ```
    assert render_text(msg).count(HOSTILE) == 1
    assert [md_escape(t) for t in ("1. 一", "# 二", "2024-05-01")] == [
        "1\\. 一",
        "\\# 二",
        "2024-05-01",
    ]
    assert "\n" not in render_subject(alert(title="换\n行\r\n标题"))


def test_payload_round_trip_and_digest() -> None:
    msg = alert(published_at=None, diff=None)
    payload = json.loads(json.dumps(msg.to_payload()))
    assert payload["schema_version"] == 1 and payload["published_at"] is None
    assert AlertMessage.from_payload(payload) == msg
    digest = make_digest([alert(), alert(idempotency_key="other")], "过去一小时")
    assert (
        digest.idempotency_key
        == make_digest([digest.entries[1], digest.entries[0]], "x").idempotency_key
    )
    assert AlertMessage.from_payload(digest.to_payload()) == digest
    assert render_text(digest).count(HOSTILE) == 2
    with pytest.raises(ValueError, match="schema_version"):
        AlertMessage.from_payload({**payload, "schema_version": 99})


# --- channels file ----------------------------------------------------------------------------


def test_example_channels_file_loads_and_every_kind_has_help() -> None:
    channels = load_channels(ROOT / "channels.example.yaml")
    assert {config.kind for config in channels.values()} == set(kind_help())
    assert all(len(text) > 40 for text in kind_help().values())
    assert set(default_channels()) == {"console", "file"}


def test_channels_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(
        "channels:\n"
        "  mail:\n"
        "    kind: email\n"
        "    host: smtp.example.cn\n"
        "    port: twenty-five\n"
        "    from: bot@example.cn\n"
        "    to: [ops@example.cn]\n"
        "    password: hunter2-secret\n"
        "  chat:\n"
        "    kind: dingtalk\n",
        encoding="utf-8",
    )
    with pytest.raises(ChannelsError) as failure:
        load_channels(path)
    text = str(failure.value)
    assert f"{path}:5: channels.mail.port" in text
    assert f"{path}:8: channels.mail.password: Extra inputs" in text
    assert f"{path}:9: channels.chat" in text and "dingtalk" in text
    assert "hunter2-secret" not in text


def test_channels_file_duplicates_syntax_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  a: {kind: console}\n  a: {kind: file}\n")
    with pytest.raises(ChannelsError, match=r"channels.yaml:3: duplicate key 'a'"):
        load_channels(path)
    path.write_text("channels:\n  a: {kind: console\n")
    with pytest.raises(ChannelsError, match=r"channels.yaml:\d+:"):
        load_channels(path)
    path.write_text("channels:\n  out: {kind: file, path: alerts/out.jsonl, topics: ['*']}\n")
    assert load_channels(path)["out"].path == tmp_path / "alerts" / "out.jsonl"  # type: ignore[attr-defined]
