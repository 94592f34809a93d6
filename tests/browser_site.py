"""A local test site on 127.0.0.1 for the browser path: a JavaScript challenge and a script-built list.

Every path is `/<site>/...`, so `REPLAY_URL=<url>` serves a source `<site>` (its `base_url` is
moved to `<url>/<site>`). Sites:

- `guarded`: every page answers 202 with a challenge page whose inline script computes a cookie
  from a nonce and reloads; with a valid cookie it serves the real page. `expire()` forgets every
  nonce issued so far, so earned cookies stop working.
- `scripted`: the list page is an empty shell whose script computes a token from a nonce in the
  page and fetches the posts from `api/list?token=...` (403 without the token); article pages are
  plain HTML.
- `plain`: the same pages as `guarded` with no challenge.
- `stuck`: a list page whose script loops forever once it has loaded (a hung renderer).
- `slow`: the `plain` pages, each answered after `delay` seconds.

Pages reference an image, a font, a video and a script under `static/`; the request log shows
which of them a client fetched. `python -m tests.browser_site --port 8899` serves it by hand.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

COOKIE_NAME = "guard_clearance"
CHALLENGE_STATUS = 202
SITES = ("guarded", "scripted", "plain", "stuck", "slow")
STATIC_TYPES = {
    "logo.png": "image/png",
    "body.woff2": "font/woff2",
    "clip.mp4": "video/mp4",
    "site.js": "application/javascript",
}


def challenge_answer(nonce: str) -> int:
    """Return the number the challenge script computes from `nonce` (31-hash mod 1000003)."""
    value = 0
    for char in nonce:
        value = (value * 31 + ord(char)) % 1000003
    return value


def list_token(nonce: str) -> str:
    """Return the API token the scripted list page computes from `nonce`."""
    return f"{nonce[::-1]}{challenge_answer(nonce) % 997}"


def article_title(number: int) -> str:
    """Return the title of post `number`."""
    return f"市卫健委与香港大学签署生物医药合作协议（第{number}号通报）"


def _static_refs(site: str) -> str:
    """Return markup that makes a browser fetch an image, a font, a video and a script."""
    return (
        f"<style>@font-face{{font-family:Gov;src:url(/{site}/static/body.woff2)}}"
        f"body{{font-family:Gov,serif}}</style>"
        f'<script src="/{site}/static/site.js"></script>'
        f'<img src="/{site}/static/logo.png" alt="logo">'
        f'<video src="/{site}/static/clip.mp4" autoplay muted></video>'
    )


def article_html(site: str, number: int) -> str:
    """Return the HTML of article `number`, built like a government CMS page."""
    title = article_title(number)
    day = f"2025-03-{(number % 28) + 1:02d}"
    paragraphs = "".join(
        f"<p>{text}</p>"
        for text in (
            f"{day}，市卫生健康委员会与香港大学在市政府签署生物医药合作协议，第{number}号通报。",
            "双方将共建联合实验室，围绕创新药物研发、医疗器械成果转化和临床研究开展合作。",
            "根据协议，港方科研团队将与本地医药企业联合攻关，推动产学研深度融合。",
        )
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f'<meta name="ArticleTitle" content="{title}">'
        f'<meta name="PubDate" content="{day} 10:00">'
        '<meta name="ContentSource" content="本网">'
        f"<title>{title}_市人民政府门户网站</title>{_static_refs(site)}</head><body>"
        '<div class="nav">首页 &gt; 新闻中心 &gt; 工作动态</div>'
        f'<h1 class="title">{title}</h1>'
        f'<div class="info">发布日期：{day} 10:00　来源：本网</div>'
        f'<div class="TRS_Editor">{paragraphs}</div>'
        '<div class="footer">主办：市人民政府办公室　ICP备00000000号</div></body></html>'
    )


def list_html(site: str, numbers: list[int]) -> str:
    """Return a plain column list page linking to the given posts."""
    rows = "".join(
        f'<li><a href="content/post_{n}.html" title="{article_title(n)}">{article_title(n)}</a>'
        f"<span>2025-03-{(n % 28) + 1:02d}</span></li>"
        for n in numbers
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>工作动态</title>'
        f'{_static_refs(site)}</head><body><div class="nav">首页 &gt; 新闻中心</div>'
        f'<ul class="list">{rows}</ul><div class="footer">ICP备00000000号</div></body></html>'
    )


def challenge_html(nonce: str) -> str:
    """Return the challenge page: its script sets the clearance cookie and reloads at once."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title></title></head><body>'
        "<script>(function(){"
        f'var n="{nonce}",h=0;'
        "for(var i=0;i<n.length;i++){h=(h*31+n.charCodeAt(i))%1000003;}"
        f'document.cookie="{COOKIE_NAME}="+n+"-"+h+"; path=/; max-age=86400";'
        "location.reload();})();</script></body></html>"
    )


