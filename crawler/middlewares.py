"""Downloader middlewares against hostile or broken sites, and one-line reasons for failed requests.

- `LinkPolicyMiddleware` refuses any request the link policy forbids (crawler/linkpolicy.py):
  redirects off-site or to private addresses, stored revisit URLs, host names that resolve to
  private or loopback addresses.
- `SourceRobotsTxtMiddleware` is Scrapy's robots.txt middleware, skipped for sources whose file
  says `robots_txt: ignore`, with a refusal that says how to override it, and without Scrapy
  2.19's race that lets requests through while robots.txt is being fetched.
- `LoopRedirectMiddleware` and `LoopMetaRefreshMiddleware` are Scrapy's redirect middlewares
  that name a redirect loop (A -> B -> A) instead of letting the duplicate filter drop it silently.
- `ResponseGuardMiddleware` refuses pages that cannot be an HTML page: an empty 200, binary
  content (random bytes, archives, images) whatever the Content-Type claims, and pages with
  more elements than extraction can get through quickly (PAGE_MAX_TAGS).
- `StartRefererMiddleware` (a spider middleware) is Scrapy's start and referer spider
  middlewares in one, so that the requests and items a callback returns pass one middleware
  instead of two (crawler/settings.py).
- `describe_failure` turns any failed request into the reason recorded against its source
  ("HTTP 500", "timed out after 30s", "page larger than 20 MB", "redirect loop ...").
"""

from __future__ import annotations

import logging
from typing import Any, Self
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware, RedirectMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.robotstxt import RobotParser
from scrapy.spidermiddlewares.referer import RefererMiddleware
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.python.failure import Failure

from crawler.linkpolicy import CHECKED_KEY, LinkPolicy, host_address, policy_for

logger = logging.getLogger(__name__)

