"""Near-duplicate grouping: the same story reposted by a portal or another site is one story.

A post's signature is a MinHash over character 4-gram shingles of its normalised title and
body with punctuation and spaces removed, so simplified, traditional and pinyin-annotated
copies of one text shingle alike. The values are those of datasketch's `MinHash` (scheme
affine32, seed 1) over the shingles' UTF-8 bytes, computed here without datasketch (which
imports SciPy: half a second of CPU per process) and tested against it: stored signatures must
stay comparable. Posts whose estimated Jaccard similarity reaches `SIMILARITY` belong to the
same story; a story alerts once, and later reposts are attached to it (listed in digests)
instead of alerting again. The LSH index holds the signatures of the last `WINDOW` of posts
and is rebuilt from the database when the daemon starts.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.models import Article
from crawler.normalize import normalize_text

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
SEED = 1
# datasketch's MinHashLSH(threshold=SIMILARITY, num_perm=NUM_PERM): bands of rows (tested).
BANDS, ROWS = 25, 5
_NOT_TEXT = re.compile(r"[\W_]+", re.UNICODE)
# Hashed shingles kept by `_shingle_hashes`: a shingle's hash never changes, and the posts of a
# site share most of theirs (titles and openings of one kind of notice, the names of the
# bureau and the city). At about 150 bytes an entry the cache holds at most 10 MB; it is
# emptied when full, so a daemon's memory does not grow with its history.
HASH_CACHE_SIZE = 1 << 16
# The bytes of each band in a signature's big-endian uint32 bytes (datasketch's band keys).
_BAND_SLICES = [slice(band * ROWS * 4, (band + 1) * ROWS * 4) for band in range(BANDS)]


@lru_cache(maxsize=1)
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """Return (a, b) of datasketch's affine32 permutations of SEED (uint32, a odd).

    Drawn as `MinHash._init_permutations` draws them (numpy's legacy RandomState, whose
    streams never change); a test compares them with datasketch's.
    """
    gen = np.random.RandomState(SEED)
    a = gen.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


class Signature:
    """A post's MinHash: NUM_PERM uint32 values, as datasketch's `MinHash.hashvalues` holds them."""

    __slots__ = ("hashvalues",)

    def __init__(self, hashvalues: np.ndarray) -> None:
        self.hashvalues = hashvalues

    def __len__(self) -> int:
        return len(self.hashvalues)

    def jaccard(self, other: Signature) -> float:
        """Return the estimated Jaccard similarity (any object with `hashvalues` will do)."""
        if len(other.hashvalues) != len(self.hashvalues):
            raise ValueError("cannot compare signatures of different lengths")
        return np.count_nonzero(self.hashvalues == other.hashvalues) / len(self.hashvalues)


def _sha1_hash32(shingles: Iterable[str]) -> np.ndarray:
    """Return datasketch's `sha1_hash32` of each shingle's UTF-8 bytes (one or more), as uint32.

    That hash is the first 4 bytes of the SHA-1 digest read little-endian: here all the
    digests are joined and every fifth 32-bit word (each digest is five) is read at once.
    The shingles are encoded in one go, joined by and split at NUL, which is no text
    character and so in no shingle.
    """
    sha1 = _sha1
    encoded = "\0".join(shingles).encode("utf-8").split(b"\0")
    digests = b"".join([sha1(shingle).digest() for shingle in encoded])
    return np.frombuffer(digests, dtype="<u4")[::5].astype(np.uint32)


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """Return MurmurHash3's 32-bit finalizer of each value, as datasketch's affine32 applies it."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


_hash_cache: dict[str, int] = {}


def _shingle_hashes(shingles: list[str]) -> np.ndarray:
    """Return `_fmix32(_sha1_hash32(shingles))`, the hashes of recently seen shingles cached.

    The 10,000 posts of the throughput benchmark hold 1.3 million shingles, 18 thousand of them
    distinct: hashing only the new ones took a signature from 134 to 76 microseconds a post.
    """
    cache = _hash_cache
    get = cache.get
    values = [get(shingle) for shingle in shingles]
    missing = [shingle for shingle, value in zip(shingles, values, strict=True) if value is None]
    if missing:
        computed = _fmix32(_sha1_hash32(missing)).tolist()
        if len(cache) + len(missing) > HASH_CACHE_SIZE:
            cache.clear()
        cache.update(zip(missing, computed, strict=True))
        fresh = iter(computed)
        values = [next(fresh) if value is None else value for value in values]
    return np.array(values, dtype=np.uint32)


