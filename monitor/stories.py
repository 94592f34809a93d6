"""Near-duplicate grouping: the same story reposted by a portal or another site is one story.

A post's signature is a MinHash (datasketch) over character 4-gram shingles of its normalised
title and body with punctuation and spaces removed, so simplified, traditional and
pinyin-annotated copies of one text shingle alike. Posts whose estimated Jaccard similarity
reaches `SIMILARITY` belong to the same story; a story alerts once, and later reposts are
attached to it (listed in digests) instead of alerting again. The LSH index holds the
signatures of the last `WINDOW` of posts and is rebuilt from the database when the daemon
starts.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Article, Story
from crawler.normalize import normalize_text

if TYPE_CHECKING:  # datasketch imports scipy (half a second): loaded on first use
    from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
SHINGLE = 4
SIMILARITY = 0.5
WINDOW = timedelta(days=90)
MIN_SHINGLES = 20
# Fixed so that stored signatures stay comparable across datasketch upgrades.
SCHEME = "affine32"
_NOT_TEXT = re.compile(r"[\W_]+", re.UNICODE)


@lru_cache(maxsize=1)
def _permutations() -> Any:
    """Return the permutations of seed 1, drawn once: MinHash() would draw them every time."""
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME).permutations


def _minhash(hashvalues: np.ndarray | None = None) -> MinHash:
    """Return an empty MinHash of our scheme, or one holding `hashvalues`."""
    from datasketch import MinHash

    return MinHash(
        num_perm=NUM_PERM,
        seed=1,
        hashvalues=hashvalues,
        permutations=_permutations(),
        scheme=SCHEME,
    )


def signature(title: str, body: str) -> MinHash | None:
    """Return the MinHash of a post, or None when it is too short to compare."""
    text = _NOT_TEXT.sub("", normalize_text(title + "\n" + body))
    shingles = {text[i : i + SHINGLE] for i in range(max(0, len(text) - SHINGLE + 1))}
    if len(shingles) < MIN_SHINGLES:
        return None
    minhash = _minhash()
    minhash.update_batch([s.encode("utf-8") for s in shingles])
    return minhash


def to_bytes(minhash: MinHash) -> bytes:
    """Return the signature as bytes for the `articles.minhash` column."""
    return np.asarray(minhash.hashvalues, dtype=np.uint64).tobytes()


def from_bytes(data: bytes) -> MinHash:
    """Return the signature stored by `to_bytes`."""
    return _minhash(np.frombuffer(data, dtype=np.uint64).copy())


StoryRef = int | Story  # a stored story's id, or a Story added in the current transaction


class StoryIndex:
    """An in-memory LSH index of recent posts' signatures and stories, keyed by article id.

    Besides the LSH bands it keeps every signature as a row of one array, to score all the
    candidates of a query in one comparison (posts of one site share a template, so a query
    can have hundreds of candidates), and each post's story, so that joining a story needs
    no query. Entries added since `begin()` are dropped by `rollback()` when the transaction
    that wrote their stories failed.
    """

    def __init__(self) -> None:
        self._lsh: MinHashLSH | None = None
        self.rows: dict[int, int] = {}
        self._next_row = 0
        self.matrix = np.zeros((1024, NUM_PERM), dtype=np.uint64)
        self.stories: dict[int, StoryRef] = {}
        self.loaded = False
        self._added: list[int] = []

    @property
    def lsh(self) -> MinHashLSH:
        """Return the LSH index, created on first use."""
        if self._lsh is None:
            from datasketch import MinHashLSH

            self._lsh = MinHashLSH(threshold=SIMILARITY, num_perm=NUM_PERM)
        return self._lsh

    def load(self, sessions: sessionmaker[Session], now: datetime) -> None:
        """Fill the index from the signatures stored in the last WINDOW (once per process)."""
        if self.loaded:
            return
        with sessions() as session:
            rows = session.execute(
                select(Article.id, Article.minhash, Article.story_id).where(
                    Article.minhash.is_not(None),
                    Article.story_id.is_not(None),
                    Article.first_seen_at >= now - WINDOW,
                )
            ).all()
        for article_id, data, story_id in rows:
            self.add(article_id, from_bytes(data), story_id)
        self._added.clear()
        self.loaded = True

    def add(self, article_id: int, minhash: MinHash, story: StoryRef | None = None) -> None:
        """Index one post's signature and its story."""
        if article_id in self.rows:
            return
        row = self._next_row  # rows of rolled-back posts are left unused, never reassigned
        self._next_row += 1
        if row == len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)])
        self.matrix[row] = minhash.hashvalues
        self.rows[article_id] = row
        self.lsh.insert(article_id, minhash)
        if story is not None:
            self.stories[article_id] = story
        self._added.append(article_id)

    def story_of(self, article_id: int) -> StoryRef | None:
        """Return the story of an indexed post: its id once stored, else the pending Story."""
        story = self.stories.get(article_id)
        if isinstance(story, Story) and story.id is not None:
            self.stories[article_id] = story = story.id
        return story

    def begin(self) -> None:
        """Start remembering what is added, for `rollback`."""
        self._added = []

    def rollback(self) -> None:
        """Forget the posts added since `begin`: the transaction that stored them failed."""
        for article_id in self._added:
            if self.rows.pop(article_id, None) is not None:
                self.lsh.remove(article_id)
                self.stories.pop(article_id, None)
        self._added = []

    def most_similar(self, minhash: MinHash, exclude: int) -> tuple[int, float] | None:
        """Return (article id, similarity) of the closest indexed post at or above SIMILARITY.

        Ties go to the lowest article id (the earliest post), whatever order LSH returns.
        """
        candidates = sorted(c for c in self.lsh.query(minhash) if c != exclude)
        if not candidates:
            return None
        rows = self.matrix[[self.rows[c] for c in candidates]]
        scores = np.count_nonzero(rows == np.asarray(minhash.hashvalues), axis=1) / NUM_PERM
        best = int(np.argmax(scores))
        if scores[best] < SIMILARITY:
            return None
        return candidates[best], float(scores[best])


def assign_story(
    session: Session, article: Article, minhash: MinHash | None, index: StoryIndex, now: datetime
) -> bool:
    """Put a new post, whose `signature` is `minhash`, into a story (an existing one if it is
    a repost); return True if it starts a new story.

    No flush and no query on the common path: a new story is linked through the relationship
    and written with the rest of the transaction.
    """
    if article.story_id is not None:
        return False
    match = index.most_similar(minhash, article.id) if minhash is not None else None
    story = index.story_of(match[0]) if match is not None else None
    joined = story is not None
    if story is not None:
        if isinstance(story, Story):
            # The original was classified in this same transaction: give its story an id.
            session.flush()
            story = story.id
        article.story_id = story
    else:
        story = Story(first_article_id=article.id, created_at=now)
        session.add(story)
        article.story = story
    if minhash is not None:
        article.minhash = to_bytes(minhash)
        index.add(article.id, minhash, story)
    return not joined
