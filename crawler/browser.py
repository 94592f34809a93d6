"""Pages that need a browser: scrapy-playwright on the machine's Chromium, and JavaScript challenges.

Routing. A request whose meta says `browser: True` (the spider sets it from the source's
`browser:` key) is fetched by scrapy-playwright in a browser context of its own source
(`source:<id>`), with images, fonts and media blocked and the crawl's User-Agent.

Challenges. Any source's plain response may be a JavaScript challenge (`is_challenge`). The
middleware then fetches that page once in the browser, waits until the challenge script has set
its cookie and the real page has loaded, copies the context's cookies into the source's Scrapy
cookie jar and hands the real page to the spider. Following plain requests of the source carry
the earned cookies. A request sent with them that is challenged again means they stopped
working, and the browser solves again; if they never pass (challenged right after a solve) or
keep expiring (`BROWSER_MAX_SOLVES`), the source is fetched by browser for the rest of the crawl.
Requests challenged while a solve is in flight wait for it, then retry plainly.

Cookies between crawls. Every source has its own jar (`meta["cookiejar"]` = source id). A source
that used the browser saves its jar when the crawl ends to `BROWSER_COOKIES_DIR/<id>.json`
(`<MONITOR_DATA_DIR>/cookies/`, mode 0600) and loads it at its next crawl's first request, so a
cycle whose earned cookies still work opens no browser page. Delete the file to forget them.

Chromium. `PLAYWRIGHT_LAUNCH_OPTIONS["executable_path"]` (Debian's /usr/bin/chromium; Playwright's
own browser download is never used). When it is missing or cannot start, each browser request
fails with one clear error naming `apt-get install chromium`, logged once per source; sources
that need no browser go on. Playwright itself starts only when a first page needs it.

Hygiene. scrapy-playwright closes each page (on errors too) and every context at the end;
navigations time out; `BrowserDownloadHandler` bounds each page by wall clock (a hung renderer or
a dead browser cannot hang the crawl); `BrowserMemoryUsage` counts the browser's processes
against `MEMUSAGE_LIMIT_MB`.

Stats: `browser/pages` and `source/<id>/browser_pages` (pages opened this crawl),
`source/<id>/challenges`, `source/<id>/browser_solves`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from contextlib import suppress
from dataclasses import dataclass
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any, Self
from weakref import WeakKeyDictionary

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import Request as PlaywrightRequest
from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.cookies import CookiesMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.extensions.memusage import MemoryUsage
from scrapy.http import Response
from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler
from scrapy_playwright.page import PageMethod

logger = logging.getLogger(__name__)

BLOCKED_RESOURCE_TYPES = frozenset({"image", "font", "media"})
CHALLENGE_STATUSES = frozenset({202, 412, 521})
INSTALL_HINT = "install it with `apt-get install chromium` (as root; `make chromium` does it)"
_SMALL_PAGE = 16 * 1024
# Matched against the lower-cased page: a literal search first, far cheaper than IGNORECASE
# over every page of a crawl (every plain response is checked).
_COOKIE_SCRIPT = re.compile(rb"document\.cookie\s*=")
_RELOAD_SCRIPT = re.compile(rb"location\s*(?:\.\s*(?:reload|replace|assign|href)|=)")
_NOT_TEXT = re.compile(
    rb"<(script|style)\b.*?</\1\s*>|<[^>]*>|&\w+;|\s+", re.IGNORECASE | re.DOTALL
)
_STATUS_JS = "() => (performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0"


class BrowserUnavailable(IgnoreRequest):
    """Chromium is missing or cannot start, so a page that needs it cannot be fetched."""


class BrowserPageError(IgnoreRequest):
    """A browser page overran its time limit or stayed a challenge."""


def is_challenge(status: int, body: bytes) -> bool:
    """Return True when a response is a JavaScript challenge rather than the page asked for."""
    if status in CHALLENGE_STATUSES:
        return b"<script" in body[:_SMALL_PAGE].lower()
    if status != 200 or len(body) > _SMALL_PAGE:
        return False
    lowered = body.lower()
    if b"document.cookie" not in lowered:
        return False
    if not (_COOKIE_SCRIPT.search(lowered) and _RELOAD_SCRIPT.search(lowered)):
        return False
    return len(_NOT_TEXT.sub(b"", body)) < 200


def chromium_problem(launch_options: dict[str, Any]) -> str | None:
    """Return why the configured Chromium cannot run, or None when it looks usable."""
    path = launch_options.get("executable_path")
    if path and not os.access(path, os.X_OK):
        return f"Chromium is not installed (no executable at {path}); {INSTALL_HINT}"
    return None


def should_abort_request(request: PlaywrightRequest) -> bool:
    """Return True for browser requests not worth their bytes (PLAYWRIGHT_ABORT_REQUEST)."""
    return request.resource_type in BLOCKED_RESOURCE_TYPES


def cookie_to_dict(cookie: Cookie) -> dict[str, Any]:
    """Return a cookie of Scrapy's jar in Playwright's form (also the cookie file's form)."""
    return {
        "name": cookie.name,
        "value": cookie.value or "",
        "domain": cookie.domain,
        "path": cookie.path or "/",
        "expires": float(cookie.expires) if cookie.expires else -1,
        "httpOnly": cookie.has_nonstandard_attr("HttpOnly"),
        "secure": bool(cookie.secure),
    }


def cookie_from_dict(data: dict[str, Any]) -> Cookie:
    """Return a cookie in Playwright's form as a cookie for Scrapy's jar."""
    domain = str(data["domain"])
    expires = data.get("expires") or -1
    dotted = domain.startswith(".")
    return Cookie(
        version=0,
        name=str(data["name"]),
        value=str(data["value"]),
        port=None,
        port_specified=False,
        domain=domain,
        domain_specified=dotted,
        domain_initial_dot=dotted,
        path=str(data.get("path") or "/"),
        path_specified=True,
        secure=bool(data.get("secure")),
        expires=int(expires) if expires > 0 else None,
        discard=expires <= 0,
        comment=None,
        comment_url=None,
        rest={"HttpOnly": ""} if data.get("httpOnly") else {},
    )


async def init_page(page: Page, request: Request) -> None:
    """Give a new page's context the source's cookies from Scrapy's jar; remember the page."""
    request.meta["browser_page"] = page
    if cookies := request.meta.get("browser_cookies"):
        await page.context.add_cookies(cookies)


async def settle_page(page: Page, challenge_timeout: float, idle_timeout: float) -> dict[str, Any]:
    """Return the final status, whether a challenge was met or remains, and the context's cookies."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + challenge_timeout
    status, met, remains = 0, False, False
    while True:
        remaining = deadline - loop.time()
        try:
            await page.wait_for_load_state("load", timeout=max(remaining, 0.1) * 1000)
            # A script that never yields hangs evaluate() and content(): bound them.
            async with asyncio.timeout(max(remaining, 1.0)):
                status = int(await page.evaluate(_STATUS_JS))  # read before the HTML, not after
                html = (await page.content()).encode()
        except TimeoutError as exc:
            raise BrowserPageError(
                f"page did not respond within {challenge_timeout:.0f}s (a script keeps it busy)"
            ) from exc
        except PlaywrightError:  # navigating (the challenge reloads), or still not loaded
            if remaining <= 0:
                break
            await asyncio.sleep(0.05)
            continue
        remains = is_challenge(status or 200, html)
        met = met or remains
        if not remains or remaining <= 0:
            break
        await asyncio.sleep(0.1)
    with suppress(PlaywrightError):  # scripts that build the page fetch after `load`
        await page.wait_for_load_state("networkidle", timeout=idle_timeout * 1000)
    cookies = await page.context.cookies()
    return {"status": status, "met": met, "remains": remains, "cookies": cookies}


@dataclass
class _Source:
    """What the middleware knows about one source during a crawl."""

    solving: asyncio.Future[None] | None = None
    solves: int = 0
    plain_since_solve: int = 0
    browser_only: bool = False
    persist: bool = False
    unavailable_logged: bool = False


class BrowserMiddleware(CookiesMiddleware):
    """Cookies per source, browser routing of pages that need it, and challenges solved once."""

    def __init__(
        self,
        debug: bool = False,
        *,
        cookies_dir: Path | None = None,
        launch_options: dict[str, Any] | None = None,
        user_agent: str | None = None,
        challenge_timeout: float = 15.0,
        idle_timeout: float = 2.0,
        max_solves: int = 3,
    ) -> None:
        super().__init__(debug)
        self.cookies_dir = cookies_dir
        self.unavailable = chromium_problem(launch_options or {})
        self.context_kwargs: dict[str, Any] = {
            "ignore_https_errors": True,
            "service_workers": "block",
        }
        if user_agent:
            self.context_kwargs["user_agent"] = user_agent
        self.challenge_timeout = challenge_timeout
        self.idle_timeout = idle_timeout
        self.max_solves = max_solves
        self.sources: dict[str, _Source] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Build the middleware from the BROWSER_* and PLAYWRIGHT_LAUNCH_OPTIONS settings."""
        settings = crawler.settings
        cookies_dir = settings.get("BROWSER_COOKIES_DIR")
        middleware = cls(
            settings.getbool("COOKIES_DEBUG"),
            cookies_dir=Path(cookies_dir) if cookies_dir else None,
            launch_options=settings.getdict("PLAYWRIGHT_LAUNCH_OPTIONS"),
            user_agent=settings.get("USER_AGENT"),
            challenge_timeout=settings.getfloat("BROWSER_CHALLENGE_TIMEOUT", 15.0),
            idle_timeout=settings.getfloat("BROWSER_IDLE_TIMEOUT", 2.0),
            max_solves=settings.getint("BROWSER_MAX_SOLVES", 3),
        )
        middleware.crawler = crawler
        crawler.signals.connect(middleware.save_cookies, signal=signals.spider_closed)
        return middleware

    def _source(self, source_id: str) -> _Source:
        """Return the state of a source, loading its saved cookies on first use."""
        if source_id not in self.sources:
            self.sources[source_id] = state = _Source()
            path = self._cookies_file(source_id)
            if path is not None and path.exists():
                state.persist = True
                with suppress(OSError, ValueError, KeyError, TypeError):
                    jar = self.jars[source_id]
                    for data in json.loads(path.read_text(encoding="utf-8")):
                        cookie = cookie_from_dict(data)
                        if not cookie.is_expired():
                            jar.set_cookie(cookie)
        return self.sources[source_id]

    def _cookies_file(self, source_id: str) -> Path | None:
        return None if self.cookies_dir is None else self.cookies_dir / f"{source_id}.json"

    def save_cookies(self) -> None:
        """Write the jar of every source that used the browser to its cookies file."""
        for source_id, state in self.sources.items():
            path = self._cookies_file(source_id)
            if path is None or not state.persist:
                continue
            cookies = [cookie_to_dict(c) for c in self.jars[source_id] if not c.is_expired()]
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(cookies, out, ensure_ascii=False, indent=1)
                tmp.replace(path)
            except OSError as exc:
                logger.warning("source %s: cannot save cookies to %s: %s", source_id, path, exc)

    async def process_request(self, request: Request) -> Request | Response | None:
        """Route browser pages to scrapy-playwright; give plain ones the source's cookies."""
        meta = request.meta
        source_id = meta.get("source_id")
        if source_id is None:
            return super().process_request(request)
        meta.setdefault("cookiejar", source_id)
        state = self._source(source_id)
        if meta.get("browser") or meta.get("browser_solve") or state.browser_only:
            self._to_browser(request, source_id, state)
            return None
        if state.solving is not None:  # a solve is in flight: wait for its cookies
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(state.solving), self.challenge_timeout * 2)
        meta["browser_generation"] = state.solves
        meta.pop("playwright", None)
        return super().process_request(request)

    def _to_browser(self, request: Request, source_id: str, state: _Source) -> None:
        """Mark a request for scrapy-playwright, or fail it when Chromium is unavailable."""
        if self.unavailable:
            self._fail_unavailable(request, source_id, state)
        state.persist = True
        request.meta.update(
            playwright=True,
            playwright_context=f"source:{source_id}",
            playwright_context_kwargs=self.context_kwargs,
            playwright_page_goto_kwargs={"wait_until": "commit"},
            playwright_page_init_callback="crawler.browser.init_page",
            playwright_page_methods=[
                PageMethod(settle_page, self.challenge_timeout, self.idle_timeout)
            ],
            browser_cookies=[cookie_to_dict(c) for c in self.jars[source_id] if not c.is_expired()],
            dont_merge_cookies=True,
        )
        stats = self.crawler.stats
        stats.inc_value("browser/pages")
        stats.inc_value(f"source/{source_id}/browser_pages")

    def _fail_unavailable(self, request: Request, source_id: str, state: _Source) -> None:
        """Log the unavailable browser once per source and raise BrowserUnavailable."""
        assert self.unavailable is not None
        if request.meta.get("browser_solve"):
            self._solve_done(state)
        if not state.unavailable_logged:
            state.unavailable_logged = True
            logger.error("source %s needs a browser: %s", source_id, self.unavailable)
        raise BrowserUnavailable(self.unavailable)

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        """Take a browser page's cookies into the jar; answer a challenged plain page."""
        source_id = request.meta.get("source_id")
        if source_id is None:
            return super().process_response(request, response)
        state = self._source(source_id)
        if request.meta.get("playwright"):
            return self._browser_response(request, response, source_id, state)
        response = super().process_response(request, response)
        if not is_challenge(response.status, response.body):
            state.plain_since_solve += 1
            return response
        self.crawler.stats.inc_value(f"source/{source_id}/challenges")
        return self._on_challenge(request, source_id, state)

    def _on_challenge(self, request: Request, source_id: str, state: _Source) -> Request:
        """Return the request to send after a plain response turned out to be a challenge."""
        retry = request.replace(dont_filter=True)
        if state.solving is not None or request.meta.get("browser_generation", 0) < state.solves:
            return retry  # a solve is in flight, or was sent before the last one: retry plainly
        if state.solves and (state.plain_since_solve == 0 or state.solves >= self.max_solves):
            state.browser_only = True
            logger.warning(
                "source %s: cookies earned in the browser %s; fetching its pages by browser",
                source_id,
                "do not pass plain requests" if state.plain_since_solve == 0 else "keep expiring",
            )
            return retry
        state.solving = asyncio.get_running_loop().create_future()
        logger.info(
            "source %s: %s is a JavaScript challenge; solving it in the browser",
            source_id,
            request.url,
        )
        retry.meta["browser_solve"] = True
        retry.priority = request.priority + 100
        return retry

    def _browser_response(
        self, request: Request, response: Response, source_id: str, state: _Source
    ) -> Response:
        """Return a browser page with its final status, its cookies copied to the jar."""
        meta = request.meta
        meta.pop("browser_page", None)
        methods = meta.get("playwright_page_methods") or []
        result = methods[0].result if methods and isinstance(methods[0].result, dict) else None
        if meta.get("browser_solve"):
            self._solve_done(state)
        if result is None:
            return response
        jar = self.jars[source_id]
        for data in result["cookies"]:
            jar.set_cookie(cookie_from_dict(data))
        stats = self.crawler.stats
        if result["met"]:
            stats.inc_value(f"source/{source_id}/challenges")
        if result["remains"]:
            raise BrowserPageError(
                f"JavaScript challenge not solved in the browser within "
                f"{self.challenge_timeout:.0f}s"
            )
        if result["met"] or meta.get("browser_solve"):
            stats.inc_value(f"source/{source_id}/browser_solves")
            state.solves += 1
            state.plain_since_solve = 0
        if result["status"] and result["status"] != response.status:
            response = response.replace(status=result["status"])
        return response

    def _solve_done(self, state: _Source) -> None:
        """Wake the requests waiting for the source's solve in flight."""
        if state.solving is not None and not state.solving.done():
            state.solving.set_result(None)
        state.solving = None

    async def process_exception(self, request: Request, exception: Exception) -> None:
        """Close a failed browser page, end its solve, and name a missing Chromium once."""
        source_id = request.meta.get("source_id")
        if source_id is None or not request.meta.get("playwright"):
            return
        state = self._source(source_id)
        await close_page(request.meta.pop("browser_page", None))
        if request.meta.get("browser_solve"):
            self._solve_done(state)
        if isinstance(exception, BrowserUnavailable):
            self.unavailable = str(exception)
            self._fail_unavailable(request, source_id, state)


