"""The `apprise` channel: DingTalk, WeCom, Feishu, Slack, Telegram and more through Apprise URLs."""

from __future__ import annotations

import inspect
import logging
import re
import threading
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from monitor.notifiers.base import ChannelConfig, Notifier, SecretError, load_secret
from monitor.render import AlertMessage, render_markdown, render_subject

if TYPE_CHECKING:
    from apprise import Apprise

logger = logging.getLogger(__name__)

_URL_SHAPE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_ANY_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://\S+", re.IGNORECASE)
_TOKEN_PARTS = re.compile(r"[/?&=#@:,;]+")


def token_parts(urls: list[str]) -> tuple[str, ...]:
    """Return the URLs and every piece of them long enough to be a token, longest first."""
    parts = set(urls)
    for url in urls:
        rest = url.split("://", 1)[-1]
        parts.update(p for p in _TOKEN_PARTS.split(rest) if len(p) >= 6 and not p.isdigit())
    return tuple(sorted(parts, key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Return `text` with URLs cut to their scheme and known token pieces replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _ANY_URL.sub(r"\1://…", text)


class _RedactingFilter(logging.Filter):
    """Rewrite Apprise's log records so that no URL or token of a channel reaches the logs."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def remember(self, secrets: tuple[str, ...]) -> None:
        """Add token pieces to redact from now on."""
        with self._lock:
            self._secrets = tuple(sorted({*self._secrets, *secrets}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        """Return True after replacing the record's message by its redacted text."""
        record.msg = redact(record.getMessage(), self._secrets)
        record.args = None
        return True


_filter = _RedactingFilter()


class AppriseConfig(ChannelConfig):
    """Fields of an `apprise` channel."""

    kind: Literal["apprise"]
    urls: list[str] = Field(default_factory=list, description="Apprise URLs (hold tokens!).")
    url_env: str | None = Field(
        default=None, description="Environment variable holding URLs, separated by spaces."
    )
    timeout: float = Field(default=30.0, gt=0, description="Limit of one send, s.")

    @field_validator("urls")
    @classmethod
    def _looks_like_urls(cls, value: list[str]) -> list[str]:
        for number, url in enumerate(value, start=1):
            if not _URL_SHAPE.match(url):
                raise ValueError(f"urls[{number}] is not of the form scheme://...")
        return value

    @model_validator(mode="after")
    def _has_targets(self) -> AppriseConfig:
        if not self.urls and not self.url_env:
            raise ValueError("set urls or url_env")
        return self


def _scheme(url: str) -> str:
    """Return only the scheme of an Apprise URL (the rest may hold a token)."""
    return url.split("://", 1)[0] + "://…"


class AppriseNotifier(Notifier):
    """Send each alert as markdown to IM services through Apprise URLs.

    Fields: urls (list) or url_env (an environment variable holding space-separated URLs;
    prefer it, as these URLs hold tokens), timeout (s, default 30). Examples:
    dingtalk://<token>/, wecombot://<key>, feishu://<token>/, slack://<tokens>/#channel,
    tgram://<bot token>/<chat id>, json://host:port/path (generic JSON POST). A channel with
    several URLs is resent to all of them if any fails: give each target its own channel.
    Needs the `apprise` package.
    """

    kind: ClassVar[str] = "apprise"
    config_model: ClassVar[type[ChannelConfig]] = AppriseConfig
    config: AppriseConfig

    def _urls(self) -> list[str]:
        """Return the configured URLs, reading url_env if set."""
        urls = list(self.config.urls)
        from_env = load_secret(self.config.url_env, None, "Apprise URLs")
        if from_env:
            urls += from_env.split()
        return urls

    def _apprise(self, urls: list[str]) -> Apprise:
        """Return an Apprise object holding every URL; raise DeliveryError if one is unusable."""
        try:
            import apprise
        except ImportError:
            raise self.fail(
                "the apprise package is not installed (pip install apprise)", retryable=False
            ) from None
        for logger_name in ("apprise", "urllib3.connectionpool"):  # both may log request URLs
            chatty = logging.getLogger(logger_name)
            if _filter not in chatty.filters:
                chatty.addFilter(_filter)
        _filter.remember(token_parts(urls))
        target = apprise.Apprise()
        for number, url in enumerate(urls, start=1):
            service = apprise.Apprise.instantiate(url)
            if service is None:
                raise self.fail(
                    f"URL #{number} ({_scheme(url)}) is not a valid Apprise URL",
                    retryable=False,
                    secrets=token_parts(urls),
                )
            target.add(service)
        return target

    def send(self, msg: AlertMessage) -> None:
        """Send `msg` to every URL or raise DeliveryError; return None once all accepted it."""
        try:
            urls = self._urls()
        except SecretError as exc:
            raise self.fail(str(exc), retryable=False) from None
        target = self._apprise(urls)
        import apprise

        options: dict[str, Any] = {"body_format": apprise.NotifyFormat.MARKDOWN}
        if "timeout" in inspect.signature(target.notify).parameters:  # Apprise 1.x has none
            options["timeout"] = self.config.timeout
        try:
            result: Any = target.notify(
                body=render_markdown(msg), title=render_subject(msg), **options
            )
        except Exception as exc:  # noqa: BLE001  # any plugin error; keep URLs out of it
            raise self.fail(
                f"Apprise raised {type(exc).__name__}", retryable=True, secrets=token_parts(urls)
            ) from None
        if not result:
            secrets = token_parts(urls)
            raise self.fail(
                "Apprise delivery failed: " + redact(_reason(result), secrets),
                retryable=True,
                secrets=secrets,
            )
        logger.info(
            "channel %s: sent alert %s to %d Apprise service(s)",
            self.name,
            msg.idempotency_key,
            len(urls),
        )


def _reason(result: Any) -> str:
    """Return which services failed and Apprise's last warning or error about them."""
    try:
        failed = [str(getattr(service, "name", "?")) for service in result if not service]
        warnings = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
    except (TypeError, AttributeError):  # older Apprise: a plain bool
        return "no service accepted it"
    reason = ", ".join(failed) or "no service accepted it"
    return reason + (" (" + warnings[-1][:300] + ")" if warnings else "")
