"""Normalisation for matching and hashing: NFKC, pinyin annotations removed, traditional to simplified."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

# A CJK character followed by its pinyin in brackets, as on pages that annotate every
# traditional character: 網(wǎng) -> 網. Only lower-case Latin letters with tone marks or
# the bare letters of a toneless syllable (at most 6) qualify, so "(InnoPort@Shanghai)"
# or "(完)" are left alone.
_PINYIN = "a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ"
# Written from its "(", which the regex engine then finds by a fast literal search, not by
# trying the lookbehind at every character: the same matches as
# (?<=[\u3400-\u9fff\uf900-\ufaff])\(([{_PINYIN}]{1,6})\).
_PINYIN_ANNOTATION = re.compile(rf"\((?<=[\u3400-\u9fff\uf900-\ufaff]\()([{_PINYIN}]{{1,6}})\)")
_SPACES = re.compile(r"[ \t\u3000\xa0]+")
# Lines up to this length have their matching form remembered (`normalize_line`).
_CACHED_LINE = 400


# Characters common in Chinese text that NFKC changes, each with its NFKD form (ASCII).
# Replacing a character by its NFKD form leaves the NFKC form of a text as it is (NFKC
# composes the NFKD form of the whole text), and the text is then often normalised already:
# unicodedata's quick check passes it, instead of a decomposition and composition of every
# character (about 0.1 us each), which a single full-width comma would cost.
_NFKC_FOLDS = tuple(
    (char, unicodedata.normalize("NFKD", char)) for char in "，：\u3000（）；！？％…\xa0"
)


def nfkc(text: str) -> str:
    """Return `unicodedata.normalize("NFKC", text)`, faster on Chinese text."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    for char, folded in _NFKC_FOLDS:
        if char in text:
            text = text.replace(char, folded)
    return unicodedata.normalize("NFKC", text)


@lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC

    return OpenCC("t2s")


def strip_pinyin(text: str) -> str:
    """Return `text` with bracketed pinyin annotations after CJK characters removed."""
    text = text.replace("（", "(").replace("）", ")")
    return _PINYIN_ANNOTATION.sub("", text) if "(" in text else text


def to_simplified(text: str) -> str:
    """Return `text` converted from traditional to simplified Chinese (OpenCC t2s).

    This is OpenCC's own C++ library (the `opencc` package), phrase by phrase, about 40 ns a
    character; the pure-Python reimplementation used before gave the same output on every
    text we compared (the topics devset, its traditional rendering, the corpus) at 50 times
    the cost, which made normalisation a third of a crawl's per-article time.
    """
    return _t2s().convert(text)


def _fold_spaces(text: str) -> str:
    """Return `_SPACES.sub(" ", text)`: each run of spaces, tabs, ideographic and no-break spaces as one space.

    With string methods, which skip text without such runs at C speed; a regular
    expression tries each character in turn.
    """
    for space in ("\t", "\u3000", "\xa0"):
        if space in text:
            text = text.replace(space, " ")
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _matching_form(text: str) -> str:
    """Return `normalize_text(text)` before its final strip.

    Each step maps a text with line breaks to the same text with each line mapped: NFKC never
    composes across a line break; a pinyin annotation and a run of spaces lie within a
    line; and every key of OpenCC's t2s dictionaries is CJK ideographs only, so no phrase
    matched spans a line break. `content_hash` builds the form of a body from its lines.
    """
    text = nfkc(text)
    text = strip_pinyin(text)
    text = to_simplified(text)
    return _fold_spaces(text)


def normalize_text(text: str) -> str:
    """Return the matching form of `text`: NFKC, no pinyin annotations, simplified, spaces folded."""
    return _matching_form(text).strip()


@lru_cache(maxsize=16384)
def _line_form(line: str) -> str:
    """Return `_matching_form(line)`, remembered: page lines are normalised while extracting."""
    return _matching_form(line)


def normalize_line(line: str) -> str:
    """Return `normalize_text(line)`; a short one's form is remembered, to hash the body again."""
    if len(line) <= _CACHED_LINE:
        return _line_form(line).strip()
    return normalize_text(line)


def _normalize_by_lines(text: str) -> str:
    """Return `normalize_text(text)` from the forms of its lines (see `_matching_form`)."""
    return "\n".join(
        _line_form(line) if len(line) <= _CACHED_LINE else _matching_form(line)
        for line in text.split("\n")
    ).strip()


def content_hash(title: str, body: str) -> str:
    """Return the SHA-256 hex digest of the normalised title and body (a version's identity).

    Extraction has normalised each line of the body already (`normalize_line`), so the body's
    form is mostly joined from remembered line forms, not computed again.
    """
    try:
        text = _normalize_by_lines(title) + "\n" + _normalize_by_lines(body)
    except Exception:  # noqa: BLE001 - not text: fail as normalize_text fails
        text = normalize_text(title) + "\n" + normalize_text(body)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
