"""The `email` channel: one multipart (text + HTML) message per alert over SMTP."""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from monitor.notifiers.base import (
    ChannelConfig,
    DeliveryError,
    Notifier,
    SecretError,
    load_secret,
    only_one,
)
from monitor.render import AlertMessage, render_html, render_subject, render_text

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class EmailConfig(ChannelConfig):
    """Fields of an `email` channel."""

    kind: Literal["email"]
    host: str
    port: int | None = Field(default=None, ge=1, le=65535, description="Default by security.")
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    sender: str = Field(alias="from", description="From address, e.g. 监测 <bot@example.cn>.")
    to: list[str] = Field(min_length=1)
    timeout: float = Field(default=30.0, gt=0)
    ca_file: Path | None = Field(default=None, description="CA bundle trusted for TLS.")
    tls_verify: bool = True
    helo: str | None = Field(default=None, description="Name in EHLO; default this host's FQDN.")

    @field_validator("sender")
    @classmethod
    def _sender_has_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError("'from' must contain an email address")
        return value

    @field_validator("to")
    @classmethod
    def _recipients_are_addresses(cls, value: list[str]) -> list[str]:
        for recipient in value:
            if "@" not in parseaddr(recipient)[1]:
                raise ValueError(f"{recipient!r} is not an email address")
        return value

    @model_validator(mode="after")
    def _auth_is_consistent(self) -> EmailConfig:
        only_one(self.password_env, self.password_file, "password_env and password_file")
        has_password = self.password_env is not None or self.password_file is not None
        if has_password and not self.username:
            raise ValueError("a password is set but no username")
        if self.username and not has_password:
            raise ValueError("username is set: also set password_env or password_file")
        if self.username and self.security == "none" and self.host not in _LOOPBACK:
            raise ValueError("refusing to send a password unencrypted: use starttls or ssl")
        return self


def message_id(key: str, sender: str) -> str:
    """Return the Message-ID an alert with idempotency key `key` always gets from `sender`."""
    local = (
        key
        if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key)
        else hashlib.sha256(key.encode()).hexdigest()[:32]
    )
    domain = parseaddr(sender)[1].rpartition("@")[2] or "govmonitor.invalid"
    return "<alert-" + local + "@" + domain + ">"


class EmailNotifier(Notifier):
    """Send each alert as an email (text and HTML) through an SMTP server.

    Fields: host, port (default 587/465/25 by security), security (starttls | ssl | none),
    username with password_env (an environment variable's name) or password_file (a file
    readable only by its owner: chmod 600), from, to (list), timeout (s, default 30),
    ca_file (extra CA bundle), tls_verify (default true), helo (name given in EHLO; default
    this host's FQDN). The Message-ID is derived from the alert's idempotency key, so a
    resend after a crash is recognisably the same message.
    """

    kind: ClassVar[str] = "email"
    config_model: ClassVar[type[ChannelConfig]] = EmailConfig
    config: EmailConfig

    def build_message(self, msg: AlertMessage) -> EmailMessage:
        """Return the email for one alert."""
        email = EmailMessage(policy=SMTP_POLICY)
        email["Subject"] = render_subject(msg)
        email["From"] = self.config.sender
        email["To"] = ", ".join(self.config.to)
        email["Date"] = format_datetime(datetime.now(UTC))
        email["Message-ID"] = message_id(msg.idempotency_key, self.config.sender)
        email["X-Monitor-Idempotency-Key"] = re.sub(r"[^\x21-\x7e]", "_", msg.idempotency_key)
        email["Auto-Submitted"] = "auto-generated"
        email.set_content(render_text(msg), charset="utf-8")
        email.add_alternative(render_html(msg), subtype="html", charset="utf-8")
        return email

    def send(self, msg: AlertMessage) -> None:
        """Deliver `msg` by SMTP or raise DeliveryError; return None once the server accepted it."""
        try:
            password = load_secret(
                self.config.password_env, self.config.password_file, "SMTP password"
            )
        except SecretError as exc:
            raise self.fail(str(exc), retryable=False) from None
        email = self.build_message(msg)
        try:
            self._transmit(email, password)
        except DeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise self.fail(
                f"all recipients refused (SMTP {codes})",
                retryable=all(400 <= c < 500 for c in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise self._smtp_failure(exc, password) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self.fail(
                f"server does not support what the config asks: {exc}",
                retryable=False,
                secrets=(password,),
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise self.fail(
                f"TLS certificate not trusted: {exc.verify_message}", retryable=False
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self.fail(
                f"cannot reach {self._where()}: {type(exc).__name__}: {exc}",
                retryable=True,
                secrets=(password,),
            ) from None
        logger.info(
            "channel %s: sent alert %s by email to %d recipient(s)",
            self.name,
            msg.idempotency_key,
            len(self.config.to),
        )

    def _where(self) -> str:
        """Return host:port of the SMTP server."""
        return self.config.host + ":" + str(self._port())

    def _port(self) -> int:
        """Return the configured port or the default for the security mode."""
        return self.config.port or _DEFAULT_PORTS[self.config.security]

    def _tls_context(self) -> ssl.SSLContext:
        """Return the TLS context for STARTTLS or implicit TLS."""
        context = ssl.create_default_context(
            cafile=str(self.config.ca_file) if self.config.ca_file else None
        )
        if not self.config.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _transmit(self, email: EmailMessage, password: str | None) -> None:
        """Open a session, authenticate if configured and send `email`; return None on success."""
        config = self.config
        smtp: smtplib.SMTP
        if config.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                config.host,
                self._port(),
                local_hostname=config.helo,
                timeout=config.timeout,
                context=self._tls_context(),
            )
        else:
            smtp = smtplib.SMTP(
                config.host, self._port(), local_hostname=config.helo, timeout=config.timeout
            )
        with smtp:
            smtp.ehlo()
            if config.security == "starttls":
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if config.username and password is not None:
                smtp.login(config.username, password)
            recipients = [parseaddr(address)[1] for address in config.to]
            refused = smtp.send_message(email, to_addrs=recipients)
        if refused:
            logger.warning(
                "channel %s: %d recipient(s) refused the alert: %s",
                self.name,
                len(refused),
                sorted(refused),
            )

    def _smtp_failure(
        self, exc: smtplib.SMTPResponseException, password: str | None
    ) -> DeliveryError:
        """Return the DeliveryError for an SMTP error reply: 4xx retryable, 5xx permanent."""
        reply = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        what = (
            "authentication failed"
            if isinstance(exc, smtplib.SMTPAuthenticationError)
            else "server refused the message"
        )
        return self.fail(
            f"{what}: SMTP {exc.smtp_code} {reply[:200]}",
            retryable=400 <= exc.smtp_code < 500,
            secrets=(password,),
        )
