"""Layout shared by sites on Guangdong's government-site platform (kaiping, zhongshan):
column lists `index.html`, `index_2.html`, ...; articles `content/post_NNNNNNN.html`."""

from __future__ import annotations

import re

from replay.sites.markup import pagination, paragraphs_html, short_title
from replay.store import Post


def list_path(column_dir: str, page: int) -> str:
    """Return the path of list page `page` of the column at `column_dir` (ends with `/`)."""
    return f"{column_dir}index.html" if page == 1 else f"{column_dir}index_{page}.html"


def match_list(column_dir: str, path: str) -> int | None:
    """Return the list page number at `path` in `column_dir`, or None."""
    if path in (column_dir, column_dir.rstrip("/")):
        return 1
    match = re.fullmatch(re.escape(column_dir) + r"index(?:_(\d+))?\.html", path)
    if not match:
        return None
    return int(match.group(1)) if match.group(1) else 1


def article_path(column_dir: str, post: Post) -> str:
    """Return the article path of `post` in the column at `column_dir`."""
    return f"{column_dir}content/post_{post.post_id}.html"


def match_article(column_dir: str, path: str) -> int | None:
    """Return the post id of the article at `path` in `column_dir`, or None."""
    match = re.fullmatch(re.escape(column_dir) + r"content/post_(\d+)\.html", path)
    return int(match.group(1)) if match else None


__all__ = [
    "article_path",
    "list_path",
    "match_article",
    "match_list",
    "pagination",
    "paragraphs_html",
    "short_title",
]
