"""Canonical article URLs: the identity of an article across fetches and link variants."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_TRACKING_PREFIXES = ("utm_", "spm", "from", "share", "isappinstalled", "scene", "clicktime")
_INDEX_FILES = ("index.html", "index.htm", "index.shtml", "index.jsp", "index.php")


# A crawl folds each post's URL when its list page shows it and again when it stores the
# post, a few thousand pages later at most: 10 microseconds each time on the crawl's thread.
@lru_cache(maxsize=16_384)
def canonical_url(url: str) -> str:
    """Return `url` folded to its identity: no scheme, lower-case host, no fragment or tracking query."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    path = parts.path or "/"
    for index in _INDEX_FILES:
        if path.endswith("/" + index):
            path = path[: -len(index)]
    if len(path) > 1:
        path = path.rstrip("/")
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith(_TRACKING_PREFIXES)
    ]
    return urlunsplit(("", host, path, urlencode(sorted(query)), ""))
