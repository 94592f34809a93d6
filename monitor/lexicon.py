"""jieba's dictionary, loaded from a cache of our own in a fraction of jieba's time.

Topic matching and party extraction read jieba's dictionary: its prefix dictionary (every
word with its count, and every prefix of a word with 0) for word boundaries, and the words
tagged as proper names. jieba keeps the prefix dictionary as a `marshal` dump in the temp
folder, which took 0.9-1.3 CPU-seconds to load on our 2-core server, and the tags meant
reading its 349,000-line dict.txt again (0.4 s): paid by every `monitor` process, so by every
`monitor run --once`, whether or not anything new comes to classify.

This cache holds the same three things as plain text and two int arrays (each distinct count
once, and each word's index into them), which Python maps from the file and reads back with
`str.split` and `dict.update`, 64 KB at a time: 0.24-0.3 s, and 54-57 MB for the dictionary
where jieba's own load takes 62. It lives in
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
import mmap
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
        proper = self._proper
        if proper is None:  # two threads may both build it: the same set
            text = self._proper_text
            proper = self._proper = frozenset(text.split("\n")) if text else frozenset()
        return proper


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
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(path, data)
    except (OSError, ValueError):  # missing, or empty (mmap refuses an empty file)
        return None


def _parse(path: Path, data: mmap.mmap) -> Lexicon | None:
    """Return the lexicon in a cache file's bytes (mapped, not copied: the heap keeps no
    10 MB buffer it would hold on to), or None if they are not one."""
    view = memoryview(data)
    indexes: Any = None
    try:
        if data[: len(FORMAT)] != FORMAT:
            raise ValueError("not a lexicon cache")
        head_end = data.find(b"\n", len(FORMAT))
        if head_end < 0:
            raise ValueError("no head")
        head = json.loads(data[len(FORMAT) : head_end])
        start = head_end + 1
        sections = [int(head[name]) for name in ("keys", "values", "indexes", "proper")]
        if start + sum(sections) != len(data):
            raise ValueError("truncated")
        ends = list(itertools.accumulate(sections, initial=start))
        values = array.array("q")
        values.frombytes(view[ends[1] : ends[2]])
        indexes = view[ends[2] : ends[3]].cast("I")
        if sys.byteorder != "little":  # pragma: no cover - written little-endian
            values.byteswap()
            indexes = array.array("I", indexes)
            indexes.byteswap()
        if len(indexes) and max(indexes) >= len(values):
            raise ValueError("a count index is out of range")
        freq = _words(data, view, ends[0], ends[1], list(values), indexes)
        if len(freq) != len(indexes):
            raise ValueError("keys and counts do not match")
        proper = str(view[ends[3] :], "utf-8")
        return Lexicon(freq, int(head["total"]), proper)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        logger.warning("jieba dictionary cache %s is unreadable (%s); rebuilding it", path, exc)
        return None
    finally:
        if isinstance(indexes, memoryview):
            indexes.release()  # before the mapping closes: no view of it may outlive it
        view.release()


def _words(
    data: mmap.mmap, view: memoryview, start: int, end: int, values: list[int], indexes: Any
) -> dict[str, int]:
    """Return the prefix dictionary: the words of data[start:end] with their counts.

    Read 64 KB at a time: a single string and list of every word, freed at once, would leave
    the heap 6 MB larger for the process's life. Each distinct count is one int object,
    shared by the words having it (as marshal's references share them): a fresh int per
    word would cost 8 MB more.
    """
    freq: dict[str, int] = {}
    at = 0
    while start < end:
        stop = end
        if end - start > 65536:
            stop = data.rfind(b"\n", start, start + 65536)
            if stop <= start:
                raise ValueError("a word longer than 64 KB")
        words = str(view[start:stop], "utf-8").split("\n")
        freq.update(zip(words, map(values.__getitem__, indexes[at : at + len(words)])))
        at += len(words)
        start = stop + 1
    if at != len(indexes):
        raise ValueError("keys and counts do not match")
    return freq


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