async def close_page(page: Page | None) -> None:
    """Close a browser page unless it is gone already; never raise."""
    if page is None or page.is_closed():
        return
    with suppress(PlaywrightError, TimeoutError):
        await asyncio.wait_for(page.close(), 10)


_HANDLERS: WeakKeyDictionary[Crawler, BrowserDownloadHandler] = WeakKeyDictionary()


class BrowserDownloadHandler(ScrapyPlaywrightDownloadHandler):
    """scrapy-playwright's handler, started at the first browser page, each page time-limited."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.page_timeout = crawler.settings.getfloat("BROWSER_PAGE_TIMEOUT", 60.0)
        self._start_lock = asyncio.Lock()
        # Scrapy builds one handler per scheme; all browser pages go to the first one, so a
        # crawl runs one Chromium and a source keeps one context over http and https.
        self.primary = _HANDLERS.setdefault(crawler, self)

    async def _maybe_launch_in_thread(self) -> None:
        """Start nothing with the engine: a crawl without browser pages never runs Playwright."""

    async def _maybe_launch_browser(self) -> None:
        """Launch Chromium; when it cannot start, raise BrowserUnavailable with the fix."""
        try:
            await super()._maybe_launch_browser()
        except PlaywrightError as exc:
            path = self.config.launch_options.get("executable_path") or "Chromium"
            first_line = (str(exc).strip() or repr(exc)).splitlines()[0]
            raise BrowserUnavailable(
                chromium_problem(self.config.launch_options)
                or f"Chromium ({path}) failed to start: {first_line}; check that `{path} "
                f"--version` runs, or reinstall it with `apt-get install chromium`"
            ) from exc

    async def download_request(self, request: Request) -> Response:
        """Return the response, by browser when the request is marked `playwright`."""
        if not request.meta.get("playwright"):
            return await super().download_request(request)
        if self.primary is not self:
            return await self.primary.download_request(request)
        async with self._start_lock:
            if getattr(self, "browser_provider", None) is None:
                try:
                    await self._launch()
                except Exception as exc:
                    self.__dict__.pop("browser_provider", None)
                    raise BrowserUnavailable(f"Playwright could not start ({exc})") from exc
        try:
            return await asyncio.wait_for(super().download_request(request), self.page_timeout)
        except TimeoutError:
            await close_page(request.meta.get("browser_page"))
            raise BrowserPageError(
                f"browser page took longer than {self.page_timeout:.0f}s"
            ) from None


def _descendants(root: int) -> list[int]:
    """Return the ids of all processes descended from `root` (Linux /proc; else none)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self").exists() else ():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _process_memory(pid: int) -> int:
    """Return a process's proportional set size in bytes (resident size if PSS is unknown)."""
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        with suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    return 0


def browser_memory() -> int:
    """Return the memory, in bytes, of this process's children: Playwright and Chromium."""
    return sum(_process_memory(pid) for pid in _descendants(os.getpid()))


class BrowserMemoryUsage(MemoryUsage):
    """Scrapy's memory watch (MEMUSAGE_*), counting the browser processes too."""

    def get_virtual_size(self) -> int:
        """Return this process's peak RSS plus the current memory of the browser processes."""
        browser = browser_memory()
        self._stats.max_value("memusage/browser_max", browser)
        return super().get_virtual_size() + browser