ROBOTS_HINT = "set `robots_txt: ignore` in the source file to override"
# File signatures of formats that are never an HTML page.
_MAGIC = (
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x89PNG", "PNG image"),
    (b"GIF8", "GIF image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"\xd0\xcf\x11\xe0", "Office document"),
    (b"Rar!", "RAR archive"),
    (b"7z\xbc\xaf", "7z archive"),
    (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
)
_NOT_PAGE_TYPES = ("image/", "audio/", "video/", "font/", "application/pdf", "application/zip")
# Control bytes other than tab, newline, form feed, carriage return and escape (ISO-2022).
_CONTROL = frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D, 0x1B} | {0x7F}
_CONTROL_BYTES = bytes(sorted(_CONTROL))
_CONTROL_SHARE = 0.02


class StartRefererMiddleware(RefererMiddleware):
    """Scrapy's RefererMiddleware that also marks start requests (`is_start_request`), as
    Scrapy's StartSpiderMiddleware does, which the settings turn off.

    Each spider middleware runs over every request and item a callback returns: one doing
    both jobs spares a pass over about twenty thousand outputs in a ten-thousand-post crawl.
    It sits in the referer middleware's place (700): start requests are marked there rather
    than at 25, which only middlewares placed between the two could tell apart.
    """

    def get_processed_request(self, request: Request, response: Response | None) -> Request | None:
        """Mark a start request; give any other request its Referer header (REFERRER_POLICY)."""
        if response is None:
            request.meta.setdefault("is_start_request", True)
            return request
        return super().get_processed_request(request, response)


class LinkRefused(IgnoreRequest):
    """A request the link policy forbids; the message says why."""


class PageRefused(IgnoreRequest):
    """A response that cannot be the page asked for (empty, binary); the message says why."""


class RobotsDisallowed(IgnoreRequest):
    """robots.txt of the site disallows the request."""


def _source_of(crawler: Crawler, request: Request) -> Any:
    """Return the seed of the source a request belongs to, or None."""
    seeds = getattr(crawler.spider, "seeds", None) or {}
    return seeds.get(request.meta.get("source_id"))


class LinkPolicyMiddleware:
    """Refuse every request the link policy forbids, before robots.txt or any byte is sent."""

    def __init__(self, crawler: Crawler, policy: LinkPolicy) -> None:
        self.crawler = crawler
        self.policy = policy

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Build the middleware with the crawl's link policy."""
        return cls(crawler, policy_for(crawler))

    async def process_request(self, request: Request) -> None:
        """Return None for an allowed request; raise LinkRefused otherwise.

        A URL its list page's `allowed_links` allowed (`CHECKED_KEY`) is not checked again;
        what its host name resolves to still is.
        """
        seed = _source_of(self.crawler, request)
        reason = None
        if request.meta.get(CHECKED_KEY) != request.url:
            reason = self.policy.refusal(request.url, seed.domains() if seed is not None else None)
        if reason is None:
            reason = await self._resolved_refusal(request.url)
        if reason is not None:
            if seed is not None:
                self.crawler.stats.inc_value(f"source/{seed.id}/requests_refused")
            raise LinkRefused(f"link policy: {reason}")

    async def _resolved_refusal(self, url: str) -> str | None:
        """Return why the host name of `url` is refused once resolved, or None."""
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        if not host or host_address(host) is not None:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self.policy.allows_private(host, port):
            return None
        from twisted.internet import reactor

        try:
            # The crawl's caching resolver: the address checked is the one then connected to.
            address = await maybe_deferred_to_future(reactor.resolve(host))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the download reports an unresolvable host itself
            return None
        return self.policy.resolved_refusal(host, port, str(address))


class SourceRobotsTxtMiddleware(RobotsTxtMiddleware):
    """robots.txt is obeyed per source (`robots_txt: obey`, the default) or skipped (`ignore`)."""

    async def process_request(self, request: Request, spider: Any = None) -> None:  # type: ignore[override]
        """Return None when the source ignores robots.txt or it allows the request."""
        seed = _source_of(self.crawler, request)
        if seed is not None and getattr(seed, "robots_txt", "obey") == "ignore":
            return
        await super().process_request(request)

    async def robot_parser(self, request: Request) -> RobotParser | None:
        """Return the parser of the request's robots.txt, waiting for its download if needed."""
        pending = self._parsers.get(urlparse_cached(request).netloc)
        if not isinstance(pending, Deferred):
            return await super().robot_parser(request)
        # Scrapy awaits the shared Deferred itself, which hands the parser to the first waiter
        # only (asFuture consumes the result): the others got None and were let through.
        # Each waiter gets its own Deferred instead.
        waiter: Deferred[RobotParser | None] = Deferred()

        def relay(parser: RobotParser | None) -> RobotParser | None:
            waiter.callback(parser)
            return parser

        pending.addCallback(relay)
        return await maybe_deferred_to_future(waiter)

    def process_request_2(self, rp: RobotParser | None, request: Request) -> None:
        """Raise RobotsDisallowed, with how to override it, when robots.txt disallows `request`."""
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest:
            raise RobotsDisallowed(f"disallowed by robots.txt ({ROBOTS_HINT})") from None


class _LoopCheck:
    """Refuse a redirect back to a URL already visited on the way (a loop)."""

    def _redirect(self, redirected: Request, request: Request, reason: Any) -> Request:
        chain = [*request.meta.get("redirect_urls", []), request.url]
        if redirected.url in chain:
            raise PageRefused(
                f"redirect loop ({len(chain)} redirects, back to {redirected.url[:200]})"
            )
        return super()._redirect(redirected, request, reason)  # type: ignore[misc]


class LoopRedirectMiddleware(_LoopCheck, RedirectMiddleware):
    """Scrapy's RedirectMiddleware; a redirect loop fails with its own reason."""


class LoopMetaRefreshMiddleware(_LoopCheck, MetaRefreshMiddleware):
    """Scrapy's MetaRefreshMiddleware; a refresh loop fails with its own reason."""


def binary_kind(body: bytes) -> str | None:
    """Return what a body that cannot be an HTML page is ("PDF", "binary content"), or None."""
    head = body[:4096]
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) or len(head) < 16:
        return None
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return "binary content" if controls / len(head) > _CONTROL_SHARE else None


