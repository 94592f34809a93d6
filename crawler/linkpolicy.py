"""Which URLs a source may fetch: http(s) only, on its own domains, never a private or loopback host.

A hacked or misconfigured page can link anywhere: to other sites, to `file:` or `javascript:`
URLs, to an intranet address or to services on the monitoring machine itself. A source follows
a link only when

- its scheme is http or https, it carries no user name or password, and it is at most
  `URLLENGTH_LIMIT` characters long (Scrapy's setting, 2083 by default: a link loop that
  grows the URL stops here; Scrapy's own UrlLengthMiddleware is off, see crawler/settings.py);
- its host is the source's own (the host of `base_url`, or a sub-domain of it) or one of the
  source file's `allowed_domains`;
- its host is not an IP address in a private, loopback, link-local or reserved range, nor
  `localhost`, nor an IP address spelt in a non-standard way (`2130706433`, `0x7f.1`), unless
  the Scrapy setting `ALLOW_PRIVATE_HOSTS` lists it (`host` or `host:port`). Nothing is allowed
  by default; a replay run (`REPLAY_URL`) allows the replay's own `host:port` and no other.

`LinkPolicyMiddleware` (crawler/middlewares.py) applies the same rules to every request, so
redirects and stored revisit URLs are held to them too, and refuses host names that resolve to
private or loopback addresses.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from crawler.pages.model import ListPage
from crawler.seeds import Seed

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# The request meta key holding the URL that `allowed_links` allowed on its list page:
# LinkPolicyMiddleware does not check that very URL again (10,000 checks of a 10,000-post
# crawl), and checks any other, a redirect's target or a URL Scrapy rewrote included.
CHECKED_KEY = "link_policy_checked"
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_POLICIES: weakref.WeakKeyDictionary[Any, LinkPolicy] = weakref.WeakKeyDictionary()
# The scheme and host part of a URL up to the first "/" of its path, when nothing in it can
# make urlsplit read it otherwise (no "?", "#", "@", backslash or whitespace before that "/").
_ORIGIN_PREFIX = re.compile(r"https?://[^/?#@\\\s]+/")
_ALLOWED_PREFIXES = 4096  # remembered (`LinkPolicy.refusal`), then forgotten all at once


def host_address(host: str) -> IPAddress | None:
    """Return the IP address a host written as an address means (in any spelling), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        # inet_aton reads what HTTP clients and resolvers accept: 2130706433, 0x7f.1, 127.1.
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_private(address: IPAddress) -> bool:
    """Return True for any address that is not a public unicast one (loopback, private, ...)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return not address.is_global or address.is_multicast


def address_kind(address: IPAddress) -> str:
    """Return a word for a non-public address range: loopback, private, link-local or reserved."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    return "reserved"


