"""Deterministic filler posts from templates (`data/templates.toml`) and a site's vocabulary.

Only titles are drawn up front; bodies are drawn when a page is first rendered, so a column
of 10,000 generated posts starts in a few tens of milliseconds.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from replay.resources import data_toml
from replay.store import Attachment, Post

TextFilter = Callable[[str], str]


def _identity(text: str) -> str:
    """Return `text` unchanged."""
    return text


class _Slots(dict[str, str]):
    """Template slot values drawn on first use, so a title costs only the slots it names."""

    def __init__(self, rng: random.Random, vocab: dict[str, list[str]], published_at: datetime):
        super().__init__(year=str(published_at.year), month=str(published_at.month))
        self.rng = rng
        self.vocab = vocab

    def __missing__(self, key: str) -> str:
        """Return a freshly drawn value for slot `key` (and keep it for the next use)."""
        rng = self.rng
        if key in self.vocab:
            value = rng.choice(self.vocab[key])
        elif key == "day":
            value = str(rng.randint(1, 20))
        elif key == "day2":
            value = str(int(self["day"]) + rng.randint(3, 8))
        elif key == "quarter":
            value = rng.choice("\u4e00\u4e8c\u4e09\u56db")
        elif key == "n":
            value = str(rng.randint(2, 30))
        elif key == "m":
            value = str(rng.randint(2, 12))
        elif key == "pct":
            value = f"{rng.randint(2, 25)}.{rng.randint(0, 9)}"
        elif key == "amount":
            value = str(rng.randint(2, 60))
        else:
            raise KeyError(key)
        self[key] = value
        return value


class PostGenerator:
    """Draws posts of mixed topics for one site; the same (site, seed, index) gives the same post."""

    def __init__(
        self,
        site_id: str,
        vocab: dict[str, list[str]],
        seed: int = 0,
        convert: TextFilter = _identity,
        topics: list[str] | None = None,
    ):
        self.site_id = site_id
        self.vocab = vocab
        self.seed = seed
        self.convert = convert
        every: list[dict[str, Any]] = data_toml("templates.toml")["topic"]
        self.topics = [t for t in every if topics is None or t["name"] in topics]
        self.weights = [int(t["weight"]) for t in self.topics]
        self._base = zlib.crc32(f"{site_id}:{seed}".encode())

    def _rng(self, index: int, part: int) -> random.Random:
        """Return the random generator of one part of post `index` (stable across runs)."""
        return random.Random(self._base * 1_000_003 + index * 4 + part)

    def _slots(self, rng: random.Random, published_at: datetime) -> _Slots:
        """Return the slot values of one post, drawn when a template first asks for them."""
        return _Slots(rng, self.vocab, published_at)

    def make(
        self,
        index: int,
        post_id: int,
        published_at: datetime,
        source: str = "",
        rng: random.Random | None = None,
    ) -> Post:
        """Return generated post number `index` with the given id and date.

        The title is drawn from `rng` (a generator of its own when not given); the body is
        drawn from a per-post generator when first needed.
        """
        rng = rng or self._rng(index, 0)
        topic = rng.choices(self.topics, weights=self.weights)[0]
        slots = self._slots(rng, published_at)
        title = self.convert(rng.choice(topic["titles"]).format_map(slots))
        attachments = []
        if "attachment" in topic and rng.random() < 0.7:
            name = self.convert(topic["attachment"])
            attachments.append(Attachment(attachment_id=post_id // 10 + index % 10, name=name))

        def body() -> list[str]:
            body_rng = self._rng(index, 1)
            body_slots = self._slots(body_rng, published_at)
            return [self.convert(p.format_map(body_slots)) for p in topic["paragraphs"]]

        post = Post(
            post_id=post_id,
            title=title,
            published_at=published_at,
            source=source,
            attachments=attachments,
            _make_paragraphs=body,
        )
        post.extra["topic"] = topic["name"]
        return post

    def fill(
        self,
        count: int,
        first_id: int,
        before: datetime,
        source: str = "",
        id_step: int = 37,
    ) -> list[Post]:
        """Return `count` posts dated back from `before`, ids falling from `first_id`."""
        posts = []
        rng = self._rng(0, 2)
        moment = before
        # Keep ids positive and 7-digit however many posts are asked for.
        id_step = max(1, min(id_step, (first_id - 1_000_000) // max(count, 1) - 1))
        for index in range(count):
            moment -= timedelta(minutes=rng.randint(60, 900))
            if moment.hour < 8 or moment.hour > 18:
                moment -= timedelta(hours=13)
            post_id = first_id - (index + 1) * id_step - rng.randint(0, id_step - 1)
            posts.append(self.make(index, post_id, moment, source, rng))
        return posts
