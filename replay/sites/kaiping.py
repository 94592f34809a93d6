"""Kaiping municipal portal (www.kaiping.gov.cn), column "unit news" of the city's Science,
Industry and Commerce Bureau (/kpskgsj/zwgk/dwdt/).

Guangdong platform layout; the whole site is served as a converting mirror shows it:
traditional characters with pinyin annotations after some of them, a few characters lost
as `?`, and a hacked template (hidden spam keyword line, stray `<thead id="xudex">` tags).
"""

from __future__ import annotations

from dataclasses import dataclass

from replay.hant import to_annotated_traditional
from replay.resources import seed_text
from replay.sites import gdplatform as gd
from replay.sites import register
from replay.sites.base import Site, esc, fill
from replay.store import Post, parse_cst

COLUMN_DIR = "/kpskgsj/zwgk/dwdt/"


@dataclass(frozen=True)
class KaipingSeed:
    """What the Kaiping seed page holds: article fields and the injected spam line."""

    title: str
    published_at: str
    source: str
    paragraphs: list[str]
    spam: str


def parse_seed_page(text: str, markers: dict[str, str]) -> KaipingSeed:
    """Return title, date, source, paragraphs and spam line of the Kaiping seed page."""
    lines = [line.strip() for line in text.split("\n")]

    def find(key: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(markers[key]))

    date_at = find("date_label")
    body_from, body_to, spam_at = find("body_start") + 1, find("body_end"), find("spam_after") + 1
    return KaipingSeed(
        title=lines[date_at - 1],
        published_at=lines[date_at].split(":", 1)[1],
        source=lines[date_at + 1].split(":", 1)[1].strip(),
        paragraphs=[line for line in lines[body_from:body_to] if line],
        spam=lines[spam_at],
    )


@register
class KaipingSite(Site):
    """Kaiping: Guangdong platform, traditional+pinyin mirror text, hacked template."""

    site_id = "kaiping"
    origin = "http://www.kaiping.gov.cn"

    def __init__(self, size: int | None = None, seed: int = 0):
        info = self.data("posts.toml")["seed"]
        markers: dict[str, str] = self.data("site.toml")["seed_page"]
        self.default_source = markers["default_source"]
        self.seed_info = parse_seed_page(seed_text(info["file"]), markers)
        self.labels: dict[str, str] = self.data("site.toml")["strings"]
        super().__init__(size, seed)

    def convert(self, text: str) -> str:
        """Return data text in the mirror's traditional, pinyin-annotated form."""
        return to_annotated_traditional(text)

    def seed_post(self) -> Post:
        """Return the seed post, text verbatim from the seed page."""
        info = self.data("posts.toml")["seed"]
        seed = self.seed_info
        return Post(
            post_id=int(info["id"]),
            title=seed.title,
            published_at=parse_cst(seed.published_at),
            source=seed.source,
            _paragraphs=list(seed.paragraphs),
        )

    def curated_posts(self) -> list[Post]:
        """Return the hand-written Kaiping posts."""
        return self.posts_from_data()

    def article_path(self, post: Post) -> str:
        """Return `/kpskgsj/zwgk/dwdt/content/post_NNNNNNN.html`."""
        return gd.article_path(COLUMN_DIR, post)

    def list_path(self, page: int) -> str:
        """Return `/kpskgsj/zwgk/dwdt/index.html`, `index_2.html`, ..."""
        return gd.list_path(COLUMN_DIR, page)

    def match_list(self, path: str, query: dict[str, list[str]]) -> int | None:
        """Return the list page number at `path`, or None."""
        return gd.match_list(COLUMN_DIR, path)

    def match_article(self, path: str) -> int | None:
        """Return the post id of the article at `path`, or None."""
        return gd.match_article(COLUMN_DIR, path)

    def render_list(self, page: int, prefix: str) -> str:
        """Return list page `page`: 15 rows of link and `2024-11-05` date, then pagination."""
        rows = []
        for post in self.column.page(page, self.per_page):
            href = prefix + self.article_path(post)
            rows.append(
                f'      <li><a href="{href}" target="_blank" title="{esc(post.title)}">'
                f"{esc(gd.short_title(post.title))}</a>"
                f'<span class="date">{post.published_at:%Y-%m-%d}</span></li>'
            )
        pages = self.column.page_count(self.per_page)
        return fill(
            self.template("list.html"),
            {
                "prefix": prefix,
                "rows": "\n".join(rows),
                "pagination": gd.pagination(page, pages, self.labels),
                "spam": esc(self.seed_info.spam),
            },
        )

    def render_article(self, post: Post, prefix: str) -> str:
        """Return the article page of `post`."""
        first = post.paragraphs[0] if post.paragraphs else ""
        return fill(
            self.template("article.html"),
            {
                "prefix": prefix,
                "title": esc(post.title),
                "pubdate": f"{post.published_at:%Y-%m-%d %H:%M:%S}",
                "pubdate_meta": f"{post.published_at:%Y-%m-%d %H:%M}",
                "source": esc(post.source),
                "keywords": esc(post.extra.get("keywords", "")),
                "description": esc(first[:120]),
                "real_url": self.real_url(self.article_path(post)),
                "body": gd.paragraphs_html(post.paragraphs),
                "attachments": self.attachments_html(post, prefix),
                "spam": esc(self.seed_info.spam),
            },
        )

    def attachments_html(self, post: Post, prefix: str) -> str:
        """Return the `<li>` links of a post's attachments (empty when it has none)."""
        items = []
        for attachment in post.attachments:
            href = prefix + self.attachment_path(post, attachment)
            items.append(
                f'<li><a class="nfw-cms-attachment" href="{href}" target="_blank">'
                f"{esc(attachment.name)}</a></li>"
            )
        return "".join(items)


__all__ = ["KaipingSeed", "KaipingSite", "parse_seed_page"]
