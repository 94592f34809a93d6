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
# Scrapy 2.19's own downloader lets a host have up to CONCURRENT_REQUESTS in flight on the
# asyncio reactor; this one keeps the per-host limit (crawler/downloader.py).
DOWNLOADER = "crawler.downloader.PoliteDownloader"
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
# Articles are written in batches: one transaction per STORE_BATCH_SIZE items, or sooner once
# the oldest has waited STORE_BATCH_SECONDS (crawler/pipelines.py says why nothing is lost).
STORE_BATCH_SIZE = 200
STORE_BATCH_SECONDS = 1.0
# Batches are written by a store process of the crawl's (crawler/store_process.py); unset: on
# a machine with several cores, else (and with STORE_PROCESS=0) by a thread of the crawl.
STORE_PROCESS = None
# A callback yields one item or a page of links, and nothing it yields waits on I/O (the store
# pipeline batches its writes): Scrapy starts this many asyncio tasks per response to process
# them (its default of 100 cost a tenth of a crawl's CPU). With nothing to wait on, one task
# does the same work with the fewest tasks, in the order the callback yields.
CONCURRENT_ITEMS = 1
# Article pages are extracted in this many worker processes (crawler/extract_pool.py); unset:
# 1 on a machine with several cores, 0 (in the crawl process) on one.
EXTRACT_WORKERS = None
# Spider middlewares run over every request and item a callback returns. Three of Scrapy's
# defaults do nothing for these spiders and cost about a twentieth of a crawl's CPU: depth
# (the spiders bound a column walk by `max_pages`, not by link depth; DEPTH_LIMIT is unused),
# URL length (the link policy refuses URLs over URLLENGTH_LIMIT itself, crawler/linkpolicy.py)
# and the meta-copy warning (a development aid; the spiders build every request's meta).
# Scrapy's start and referer middlewares are one here (crawler/middlewares.py).
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
    "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware": None,
    "scrapy.spidermiddlewares.start.StartSpiderMiddleware": None,
    "scrapy.spidermiddlewares.referer.RefererMiddleware": None,
    "crawler.middlewares.StartRefererMiddleware": 700,
}
# Scrapy parses the source of every generator callback to warn about `return value` in it.
WARN_ON_GENERATOR_RETURN_VALUE = False

FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = _app.log_level
# Messages below LOG_LEVEL are dropped by their logger, not built and then filtered; the
# garbage collector runs less often and skips start-up's objects (crawler/extensions.py).
EXTENSIONS = {"crawler.extensions.RootLogLevel": 0, "crawler.extensions.TuneGc": 0}
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

# --- Browser pages (scrapy-playwright, JavaScript challenges): crawler/browser_settings.py ---
# Keep this block last: it merges into the dict settings above.
from crawler.browser_settings import merge_browser_settings

merge_browser_settings(globals())
# --- end of browser pages ---

# --- Hostile sites (issue 8): size and time limits, link policy, robots.txt per source ---
# See crawler/middlewares.py and crawler/linkpolicy.py. DOWNLOAD_MAXSIZE (above) also bounds the
# decompressed size in Scrapy's HttpCompressionMiddleware, which stops gzip/deflate/br bombs;
# DOWNLOAD_TIMEOUT (above) bounds a whole download, so a server dripping a byte a second ends too.
DOWNLOAD_FAIL_ON_DATALOSS = True  # a page cut short is an error, never half an article
# Scrapy 2.19's remote control runs Python code sent over HTTP (its token in a job file): off,
# like the telnet console above.
REMOTE_CONTROL_ENABLED = False
# Hosts on private or loopback addresses that sources may fetch ("host" or "host:port"). None by
# default; a replay run (REPLAY_URL) allows the replay's own host:port, tests set what they need.
ALLOW_PRIVATE_HOSTS: list[str] = []
LIST_MAX_POSTS = 1000  # posts followed from one list page
PAGE_MAX_TAGS = 200_000  # a page with more tags is refused: extracting it would stall the crawl
DOWNLOADER_MIDDLEWARES = {
    **globals().get("DOWNLOADER_MIDDLEWARES", {}),
    "crawler.middlewares.LinkPolicyMiddleware": 40,
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.middlewares.SourceRobotsTxtMiddleware": 100,
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "crawler.middlewares.LoopMetaRefreshMiddleware": 580,
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "crawler.middlewares.LoopRedirectMiddleware": 600,
    # Sees bodies after HttpCompressionMiddleware (590) has decompressed them.
    "crawler.middlewares.ResponseGuardMiddleware": 585,
    # Last on every response: a page is read in the extraction worker before its callback.
    "crawler.middlewares.ReadAheadMiddleware": 30,
}
# --- end of hostile sites ---
