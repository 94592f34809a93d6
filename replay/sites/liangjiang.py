"""Chongqing Liangjiang New Area portal (www.liangjiang.gov.cn), column "new area news"
(column 1459, our model).

Hanweb CMS: list `/col/col1459/index.html` whose rows sit in a `<script type="text/xml">`
datastore (CDATA records, not HTML links), further pages `index.html?uid=5218&pageNum=N`;
articles `/art/YYYY/M/D/art_1459_<id>.html` with the body between `<meta name="ContentStart">`
and `<meta name="ContentEnd">` inside `div#zoom`. Text is traditional with pinyin, as in the
seed, whose only date in the text is a yearless month and day.

Every page sits behind a WAF cookie challenge (`replay/challenge.py`): without a valid
`__waf_clearance` cookie a request gets a 202 page whose script sets it and reloads.
"""

from __future__ import annotations

import re

from replay.challenge import CookieChallenge
from replay.files import attachment_bytes
from replay.hant import to_annotated_traditional
from replay.resources import seed_text
from replay.sites import register
from replay.sites.base import Page, Site, esc, fill
from replay.sites.markup import pagination
from replay.store import Post, parse_cst

_ARTICLE = re.compile(r"/art/(\d{4})/(\d{1,2})/(\d{1,2})/art_(\d+)_(\d+)\.html")
_DOWNLOAD = "/module/download/downfile.jsp"