def signature(title: str, body: str) -> Signature | None:
    """Return the MinHash of a post, or None when it is too short to compare."""
    return _text_signature(_NOT_TEXT.sub("", normalize_text(title + "\n" + body)))


def sentences_signature(norms: Iterable[str]) -> Signature | None:
    """Return `signature(title, body)` from the normalised sentences of `split_sentences`.

    Topic matching normalises a post sentence by sentence; this spares a second
    normalisation of the whole text. The two agree: sentences end only at characters that
    are not text (end punctuation, newlines, spaces), which normalisation neither joins with a
    neighbour (NFKC composes letters with marks, the pinyin rule needs a CJK character
    before its bracket, and OpenCC's phrases hold no punctuation) nor keeps as text; tested.
    """
    sub = _NOT_TEXT.sub
    return _text_signature("".join([sub("", norm) for norm in norms]))


def _text_signature(text: str) -> Signature | None:
    """Return the MinHash of a post's normalised text without punctuation and spaces.

    Computes what `MinHash.update_batch` of the shingles' UTF-8 bytes gives (scheme affine32:
    sha1_hash32, fmix32, then a * h + b modulo 2**32 per permutation, minimum over shingles)
    without its per-shingle Python calls.
    """
    shingles = list({text[i : i + SHINGLE] for i in range(len(text) - SHINGLE + 1)})
    if len(shingles) < MIN_SHINGLES:
        return None
    a, b = _permutations()
    permuted = np.multiply.outer(_shingle_hashes(shingles), a)
    permuted += b
    return Signature(permuted.min(axis=0))


def to_bytes(minhash: Signature) -> bytes:
    """Return the signature as bytes for the `articles.minhash` column (uint64 values)."""
    return np.asarray(minhash.hashvalues, dtype=np.uint64).tobytes()


def from_bytes(data: bytes) -> Signature:
    """Return the signature stored by `to_bytes`."""
    values = np.frombuffer(data, dtype=np.uint64)
    if len(values) and int(values.max()) > 0xFFFFFFFF:
        raise ValueError("a stored signature value exceeds 32 bits")
    return Signature(values.astype(np.uint32))


@dataclass(eq=False, slots=True)
class NewStory:
    """A story started in the current transaction: it has an id once it is written."""

    first_article_id: int
    created_at: datetime
    id: int | None = None


StoryRef = int | NewStory  # a stored story's id, or a story started in the current transaction


