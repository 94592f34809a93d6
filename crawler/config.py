"""The one place that reads the environment: `AppSettings`."""

from __future__ import annotations

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
        default=None, description="YAML file of alert channels; default <data_dir>/../channels.yaml"
    )
    topics_file: Path | None = Field(default=None, description="User topics laid over defaults.")
    crawl_timeout: float = Field(default=600.0, description="Wall-clock limit of one crawl, s.")
    log_level: str = Field(default="INFO")


@lru_cache(maxsize=1)
def get_settings() -> AppSettings:
    """Return the process-wide settings, read once from the environment."""
    return AppSettings()
