"""China News Service (www.chinanews.com.cn), scroll list `/scroll-news/newsN.html` (model).

Pages are GBK bytes whose charset is declared only in `<meta http-equiv>` (as gb2312; the
HTTP Content-Type has no charset). Articles live at `/<channel>/YYYY/MM-DD/<id>.shtml`;
list rows give a yearless `5-28 16:21`. After the body: a "related content" block (filled
by script, so empty in the HTML) and a "hot news" block of unrelated truncated stories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from replay.resources import seed_text
from replay.sites import register
from replay.sites.base import Site, esc, fill
from replay.sites.markup import pagination
from replay.store import Post, parse_cst

_ARTICLE = re.compile(r"/(\w+)/(\d{4})/(\d\d)-(\d\d)/(\d+)\.shtml")
_LIST = re.compile(r"/scroll-news/news(\d+)\.html")
_TOPIC_CHANNELS = {"biomed_news": "jk", "biomed_cooperation": "jk", "commerce": "cj"}


@dataclass(frozen=True)
class ChinanewsSeed:
    """What the chinanews seed page holds: article fields and the hot-news lines."""

    title: str
    byline: str
    published_at: str
    paragraphs: list[str]
    hot: list[str]


def parse_seed_page(text: str, labels: dict[str, str]) -> ChinanewsSeed:
    """Return title, byline, date, paragraphs and hot-news lines of the chinanews seed."""
    lines = [line.strip() for line in text.split("\n")]
    related = lines.index(labels["related"])
    hot = lines.index(labels["hot"])
    return ChinanewsSeed(
        title=lines[0],
        byline=lines[1],
        published_at=lines[2],
        paragraphs=[line for line in lines[4:related] if line],
        hot=[line for line in lines[hot + 1 :] if line],
    )


@register
class ChinanewsSite(Site):
    """China News Service: GBK pages (charset only in a meta tag), related/hot-news blocks."""

    site_id = "chinanews"
    origin = "http://www.chinanews.com.cn"
    per_page = 20
    encoding = "gbk"

    def __init__(self, size: int | None = None, seed: int = 0):
        settings = self.data("site.toml")
        self.labels: dict[str, str] = settings["strings"]
        self.channels: dict[str, str] = settings["channels"]
        info = self.data("posts.toml")["seed"]
        self.seed_info = parse_seed_page(seed_text(info["file"]), self.labels)
        # A caption ends in a bracketed credit, half- or full-width brackets.
        credits = self.labels["caption_credits"]
        self.caption = re.compile(rf"[\uff08(][^\uff08()\uff09]*({credits})[)\uff09]$")
        super().__init__(size, seed)

    def html_content_type(self) -> str:
        """Return `text/html` without charset: only the meta tag declares it."""
        return "text/html"

    def seed_post(self) -> Post:
        """Return the seed article, text verbatim."""
        info = self.data("posts.toml")["seed"]
        seed = self.seed_info
        post = Post(
            post_id=int(info["id"]),
            title=seed.title,
            published_at=parse_cst(seed.published_at),
            source=self.labels["source"],
            _paragraphs=list(seed.paragraphs),
        )
        post.extra.update(channel=info["channel"], author=info["author"], byline=seed.byline)
        return post

    def curated_posts(self) -> list[Post]:
        """Return the hand-written posts."""
        posts = self.posts_from_data()
        for post in posts:
            post.source = self.labels["source"]
        return posts

    def channel(self, post: Post) -> str:
        """Return the URL channel of a post (gn, cj, ga, jk, sh)."""
        if "channel" in post.extra:
            return post.extra["channel"]
        return _TOPIC_CHANNELS.get(post.extra.get("topic", ""), "gn")

    # ----- URL layout ------------------------------------------------------------------------

    def article_path(self, post: Post) -> str:
        """Return `/<channel>/YYYY/MM-DD/<id>.shtml`."""
        day = post.published_at
        return f"/{self.channel(post)}/{day:%Y}/{day:%m-%d}/{post.post_id}.shtml"

    def list_path(self, page: int) -> str:
        """Return `/scroll-news/news<page>.html`."""
        return f"/scroll-news/news{page}.html"

    def match_list(self, path: str, query: dict[str, list[str]]) -> int | None:
        """Return the list page number at `path`, or None."""
        match = _LIST.fullmatch(path)
        return int(match.group(1)) if match else None

    def match_article(self, path: str) -> int | None:
        """Return the post id of the article at `path` (checked against its date and channel)."""
        match = _ARTICLE.fullmatch(path)
        if not match:
            return None
        post = self.column.get(int(match.group(5)))
        if post is not None and self.article_path(post) != path:
            return None
        return int(match.group(5))

    # ----- rendering -------------------------------------------------------------------------

    def render_list(self, page: int, prefix: str) -> str:
        """Return scroll list page `page`: channel, title link, yearless `5-28 16:21` time."""
        rows = []
        for post in self.column.page(page, self.per_page):
            channel = self.channel(post)
            day = post.published_at
            rows.append(
                f'      <li><div class="dd_lm">[<a href="{prefix}/{channel}.shtml">'
                f"{self.channels[channel]}</a>]</div>"
                f'<div class="dd_bt"><a href="{prefix}{self.article_path(post)}">{esc(post.title)}</a>'
                f'</div><div class="dd_time">{day.month}-{day.day} {day:%H:%M}</div></li>'
            )
        pages = self.column.page_count(self.per_page)
        bar = pagination(page, pages, self.labels, href=lambda number: f"news{number}.html")
        return fill(
            self.template("list.html"),
            {"prefix": prefix, "rows": "\n".join(rows), "pagination": bar},
        )

    def body_html(self, post: Post, prefix: str) -> str:
        """Return the body: paragraphs indented by two ideographic spaces; captions under a picture."""
        out = []
        for number, paragraph in enumerate(post.paragraphs):
            if self.caption.search(paragraph) and len(paragraph) < 90:
                day = post.published_at
                image = f"{prefix}/{self.channel(post)}/{day:%Y}/{day:%m-%d}/U{post.post_id}P{number}.jpg"
                out.append(
                    f'<div class="adEditor"><div class="left_ph" align="center"><img src="{image}" '
                    f'alt="" /></div><p class="pictext" align="center">{esc(paragraph)}</p></div>'
                )
            else:
                out.append(f"<p>\u3000\u3000{esc(paragraph)}</p>")
        return "\n".join("      " + line for line in out)

    def hot_html(self) -> str:
        """Return the hot-news items (from the seed page; unrelated to the article)."""
        items = []
        for number, line in enumerate(self.seed_info.hot):
            head, _, rest = line.partition("... ")
            items.append(
                f'        <li><a href="https://www.chinanews.com.cn/rdzx/{number + 1}.shtml" '
                f'target="_blank">{esc(head)}...</a> <span class="summary">{esc(rest)}</span></li>'
            )
        return "\n".join(items)

    def render_article(self, post: Post, prefix: str) -> str:
        """Return the article page of `post`."""
        channel = self.channel(post)
        first = next((p for p in post.paragraphs if len(p) > 40), "")
        return fill(
            self.template("article.html"),
            {
                "prefix": prefix,
                "title": esc(post.title),
                "keywords": esc(post.extra.get("keywords", "")),
                "description": esc(first[:100]),
                "channel": channel,
                "channel_name": self.channels[channel],
                "post_id": str(post.post_id),
                "date": f"{post.published_at:%Y-%m-%d}",
                "pubdate": f"{post.published_at:%Y-%m-%d %H:%M:%S}",
                "author": esc(post.extra.get("author", "")),
                "byline": esc(post.extra.get("byline", "")),
                "source": esc(post.source or self.labels["source"]),
                "body": self.body_html(post, prefix),
                "related_label": self.labels["related"],
                "hot_label": self.labels["hot"],
                "hot": self.hot_html(),
            },
        )
