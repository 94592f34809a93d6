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

import copy
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Article, Story
from crawler.normalize import normalize_text

if TYPE_CHECKING:  # datasketch imports scipy (half a second): loaded on first use
    from datasketch import MinHash

try:  # CPython's own SHA-1: the same digests, twice as fast as OpenSSL's on 12-byte inputs
    from _sha1 import sha1 as _sha1
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import sha1 as _sha1

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


@lru_cache(maxsize=1)
def _bands() -> tuple[int, int]:
    """Return datasketch's (bands, rows per band) of an LSH index at SIMILARITY."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=SIMILARITY, num_perm=NUM_PERM)
    return lsh.b, lsh.r


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


@lru_cache(maxsize=1)
def _empty() -> MinHash:
    """Return the empty MinHash of our scheme that `_holding` copies."""
    return _minhash()


def _holding(hashvalues: np.ndarray) -> MinHash:
    """Return a MinHash of our scheme holding `hashvalues` (uint32, NUM_PERM of them).

    A copy of `_empty()` (MinHash's own pickling state) with the values put in: what
    `_minhash(hashvalues)` returns, without its checks of the permutations on every call.
    """
    minhash = copy.copy(_empty())
    minhash.hashvalues = hashvalues
    return minhash


def _sha1_hash32(shingles: Iterable[str]) -> np.ndarray:
    """Return datasketch's `sha1_hash32` of each shingle's UTF-8 bytes, as uint32.

    That hash is the first 4 bytes of the SHA-1 digest read little-endian: here all the
    digests are joined and every fifth 32-bit word (each digest is five) is read at once.
    """
    sha1 = _sha1
    digests = b"".join([sha1(shingle.encode("utf-8")).digest() for shingle in shingles])
    return np.frombuffer(digests, dtype="<u4")[::5].astype(np.uint32)


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """Return MurmurHash3's 32-bit finalizer of each value, as datasketch's affine32 applies it."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


def signature(title: str, body: str) -> MinHash | None:
    """Return the MinHash of a post, or None when it is too short to compare.

    Computes what `MinHash.update_batch` of the shingles' UTF-8 bytes gives (scheme affine32:
    sha1_hash32, fmix32, then a * h + b modulo 2**32 per permutation, minimum over shingles)
    without its per-shingle Python calls.
    """
    text = _NOT_TEXT.sub("", normalize_text(title + "\n" + body))
    shingles = {text[i : i + SHINGLE] for i in range(max(0, len(text) - SHINGLE + 1))}
    if len(shingles) < MIN_SHINGLES:
        return None
    a, b = _permutations()
    hv = _fmix32(_sha1_hash32(shingles))
    permuted = np.multiply.outer(hv, a)
    permuted += b
    return _holding(permuted.min(axis=0))


def to_bytes(minhash: MinHash) -> bytes:
    """Return the signature as bytes for the `articles.minhash` column."""
    return np.asarray(minhash.hashvalues, dtype=np.uint64).tobytes()


def from_bytes(data: bytes) -> MinHash:
    """Return the signature stored by `to_bytes`."""
    return _minhash(np.frombuffer(data, dtype=np.uint64).copy())


StoryRef = int | Story  # a stored story's id, or a Story added in the current transaction


class StoryIndex:
    """An in-memory LSH index of recent posts' signatures and stories, keyed by article id.

    The LSH bands are datasketch's (`MinHashLSH` at SIMILARITY: same bands, same band keys),
    kept here as one dict per band from band key to the row of the post having it, or the
    list of rows when several have it (most keys have one: no container to allocate and for
    the garbage collector to scan), which spares datasketch's per-call overhead. Besides the bands it keeps every signature as a
    row of one array, to score all the candidates of a query in one comparison (posts of one
    site share a template, so a query can have hundreds of candidates), and each post's
    story, so that joining a story needs no query. Entries added since `begin()` are dropped
    by `rollback()` when the transaction that wrote their stories failed.
    """

    def __init__(self) -> None:
        self._buckets: list[dict[bytes, int | list[int]]] | None = None
        self._keys: dict[int, list[bytes]] = {}
        self._last_keys: tuple[np.ndarray | None, list[bytes]] = (None, [])
        self.rows: dict[int, int] = {}
        self._next_row = 0
        self.matrix = np.zeros((1024, NUM_PERM), dtype=np.uint32)
        self.ids = np.zeros(1024, dtype=np.int64)
        self.stories: dict[int, StoryRef] = {}
        self.loaded = False
        self._added: list[int] = []

    @property
    def buckets(self) -> list[dict[bytes, int | list[int]]]:
        """Return the LSH bands (band key -> row or rows), created on first use."""
        if self._buckets is None:
            self._buckets = [{} for _ in range(_bands()[0])]
        return self._buckets

    def _band_keys(self, minhash: MinHash) -> list[bytes]:
        """Return the key of each band of a signature, as `MinHashLSH` makes them.

        The keys of the last values are kept: `assign_story` queries, then adds, the same.
        """
        values = minhash.hashvalues
        last, keys = self._last_keys
        if last is values:
            return keys
        bands, rows = _bands()
        data = values.byteswap().tobytes()
        width = rows * values.itemsize
        keys = [data[i : i + width] for i in range(0, bands * width, width)]
        self._last_keys = (values, keys)
        return keys

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
        if len(minhash.hashvalues) != NUM_PERM:
            raise ValueError(f"expecting a signature of {NUM_PERM} values")
        row = self._next_row  # rows of rolled-back posts are left unused, never reassigned
        self._next_row += 1
        if row == len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)])
            self.ids = np.concatenate([self.ids, np.zeros_like(self.ids)])
        self.matrix[row] = minhash.hashvalues
        self.ids[row] = article_id
        self.rows[article_id] = row
        keys = self._keys[article_id] = self._band_keys(minhash)
        for key, bucket in zip(keys, self.buckets, strict=True):
            found = bucket.get(key)
            if found is None:
                bucket[key] = row
            elif isinstance(found, int):
                bucket[key] = [found, row]
            else:
                found.append(row)
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
            row = self.rows.pop(article_id, None)
            if row is not None:
                for key, bucket in zip(self._keys.pop(article_id), self.buckets, strict=True):
                    found = bucket[key]
                    if isinstance(found, int):
                        del bucket[key]
                    else:
                        found.remove(row)
                        if len(found) == 1:
                            bucket[key] = found[0]
                self.stories.pop(article_id, None)
        self._added = []

    def most_similar(self, minhash: MinHash, exclude: int) -> tuple[int, float] | None:
        """Return (article id, similarity) of the closest indexed post at or above SIMILARITY.

        Ties go to the lowest article id (the earliest post), whatever order LSH returns.
        """
        if len(minhash.hashvalues) != NUM_PERM:
            raise ValueError(f"expecting a signature of {NUM_PERM} values")
        found: set[int] = set()
        for key, bucket in zip(self._band_keys(minhash), self.buckets, strict=True):
            hit = bucket.get(key)
            if hit is None:
                continue
            if isinstance(hit, int):
                found.add(hit)
            else:
                found.update(hit)
        found.discard(self.rows.get(exclude, -1))
        if not found:
            return None
        rows = np.fromiter(found, dtype=np.intp, count=len(found))
        # Equal values per candidate (at most NUM_PERM = 128: a uint8 sum is exact).
        counts = np.add.reduce(self.matrix[rows] == minhash.hashvalues, axis=1, dtype=np.uint8)
        best = int(counts.max())
        if best / NUM_PERM < SIMILARITY:
            return None
        return int(self.ids[rows[counts == best]].min()), best / NUM_PERM


def assign_story(
    session: Session, article: Article, minhash: MinHash | None, index: StoryIndex, now: datetime
) -> bool:
    """Put a new post, whose `signature` is `minhash`, into a story (an existing one if it is
    a repost); return True if it starts a new story.

    No flush and no query: a new story, and a story started in this transaction and not
    written yet, are linked through the relationship and written with the rest of the
    transaction (then `article.story_id` is None until the next flush).
    """
    if article.story_id is not None:
        return False
    match = index.most_similar(minhash, article.id) if minhash is not None else None
    story = index.story_of(match[0]) if match is not None else None
    joined = story is not None
    if story is not None:
        if isinstance(story, Story):
            # The original was classified in this same transaction: its story has no id yet.
            article.story = story
        else:
            article.story_id = story
    else:
        story = Story(first_article_id=article.id, created_at=now)
        session.add(story)
        article.story = story
    if minhash is not None:
        article.minhash = to_bytes(minhash)
        index.add(article.id, minhash, story)
    return not joined