class StoryIndex:
    """An in-memory LSH index of recent posts' signatures and stories, keyed by article id.

    The LSH bands are datasketch's (`MinHashLSH` at SIMILARITY: same bands, same band keys),
    kept here as one dict per band from band key to the row of the post having it, or an
    array of the rows when several have it (most keys have one: no container to allocate
    and for the garbage collector to scan; an int array holds 4 bytes a row where a list
    holds an 8-byte pointer, and numpy reads it without a copy). Besides the bands it keeps every signature as a row of
    one array, to score all the candidates of a query in one comparison (posts of one site
    share a template, so a query can have hundreds of candidates), and each post's story,
    so that joining a story needs no query. Entries added since `begin()` are dropped by
    `rollback()` when the transaction that wrote their stories failed.
    """

    def __init__(self) -> None:
        self.buckets: list[dict[bytes, int | array[int]]] = [{} for _ in range(BANDS)]
        self._keys: dict[int, list[bytes]] = {}
        self._last_keys: tuple[np.ndarray | None, list[bytes]] = (None, [])
        self.rows: dict[int, int] = {}
        self._next_row = 0
        self.matrix = np.zeros((1024, NUM_PERM), dtype=np.uint32)
        self.ids = np.zeros(1024, dtype=np.int64)
        # Scratch for `most_similar`: each row's last position in a query's candidate list.
        self._seen = np.zeros(1024, dtype=np.intp)
        self.stories: dict[int, StoryRef] = {}
        self.loaded = False
        self._added: list[int] = []

    def _band_keys(self, minhash: Signature) -> list[bytes]:
        """Return the key of each band of a signature, as `MinHashLSH` makes them.

        The keys of the last values are kept: `assign` queries, then adds, the same.
        """
        values = minhash.hashvalues
        last, keys = self._last_keys
        if last is values:
            return keys
        data = values.astype(np.uint32, copy=False).byteswap().tobytes()
        keys = [data[band] for band in _BAND_SLICES]
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

    def add(self, article_id: int, minhash: Signature, story: StoryRef | None = None) -> None:
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
            self._seen = np.zeros(len(self.matrix), dtype=np.intp)
        self.matrix[row] = minhash.hashvalues
        self.ids[row] = article_id
        self.rows[article_id] = row
        keys = self._keys[article_id] = self._band_keys(minhash)
        for key, bucket in zip(keys, self.buckets, strict=True):
            found = bucket.get(key)
            if found is None:
                bucket[key] = row
            elif type(found) is int:
                bucket[key] = array("i", (found, row))
            else:
                found.append(row)
        if story is not None:
            self.stories[article_id] = story
        self._added.append(article_id)

    def story_of(self, article_id: int) -> StoryRef | None:
        """Return the story of an indexed post: its id once stored, else the new story."""
        story = self.stories.get(article_id)
        if isinstance(story, NewStory) and story.id is not None:
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
                    if type(found) is int:
                        del bucket[key]
                    else:
                        found.remove(row)
                        if len(found) == 1:
                            bucket[key] = found[0]
                self.stories.pop(article_id, None)
        self._added = []

    def most_similar(self, minhash: Signature, exclude: int) -> tuple[int, float] | None:
        """Return (article id, similarity) of the closest indexed post at or above SIMILARITY.

        Ties go to the lowest article id (the earliest post), whatever order LSH returns.
        """
        values = minhash.hashvalues
        if len(values) != NUM_PERM:
            raise ValueError(f"expecting a signature of {NUM_PERM} values")
        singles: list[int] = []
        shared: list[np.ndarray] = []
        for key, bucket in zip(self._band_keys(minhash), self.buckets, strict=True):
            hit = bucket.get(key)
            if hit is None:
                continue
            if type(hit) is int:
                singles.append(hit)
            else:
                shared.append(np.frombuffer(hit, dtype=np.intc))
        if singles:
            shared.append(np.array(singles, dtype=np.intc))
        if not shared:
            return None
        excluded = self.rows.get(exclude)
        if len(shared) > 1 or len(singles) > 1:
            # Each distinct row once, but `exclude`: a row keeps the position written last for it.
            found = np.concatenate(shared)
            positions = np.arange(len(found))
            seen = self._seen
            seen[found] = positions
            if excluded is not None:
                seen[excluded] = -1
            found = found[seen[found] == positions]
        else:
            found = shared[0]
            if excluded is not None:
                found = found[found != excluded]
        if not len(found):
            return None
        # Equal values per candidate (at most NUM_PERM = 128: a uint8 sum is exact).
        counts = np.add.reduce(self.matrix.take(found, axis=0) == values, axis=1, dtype=np.uint8)
        best = int(counts.max())
        if best / NUM_PERM < SIMILARITY:
            return None
        return int(self.ids.take(found[counts == best]).min()), best / NUM_PERM

    def assign(
        self, article_id: int, minhash: Signature | None, now: datetime
    ) -> tuple[StoryRef, bool]:
        """Return the story of a new post, whose `signature` is `minhash`, and True if it joined
        the story of an indexed post (a repost) rather than starting a new one; index the post.
        """
        match = self.most_similar(minhash, article_id) if minhash is not None else None
        story = self.story_of(match[0]) if match is not None else None
        joined = story is not None
        if story is None:
            story = NewStory(first_article_id=article_id, created_at=now)
        if minhash is not None:
            self.add(article_id, minhash, story)
        return story, joined