def scripted_list_html(nonce: str) -> str:
    """Return the list shell whose script computes the token and builds the list from JSON."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>工作动态</title>'
        f'{_static_refs("scripted")}</head><body><div class="nav">首页 &gt; 新闻中心</div>'
        '<ul class="list" id="list"></ul><script>(function(){'
        f'var n="{nonce}",h=0;'
        "for(var i=0;i<n.length;i++){h=(h*31+n.charCodeAt(i))%1000003;}"
        'var t=n.split("").reverse().join("")+(h%997);'
        'fetch("api/list?token="+encodeURIComponent(t)).then(function(r){return r.json();})'
        ".then(function(items){var ul=document.getElementById('list');"
        "items.forEach(function(it){var li=document.createElement('li');"
        "var a=document.createElement('a');a.href=it.url;a.textContent=it.title;"
        "var s=document.createElement('span');s.textContent=it.date;"
        "li.appendChild(a);li.appendChild(s);ul.appendChild(li);});});"
        '})();</script><div class="footer">ICP备00000000号</div></body></html>'
    )


STUCK_HTML = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>工作动态</title></head><body>'
    '<ul class="list"></ul><script>setTimeout(function(){while(true){}},10);</script>'
    "</body></html>"
)


@dataclass(frozen=True)
class Hit:
    """One request the site answered: method, path with query, status, Cookie header."""

    method: str
    path: str
    status: int
    cookie: str
    user_agent: str


class _Handler(BaseHTTPRequestHandler):
    """Route `/<site>/...` to the BrowserSite that owns the server."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet; the site keeps its own log."""

    def do_GET(self) -> None:
        """Answer one GET and record it."""
        status, content_type, body = self.server.site.answer(self.path, self.headers)
        self.server.site.record(
            Hit(
                "GET",
                self.path,
                status,
                self.headers.get("Cookie", ""),
                self.headers.get("User-Agent", ""),
            )
        )
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a browser killed mid-page)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], site: BrowserSite) -> None:
        self.site = site
        super().__init__(address, _Handler)


class BrowserSite:
    """The test site: start it (or use it as a context manager), read `url`, `hits`, `expire()`."""

    def __init__(
        self, articles: int = 3, host: str = "127.0.0.1", port: int = 0, delay: float = 2.0
    ) -> None:
        self.delay = delay
        self.numbers = list(range(1001, 1001 + articles))
        self._lock = threading.Lock()
        self._nonces: set[str] = set()
        self._hits: list[Hit] = []
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:40123."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Start serving in a background thread and return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def expire(self) -> None:
        """Make every clearance cookie and list token issued so far invalid."""
        with self._lock:
            self._nonces.clear()

    def record(self, hit: Hit) -> None:
        """Append one request to the log."""
        with self._lock:
            self._hits.append(hit)

    def hits(self, site: str | None = None) -> list[Hit]:
        """Return the requests received so far, optionally only those of one site."""
        with self._lock:
            return [h for h in self._hits if site is None or h.path.startswith(f"/{site}/")]

    def _nonce(self) -> str:
        nonce = secrets.token_hex(8)
        with self._lock:
            self._nonces.add(nonce)
        return nonce

    def _cleared(self, cookie_header: str) -> bool:
        """Return True when the Cookie header carries a clearance the site issued."""
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            nonce, _, answer = value.partition("-")
            if name == COOKIE_NAME and answer == str(challenge_answer(nonce)):
                with self._lock:
                    if nonce in self._nonces:
                        return True
        return False

    def answer(self, raw_path: str, headers: object) -> tuple[int, str, bytes]:
        """Return status, content type and body for one GET."""
        parts = urlsplit(raw_path)
        site, _, rest = parts.path.lstrip("/").partition("/")
        html_type = "text/html; charset=utf-8"
        if site not in SITES:
            return 404, "text/plain", b"not found"
        if rest.startswith("static/"):
            name = rest.removeprefix("static/")
            if name in STATIC_TYPES:
                body = b"console.log('site');" if name.endswith(".js") else b"\0" * 64
                return 200, STATIC_TYPES[name], body
            return 404, "text/plain", b"not found"
        cookie = getattr(headers, "get", lambda *_: "")("Cookie", "") or ""
        if site == "slow":
            time.sleep(self.delay)
        if site == "guarded" and not self._cleared(cookie):
            return CHALLENGE_STATUS, html_type, challenge_html(self._nonce()).encode()
        page = self._page(site, rest, parse_qs(parts.query))
        if page is None:
            return 404, "text/plain", b"not found"
        status, content_type, text = page
        return status, content_type, text.encode("utf-8")

    def _page(
        self, site: str, rest: str, query: dict[str, list[str]]
    ) -> tuple[int, str, str] | None:
        """Return status, content type and text of a page behind any challenge, or None."""
        html_type = "text/html; charset=utf-8"
        if rest == "news/index.html":
            if site == "scripted":
                return 200, html_type, scripted_list_html(self._nonce())
            if site == "stuck":
                return 200, html_type, STUCK_HTML
            return 200, html_type, list_html(site, self.numbers)
        if rest == "news/api/list" and site == "scripted":
            token = (query.get("token") or [""])[0]
            with self._lock:
                valid = any(token == list_token(n) for n in self._nonces)
            if not valid:
                return 403, "application/json", json.dumps({"error": "bad token"})
            items = [
                {
                    "url": f"content/post_{n}.html",
                    "title": article_title(n),
                    "date": f"2025-03-{(n % 28) + 1:02d}",
                }
                for n in self.numbers
            ]
            return 200, "application/json", json.dumps(items, ensure_ascii=False)
        if rest.startswith("news/content/post_") and rest.endswith(".html"):
            number = rest.removeprefix("news/content/post_").removesuffix(".html")
            if number.isdigit() and int(number) in self.numbers:
                return 200, html_type, article_html(site, int(number))
        return None


def seed_yaml(site: str, browser: str = "none") -> str:
    """Return the source file of `site` (its id is the site name, as the replay path requires)."""
    return (
        f"id: {site}\n"
        f"name: {site} test column\n"
        f"base_url: http://www.{site}.gov.cn\n"
        f"list_urls:\n  - http://www.{site}.gov.cn/news/index.html\n"
        r"article_pattern: /news/content/post_\d+\.html$" + "\n"
        f"browser: {browser}\n"
    )


def main() -> None:
    """Serve the test site until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--articles", type=int, default=3)
    args = parser.parse_args()
    with BrowserSite(articles=args.articles, port=args.port) as site:
        print(f"serving {', '.join(SITES)} on {site.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
