"""`ReplayServer`: an HTTP server on 127.0.0.1 (an asyncio loop on a thread of its own, see
replay/protocol.py) that serves every replayed site under `/<site_id>` and lets tests (or other
processes, over `/_admin/`) publish, edit and delete."""

from __future__ import annotations

import asyncio
import html
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from replay.handler import ReplayHandler, site_challenge
from replay.protocol import HTTPProtocol, Request, Response
from replay.sites import Page, Site, site_class, site_ids
from replay.sites.bulk import BulkSites
from replay.store import Post


@dataclass(frozen=True)
class RequestRecord:
    """One request a site received: method, path (with query), status sent, request headers."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    time: float

    def as_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-able dict."""
        return asdict(self)


# socketserver's default listen backlog is 5: a crawler opening a few dozen connections at once
# (hundreds of sources on one port) would see dropped handshakes and 200 ms-1 s retransmits
# that no real server imposes.
BACKLOG = 256


class ReplayServer:
    """Local replay of the monitored sites, each under `<url>/<site_id>` (see README)."""

    def __init__(
        self,
        sites: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        size: int | None = None,
        seed: int = 0,
        verbose: bool = False,
        bulk: int = 0,
        bulk_size: int = 1,
        cache_pages: bool = False,
    ):
        """Serve `sites` (default: all; `[]` with `bulk` for bulk sources only), each with
        `size` posts, plus `bulk` synthetic sources `bulk0001`... of `bulk_size` posts each.

        `cache_pages`: keep every page rendered, until its column changes, and answer later
        requests for it from memory (the benchmarks: a real site's rendering costs the
        crawling machine nothing, where the replay's runs on its cores). Off by default:
        a page cache holds every page served, and tests want each request rendered.
        """
        self.host = host
        self.port = port
        self.verbose = verbose
        named = {
            site_id: site_class(site_id)(size=size, seed=seed)
            for site_id in (site_ids() if sites is None or (not sites and not bulk) else sites)
        }
        self.sites = BulkSites(named, bulk, bulk_size, seed)
        # Per site: the column version the pages were rendered at, and each page (with its
        # ETag) by request path and query.
        self.page_cache: dict[str, tuple[int, dict[str, tuple[Page, str]]]] | None = (
            {} if cache_pages else None
        )
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[HTTPProtocol] = set()
        self._thread: threading.Thread | None = None

    # ----- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the port and serve in a background daemon thread (returns at once).

        The socket is bound here, so that a port in use raises in the caller.
        """
        if self._loop is not None:
            return
        sock = socket.create_server((self.host, self.port), backlog=BACKLOG, reuse_port=False)
        self.port = sock.getsockname()[1]
        loop = self._loop = asyncio.new_event_loop()
        self.sites.url = self.url
        for site_id, site in self.sites.items():
            site.public_base = f"{self.url}/{site_id}"
        log = self._access_log if self.verbose else None
        try:
            self._server = loop.run_until_complete(
                loop.create_server(
                    lambda: HTTPProtocol(self._respond, self._connections, log), sock=sock
                )
            )
        except BaseException:
            sock.close()
            loop.close()
            self._loop = None
            raise
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"replay:{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close every connection and release the port."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        def shut() -> None:
            server.close()
            for connection in list(self._connections):
                connection.close()
            loop.call_soon(loop.stop)  # after the connections' own closing callbacks

        loop.call_soon_threadsafe(shut)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not loop.is_running():
            loop.run_until_complete(server.wait_closed())
            loop.close()
        self._loop = self._server = self._thread = None

    def _respond(self, request: Request) -> Response:
        """Return the answer to one request (called on the server's loop)."""
        return ReplayHandler(self, request).respond()

    def _access_log(self, request: Request, status: int) -> None:
        """Write an access-log line, as http.server did (the server is verbose)."""
        when = time.strftime("%d/%b/%Y %H:%M:%S")
        line = f"{request.command} {request.path} {request.version}"
        print(f'{request.client} - - [{when}] "{line}" {status} -', file=sys.stderr)

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (for the CLI)."""
        self.start()
        try:
            while True:
                time.sleep(3600)
        finally:
            self.stop()

    def __enter__(self) -> Self:
        """Start serving and return the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    @property
    def url(self) -> str:
        """Return the base URL, e.g. `http://127.0.0.1:54321` (no trailing slash)."""
        if self._loop is None:
            raise RuntimeError("ReplayServer is not started")
        return f"http://{self.host}:{self.port}"

    # ----- URLs ------------------------------------------------------------------------------

    def site(self, site_id: str) -> Site:
        """Return the served site `site_id`; raise KeyError if it is not served."""
        try:
            return self.sites[site_id]
        except KeyError:
            raise KeyError(f"site {site_id!r} is not served here") from None

    def base_url(self, site_id: str) -> str:
        """Return `<url>/<site_id>`, what replaces the real origin in a source's URLs."""
        self.site(site_id)
        return f"{self.url}/{site_id}"

    def list_url(self, site_id: str, page: int = 1) -> str:
        """Return the full URL of list page `page` of the site's column."""
        return self.base_url(site_id) + self.site(site_id).list_path(page)

    def article_url(self, site_id: str, url_or_post_id: str | int | Post) -> str:
        """Return the full URL of an article given its post, id or any URL of it."""
        site = self.site(site_id)
        if isinstance(url_or_post_id, Post):
            post = url_or_post_id
        else:
            post_id = site.resolve_post_id(url_or_post_id)
            found = site.column.get(post_id)
            if found is None:
                raise KeyError(f"no post {post_id} on {site_id}")
            post = found
        return self.base_url(site_id) + site.article_path(post)

    def seed_url(self, site_id: str) -> str:
        """Return the full URL of the post built from the site's seed page."""
        site = self.site(site_id)
        for post in site.column.all():
            if post.extra.get("seed"):
                return self.article_url(site_id, post)
        raise KeyError(f"the seed post of {site_id} is not in the column")

    # ----- mutations -------------------------------------------------------------------------

    def publish(
        self,
        site_id: str,
        title: str,
        paragraphs: list[str],
        published_at: datetime | None = None,
        source: str | None = None,
        attachments: Iterable[str | dict[str, Any]] | None = None,
    ) -> str:
        """Publish a post (text verbatim) and return its article URL; it tops list page 1.

        `published_at` defaults to now (a naive datetime is CST); `source` defaults to the
        site's own label (Kaiping: the seed's 'this site'); `attachments` are file names.
        """
        post = self.site(site_id).publish(title, paragraphs, published_at, source, attachments)
        return self.article_url(site_id, post)

    def edit(
        self,
        site_id: str,
        url_or_post_id: str | int,
        title: str | None = None,
        paragraphs: list[str] | None = None,
    ) -> None:
        """Change a post's title and/or paragraphs; raise KeyError if there is no such post."""
        self.site(site_id).edit(url_or_post_id, title, paragraphs)

    def delete(self, site_id: str, url_or_post_id: str | int) -> None:
        """Delete a post (its page then answers 404); raise KeyError if there is none."""
        self.site(site_id).delete(url_or_post_id)

    def rotate_challenge(self, site_id: str) -> None:
        """Expire every cookie the site's challenge issued; KeyError if the site has none."""
        challenge = site_challenge(self.site(site_id))
        if challenge is None:
            raise KeyError(f"site {site_id!r} has no cookie challenge")
        challenge.rotate()

    # ----- request log -----------------------------------------------------------------------

    def _record(self, method: str, path: str, status: int, headers: dict[str, str]) -> None:
        """Append a request to the log (called by the handler, never for `/_admin/`)."""
        with self._log_lock:
            self._log.append(RequestRecord(method, path, status, headers, time.time()))

    @property
    def requests(self) -> list[RequestRecord]:
        """Return a snapshot of the request log, oldest first."""
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        """Empty the request log."""
        with self._log_lock:
            self._log.clear()

    # ----- descriptions ----------------------------------------------------------------------

    def describe(self) -> dict[str, dict[str, Any]]:
        """Return, per site, its real origin, replay base URL, list URL, seed URL and size."""
        return {
            site_id: {
                "origin": site.origin,
                "base_url": self.base_url(site_id),
                "list_url": self.list_url(site_id),
                "seed_url": self._seed_url_or_none(site_id),
                "posts": len(site.column),
                "pages": site.column.page_count(site.per_page),
            }
            for site_id, site in self.sites.items()
        }

    def _seed_url_or_none(self, site_id: str) -> str | None:
        """Return the seed post's URL, or None once it has been deleted."""
        try:
            return self.seed_url(site_id)
        except KeyError:
            return None

    def index_html(self) -> str:
        """Return the HTML of `/`: a link to each site's column."""
        rows = "".join(
            f'<li><a href="{html.escape(info["list_url"])}">{html.escape(site_id)}</a> '
            f"({html.escape(info['origin'])}, {info['posts']} posts)</li>"
            for site_id, info in self.describe().items()
        )
        return f"<!DOCTYPE html><html><head><title>replay</title></head><body><ul>{rows}</ul></body></html>"
