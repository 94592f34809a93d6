"""jieba's dictionary, loaded from a cache of our own in a fraction of jieba's time.

Topic matching and party extraction read jieba's dictionary: its prefix dictionary (every
word with its count, and every prefix of a word with 0) for word boundaries, and the words
tagged as proper names. jieba keeps the prefix dictionary as a `marshal` dump in the temp
folder, which took 0.9-1.3 CPU-seconds to load on our 2-core server, and the tags meant
reading its 349,000-line dict.txt again (0.4 s): paid by every `monitor` process, so by every
`monitor run --once`, whether or not anything new comes to classify.

This cache holds the same three things as plain text and two int arrays (each distinct count
once, and each word's index into them), which Python reads back with one `str.split` and one
`dict(zip(...))`: about 0.3 s. It lives in
`$XDG_CACHE_HOME/govmonitor` (default `~/.cache/govmonitor`), is named after a hash of the jieba
version and the dictionary file's path, size and time, is written atomically on first use,
and is rebuilt from jieba whenever it is missing, stale or unreadable; a cache that cannot
be written is logged and skipped (jieba's own load then runs each time).
"""

from __future__ import annotations

import array
import hashlib
import itertools
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT = b"govmonitor-jieba-lexicon 2\n"
# jieba's tags of place, organisation and other proper names (monitor/parties.py).
PROPER_TAGS = frozenset({"ns", "nt", "nz", "nr", "nrt", "nrfg", "j"})


class Lexicon:
    """jieba's prefix dictionary, its total count, and its words tagged as proper names.

    The proper names (112,000 words, about 8 MB as a set) are made into a set on first use:
    only party extraction reads them, and only for a post that matched a topic.
    """

    __slots__ = ("_proper", "_proper_text", "freq", "total")

    def __init__(self, freq: dict[str, int], total: int, proper: frozenset[str] | str) -> None:
        self.freq = freq
        self.total = total
        self._proper = proper if isinstance(proper, frozenset) else None
        self._proper_text = proper if isinstance(proper, str) else ""

    @property
    def proper(self) -> frozenset[str]:
        """Return the words tagged as proper names (ns, nt, nz, nr, nrt, nrfg, j)."""
        if self._proper is None:
            text, self._proper_text = self._proper_text, ""
            self._proper = frozenset(text.split("\n")) if text else frozenset()
        return self._proper


def cache_dir() -> Path:
    """Return the folder of the cache: $XDG_CACHE_HOME/govmonitor or ~/.cache/govmonitor."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "govmonitor"


def dictionary_path(tokenizer: Any) -> Path:
    """Return the dictionary file of a jieba Tokenizer (its own, or jieba's dict.txt)."""
    if tokenizer.dictionary:
        return Path(tokenizer.dictionary)
    jieba = sys.modules[type(tokenizer).__module__]
    return Path(jieba.__file__).parent / jieba.DEFAULT_DICT_NAME


def cache_file(tokenizer: Any) -> Path:
    """Return the cache file of a tokenizer's dictionary in its current version."""
    jieba = sys.modules[type(tokenizer).__module__]
    path = dictionary_path(tokenizer).resolve()
    stat = path.stat()
    key = f"{FORMAT!r}|{jieba.__version__}|{path}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / f"jieba-{hashlib.sha1(key.encode()).hexdigest()[:16]}.lexicon"


def load(tokenizer: Any) -> Lexicon:
    """Fill a fresh jieba Tokenizer with its dictionary, from the cache when it can.

    The tokenizer's FREQ is the lexicon's `freq` (one dict: words added to the tokenizer
    later are in both).
    """
    try:
        path: Path | None = cache_file(tokenizer)
    except OSError as exc:
        logger.warning("jieba's dictionary cannot be found (%s); jieba loads it itself", exc)
        path = None
    lexicon = read(path) if path is not None else None
    if lexicon is None:
        tokenizer.initialize()
        lexicon = Lexicon(tokenizer.FREQ, tokenizer.total, _proper_words(tokenizer))
        if path is not None:
            write(path, lexicon)
        return lexicon
    tokenizer.FREQ, tokenizer.total = lexicon.freq, lexicon.total
    tokenizer.initialized = True
    return lexicon


def _proper_words(tokenizer: Any) -> frozenset[str]:
    """Return the dictionary's words of more than one character tagged as proper names."""
    words = set()
    with tokenizer.get_dict_file() as lines:
        for raw in lines:
            parts = raw.decode("utf-8").split()
            if len(parts) == 3 and parts[2] in PROPER_TAGS and len(parts[0]) > 1:
                words.add(parts[0])
    return frozenset(words)


def read(path: Path) -> Lexicon | None:
    """Return the lexicon cached at `path`, or None if it is missing or unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if not data.startswith(FORMAT):
            raise ValueError("not a lexicon cache")
        head_end = data.index(b"\n", len(FORMAT))
        head = json.loads(data[len(FORMAT) : head_end])
        start = head_end + 1
        sections = [int(head[name]) for name in ("keys", "values", "indexes", "proper")]
        if start + sum(sections) != len(data):
            raise ValueError("truncated")
        ends = list(itertools.accumulate(sections, initial=start))
        keys = data[ends[0] : ends[1]].decode("utf-8").split("\n")
        values, indexes = array.array("q"), array.array("I")
        values.frombytes(data[ends[1] : ends[2]])
        indexes.frombytes(data[ends[2] : ends[3]])
        if sys.byteorder != "little":  # pragma: no cover - written little-endian
            values.byteswap()
            indexes.byteswap()
        if len(keys) != len(indexes) or (indexes and max(indexes) >= len(values)):
            raise ValueError("keys and counts do not match")
        # One int object per distinct count, shared by the words having it (as marshal's
        # references share them): a fresh int per word would cost 8 MB more.
        counts = map(list(values).__getitem__, indexes)
        proper = data[ends[3] :].decode("utf-8")
        return Lexicon(dict(zip(keys, counts, strict=True)), int(head["total"]), proper)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        logger.warning("jieba dictionary cache %s is unreadable (%s); rebuilding it", path, exc)
        return None


def write(path: Path, lexicon: Lexicon) -> None:
    """Write `lexicon` to `path` atomically; log and go on if it cannot be written."""
    if any("\n" in word for word in lexicon.freq) or any("\n" in w for w in lexicon.proper):
        logger.warning("jieba's dictionary has a word with a line break: not cached")
        return
    keys = "\n".join(lexicon.freq).encode("utf-8")
    distinct = sorted(set(lexicon.freq.values()))
    position = {value: number for number, value in enumerate(distinct)}
    values = array.array("q", distinct)
    indexes = array.array("I", map(position.__getitem__, lexicon.freq.values()))
    if sys.byteorder != "little":  # pragma: no cover
        values.byteswap()
        indexes.byteswap()
    proper = "\n".join(sorted(lexicon.proper)).encode("utf-8")
    head = {"total": lexicon.total, "keys": len(keys), "values": len(values) * 8}
    head.update(indexes=len(indexes) * 4, proper=len(proper))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(FORMAT + json.dumps(head).encode() + b"\n")
                out.write(keys)
                out.write(values.tobytes())
                out.write(indexes.tobytes())
                out.write(proper)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        logger.warning("cannot cache jieba's dictionary at %s: %s", path, exc)
