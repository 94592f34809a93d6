"""Text helpers for topic matching: sentences, fast normalisation, word boundaries, enumerations."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, NamedTuple

from crawler.normalize import normalize_text

# Newlines end sentences too: WeChat-style posts break lines without punctuation.
_SENTENCE = re.compile(r"[^。！？!?；;\n]+(?:[。！？!?；;]+[”’」』\"]*)?")
# Clauses inside a sentence; an enumeration (A、B、C) never crosses one.
_CLAUSE = re.compile(r"[^，,：:。！？!?；;]+")
_CJK = re.compile(r"[\u3400-\u9fff]")
_WINDOW = 6


class Sentence(NamedTuple):
    """One sentence: its original text, its normalised form, and where it stands.

    A named tuple: the cheapest immutable record to make, and every post makes several.
    """

    original: str
    norm: str
    is_title: bool
    lead: bool


@lru_cache(maxsize=8192)
def normalize(text: str) -> str:
    """Return `crawler.normalize.normalize_text(text)`: the one matching form of every text.

    Remembered for the last texts: reposts and site boilerplate repeat whole sentences.
    """
    return normalize_text(text)


def split_sentences(title: str, text: str, lead_chars: int) -> list[Sentence]:
    """Return the title (if any) and the text's sentences, normalised, lead sentences marked."""
    sentences = []
    if title.strip():
        sentences.append(Sentence(title.strip(), normalize(title), True, True))
    seen = 0
    for match in _SENTENCE.finditer(text):
        original = match.group().strip()
        if not original:
            continue
        norm = normalize(original)
        if not norm:
            continue
        sentences.append(Sentence(original, norm, False, seen < lead_chars))
        seen += len(norm)
    return sentences


def enumerations(norm: str) -> list[list[tuple[int, int]]]:
    """Return the item spans of each enumeration (A、B、C) in a normalised sentence."""
    found = []
    for clause in _CLAUSE.finditer(norm):
        if "、" not in clause.group():
            continue
        items, start = [], clause.start()
        for part in clause.group().split("、"):
            items.append((start, start + len(part)))
            start += len(part) + 1
        found.append(items)
    return found


class Segmenter:
    """Word boundaries from jieba's dictionary and its max-probability route, plus our own words.

    jieba's dictionary is loaded on first use (monitor/lexicon.py: from a cache of our own),
    not when topics are built: `monitor run` starts its first crawl first and loads it while
    the crawl runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._pending: list[str] = []
        self._cache: dict[str, tuple[int, ...]] = {}
        self._lexicon: Any = None

    @property
    def proper_words(self) -> frozenset[str]:
        """Return jieba's dictionary words tagged as place, organisation or other proper names."""
        self.tokenizer  # noqa: B018 - the property loads the dictionary
        return self._lexicon.proper  # type: ignore[no-any-return]

    @property
    def tokenizer(self) -> Any:
        """Return jieba's tokenizer with our words added, loading its dictionary once."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    import jieba

                    from monitor import lexicon

                    jieba.setLogLevel(logging.WARNING)
                    tokenizer = jieba.Tokenizer()
                    self._lexicon = lexicon.load(tokenizer)
                    self._add(tokenizer, self._pending)
                    self._pending = []
                    self._tokenizer = tokenizer
        return self._tokenizer

    def add_words(self, words: Iterable[str]) -> None:
        """Add words so that jieba keeps each whole (frequency just high enough, as jieba suggests)."""
        with self._lock:
            if self._tokenizer is None:
                self._pending.extend(words)
            else:
                self._add(self._tokenizer, words)
            self._cache.clear()

    @staticmethod
    def _add(tokenizer: Any, words: Iterable[str]) -> None:
        for word in words:
            if _CJK.search(word) and not tokenizer.FREQ.get(word):
                tokenizer.add_word(word)

    def cuts(self, text: str) -> tuple[int, ...]:
        """Return the word boundaries of `text` (0 and len included), as jieba would cut it."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        tokenizer = self.tokenizer
        freq, log_total, size = tokenizer.FREQ, math.log(tokenizer.total), len(text)
        best = [0.0] * (size + 1)
        step = [size] * (size + 1)
        for i in range(size - 1, -1, -1):
            top, top_end = math.log(freq.get(text[i]) or 1) - log_total + best[i + 1], i + 1
            end = i + 2
            while end <= size:
                count = freq.get(text[i:end])
                if count is None:
                    break
                if count:
                    score = math.log(count) - log_total + best[end]
                    if score >= top:
                        top, top_end = score, end
                end += 1
            best[i], step[i] = top, top_end
        bounds, i = [0], 0
        while i < size:
            i = step[i]
            bounds.append(i)
        result = tuple(bounds)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[text] = result
        return result

    def is_word(self, norm: str, start: int, end: int) -> bool:
        """Return True if norm[start:end] is whole words, or the head (tail) of one longer word.

        Chinese compounds are head-final: 人民医院 is a 医院, so a term may end a longer word;
        卫生间 is no 卫生 and 合作社 no 合作, so a term never starts or sits inside one.
        """
        if not _CJK.search(norm[start:end]):
            before = norm[start - 1] if start else " "
            after = norm[end] if end < len(norm) else " "
            return not (before.isascii() and before.isalnum()) and not (
                after.isascii() and after.isalnum()
            )
        low = max(0, start - _WINDOW)
        bounds = self.cuts(norm[low : min(len(norm), end + _WINDOW)])
        left, right = start - low, end - low
        if right not in bounds:
            return False
        if left in bounds:
            return True
        word_start = max(b for b in bounds if b < left)
        return min(b for b in bounds if b > word_start) == right


_SEGMENTER: Segmenter | None = None
_SEGMENTER_LOCK = threading.Lock()


def segmenter() -> Segmenter:
    """Return the process-wide segmenter, loading jieba's dictionary once."""
    global _SEGMENTER
    with _SEGMENTER_LOCK:
        if _SEGMENTER is None:
            _SEGMENTER = Segmenter()
        return _SEGMENTER


def trie_regex(words: Iterable[str]) -> str:
    """Return a regex matching any of `words`, longest first, as a trie (fast in `re`)."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _trie_pattern(trie)


def _trie_pattern(node: dict[str, dict]) -> str:
    """Return the regex of one trie node."""
    ends = "" in node
    branches = [re.escape(c) + _trie_pattern(child) for c, child in sorted(node.items()) if c]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends:
        return f"(?:{body})?" if len(branches) > 1 or len(body) > 1 else f"{body}?"
    return body
