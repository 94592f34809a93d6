"""What every replayed site has: a column of posts, URL layout, rendering, mutations.

A site module subclasses `Site`, sets the class attributes, and implements the URL layout
(`article_path`, `list_path`, `match_*`) and the two renderers. The server only calls
`route()` and the mutation methods.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from replay.files import attachment_bytes
from replay.generate import PostGenerator
from replay.resources import data_text, data_toml
from replay.sites.markup import esc, fill
from replay.store import Attachment, Column, Post, as_cst, now_cst, parse_cst

_GD_ATTACHMENT = re.compile(r"^/attachment/0/\d+/(\d+)/(\d+)\.(\w+)$")


__all__ = ["Page", "Site", "esc", "fill"]


@dataclass
class Page:
    """A response body with what the server needs for headers and revalidation."""

    body: bytes
    content_type: str
    last_modified: datetime
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class Site(ABC):
    """Base of a replayed site: one column of posts served under `/<site_id>`."""

    site_id: ClassVar[str]
    origin: ClassVar[str]
    per_page: ClassVar[int] = 15
    default_source: str = ""
    encoding: ClassVar[str] = "utf-8"
    min_posts: ClassVar[int] = 21
    # Whether a page depends only on the request and the column (its version): what a
    # server's page cache may keep (replay/handler.py). Not so where pages hold the time.
    cacheable: ClassVar[bool] = True

    def __init__(self, size: int | None = None, seed: int = 0):
        self.seed = seed
        # Set by the server once its port is known: `http://127.0.0.1:<port>/<site_id>`.
        self.public_base = f"http://127.0.0.1/{self.site_id}"
        topics: list[str] | None = self.data("site.toml").get("topics")
        self.generator = PostGenerator(self.site_id, self.vocab(), seed, self.convert, topics)
        self.column = Column(self.build_posts(size))

    # ----- content -------------------------------------------------------------------------

    @abstractmethod
    def seed_post(self) -> Post:
        """Return the post built from the seed page, text verbatim."""

    @abstractmethod
    def curated_posts(self) -> list[Post]:
        """Return the hand-written posts around the seed post."""

    def convert(self, text: str) -> str:
        """Return data text as the site displays it (identity unless the site converts)."""
        return text

    def vocab(self) -> dict[str, list[str]]:
        """Return the site's vocabulary for generated posts."""
        vocab: dict[str, list[str]] = self.data("site.toml")["vocab"]
        return vocab

    def data(self, name: str) -> dict[str, Any]:
        """Return the parsed TOML file `data/<site_id>/<name>`."""
        return data_toml(f"{self.site_id}/{name}")

    def template(self, name: str) -> str:
        """Return the page template `data/<site_id>/<name>`."""
        return data_text(f"{self.site_id}/{name}")

    def posts_from_data(self, name: str = "posts.toml") -> list[Post]:
        """Return the posts listed in `data/<site_id>/<name>`, converted for display."""
        posts = []
        for entry in self.data(name).get("post", []):
            posts.append(
                Post(
                    post_id=int(entry["id"]),
                    title=self.convert(entry["title"]),
                    published_at=parse_cst(entry["published_at"]),
                    source=self.convert(entry.get("source", self.default_source)),
                    attachments=[
                        Attachment(int(a["id"]), self.convert(a["name"]))
                        for a in entry.get("attachments", [])
                    ],
                    extra={k: str(v) for k, v in entry.get("extra", {}).items()},
                    _paragraphs=[self.convert(p) for p in entry["paragraphs"]],
                )
            )
        return posts

    def build_posts(self, size: int | None) -> list[Post]:
        """Return the initial posts: seed and curated ones, topped up with generated posts.

        Without `size` the column holds the curated posts (at least `min_posts` besides the
        seed); with `size` it holds exactly `size` posts, the seed post always among them.
        """
        seed = self.seed_post()
        seed.extra["seed"] = "1"
        curated = sorted(self.curated_posts(), key=Post.sort_key, reverse=True)
        wanted = self.min_posts + 1 if size is None else size
        if wanted <= 0:
            return []
        if wanted <= len(curated) + 1:
            return [seed, *curated[: wanted - 1]] if size is not None else [seed, *curated]
        posts = [seed, *curated]
        oldest = min(posts, key=Post.sort_key)
        fillers = self.generator.fill(
            wanted - len(posts), oldest.post_id, oldest.published_at, self.default_source
        )
        return posts + fillers

    # ----- URL layout ------------------------------------------------------------------------

    @abstractmethod
    def article_path(self, post: Post) -> str:
        """Return the real site's path of a post's article page."""

    @abstractmethod
    def list_path(self, page: int) -> str:
        """Return the real site's path of 1-based list page `page`."""

    @abstractmethod
    def match_list(self, path: str, query: dict[str, list[str]]) -> int | None:
        """Return the list page number that `path` (and query) names, or None."""

    @abstractmethod
    def match_article(self, path: str) -> int | None:
        """Return the post id of the article page at `path`, or None."""

    def attachment_path(self, post: Post, attachment: Attachment) -> str:
        """Return the path of an attachment (Guangdong platform layout by default)."""
        att_id = attachment.attachment_id
        return f"/attachment/0/{att_id // 1000}/{att_id}/{post.post_id}.{attachment.ext}"

    def real_url(self, path: str) -> str:
        """Return the URL of `path` on the real site (for meta tags and canonical links)."""
        return self.origin + path

    def resolve_post_id(self, url_or_post_id: str | int) -> int:
        """Return the post id named by an id, a replay URL, a real URL or a path."""
        if isinstance(url_or_post_id, int):
            return url_or_post_id
        text = str(url_or_post_id).strip()
        if text.isdigit():
            return int(text)
        path = urlsplit(text).path
        prefix = f"/{self.site_id}"
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
        post_id = self.match_article(path)
        if post_id is None:
            raise KeyError(f"not an article of {self.site_id}: {url_or_post_id!r}")
        return post_id

    # ----- rendering -------------------------------------------------------------------------

    @abstractmethod
    def render_list(self, page: int, prefix: str) -> str:
        """Return the HTML of list page `page`; links carry `prefix` (e.g. `/kaiping`)."""

    @abstractmethod
    def render_article(self, post: Post, prefix: str) -> str:
        """Return the HTML of a post's article page."""

    def html_page(self, text: str, last_modified: datetime, status: int = 200) -> Page:
        """Return `text` encoded as the site encodes its pages."""
        body = text.encode(self.encoding, errors="xmlcharrefreplace")
        return Page(body, self.html_content_type(), last_modified, status)

    def html_content_type(self) -> str:
        """Return the Content-Type header of HTML pages."""
        return f"text/html; charset={self.encoding}"

    def not_found(self, prefix: str) -> Page:
        """Return the site's 404 page."""
        return self.html_page(
            "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><center>"
            "<h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>",
            now_cst(),
            status=404,
        )

    def route(self, path: str, query: dict[str, list[str]], prefix: str) -> Page | None:
        """Return the page at `path` (real-site path, no prefix), or None if there is none."""
        page = self.match_list(path, query)
        if page is not None:
            if page < 1 or page > self.column.page_count(self.per_page):
                return None
            return self.html_page(self.render_list(page, prefix), self.column.changed_at)
        post_id = self.match_article(path)
        if post_id is not None:
            post = self.column.get(post_id)
            if post is None:
                return None
            return self.html_page(self.render_article(post, prefix), post.last_modified)
        return self.route_attachment(path)

    def route_attachment(self, path: str) -> Page | None:
        """Return an attachment file at `path`, or None."""
        match = _GD_ATTACHMENT.match(path)
        if not match:
            return None
        post = self.column.get(int(match.group(2)))
        if post is None:
            return None
        for attachment in post.attachments:
            if attachment.attachment_id == int(match.group(1)) and attachment.ext == match.group(3):
                body = attachment_bytes(attachment.ext, f"attachment {attachment.attachment_id}")
                return Page(body, attachment.mime, post.published_at)
        return None

    # ----- mutations -------------------------------------------------------------------------

    def publish(
        self,
        title: str,
        paragraphs: list[str],
        published_at: datetime | None = None,
        source: str | None = None,
        attachments: Iterable[str | dict[str, Any]] | None = None,
    ) -> Post:
        """Add a post (text verbatim, no conversion) and return it."""
        post_id = self.column.next_id()
        files = []
        for number, item in enumerate(attachments or []):
            name = item if isinstance(item, str) else str(item["name"])
            files.append(Attachment(post_id // 10 + number, name))
        post = Post(
            post_id=post_id,
            title=title,
            published_at=as_cst(published_at) if published_at else now_cst(),
            source=self.default_source if source is None else source,
            attachments=files,
            _paragraphs=list(paragraphs),
        )
        self.column.add(post)
        return post

    def edit(
        self,
        url_or_post_id: str | int,
        title: str | None = None,
        paragraphs: list[str] | None = None,
    ) -> Post:
        """Change a post's title and/or body; raise KeyError if there is no such post."""
        return self.column.edit(self.resolve_post_id(url_or_post_id), title, paragraphs)

    def delete(self, url_or_post_id: str | int) -> Post:
        """Remove a post; raise KeyError if there is no such post."""
        return self.column.delete(self.resolve_post_id(url_or_post_id))
