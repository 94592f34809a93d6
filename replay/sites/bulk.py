"""Synthetic sources for load tests: `bulk0001`, `bulk0002`, ... each a small Kaiping-like column.

Every bulk site reuses the Kaiping layout, templates and vocabulary under its own id, so
`seeds/kaiping.yaml` with another id and base URL crawls it. They are not registered in
`SITE_MODULES`: a `ReplayServer(bulk=1000)` makes them on first request (see `BulkSites`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from replay.resources import data_text, data_toml
from replay.sites.base import Site
from replay.sites.kaiping import KaipingSite

BULK_PREFIX = "bulk"
_BULK_ID = re.compile(r"^bulk(\d{4,})$")


def bulk_id(number: int) -> str:
    """Return the id of bulk source `number` (1-based): `bulk0001`."""
    return f"{BULK_PREFIX}{number:04d}"


def bulk_number(site_id: str) -> int | None:
    """Return the number of a bulk source id, or None if `site_id` is not one."""
    match = _BULK_ID.match(site_id)
    return int(match.group(1)) if match else None


class BulkSite(KaipingSite):
    """A Kaiping-like column served as `bulkNNNN`: the seed post, topped up with generated posts."""

    def __init__(self, site_id: str, size: int, seed: int = 0):
        self.bulk_site_id = site_id
        super().__init__(size=size, seed=seed)
        self.public_base = f"http://127.0.0.1/{site_id}"

    @property  # type: ignore[override]
    def site_id(self) -> str:
        """Return this bulk source's id."""
        return self.bulk_site_id

    def data(self, name: str) -> dict[str, Any]:
        """Return Kaiping's data file `name` (bulk sites share its content)."""
        return data_toml(f"{KaipingSite.site_id}/{name}")

    def template(self, name: str) -> str:
        """Return Kaiping's page template `name`."""
        return data_text(f"{KaipingSite.site_id}/{name}")


class BulkSites(Mapping[str, Site]):
    """The served sites: the named ones, plus `count` bulk sites built on first use."""

    def __init__(self, named: dict[str, Site], count: int = 0, size: int = 1, seed: int = 0):
        self.named = named
        self.count = count
        self.size = size
        self.seed = seed
        self.url: str | None = None  # the server's URL, once it listens
        self._made: dict[str, Site] = {}
        self._lock = threading.Lock()

    def _bulk(self, site_id: str) -> Site | None:
        """Return bulk site `site_id`, building it on first use; None if it is not served."""
        number = bulk_number(site_id)
        if number is None or not 1 <= number <= self.count:
            return None
        with self._lock:
            site = self._made.get(site_id)
            if site is None:
                site = self._made[site_id] = BulkSite(site_id, self.size, self.seed)
                site.public_base = self.public_base(site_id)
            return site

    def public_base(self, site_id: str) -> str:
        """Return the replay URL prefix of `site_id` (`http://127.0.0.1/<id>` before listening)."""
        return f"{self.url or 'http://127.0.0.1'}/{site_id}"

    def __getitem__(self, site_id: str) -> Site:
        """Return the site `site_id`; raise KeyError if it is not served."""
        site = self.named.get(site_id) or self._bulk(site_id)
        if site is None:
            raise KeyError(site_id)
        return site

    def __iter__(self) -> Iterator[str]:
        """Iterate over the named sites and the bulk sites built so far."""
        yield from self.named
        with self._lock:
            made = list(self._made)
        yield from made

    def __len__(self) -> int:
        """Return the number of named sites and bulk sites built so far."""
        return len(self.named) + len(self._made)

    def __contains__(self, site_id: object) -> bool:
        """Return True when `site_id` is served (named, or a bulk id within `count`)."""
        if site_id in self.named:
            return True
        number = bulk_number(site_id) if isinstance(site_id, str) else None
        return number is not None and 1 <= number <= self.count


__all__ = ["BULK_PREFIX", "BulkSite", "BulkSites", "bulk_id", "bulk_number"]
