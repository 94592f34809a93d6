"""Scrapy settings of the browser path (scrapy-playwright on Debian's Chromium); see crawler/browser.py.

`crawler/settings.py` calls `merge_browser_settings(globals())` as its last statement: dict
settings (handlers, middlewares, extensions) are merged into the project's, scalar ones are set
unless the project already set them.
"""

from __future__ import annotations

from typing import Any

from crawler.config import get_settings

CHROMIUM = "/usr/bin/chromium"

# A headless Chromium that talks to no one but the pages it is sent to: this machine's closed
# network refuses Chromium's background connections (updates, sync, metrics, QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--mute-audio",
    "--password-store=basic",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]

BROWSER_SETTINGS: dict[str, Any] = {
    # Plain requests keep Scrapy's HTTP client; only requests marked `playwright` open a page.
    "DOWNLOAD_HANDLERS": {
        "http": "crawler.browser.BrowserDownloadHandler",
        "https": "crawler.browser.BrowserDownloadHandler",
    },
    # BrowserMiddleware is Scrapy's cookies middleware with one jar per source, plus the browser.
    "DOWNLOADER_MIDDLEWARES": {
        "scrapy.downloadermiddlewares.cookies.CookiesMiddleware": None,
        "crawler.browser.BrowserMiddleware": 700,
    },
    "EXTENSIONS": {
        "scrapy.extensions.memusage.MemoryUsage": None,
        "crawler.browser.BrowserMemoryUsage": 0,
    },
    "PLAYWRIGHT_BROWSER_TYPE": "chromium",
    "PLAYWRIGHT_LAUNCH_OPTIONS": {
        "executable_path": CHROMIUM,
        "headless": True,
        "args": CHROMIUM_ARGS,
        "timeout": 30_000,
    },
    "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": 30_000,
    "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 4,
    "PLAYWRIGHT_ABORT_REQUEST": "crawler.browser.should_abort_request",
    # The browser's own headers (and cookies); the context carries the crawl's User-Agent.
    "PLAYWRIGHT_PROCESS_REQUEST_HEADERS": None,
    "PLAYWRIGHT_RESTART_DISCONNECTED_BROWSER": True,
    # Wall-clock limit of one browser page, challenge wait, and wait for scripts' requests (s).
    "BROWSER_PAGE_TIMEOUT": 60.0,
    "BROWSER_CHALLENGE_TIMEOUT": 15.0,
    "BROWSER_IDLE_TIMEOUT": 2.0,
    # Solves per source and crawl before its pages all go by browser.
    "BROWSER_MAX_SOLVES": 3,
    "BROWSER_COOKIES_DIR": str(get_settings().data_dir / "cookies"),
    # The memory limit counts the browser processes (BrowserMemoryUsage).
    "MEMUSAGE_ENABLED": True,
    "MEMUSAGE_LIMIT_MB": 2048,
    "MEMUSAGE_WARNING_MB": 1024,
    "MEMUSAGE_CHECK_INTERVAL_SECONDS": 15.0,
}


def merge_browser_settings(namespace: dict[str, Any]) -> None:
    """Lay BROWSER_SETTINGS into a settings module's namespace (dicts merged, scalars defaulted)."""
    for name, value in BROWSER_SETTINGS.items():
        current = namespace.get(name)
        if isinstance(value, dict) and isinstance(current, dict):
            namespace[name] = {**value, **current}
        elif name not in namespace:
            namespace[name] = value
