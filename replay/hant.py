"""Simplified-to-traditional conversion with the pinyin annotations and lost characters that
converted mirror pages show (a character, then its pinyin in brackets; rare characters as
`?`), driven by small tables in `data/`."""

from __future__ import annotations

from functools import lru_cache

from replay.resources import data_text


def _read_table(name: str) -> dict[str, str]:
    """Return the two-column tab-separated table `data/<name>` as a dict."""
    table: dict[str, str] = {}
    for line in data_text(name).splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("\t")
        table[key] = value
    return table


@lru_cache(maxsize=1)
def _translation() -> dict[int, str]:
    """Return the `str.translate` table: simplified -> traditional(pinyin), lost -> `?`."""
    to_traditional = _read_table("hant.tsv")
    pinyin = _read_table("pinyin.tsv")
    table: dict[int, str] = {}
    for simplified, traditional in to_traditional.items():
        table[ord(simplified)] = traditional
    for traditional, sound in pinyin.items():
        annotated = f"{traditional}({sound})"
        table[ord(traditional)] = annotated
        for simplified, target in to_traditional.items():
            if target == traditional:
                table[ord(simplified)] = annotated
    lost = data_text("lost_chars.txt").strip().splitlines()[-1].strip()
    for char in lost:
        table[ord(char)] = "?"
    return table


def to_annotated_traditional(text: str) -> str:
    """Return `text` in traditional characters, annotated and lossy like the converted pages."""
    return text.translate(_translation())
