"""The one place that reads the environment: `AppSettings`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class AppSettings(BaseSettings):
    """Settings read from environment variables (prefix-free names as documented in README)."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'data' / 'monitor.db'}",
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL; SQLite file by default, postgresql+psycopg://... for PostgreSQL.",
    )
    seeds_dir: Path = Field(default=PROJECT_ROOT / "seeds", description="Folder of source files.")
    replay_url: str | None = Field(
        default=None,
        description="If set (e.g. http://127.0.0.1:8800), every source's base URL is served "
        "from <replay_url>/<source id> instead of the real site.",
    )
    data_dir: Path = Field(default=PROJECT_ROOT / "data", description="Logs, alert file, state.")
    channels_file: Path | None = Field(
        default=None, description="YAML file of alert channels; default ./channels.yaml if present"
    )
    topics_file: Path | None = Field(default=None, description="User topics laid over defaults.")
    crawl_timeout: float = Field(default=600.0, description="Wall-clock limit of one crawl, s.")
    crawl_log_level: str = Field(default="INFO", description="Log level of crawl children.")
    crawl_settings: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Scrapy settings for the daemon's crawl processes, as JSON, e.g. "
        '{"CONCURRENT_REQUESTS_PER_DOMAIN": "2", "DOWNLOAD_DELAY": "1"}.',
    )
    retry_base_seconds: float = Field(default=30.0, description="First retry delay of a delivery.")
    retry_max_seconds: float = Field(default=3600.0, description="Longest retry delay.")
    max_attempts: int = Field(default=10, description="Delivery attempts before dead letter.")
    dispatch_every_seconds: float = Field(default=30.0, description="Outbox retry sweep period.")
    health_failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive failed or timed-out crawls that make a source "
        "`failing` (one health alert to the channels subscribed to `health`).",
    )
    health_silent_days: float = Field(
        default=7.0,
        gt=0,
        description="A source is `silent` after no new post for this many "
        "days, or for health_silent_factor times its usual gap between posts if that is longer.",
    )
    health_silent_factor: float = Field(
        default=4.0,
        gt=0,
        description="Multiple of the median gap between a source's last 20 "
        "posts after which it counts as `silent`.",
    )
    test_crash_after_send: bool = Field(
        default=False,
        description="Tests only: the dispatcher exits at once after a successful "
        "send, before recording it, to simulate a crash at the worst moment.",
    )
    log_level: str = Field(default="INFO")

    def resolved_channels_file(self) -> Path | None:
        """Return the channels file to use: the configured one, or ./channels.yaml if present."""
        if self.channels_file is not None:
            return self.channels_file
        default = PROJECT_ROOT / "channels.yaml"
        return default if default.exists() else None


@lru_cache(maxsize=1)
def get_settings() -> AppSettings:
    """Return the process-wide settings, read once from the environment."""
    return AppSettings()


def read_secret(name: str) -> str | None:
    """Return the value of environment variable `name` (a secret), or None if unset or empty."""
    value = os.environ.get(name)
    return value or None
