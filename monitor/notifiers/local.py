"""The channels that need no server: `console` (stdout) and `file` (JSON lines)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import ClassVar, Literal, TextIO

from pydantic import Field

from crawler.config import get_settings
from monitor.notifiers.base import ChannelConfig, Notifier
from monitor.render import AlertMessage, render_text

logger = logging.getLogger(__name__)


class ConsoleConfig(ChannelConfig):
    """Fields of a `console` channel."""

    kind: Literal["console"]


class ConsoleNotifier(Notifier):
    """Print each alert as readable text to standard output (a default channel; no fields)."""

    kind: ClassVar[str] = "console"
    config_model: ClassVar[type[ChannelConfig]] = ConsoleConfig

    def __init__(self, name: str, config: ChannelConfig, stream: TextIO | None = None) -> None:
        super().__init__(name, config)
        self.stream = stream

    def send(self, msg: AlertMessage) -> None:
        """Write `msg` to stdout; return None (a closed stdout is a permanent failure)."""
        stream = self.stream or sys.stdout
        try:
            stream.write("=" * 60 + "\n" + render_text(msg))
            stream.flush()
        except (OSError, ValueError) as exc:
            raise self.fail(
                f"cannot write to the console: {type(exc).__name__}", retryable=False
            ) from None


class FileConfig(ChannelConfig):
    """Fields of a `file` channel."""

    kind: Literal["file"]
    path: Path | None = Field(
        default=None, description="JSON-lines file; default <data_dir>/alerts.jsonl."
    )


_append_lock = threading.Lock()


class FileNotifier(Notifier):
    """Append one JSON line per alert (the webhook payload) to a file (a default channel).

    Fields: path (default data/alerts.jsonl under the data folder; a relative path is taken
    relative to the channels file). A resend after a crash may repeat a line: readers should
    skip lines whose idempotency_key they have seen.
    """

    kind: ClassVar[str] = "file"
    config_model: ClassVar[type[ChannelConfig]] = FileConfig
    config: FileConfig

    @property
    def path(self) -> Path:
        """Return the file alerts are appended to."""
        return self.config.path or get_settings().data_dir / "alerts.jsonl"

    def send(self, msg: AlertMessage) -> None:
        """Append `msg` as one JSON line; return None once it is flushed to disk."""
        line = json.dumps(msg.to_payload(), ensure_ascii=False, separators=(",", ":")) + "\n"
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _append_lock, path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
        except OSError as exc:
            retryable = not isinstance(exc, PermissionError | IsADirectoryError)
            raise self.fail(
                f"cannot append to {path}: {exc.strerror or exc}", retryable=retryable
            ) from None
        logger.info("channel %s: appended alert %s to %s", self.name, msg.idempotency_key, path)
