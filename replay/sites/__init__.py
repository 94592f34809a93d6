"""Registry of replayed sites: one module per site, each registering a `Site` subclass by id."""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec

from replay.sites.base import Page, Site

# Order matters: it is the default order of `ReplayServer(sites=None)` and of the CLI help.
SITE_MODULES = ["kaiping", "zhongshan", "chinanews", "liangjiang", "sznews"]

_REGISTRY: dict[str, type[Site]] = {}


def register(cls: type[Site]) -> type[Site]:
    """Register a site class under its `site_id` and return it (class decorator)."""
    _REGISTRY[cls.site_id] = cls
    return cls


def _load_all() -> None:
    """Import every site module so that each registers itself."""
    for name in SITE_MODULES:
        module = f"replay.sites.{name}"
        if find_spec(module) is not None:
            import_module(module)


def site_ids() -> list[str]:
    """Return the ids of all registered sites, in `SITE_MODULES` order."""
    _load_all()
    return [name for name in SITE_MODULES if name in _REGISTRY]


def site_class(site_id: str) -> type[Site]:
    """Return the class of site `site_id`; raise KeyError naming the known ids."""
    _load_all()
    try:
        return _REGISTRY[site_id]
    except KeyError:
        raise KeyError(f"unknown site {site_id!r}; known: {', '.join(site_ids())}") from None


__all__ = ["Page", "Site", "register", "site_class", "site_ids"]