@register
class LiangjiangSite(Site):
    """Liangjiang: Hanweb CMS, datastore list, ContentStart/End body, traditional+pinyin."""

    site_id = "liangjiang"
    origin = "http://www.liangjiang.gov.cn"

    def __init__(self, size: int | None = None, seed: int = 0):
        settings = self.data("site.toml")
        self.column_id = int(settings["hanweb"]["column_id"])
        self.unit_id = int(settings["hanweb"]["unit_id"])
        self.labels = {k: self.convert(v) for k, v in settings["strings"].items()}
        info = self.data("posts.toml")["seed"]
        lines = [line.strip() for line in seed_text(info["file"]).split("\n") if line.strip()]
        self.footer_name, self.footer_copyright = lines[-2], lines[-1]
        self.seed_lines = lines[:-2]
        self.default_source = self.convert(info["source"])
        # The handler asks it before serving any page of the site (see replay/challenge.py).
        self.challenge = CookieChallenge()
        super().__init__(size, seed)

    def convert(self, text: str) -> str:
        """Return data text in the seed's traditional, pinyin-annotated form."""
        return to_annotated_traditional(text)

    def seed_post(self) -> Post:
        """Return the seed post: WeChat-style short lines, headline lines 2-4 as title."""
        info = self.data("posts.toml")["seed"]
        return Post(
            post_id=int(info["id"]),
            title="".join(self.seed_lines[1:4]),
            published_at=parse_cst(info["published_at"]),
            source=self.default_source,
            _paragraphs=list(self.seed_lines),
        )

    def curated_posts(self) -> list[Post]:
        """Return the hand-written posts, converted."""
        return self.posts_from_data()

    # ----- URL layout ------------------------------------------------------------------------

    def article_path(self, post: Post) -> str:
        """Return `/art/YYYY/M/D/art_<column>_<id>.html` (month and day not zero-padded)."""
        day = post.published_at
        return f"/art/{day.year}/{day.month}/{day.day}/art_{self.column_id}_{post.post_id}.html"

    def list_path(self, page: int) -> str:
        """Return `/col/col1459/index.html`, then `index.html?uid=5218&pageNum=N`."""
        base = f"/col/col{self.column_id}/index.html"
        return base if page == 1 else f"{base}?uid={self.unit_id}&pageNum={page}"

    def match_list(self, path: str, query: dict[str, list[str]]) -> int | None:
        """Return the list page number named by path and `pageNum`, or None."""
        if path not in (f"/col/col{self.column_id}/index.html", f"/col/col{self.column_id}/"):
            return None
        try:
            return int(query.get("pageNum", ["1"])[0])
        except ValueError:
            return 1

    def match_article(self, path: str) -> int | None:
        """Return the post id of the article at `path` (checked against its date), or None."""
        match = _ARTICLE.fullmatch(path)
        if not match or int(match.group(4)) != self.column_id:
            return None
        post = self.column.get(int(match.group(5)))
        if post is not None and self.article_path(post) != path:
            return None
        return int(match.group(5))

    def attachment_href(self, attachment_id: int, ext: str) -> str:
        """Return the Hanweb download path of an attachment."""
        return f"{_DOWNLOAD}?classid=0&filename={attachment_id}.{ext}"

    def route(self, path: str, query: dict[str, list[str]], prefix: str) -> Page | None:
        """Serve Hanweb downloads, then lists and articles."""
        if path == _DOWNLOAD:
            name = query.get("filename", [""])[0]
            for post in self.column.all():
                for attachment in post.attachments:
                    if f"{attachment.attachment_id}.{attachment.ext}" == name:
                        body = attachment_bytes(attachment.ext, name)
                        return Page(body, attachment.mime, post.published_at)
            return None
        return super().route(path, query, prefix)

    # ----- rendering -------------------------------------------------------------------------

    def chrome(self, prefix: str) -> dict[str, str]:
        """Return header and footer HTML (the footer lines come from the seed page)."""
        footer = fill(
            self.template("footer.html"),
            {"footer_name": esc(self.footer_name), "footer_copyright": esc(self.footer_copyright)},
        )
        return {
            "prefix": prefix,
            "header": fill(self.template("header.html"), {"prefix": prefix}),
            "footer": footer,
        }

    def render_list(self, page: int, prefix: str) -> str:
        """Return list page `page`, rows as CDATA records of the Hanweb datastore."""
        records = []
        for post in self.column.page(page, self.per_page):
            records.append(
                f'<record><![CDATA[\n<li><a href="{prefix}{self.article_path(post)}" '
                f'target="_blank" title="{esc(post.title)}">{esc(post.title)}</a>'
                f"<span>{post.published_at:%Y-%m-%d}</span></li>\n]]></record>"
            )
        pages = self.column.page_count(self.per_page)

        def href(number: int) -> str:
            return (
                "index.html"
                if number == 1
                else f"index.html?uid={self.unit_id}&amp;pageNum={number}"
            )

        values = self.chrome(prefix)
        values.update(
            records="\n".join(records),
            column_id=str(self.column_id),
            unit_id=str(self.unit_id),
            total=str(len(self.column)),
            per_page=str(self.per_page),
            page=str(page),
            pagination=pagination(page, pages, self.labels, href=href),
        )
        return fill(self.template("list.html"), values)

    def body_html(self, post: Post) -> str:
        """Return the body: short WeChat-style lines centred and bold, others indented."""
        out = []
        for line in post.paragraphs:
            if len(line) <= 30 and not line.endswith("\u3002"):  # no full stop: a headline
                out.append(f'<p style="text-align: center;"><strong>{esc(line)}</strong></p>')
            else:
                out.append(f'<p style="text-indent: 2em;">{esc(line)}</p>')
        return "\n".join(out)

    def render_article(self, post: Post, prefix: str) -> str:
        """Return the article page of `post` (no visible publication date, as in the seed)."""
        first = next((p for p in post.paragraphs if len(p) > 40), "")
        links = "".join(
            f'<p><a href="{prefix}{self.attachment_href(a.attachment_id, a.ext)}" '
            f'target="_blank">{esc(a.name)}</a></p>'
            for a in post.attachments
        )
        values = self.chrome(prefix)
        values.update(
            title=esc(post.title),
            pubdate_meta=f"{post.published_at:%Y-%m-%d %H:%M}",
            source=esc(post.source),
            description=esc(first[:120]),
            real_url=self.real_url(self.article_path(post)),
            post_id=str(post.post_id),
            body=self.body_html(post),
            attachments=links,
        )
        return fill(self.template("article.html"), values)
