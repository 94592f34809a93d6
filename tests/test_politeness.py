"""A host never has more than CONCURRENT_REQUESTS_PER_DOMAIN of our requests in flight."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from crawler.config import PROJECT_ROOT

SPIDER = """
import scrapy

class Many(scrapy.Spider):
    name = "many"

    def __init__(self, base="", count="40", **kwargs):
        super().__init__(**kwargs)
        self.base, self.count = base, int(count)

    async def start(self):
        for n in range(self.count):
            yield scrapy.Request(f"{self.base}/page/{n}.html", callback=self.parse)

    def parse(self, response):
        yield {"url": response.url}
"""


class CountingServer(ThreadingHTTPServer):
    """Answers every GET after a short pause and records the most requests it had at once."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.served = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, CountingServer)
        with server.lock:
            server.in_flight += 1
            server.most = max(server.most, server.in_flight)
        try:
            time.sleep(0.05)
            body = b"<html><body><p>ok</p></body></html>"
            if self.path == "/robots.txt":
                self.send_response(404)
                body = b""
            else:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with server.lock:
                server.in_flight -= 1
                server.served += 1

    def log_message(self, *args: object) -> None:
        return


def _crawl(tmp_path: Path, base: str, *settings: str) -> subprocess.CompletedProcess[str]:
    spider = tmp_path / "many.py"
    spider.write_text(SPIDER, encoding="utf-8")
    argv = [sys.executable, "-m", "scrapy", "runspider", str(spider), "-a", f"base={base}"]
    host = base.split("//", 1)[1]
    argv += ["-s", "STORE_ENABLED=0", "-s", f"ALLOW_PRIVATE_HOSTS={host}", "-s", "LOG_LEVEL=INFO"]
    for setting in settings:
        argv += ["-s", setting]
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "crawler.settings"}
    env["MONITOR_SEEDS_DIR"] = str(tmp_path / "seeds")
    return subprocess.run(
        argv, check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_one_host_gets_at_most_the_per_host_limit(tmp_path: Path) -> None:
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = _crawl(tmp_path, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'item_scraped_count': 40" in done.stderr
    # Several at once (the limit is used), never more than it.
    assert 2 <= server.most <= 4, server.most
