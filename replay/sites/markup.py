"""HTML helpers shared by the site modules: escaping, templates, list titles, pagination."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def esc(text: str) -> str:
    """Return `text` escaped for HTML element content and attribute values."""
    return html.escape(text, quote=True)


def fill(template: str, values: dict[str, str]) -> str:
    """Return `template` with each `{{name}}` replaced by `values[name]`."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


_CHAR = re.compile(r".\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]+\)|.", re.DOTALL)


def short_title(title: str, limit: int = 30) -> str:
    """Return the title as list pages show it: cut to `limit` characters with `...`.

    A pinyin annotation counts with its character, so a cut never splits the pair.
    """
    chars = _CHAR.findall(title)
    return title if len(chars) <= limit else "".join(chars[:limit]) + "..."


def _index_href(number: int) -> str:
    """Return the relative link to list page `number` (`index.html`, `index_2.html`, ...)."""
    return "index.html" if number == 1 else f"index_{number}.html"


def pagination(
    page: int,
    pages: int,
    labels: dict[str, str],
    window: int = 3,
    href: Callable[[int], str] = _index_href,
) -> str:
    """Return the pagination bar of list page `page` of `pages`, with links relative to it."""

    parts = [f'<a class="first" href="{href(1)}">{labels["first"]}</a>']
    if page > 1:
        parts.append(f'<a class="prev" href="{href(page - 1)}">{labels["prev"]}</a>')
    else:
        parts.append(f'<span class="prev disabled">{labels["prev"]}</span>')
    for number in range(max(1, page - window), min(pages, page + window) + 1):
        if number == page:
            parts.append(f'<span class="current">{number}</span>')
        else:
            parts.append(f'<a href="{href(number)}">{number}</a>')
    if page < pages:
        parts.append(f'<a class="next" href="{href(page + 1)}">{labels["next"]}</a>')
    else:
        parts.append(f'<span class="next disabled">{labels["next"]}</span>')
    parts.append(f'<a class="last" href="{href(pages)}">{labels["last"]}</a>')
    return "\n".join(f"      {part}" for part in parts)


def paragraphs_html(paragraphs: list[str], style: str = "text-indent: 2em;") -> str:
    """Return body paragraphs as `<p>` elements."""
    return "\n".join(f'      <p style="{style}">{esc(text)}</p>' for text in paragraphs)
