"""Scrapy settings of the crawler; values that users change come from `crawler.config.AppSettings`."""

from crawler.config import get_settings

_app = get_settings()

BOT_NAME = "govmonitor"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# Where sources are declared and, for tests and the offline demo, where a replay serves them.
SEEDS_DIR = str(_app.seeds_dir)
REPLAY_URL = _app.replay_url
DATABASE_URL = _app.database_url

USER_AGENT = "Mozilla/5.0 (compatible; govmonitor/0.1; +https://example.invalid/govmonitor)"
ROBOTSTXT_OBEY = True

# Government sites are small and often fragile: be gentle per host, parallel across hosts.
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0
DOWNLOAD_TIMEOUT = 30
RETRY_TIMES = 2
DOWNLOAD_MAXSIZE = 20 * 1024 * 1024
DOWNLOAD_WARNSIZE = 5 * 1024 * 1024
REDIRECT_MAX_TIMES = 5
COOKIES_ENABLED = True

# The remote-control and telnet consoles are never wanted on a monitoring server.
TELNETCONSOLE_ENABLED = False

ITEM_PIPELINES = {
    "crawler.pipelines.StorePipeline": 500,
}
# Set STORE_ENABLED=False (-s STORE_ENABLED=0) to crawl into feed exports only.
STORE_ENABLED = True

FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = _app.log_level
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

# --- Browser pages (scrapy-playwright, JavaScript challenges): crawler/browser_settings.py ---
# Keep this block last: it merges into the dict settings above.
from crawler.browser_settings import merge_browser_settings

merge_browser_settings(globals())
# --- end of browser pages ---

