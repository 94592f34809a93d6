"""A hostile web server on 127.0.0.1 for tests: every first path segment is one misbehaviour.

`/<case>/list.html` is a column list page and `/<case>/content/post_<n>.html` its articles, so a
seed with id `<case>` and `REPLAY_URL=<server url>` crawls that case (see `seed_yaml`). Every
behaviour is bounded in time and size and ends when the server stops. `Trap` is a listener on
another port that only records who connected: links to it must never be followed.
"""

from __future__ import annotations

import gzip
import random
import select
import socket
import struct
import threading
import time
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

ROBOTS_TXT = b"User-agent: *\nDisallow: /robots/\nDisallow: /robots_ignored/\n"
HUGE_BYTES = 50 * 1024 * 1024
BOMB_BYTES = 200 * 1024 * 1024
GOOD_TITLE = "开平市召开生物医药产业对接会"
GBK_TITLE = "中山市与香港理工大学共建技术创新研究院"
PARAGRAPH = "会议指出，要加强粤港澳大湾区生物医药合作，推动科技成果转化，服务产业高质量发展。"


def seed_yaml(case: str, **extra: str) -> str:
    """Return the source file of hostile case `case` (served under /<case>/ by REPLAY_URL)."""
    lines = [
        f"id: {case}",
        f"name: 恶意站点 {case}",
        f"base_url: http://www.{case.replace('_', '-')}.hostile.test",
        "list_urls:",
        f"  - http://www.{case.replace('_', '-')}.hostile.test/list.html",
        r"article_pattern: /content/post_\d+\.html$",
        "max_pages: 1",
        *(f"{key}: {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def list_page(case: str, links: list[str]) -> bytes:
    """Return a column list page linking to `links` (hrefs written as given)."""
    rows = "".join(
        f'<li><a href="{href}">{GOOD_TITLE}（{number}）</a><span>2024-11-0{number % 9 + 1}</span></li>'
        for number, href in enumerate(links, start=1)
    )
    return (
        '<html><head><meta charset="utf-8"><title>单位动态</title></head><body>'
        f'<div class="nav">首页 &gt; {case}</div><ul class="list">{rows}</ul></body></html>'
    ).encode()


def article_page(title: str, paragraphs: list[str], charset: str | None = "utf-8") -> str:
    """Return an article page (as text: the caller encodes it) with government meta tags."""
    meta = f'<meta charset="{charset}">' if charset else ""
    body = "".join(f"<p>{text}</p>" for text in paragraphs)
    return (
        f"<html><head>{meta}<title>{title}</title>"
        f'<meta name="ArticleTitle" content="{title}"><meta name="PubDate" content="2024-11-05 17:11">'
        f'</head><body><div class="article"><h1>{title}</h1><div class="date">发布日期：2024-11-05'
        f'</div><div class="article-content">{body}</div></div></body></html>'
    )


MALFORMED = (
    "<html><head><title>"
    + GOOD_TITLE
    + "</title><body><div class=article-content><p>"
    + PARAGRAPH
    + "<p><b><i>未闭合<table><tr><td>"
    + PARAGRAPH
    + "</div></span></html><<<>>>"
    + "<div>" * 3000
    + "深层嵌套"
    + "<script>document.write('<p>'+'</p>')"
)


@cache
def gzip_bomb() -> bytes:
    """Return a gzip stream of about 100 KB that inflates to BOMB_BYTES of HTML-looking spaces."""
    member = gzip.compress(b" " * 1024 * 1024, compresslevel=9)  # gzip allows many members
    return gzip.compress(b"<html><body>") + member * (BOMB_BYTES // (1024 * 1024))


class Trap:
    """Listeners on 127.0.0.1 and 127.0.0.2 (one port) that record every connection and close it."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        first = socket.create_server(("127.0.0.1", 0))
        self.port = first.getsockname()[1]
        self._socks = [first, socket.create_server(("127.0.0.2", self.port))]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="trap", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(self._socks, [], [], 0.1)
            for sock in ready:
                conn, peer = sock.accept()
                self.connections.append(peer)
                conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for sock in self._socks:
            sock.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hostile: HostileServer) -> None:
        self.hostile = hostile
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients hanging up on a hostile answer is the point."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Do not log every request to stderr."""

    def do_GET(self) -> None:
        hostile = self.server.hostile
        hostile.record(self.path)
        if self.path == "/robots.txt":
            return self.reply(200, ROBOTS_TXT, "text/plain")
        case, _, rest = self.path.lstrip("/").partition("/")
        behaviour = getattr(self, "case_" + case, None)
        if behaviour is None:
            return self.reply(404, b"not found")
        behaviour(rest)

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a complete answer."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def good_site(self, case: str, rest: str, links: int = 2) -> None:
        """Answer as a well-behaved site: a list of `links` posts and their articles."""
        if rest == "list.html":
            hrefs = [f"/{case}/content/post_{n}.html" for n in range(1, links + 1)]
            return self.reply(200, list_page(case, hrefs))
        number = rest.removeprefix("content/post_").removesuffix(".html")
        title = f"{GOOD_TITLE}（{number}）"
        self.reply(200, article_page(title, [PARAGRAPH, PARAGRAPH[::-1]]).encode())

    def case_good(self, rest: str) -> None:
        self.good_site("good", rest)

    def case_robots(self, rest: str) -> None:
        self.good_site("robots", rest)

    def case_robots_ignored(self, rest: str) -> None:
        self.good_site("robots_ignored", rest)

    def case_blank(self, rest: str) -> None:
        """A list whose one post is a page of bare markup: no title, no text to extract."""
        if rest == "list.html":
            return self.reply(200, list_page("blank", ["/blank/content/post_1.html"]))
        self.reply(200, b"<html><head></head><body><div><span></span></div></body></html>")

    def case_http500(self, rest: str) -> None:
        self.reply(500, b"<html><body>Internal Server Error</body></html>")

    def case_slow(self, rest: str) -> None:
        self.server.hostile.stopping.wait(self.server.hostile.hang_seconds)
        self.reply(200, list_page("slow", ["/slow/content/post_1.html"]))

    def case_drip(self, rest: str) -> None:
        body = list_page("drip", ["/drip/content/post_1.html"])
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        deadline = time.monotonic() + self.server.hostile.hang_seconds
        for byte in body:
            if self.server.hostile.stopping.wait(1.0) or time.monotonic() > deadline:
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _reset(self) -> None:
        """Abort the connection with a TCP reset."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def case_reset(self, rest: str) -> None:
        self._reset()

    def case_cut(self, rest: str) -> None:
        body = list_page("cut", ["/cut/content/post_1.html"]) * 20
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 3])
        self.wfile.flush()
        time.sleep(0.2)
        self._reset()

    def case_loop(self, rest: str) -> None:
        target = "/loop/b.html" if rest == "list.html" else "/loop/list.html"
        self.reply(302, b"", headers={"Location": target})

    def case_chain(self, rest: str) -> None:
        step = int(rest.rsplit("=", 1)[1]) + 1 if "=" in rest else 1
        self.reply(302, b"", headers={"Location": f"/chain/list.html?step={step}"})

    def _stream(self, total: int, length: bool) -> None:
        """Send `total` bytes of a page, with or without Content-Length, until the client leaves."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if length:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        chunk = list_page("huge", ["/huge/content/post_1.html"]).ljust(65536, b" ")
        sent = 0
        while sent < total and not self.server.hostile.stopping.is_set():
            self.wfile.write(chunk)
            sent += len(chunk)

    def case_huge(self, rest: str) -> None:
        self._stream(HUGE_BYTES, length=True)

    def case_huge_chunked(self, rest: str) -> None:
        self._stream(HUGE_BYTES, length=False)

    def case_bomb(self, rest: str) -> None:
        self.reply(200, gzip_bomb(), headers={"Content-Encoding": "gzip"})

    def case_binary(self, rest: str) -> None:
        self.reply(200, random.Random(8).randbytes(64 * 1024))

    def case_tags(self, rest: str) -> None:
        self.reply(200, b"<html><body>" + b"<p>\xe6\x96\x87</p>" * 120_000 + b"</body></html>")

    def case_empty(self, rest: str) -> None:
        self.reply(200, b"")

    def case_noposts(self, rest: str) -> None:
        spam = "<p>澳门赌场 在线娱乐 免费观看</p><thead id='xudex'></thead>" * 20
        self.reply(200, f"<html><body><h1>单位动态</h1>{spam}</body></html>".encode())

    def case_charset(self, rest: str) -> None:
        if rest == "list.html":
            links = [f"/charset/content/post_{n}.html" for n in (1, 2, 3)]
            return self.reply(200, list_page("charset", links))
        if rest == "content/post_1.html":  # GBK bytes, header and <meta> both say UTF-8
            page = article_page(GBK_TITLE, [PARAGRAPH], charset="utf-8").encode("gbk")
            return self.reply(200, page)
        if rest == "content/post_2.html":  # GBK bytes, no charset anywhere
            page = article_page(GBK_TITLE, [PARAGRAPH], charset=None).encode("gbk")
            return self.reply(200, page, "text/html")
        self.reply(200, MALFORMED.encode())

    def case_links(self, rest: str) -> None:
        hostile = self.server.hostile
        if rest == "list.html":
            trap = hostile.trap_port
            return self.reply(
                200,
                list_page(
                    "links",
                    [
                        "/links/content/post_1.html",
                        "/links/content/post_2.html",
                        "http://evil.hostile-elsewhere.test/links/content/post_3.html",
                        "file:///etc/passwd?/content/post_4.html",
                        "javascript:alert(document.cookie)//content/post_5.html",
                        f"http://127.0.0.1:{trap}/links/content/post_6.html",
                        f"http://127.0.0.2:{trap}/links/content/post_7.html",
                        f"http://localhost:{trap}/links/content/post_8.html",
                        f"http://2130706433:{trap}/links/content/post_9.html",
                        f"http://[::1]:{trap}/links/content/post_10.html",
                        f"http://user:pw@127.0.0.1:{hostile.port}/links/content/post_11.html",
                    ],
                ),
            )
        if rest == "content/post_2.html":  # an on-site post that redirects to the trap
            location = f"http://127.0.0.1:{hostile.trap_port}/steal"
            return self.reply(302, b"", headers={"Location": location})
        self.good_site("links", rest)

    def case_content(self, rest: str) -> None:
        posts = self.server.hostile.posts
        if rest == "list.html":
            links = [f"/content/content/post_{n}.html" for n in range(len(posts), 0, -1)]
            return self.reply(200, list_page("content", links))
        number = int(rest.removeprefix("content/post_").removesuffix(".html"))
        self.reply(200, posts[number - 1].encode())


class HostileServer:
    """The hostile server: start it, point REPLAY_URL at `url`, read `requests` afterwards."""

    def __init__(self, trap_port: int = 9, hang_seconds: float = 20.0) -> None:
        self.trap_port = trap_port
        self.hang_seconds = hang_seconds
        self.stopping = threading.Event()
        self._requests: list[str] = []
        self.posts: list[str] = []  # raw HTML article pages of the `content` case, oldest first
        self._lock = threading.Lock()
        self._http: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:40123."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[str]:
        """Return the paths requested so far."""
        with self._lock:
            return list(self._requests)

    def record(self, path: str) -> None:
        """Remember one requested path."""
        with self._lock:
            self._requests.append(path)

    def __enter__(self) -> Self:
        self._http = _Server(self)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        assert self._http is not None and self._thread is not None
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)