class ResponseGuardMiddleware:
    """Refuse empty, binary and absurdly large answers to page requests; record size limits."""

    def __init__(self, maxsize: int, max_tags: int = 200_000) -> None:
        self.maxsize = maxsize
        self.max_tags = max_tags

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Build the middleware with DOWNLOAD_MAXSIZE and PAGE_MAX_TAGS."""
        settings = crawler.settings
        return cls(settings.getint("DOWNLOAD_MAXSIZE"), settings.getint("PAGE_MAX_TAGS", 200_000))

    def process_request(self, request: Request) -> None:
        """Return None after recording the size limit, so a refusal can name it."""
        request.meta.setdefault("download_maxsize", self.maxsize)

    def process_response(self, request: Request, response: Response) -> Response:
        """Return `response` if it can be a page; raise PageRefused otherwise."""
        if request.meta.get("page_kind") not in ("list", "article") or response.status != 200:
            return response
        if not response.body.strip():
            raise PageRefused("empty page (HTTP 200 with no content)")
        content_type = response.headers.get("Content-Type", b"").decode("latin-1").lower()
        if content_type.startswith(_NOT_PAGE_TYPES):
            raise PageRefused(f"not HTML ({content_type.split(';')[0].strip()})")
        kind = binary_kind(response.body)
        if kind is not None:
            raise PageRefused(f"not HTML ({kind})")
        # Extraction takes time in proportion to the elements (seconds per 100,000), and it
        # holds up the whole crawl while it runs: no real page comes near this many.
        tags = response.body.count(b"<")
        if self.max_tags and tags > self.max_tags:
            raise PageRefused(
                f"page too large to parse ({tags} tags; PAGE_MAX_TAGS is {self.max_tags})"
            )
        return response


def _megabytes(size: Any) -> str:
    """Return a byte count as whole megabytes, e.g. '20 MB'."""
    try:
        return f"{int(size) / (1024 * 1024):g} MB"
    except (TypeError, ValueError):
        return "the size limit"


def describe_failure(failure: Failure) -> str:
    """Return a one-line reason for a failed request (the URL is added by the caller)."""
    exc = failure.value
    request = getattr(failure, "request", None)
    meta = request.meta if request is not None else {}
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status}"
    if isinstance(exc, (LinkRefused, PageRefused, RobotsDisallowed)):
        return str(exc)
    if isinstance(exc, IgnoreRequest):
        text = str(exc)
        if "redirection" in text:
            return (
                f"redirect loop (gave up after {meta.get('redirect_times', 'too many')} redirects)"
            )
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
        if "Decompression" in cause or "decompression" in text:
            limit = _megabytes(meta.get("download_maxsize"))
            return f"gzip bomb: decompressed size over {limit} (DOWNLOAD_MAXSIZE)"
        if "robots.txt" in text:
            return f"disallowed by robots.txt ({ROBOTS_HINT})"
        if "offsite" in text.lower():
            return f"link policy: {text}"
    if isinstance(exc, (DownloadTimeoutError, TxTimeoutError, TimeoutError)):
        timeout = meta.get("download_timeout")
        return f"timed out after {timeout:g}s" if timeout else "timed out"
    if isinstance(exc, DownloadCancelledError):
        return f"page larger than {_megabytes(meta.get('download_maxsize'))} (DOWNLOAD_MAXSIZE)"
    if isinstance(exc, ResponseDataLossError):
        return "connection closed before the whole page arrived (data loss)"
    if isinstance(exc, (DownloadFailedError, ConnectionLost)):
        return "connection reset or closed by the server before the page arrived"
    if isinstance(exc, DownloadConnectionRefusedError):
        return "Connection refused"
    if isinstance(exc, CannotResolveHostError):
        return "cannot resolve the host name"
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class ReadAheadMiddleware:
    """Have the spider read each page it asked for before the page's callback runs.

    The spider's `read_ahead(request, response)` (crawler/spiders/sources.py) sends the page to
    the extraction worker and leaves the answer in the request's meta, so that callbacks are
    plain functions. It runs last on a response (the lowest order of the downloader
    middlewares): after redirects, retries and the guard above. While a page waits for its
    worker, it keeps its place among the CONCURRENT_REQUESTS the downloader counts: when the
    worker falls behind, the crawl downloads less instead of piling pages up in memory.
    Responses of other spiders and requests (robots.txt) pass through untouched.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Build the middleware of `crawler`."""
        return cls(crawler)

    async def process_response(self, request: Request, response: Response) -> Response:
        """Return `response`, once the spider has read it ahead (if it reads pages ahead)."""
        read_ahead = getattr(self.crawler.spider, "read_ahead", None)
        if read_ahead is not None and "page_kind" in request.meta:
            await read_ahead(request, response)
        return response
