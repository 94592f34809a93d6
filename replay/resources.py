"""Access to the files in `replay/data/` (seed texts, posts, templates, tables)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any


@cache
def data_text(name: str) -> str:
    """Return the UTF-8 text of `replay/data/<name>` (`name` may contain `/`).

    Cached: templates are read on every page served, and the files are read-only data.
    """
    node = resources.files("replay").joinpath("data")
    for part in name.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


@cache
def data_toml(name: str) -> dict[str, Any]:
    """Return the parsed TOML file `replay/data/<name>` (cached; treat as read-only)."""
    return tomllib.loads(data_text(name))


def seed_text(file_name: str) -> str:
    """Return the text of a seed page kept in `replay/data/seeds/`."""
    return data_text(f"seeds/{file_name}")
