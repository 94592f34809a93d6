"""Zhongshan municipal portal (www.zs.gov.cn), column "Zhongshan news" under the news
centre (`/xwzx/zsyw/`, our model).

Guangdong platform layout, simplified Chinese, UTF-8. Besides the HTML column the platform's
information-disclosure directory is served: `/gkmlpt/index` (tree in `window._CONFIG`),
`/gkmlpt/api/all/<column>?page=N&sid=760001` (JSON, 100 posts a page, page 0 = page 1) and
`/gkmlpt/content/<a>/<b>/post_<id>.html` (the same post in the directory's detail page).

The column list pages are empty shells: their script computes a token from the page's nonce
and the current time window and fills the list from the gkmlpt API, which answers 403 without
a valid token. Only a client that runs the script sees the posts. The nonce follows the
column's version, so a shell (and its ETag) changes exactly when the posts do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time

from replay.resources import seed_text
from replay.sites import gdplatform as gd
from replay.sites import register
from replay.sites.base import Page, Site, esc, fill
from replay.store import Post, parse_cst

COLUMN_DIR = "/xwzx/zsyw/"
COLUMN_ID = 2915
SID = "760001"
API_PER_PAGE = 100
_GKML_CONTENT = re.compile(r"/gkmlpt/content/(\d+)/(\d+)/post_(\d+)\.html")
_API = re.compile(r"/gkmlpt/api/all/(\d+)")
_ORDERED = re.compile(r"^\s+\d+\.\s+")
_BULLET = re.compile(r"^\s+•\s+")
TOKEN_WINDOW = 300  # seconds; a token is valid in its time window and the one after
TOKEN_VERSIONS = 5  # shells of this many earlier column versions still get answers


def fnv1a(text: str) -> str:
    """Return the 32-bit FNV-1a hash of `text` (UTF-16 code units, as in JS) as 8 hex digits."""
    data = text.encode("utf-16-le")
    value = 0x811C9DC5
    for index in range(0, len(data), 2):
        value = ((value ^ (data[index] | data[index + 1] << 8)) * 16777619) & 0xFFFFFFFF
    return f"{value:08x}"


def body_html(paragraphs: list[str], heading_ends: str) -> str:
    """Return the body: `  1. x` lines as `<ol>`, `  • x` as `<ul>`, short lines as headings.

    A short line is a heading unless it ends with one of `heading_ends` or holds a colon.
    """
    out: list[str] = []
    open_list = ""
    for line in paragraphs:
        kind = "ol" if _ORDERED.match(line) else "ul" if _BULLET.match(line) else ""
        if kind != open_list:
            if open_list:
                out.append(f"</{open_list}>")
            if kind:
                out.append(f"<{kind}>")
            open_list = kind
        text = esc(line.strip())
        if kind:
            item = _ORDERED.sub("", line) if kind == "ol" else _BULLET.sub("", line)
            out.append(f"  <li>{esc(item.strip())}</li>")
        elif text.endswith("?"):
            out.append(f"<p><strong>{text}</strong></p>")
        elif len(text) <= 30 and not text.endswith(tuple(heading_ends)) and ":" not in text:
            out.append(f"<h3>{text}</h3>")
        else:
            out.append(f'<p style="text-indent: 2em;">{text}</p>')
    if open_list:
        out.append(f"</{open_list}>")
    return "\n".join("      " + line for line in out)


@register
class ZhongshanSite(Site):
    """Zhongshan: Guangdong platform column plus the gkmlpt JSON column-list API."""

    site_id = "zhongshan"
    origin = "http://www.zs.gov.cn"
    cacheable = False  # the column-list API's token changes with the time

    def __init__(self, size: int | None = None, seed: int = 0):
        settings = self.data("site.toml")
        self.labels: dict[str, str] = settings["strings"]
        self.markers: dict[str, str] = settings["seed_page"]
        self.default_source = self.labels["default_source"]
        self._token_key = secrets.token_bytes(16)
        super().__init__(size, seed)

    def seed_post(self) -> Post:
        """Return the SEO-style seed article; its meta-description line becomes the description."""
        info = self.data("posts.toml")["seed"]
        lines = [line.rstrip() for line in seed_text(info["file"]).split("\n") if line.strip()]
        marks = self.markers
        description = next(line for line in lines if line.startswith(marks["description_label"]))
        post = Post(
            post_id=int(info["id"]),
            title=lines[0].strip(),
            published_at=parse_cst(info["published_at"]),
            source=info["source"],
            _paragraphs=lines[1:],
        )
        post.extra["description"] = description.split(":", 1)[1].strip()
        keywords = next(line for line in lines if line.startswith(marks["keywords_label"]))
        words = keywords.split(":", 1)[1].strip()
        post.extra["keywords"] = words.replace(marks["keyword_separator"], ",")
        return post

    def curated_posts(self) -> list[Post]:
        """Return the hand-written Zhongshan posts."""
        return self.posts_from_data()

    # ----- URL layout ------------------------------------------------------------------------

    def article_path(self, post: Post) -> str:
        """Return `/xwzx/zsyw/content/post_NNNNNNN.html`."""
        return gd.article_path(COLUMN_DIR, post)

    def gkml_path(self, post: Post) -> str:
        """Return `/gkmlpt/content/<id//10^6>/<id//10^3>/post_<id>.html`."""
        return f"/gkmlpt/content/{post.post_id // 1_000_000}/{post.post_id // 1000}/post_{post.post_id}.html"

    def list_path(self, page: int) -> str:
        """Return `/xwzx/zsyw/index.html`, `index_2.html`, ..."""
        return gd.list_path(COLUMN_DIR, page)

    def match_list(self, path: str, query: dict[str, list[str]]) -> int | None:
        """Return the list page number at `path`, or None."""
        return gd.match_list(COLUMN_DIR, path)

    def match_article(self, path: str) -> int | None:
        """Return the post id of a column or gkmlpt article path, or None."""
        match = _GKML_CONTENT.fullmatch(path)
        if match:
            return int(match.group(3))
        return gd.match_article(COLUMN_DIR, path)

    # ----- routing ---------------------------------------------------------------------------

    def route(self, path: str, query: dict[str, list[str]], prefix: str) -> Page | None:
        """Serve the gkmlpt directory and API, then the column pages."""
        if path == "/gkmlpt/index":
            tree = json.dumps(
                [{"id": COLUMN_ID, "name": self.labels["column"], "parent": 0, "jump_url": ""}],
                ensure_ascii=False,
            )
            text = fill(self.template("gkmlpt_index.html"), {"prefix": prefix, "tree": tree})
            return self.html_page(text, self.column.changed_at)
        api = _API.fullmatch(path)
        if api:
            return self.api_page(int(api.group(1)), query)
        content = _GKML_CONTENT.fullmatch(path)
        if content:
            post = self.column.get(int(content.group(3)))
            if post is None or self.gkml_path(post) != path:
                return None
            return self.html_page(self.render_gkml_article(post, prefix), post.last_modified)
        return super().route(path, query, prefix)

    # ----- list token -------------------------------------------------------------------------

    def list_nonce(self, version: int | None = None) -> str:
        """Return the nonce the list shells of a column version (default: current) carry."""
        number = self.column.version if version is None else version
        return hmac.new(self._token_key, str(number).encode(), hashlib.sha256).hexdigest()[:16]

    def list_token(self, version: int | None = None, moment: float | None = None) -> str:
        """Return the token a shell's script computes now (or at epoch `moment`)."""
        window = int((time.time() if moment is None else moment) // TOKEN_WINDOW)
        return fnv1a(f"{self.list_nonce(version)}:{window}")

    def token_valid(self, token: str) -> bool:
        """Return True for a token of a recent column version in this or the last time window."""
        now, current = time.time(), self.column.version
        return any(
            hmac.compare_digest(token, self.list_token(version, moment))
            for version in range(max(0, current - TOKEN_VERSIONS), current + 1)
            for moment in (now, now - TOKEN_WINDOW)
        )

    def forbidden(self) -> Page:
        """Return the API's 403 answer to a request without a valid token."""
        body = json.dumps({"code": 403, "message": "invalid token"}).encode()
        return Page(body, "application/json; charset=utf-8", self.column.changed_at, status=403)

    def api_page(self, column_id: int, query: dict[str, list[str]]) -> Page | None:
        """Return one page of the gkmlpt JSON list (`page` 0 and 1 are both the first)."""
        if column_id not in (0, COLUMN_ID):
            return None
        if not self.token_valid(query.get("token", [""])[0]):
            return self.forbidden()
        try:
            page = max(1, int(query.get("page", ["1"])[0] or 1))
        except ValueError:
            page = 1
        posts = self.column.all()
        chunk = posts[(page - 1) * API_PER_PAGE : page * API_PER_PAGE]
        body = {
            "classify": {"id": COLUMN_ID, "name": self.labels["column"], "post_count": len(posts)},
            "articles": [self.api_article(post) for post in chunk],
            "total": len(posts),
            "page": page,
            "pages": math.ceil(len(posts) / API_PER_PAGE),
        }
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return Page(data, "application/json; charset=utf-8", self.column.changed_at)

    def api_article(self, post: Post) -> dict[str, object]:
        """Return a post as the gkmlpt API lists it (absolute replay URLs)."""
        stamp = int(post.published_at.timestamp())
        return {
            "id": post.post_id,
            "title": post.title,
            "url": self.public_base + self.gkml_path(post),
            "post_url": self.public_base + self.article_path(post),
            "date": stamp,
            "display_publish_time": stamp,
            "created_at": f"{post.published_at:%Y-%m-%d %H:%M:%S}",
            "publisher": post.source,
            "identifier": self.identifier(post),
            "document_number": "",
            "classify_main_name": self.labels["column"],
            "abstract": "",
            "attachment": [
                {
                    "id": a.attachment_id,
                    "name": a.name,
                    "type": a.ext,
                    "mime": a.mime,
                    "url": self.public_base + self.attachment_path(post, a),
                }
                for a in post.attachments
            ],
        }

    def identifier(self, post: Post) -> str:
        """Return the post's disclosure index number."""
        return f"007305930/{post.published_at.year}-{post.post_id % 100000:05d}"

    # ----- rendering -------------------------------------------------------------------------

    def chrome(self, prefix: str) -> dict[str, str]:
        """Return the shared header and footer HTML."""
        return {
            "prefix": prefix,
            "header": fill(self.template("header.html"), {"prefix": prefix}),
            "footer": fill(self.template("footer.html"), {"prefix": prefix}),
        }

    def render_list(self, page: int, prefix: str) -> str:
        """Return the shell of list page `page`: pagination, no rows, the script that loads them."""
        version = self.column.version
        pages = self.column.page_count(self.per_page)
        values = self.chrome(prefix)
        values.update(
            api=f"{prefix}/gkmlpt/api/all/{COLUMN_ID}?sid={SID}",
            nonce=self.list_nonce(version),
            version=str(version),
            page=str(page),
            per_page=str(self.per_page),
            api_per_page=str(API_PER_PAGE),
            window=str(TOKEN_WINDOW),
            script=self.template("list.js").replace("</", "<\\/"),
            pagination=gd.pagination(page, pages, self.labels),
        )
        return fill(self.template("list.html"), values)

    def article_values(self, post: Post, prefix: str) -> dict[str, str]:
        """Return the template values shared by the column and gkmlpt article pages."""
        first = next((p.strip() for p in post.paragraphs if len(p) > 30), "")
        links = "".join(
            f'<p><a class="nfw-cms-attachment" href="{prefix}{self.attachment_path(post, a)}">'
            f"{esc(a.name)}</a></p>"
            for a in post.attachments
        )
        values = self.chrome(prefix)
        values.update(
            title=esc(post.title),
            pubdate=f"{post.published_at:%Y-%m-%d %H:%M}",
            pubdate_meta=f"{post.published_at:%Y-%m-%d %H:%M}",
            date=f"{post.published_at:%Y-%m-%d}",
            source=esc(post.source),
            keywords=esc(post.extra.get("keywords", "")),
            description=esc(post.extra.get("description", first[:120])),
            real_url=self.real_url(self.article_path(post)),
            body=body_html(post.paragraphs, self.markers["heading_ends"]),
            attachments=links,
            identifier=self.identifier(post),
        )
        return values

    def render_article(self, post: Post, prefix: str) -> str:
        """Return the column article page of `post`."""
        return fill(self.template("article.html"), self.article_values(post, prefix))

    def render_gkml_article(self, post: Post, prefix: str) -> str:
        """Return the gkmlpt detail page of `post` (with `window._CONFIG.DETAIL`)."""
        values = self.article_values(post, prefix)
        detail = self.api_article(post)
        values["detail"] = json.dumps(detail, ensure_ascii=False).replace("</", "<\\/")
        return fill(self.template("gkmlpt_article.html"), values)
