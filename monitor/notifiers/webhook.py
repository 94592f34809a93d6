"""The `webhook` channel: the alert payload as a signed JSON POST."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from monitor.notifiers.base import (
    ChannelConfig,
    Notifier,
    SecretError,
    load_secret,
    only_one,
    safe_origin,
)
from monitor.render import AlertMessage

logger = logging.getLogger(__name__)

USER_AGENT = "govmonitor-alerts/1"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class WebhookConfig(ChannelConfig):
    """Fields of a `webhook` channel."""

    kind: Literal["webhook"]
    url: str = Field(description="http(s) address that receives the POST.")
    secret_env: str | None = None
    secret_file: Path | None = None
    auth_header_env: str | None = Field(
        default=None, description="Environment variable whose value is sent as Authorization."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra non-secret headers.")
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// address")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        only_one(self.secret_env, self.secret_file, "secret_env and secret_file")
        return self


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the X-Monitor-Signature value: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def payload_bytes(msg: AlertMessage) -> bytes:
    """Return the UTF-8 JSON body a webhook receives for `msg`."""
    return json.dumps(msg.to_payload(), ensure_ascii=False, separators=(",", ":")).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a POST must reach the configured address itself."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """Return None, so urllib reports the 3xx answer as an error."""
        return


def _retry_after(headers: Message | None) -> float | None:
    """Return the Retry-After delay in seconds if the answer gave one as a number."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class WebhookNotifier(Notifier):
    """POST each alert's JSON payload (schema in monitor/render.py) to an http(s) URL.

    Fields: url, secret_env or secret_file (HMAC key: adds X-Monitor-Signature:
    sha256=<hex HMAC-SHA256 over "<X-Monitor-Timestamp>.<body>">), auth_header_env (its value
    is sent as Authorization), headers (extra, non-secret), timeout (s, default 10).
    Every request carries Idempotency-Key: <alert key>. 2xx is success; 408, 429 and 5xx are
    retried later; other answers are permanent failures. Redirects are not followed.
    """

    kind: ClassVar[str] = "webhook"
    config_model: ClassVar[type[ChannelConfig]] = WebhookConfig
    config: WebhookConfig

    def build_request(
        self, msg: AlertMessage, secret: str | None, auth: str | None, now: float | None = None
    ) -> urllib.request.Request:
        """Return the signed POST request for one alert."""
        body = payload_bytes(msg)
        timestamp = str(int(now if now is not None else time.time()))
        headers = dict(self.config.headers)
        headers.update(
            {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                "Idempotency-Key": msg.idempotency_key,
                "X-Monitor-Timestamp": timestamp,
            }
        )
        if secret is not None:
            headers["X-Monitor-Signature"] = sign(secret, timestamp, body)
        if auth is not None:
            headers["Authorization"] = auth
        return urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")

    def send(self, msg: AlertMessage) -> None:
        """POST `msg` or raise DeliveryError; return None once the receiver answered 2xx."""
        try:
            secret = load_secret(self.config.secret_env, self.config.secret_file, "webhook secret")
            auth = load_secret(self.config.auth_header_env, None, "webhook Authorization")
        except SecretError as exc:
            raise self.fail(str(exc), retryable=False) from None
        secrets = (secret, auth)
        request = self.build_request(msg, secret, auth)
        where = safe_origin(self.config.url)
        try:
            with self._opener().open(request, timeout=self.config.timeout) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            retryable = status in (408, 429) or status >= 500
            raise self.fail(
                f"{where} answered HTTP {status}",
                retryable=retryable,
                secrets=secrets,
                retry_after=_retry_after(exc.headers),
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise self.fail(
                    f"TLS certificate of {where} not trusted", retryable=False
                ) from None
            raise self.fail(
                f"cannot reach {where}: {reason}", retryable=True, secrets=secrets
            ) from None
        except (TimeoutError, OSError) as exc:
            raise self.fail(
                f"cannot reach {where}: {type(exc).__name__}: {exc}",
                retryable=True,
                secrets=secrets,
            ) from None
        logger.info(
            "channel %s: sent alert %s to %s (HTTP %s)",
            self.name,
            msg.idempotency_key,
            where,
            status,
        )

    def _opener(self) -> urllib.request.OpenerDirector:
        """Return an opener without redirects, and without proxies for loopback receivers."""
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if urlsplit(self.config.url).hostname in _LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))
        return urllib.request.build_opener(*handlers)
