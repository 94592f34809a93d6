"""Shenzhen News (www.sznews.com), column "Shenzhen news" `/news/node_18234.htm` (model).

TRS-style site: list pages `node_18234.htm`, `node_18234_2.htm`, ...; articles
`/news/content/YYYY-MM/DD/content_NNNNNNNN.htm` with the body in `div.TRS_Editor`, then a
copyright disclaimer, a `(0)` like counter, previous/next links with Chinese 12-hour dates,
and "recommended" links to other posts.
"""

from __future__ import annotations

import re
from datetime import datetime

from replay.resources import seed_text
from replay.sites import register
from replay.sites.base import Site, esc, fill
from replay.sites.markup import pagination
from replay.store import Post, parse_cst

NODE = 18234
_ARTICLE = re.compile(r"/news/content/(\d{4})-(\d\d)/(\d\d)/content_(\d+)\.htm")
_LIST = re.compile(rf"/news/node_{NODE}(?:_(\d+))?\.htm")


@register
class SznewsSite(Site):
    """Shenzhen News: TRS_Editor body, copyright notice, previous/next and related links."""

    site_id = "sznews"
    origin = "http://www.sznews.com"

    def __init__(self, size: int | None = None, seed: int = 0):
        self.labels: dict[str, str] = self.data("site.toml")["strings"]
        self.default_source = self.labels["source"]
        lines = [line.strip() for line in seed_text(self.seed_file()).split("\n") if line.strip()]
        self.seed_lines = lines
        label = self.labels["copyright_label"]
        self.copyright = next(line for line in lines if line.startswith(label))
        super().__init__(size, seed)

    def seed_file(self) -> str:
        """Return the name of the seed page file."""
        return str(self.data("posts.toml")["seed"]["file"])

    def seed_post(self) -> Post:
        """Return the seed post: title without the site suffix, one long paragraph."""
        info = self.data("posts.toml")["seed"]
        post = Post(
            post_id=int(info["id"]),
            title=self.seed_lines[0].removesuffix(self.labels["title_suffix"]),
            published_at=parse_cst(info["published_at"]),
            source=self.default_source,
            _paragraphs=[self.seed_lines[1]],
        )
        post.extra["author"] = info["author"]
        return post

    def curated_posts(self) -> list[Post]:
        """Return the hand-written posts."""
        return self.posts_from_data()

    # ----- URL layout ------------------------------------------------------------------------

    def article_path(self, post: Post) -> str:
        """Return `/news/content/YYYY-MM/DD/content_NNNNNNNN.htm`."""
        day = post.published_at
        return f"/news/content/{day:%Y-%m}/{day:%d}/content_{post.post_id}.htm"

    def list_path(self, page: int) -> str:
        """Return `/news/node_18234.htm`, `/news/node_18234_2.htm`, ..."""
        return f"/news/node_{NODE}.htm" if page == 1 else f"/news/node_{NODE}_{page}.htm"

    def match_list(self, path: str, query: dict[str, list[str]]) -> int | None:
        """Return the list page number at `path`, or None."""
        match = _LIST.fullmatch(path)
        if not match:
            return None
        return int(match.group(1)) if match.group(1) else 1

    def match_article(self, path: str) -> int | None:
        """Return the post id of the article at `path` (checked against its date), or None."""
        match = _ARTICLE.fullmatch(path)
        if not match:
            return None
        post = self.column.get(int(match.group(4)))
        if post is not None and self.article_path(post) != path:
            return None
        return int(match.group(4))

    # ----- rendering -------------------------------------------------------------------------

    def render_list(self, page: int, prefix: str) -> str:
        """Return list page `page`: title links with `2021-10-14 18:36` times."""
        rows = [
            f'    <li><a href="{prefix}{self.article_path(post)}" target="_blank">'
            f'{esc(post.title)}</a><span class="time">{post.published_at:%Y-%m-%d %H:%M}</span></li>'
            for post in self.column.page(page, self.per_page)
        ]
        pages = self.column.page_count(self.per_page)

        def href(number: int) -> str:
            return f"node_{NODE}.htm" if number == 1 else f"node_{NODE}_{number}.htm"

        bar = pagination(page, pages, self.labels, href=href)
        return fill(
            self.template("list.html"),
            {"prefix": prefix, "rows": "\n".join(rows), "pagination": bar},
        )

    def chinese_time(self, moment: datetime) -> str:
        """Return the date as the seed's previous/next links show it (12-hour clock)."""
        half = self.labels["morning"] if moment.hour < 12 else self.labels["afternoon"]
        return self.labels["date_format"].format(
            year=moment.year,
            month=moment.month,
            day=moment.day,
            half=half,
            hour=moment.hour % 12 or 12,
            minute=f"{moment:%M}",
        )

    def prev_next_html(self, post: Post, prefix: str) -> str:
        """Return the previous (older) and next (newer) post links with their dates."""
        newer, older = self.column.neighbours(post.post_id)
        out = []
        for label, other in ((self.labels["prev_post"], older), (self.labels["next_post"], newer)):
            if other is None:
                continue
            out.append(
                f'      <p><a href="{prefix}{self.article_path(other)}" title="{esc(other.title)}">'
                f'{label}</a> <span class="date">{self.chinese_time(other.published_at)}</span></p>'
            )
        return "\n".join(out)

    def related_html(self, post: Post, prefix: str) -> str:
        """Return up to four related-post links."""
        others = [p for p in self.column.page(1, 6) if p.post_id != post.post_id][:4]
        return "\n".join(
            f'        <li><a href="{prefix}{self.article_path(p)}" target="_blank">{esc(p.title)}</a></li>'
            for p in others
        )

    def render_article(self, post: Post, prefix: str) -> str:
        """Return the article page of `post`."""
        body = "\n".join(f"        <p>{esc(p)}</p>" for p in post.paragraphs)
        first = post.paragraphs[0] if post.paragraphs else ""
        return fill(
            self.template("article.html"),
            {
                "prefix": prefix,
                "title": esc(post.title),
                "title_suffix": self.labels["title_suffix"],
                "keywords": "",
                "description": esc(first[:100]),
                "pubdate": f"{post.published_at:%Y-%m-%d %H:%M}",
                "author": esc(post.extra.get("author", "")),
                "source": esc(post.source),
                "body": body,
                "copyright": esc(self.copyright),
                "likes": "0",
                "prev_next": self.prev_next_html(post, prefix),
                "related_label": self.labels["related"],
                "related": self.related_html(post, prefix),
            },
        )
