"""What every alert channel shares: its config base, the `Notifier` interface, errors and secrets."""

from __future__ import annotations

import logging
import os
import stat
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from crawler.config import read_secret
from monitor.render import AlertMessage

logger = logging.getLogger(__name__)

Mode = Literal["instant", "digest_hourly", "digest_daily"]


class DeliveryError(Exception):
    """A failed delivery; `retryable` tells the outbox whether trying again later can help."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        """Return the message with a retryable/permanent marker."""
        return f"{self.message} ({'retryable' if self.retryable else 'permanent'})"


class SecretError(ValueError):
    """A secret that is missing, unreadable or stored unsafely (the message never holds its value)."""


class ChannelConfig(BaseModel):
    """Fields every channel has; each kind adds its own in a subclass."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: str
    topics: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Topic names this channel receives; ['*'] means every topic.",
    )
    mode: Mode = Field(
        default="instant", description="instant: one message per alert; digest_*: grouped."
    )

    def wants(self, topic_names: list[str]) -> bool:
        """Return True if an alert on any of `topic_names` belongs on this channel."""
        wanted = set(self.topics)
        return "*" in wanted or bool(wanted & set(topic_names))

    def with_base_dir(self, base_dir: Path) -> ChannelConfig:
        """Return a copy whose relative file paths are taken relative to `base_dir`."""
        updates: dict[str, Any] = {}
        for field_name in type(self).model_fields:
            value = getattr(self, field_name)
            if isinstance(value, Path) and not value.is_absolute():
                updates[field_name] = base_dir / value.expanduser()
        return self.model_copy(update=updates) if updates else self


class Notifier(ABC):
    """One configured alert channel: `send` delivers one message or raises `DeliveryError`."""

    kind: ClassVar[str]
    config_model: ClassVar[type[ChannelConfig]]

    def __init__(self, name: str, config: ChannelConfig) -> None:
        self.name = name
        self.config = config

    @abstractmethod
    def send(self, msg: AlertMessage) -> None:
        """Deliver `msg` or raise `DeliveryError`; return None once the receiver accepted it."""

    def fail(
        self,
        message: str,
        retryable: bool,
        secrets: tuple[str | None, ...] = (),
        retry_after: float | None = None,
    ) -> DeliveryError:
        """Return a DeliveryError naming this channel, with any secret value blanked out."""
        text = f"channel {self.name!r} ({self.kind}): {message}"
        return DeliveryError(scrub(text, secrets), retryable=retryable, retry_after=retry_after)


def scrub(text: str, secrets: tuple[str | None, ...]) -> str:
    """Return `text` with every non-trivial secret value replaced by '***'."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def safe_origin(url: str) -> str:
    """Return scheme://host[:port] of `url`: what can be shown without tokens in path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    return f"{parts.scheme}://{host}{port}"


def check_private_file(path: Path) -> None:
    """Return None if `path` is a regular file only its owner may read; raise SecretError if not."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SecretError(f"secret file {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"secret file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if os.name == "posix" and mode & 0o077:
        raise SecretError(
            f"secret file {path} has mode {mode:04o}: group or others may access it; "
            f"run `chmod 600 {path}`"
        )


def load_secret(env_name: str | None, file_path: Path | None, what: str) -> str | None:
    """Return the secret named by an environment variable or held in a private file, or None."""
    if env_name:
        value = read_secret(env_name)
        if value is None:
            raise SecretError(f"{what}: environment variable {env_name} is not set")
        return value
    if file_path is not None:
        check_private_file(file_path)
        try:
            value = file_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(
                f"{what}: secret file {file_path} cannot be read: {type(exc).__name__}"
            ) from None
        if not value:
            raise SecretError(f"{what}: secret file {file_path} is empty")
        return value
    return None


def only_one(first: object, second: object, names: str) -> None:
    """Return None if at most one of two alternative settings is given; raise ValueError if both."""
    if first is not None and second is not None:
        raise ValueError(f"set only one of {names}")