def _port(scheme: str, port: int | None) -> int:
    """Return the explicit port, or the scheme's default."""
    return port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def _netloc_key(host: str, port: int) -> str:
    """Return `host:port` as allowances are written (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _allowance(entry: str) -> str:
    """Return an ALLOW_PRIVATE_HOSTS entry (host, host:port or a URL) in its compared form."""
    entry = entry.strip().lower()
    if "://" in entry:
        parts = urlsplit(entry)
        host = (parts.hostname or "").rstrip(".")
        return _netloc_key(host, _port(parts.scheme, parts.port))
    return entry.rstrip(".")


def _on_domains(host: str, domains: Iterable[str]) -> bool:
    """Return True when `host` is one of `domains` or a sub-domain of one."""
    for domain in domains:
        domain = domain.strip().lower().rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


@dataclass(frozen=True)
class LinkPolicy:
    """The link rules of one crawl; `private_allowed` holds ALLOW_PRIVATE_HOSTS entries."""

    private_allowed: frozenset[str] = frozenset()
    max_posts: int = 1000
    max_url_length: int = 2083  # 0: no limit
    # (scheme://host/ prefix, domains) of URLs found allowed (`refusal`)
    _allowed: set[tuple[str, tuple[str, ...] | None]] = field(
        default_factory=set, compare=False, repr=False
    )

    @classmethod
    def from_settings(cls, settings: Any) -> LinkPolicy:
        """Return the policy of a crawl: ALLOW_PRIVATE_HOSTS plus the replay's host:port."""
        entries = [str(entry) for entry in settings.getlist("ALLOW_PRIVATE_HOSTS")]
        replay = settings.get("REPLAY_URL")
        if replay:
            entries.append(str(replay))
        return cls(
            frozenset(_allowance(entry) for entry in entries if entry.strip()),
            settings.getint("LIST_MAX_POSTS", 1000),
            settings.getint("URLLENGTH_LIMIT", 2083),
        )

    def allows_private(self, host: str, port: int) -> bool:
        """Return True when ALLOW_PRIVATE_HOSTS (or the replay) lets `host:port` be fetched."""
        return host in self.private_allowed or _netloc_key(host, port) in self.private_allowed

    def refusal(self, url: str, domains: Iterable[str] | None) -> str | None:
        """Return why `url` may not be fetched by a source with `domains` (None: any), or None.

        Apart from the length, the answer depends on the URL's scheme and host only: once a
        URL of a source is allowed, the others starting with the same `scheme://host/` are
        allowed without parsing them (a list page links dozens of posts on one host).
        """
        if 0 < self.max_url_length < len(url):
            return f"URL longer than {self.max_url_length} characters refused ({url[:200]}...)"
        domains = None if domains is None else tuple(domains)
        prefix = _ORIGIN_PREFIX.match(url)
        if prefix is None:
            return self._refusal(url, domains)
        key = (prefix.group(), domains)
        if key in self._allowed:
            return None
        reason = self._refusal(url, domains)
        if reason is None:
            if len(self._allowed) >= _ALLOWED_PREFIXES:
                self._allowed.clear()
            self._allowed.add(key)
        return reason

    def _refusal(self, url: str, domains: tuple[str, ...] | None) -> str | None:
        """Return why `url`, of an acceptable length, may not be fetched (see `refusal`)."""
        try:
            parts = urlsplit(url.strip())
            port = _port(parts.scheme.lower(), parts.port)
        except ValueError:
            return f"unparsable URL {url[:200]!r}"
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return f"{scheme or 'scheme-less'}: links are never followed ({url[:200]})"
        if parts.username is not None or parts.password is not None:
            return f"URL with a user name or password refused ({parts.hostname})"
        host = (parts.hostname or "").rstrip(".")
        if not host:
            return f"URL without a host refused ({url[:200]})"
        if not self.allows_private(host, port):
            reason = self._private_host(host, port)
            if reason is not None:
                return reason
        if domains is not None and not _on_domains(host, domains):
            return (
                f"off-site link to {host} refused (add it to allowed_domains in the source "
                "file to follow it)"
            )
        return None

    @staticmethod
    def _private_host(host: str, port: int) -> str | None:
        """Return why a host written as an address (or localhost) is refused, or None."""
        where = _netloc_key(host, port)
        if host == "localhost" or host.endswith(".localhost"):
            return f"loopback host {where} refused"
        address = host_address(host)
        if address is None:
            return None
        if str(address) != host:
            return f"IP address in a non-standard form refused ({host} means {address})"
        if is_private(address):
            return f"{address_kind(address)} address {where} refused"
        return None

    def resolved_refusal(self, host: str, port: int, address: str) -> str | None:
        """Return why a host name that resolved to `address` is refused, or None."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if not is_private(ip) or self.allows_private(host, port):
            return None
        if self.allows_private(str(ip), port):
            return None
        return f"host {host} resolves to {address_kind(ip)} address {ip}: refused"


def policy_for(crawler: Any) -> LinkPolicy:
    """Return the link policy of `crawler`, built once from its settings."""
    policy = _POLICIES.get(crawler)
    if policy is None:
        policy = _POLICIES[crawler] = LinkPolicy.from_settings(crawler.settings)
    return policy


def allowed_links(page: ListPage, seed: Seed, crawler: Any) -> ListPage:
    """Return `page` without the posts and next pages `seed` may not follow (counted and logged)."""
    policy = policy_for(crawler)
    domains = seed.domains()
    refused: list[tuple[str, str]] = []
    entries = []
    for entry in page.entries:
        reason = policy.refusal(entry.url, domains)
        if reason is None:
            entries.append(entry)
        else:
            refused.append((entry.url, reason))
    next_pages = []
    for url in page.next_pages:
        reason = policy.refusal(url, domains)
        if reason is None:
            next_pages.append(url)
        else:
            refused.append((url, reason))
    stats = crawler.stats
    if len(entries) > policy.max_posts:
        stats.inc_value(f"source/{seed.id}/links_over_limit", len(entries) - policy.max_posts)
        logger.warning(
            "source %s: list page %s links %d posts; following the first %d (LIST_MAX_POSTS)",
            seed.id,
            page.url,
            len(entries),
            policy.max_posts,
        )
        entries = entries[: policy.max_posts]
    if refused:
        stats.inc_value(f"source/{seed.id}/links_refused", len(refused))
        logger.info(
            "source %s: %d links refused on %s; first: %s",
            seed.id,
            len(refused),
            page.url,
            refused[0][1],
        )
    return replace(page, entries=entries, next_pages=next_pages)
