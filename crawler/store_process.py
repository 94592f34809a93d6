"""Writing a crawl's batches of items to the database, in the crawl or in a process of its own.

`BatchWriter` writes one batch in one transaction, or item by item when that fails, so that
one bad item costs only itself. The store pipeline (crawler/pipelines.py) hands it batches
from a writer thread. With `STORE_PROCESS` on (the default on a machine with more than one
core), the writer thread hands each batch instead to a store process, `python -m
crawler.store_worker`, a helper process as crawler.children starts them, which runs the
`BatchWriter` and answers what it did; the thread only sends and waits, which holds
Python's lock for microseconds a batch where writing it through SQLAlchemy holds it for
about 30 milliseconds (1.6 CPU-seconds for the throughput benchmark's 50 batches). A crawl
whose thread must take the lock back from a busy writer thread loses more than the writer's
own time: on the throughput benchmark, the crawl alone ran about 2 s faster (of 20-25 s)
without storing at all, where the store's work was 1 s of CPU.

Batches and answers are marshalled: an item is its type's letter and its fields' values
(pickled when marshal cannot hold them: a field holding a value of a user pipeline's own
type, say). The first message names the database and which sources are on their first crawl.

A store process that dies (killed, out of memory) loses nothing: a new one is started and
the batch it held is sent to it; a batch on which two store processes die is given up, and
its items count as items that could not be stored (fetched again next cycle). A batch
written by a process that died before it could answer is written again by the next, where
its articles are seen again, unchanged: the crawl run counts them so, and the monitor,
which reads the versions stored, alerts each once.
"""

from __future__ import annotations

import logging
import marshal
import pickle
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any, BinaryIO, cast

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from crawler.children import frame, read_frame, settle_in, spawn
from crawler.db import dispose_engines, session_factory
from crawler.items import ArticleItem, WithdrawnItem
from crawler.store import mark_withdrawn, store_batch

logger = logging.getLogger(__name__)

Item = ArticleItem | WithdrawnItem
# What writing one batch did: (source id, outcome) of each item stored, (index in the batch,
# error) of each item that could not be stored, and the error that failed the whole batch's
# transaction (None when it committed).
Written = tuple[list[tuple[str, str]], list[tuple[int, str]], str | None]

# Seconds a store process has to finish its batch and exit once its crawl closes its end.
STOP_SECONDS = 30.0


def error_text(exc: BaseException) -> str:
    """Return an error as the crawl records it: its type's name and its message."""
    return f"{type(exc).__name__}: {exc}"


class BatchWriter:
    """Write batches of items in order, each in one transaction when it can."""

    def __init__(self, sessions: sessionmaker[Session], baseline: Mapping[str, bool]) -> None:
        self.sessions = sessions
        self.baseline = dict(baseline)  # source id -> on its first crawl (not alerted)

    def write(self, batch: Sequence[Item]) -> Written:
        """Write `batch` in one transaction, or item by item if that fails."""
        try:
            with self.sessions.begin() as session:
                return self._write(session, batch), [], None
        except Exception as exc:  # noqa: BLE001 - retried item by item below, each error named
            # Its first line: the rest is the SQL and every item's parameters.
            batch_error = error_text(exc).splitlines()[0]
        counted: list[tuple[str, str]] = []
        failed: list[tuple[int, str]] = []
        for index, item in enumerate(batch):
            try:
                with self.sessions.begin() as session:
                    one = self._write(session, [item])
            except Exception as exc:  # noqa: BLE001 - one bad item must not stop the crawl
                failed.append((index, error_text(exc)))
            else:
                counted += one  # only once its transaction has committed
        return counted, failed, batch_error

    def _write(self, session: Session, batch: Sequence[Item]) -> list[tuple[str, str]]:
        """Write `batch` in order in `session`; return (source id, outcome) of each item."""
        counted: list[tuple[str, str]] = []
        articles: list[ArticleItem] = []

        def store_articles() -> None:
            results = store_batch(session, articles, lambda sid: self.baseline.get(sid, False))
            counted.extend((a.source_id, r.outcome) for a, r in zip(articles, results, strict=True))
            articles.clear()

        for item in batch:
            if isinstance(item, ArticleItem):
                articles.append(item)
                continue
            store_articles()  # a withdrawal comes after the articles before it
            if mark_withdrawn(session, item):
                counted.append((item.source_id, "withdrawn"))
        if articles:
            store_articles()
        return counted


# ----- the wire --------------------------------------------------------------------------------
# A batch is b"M" and a marshal of (letter, field values) pairs, or a pickle of the items
# (which starts with byte 0x80) when marshal cannot hold them.
_MARSHAL = b"M"[0]
_TYPES: dict[str, type[Item]] = {"a": ArticleItem, "w": WithdrawnItem}
_OUT: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    kind: (letter, attrgetter(*(field.name for field in fields(kind))))
    for letter, kind in _TYPES.items()
}


def encode_batch(batch: Sequence[Item]) -> bytes:
    """Return the payload of a batch (see the wire above)."""
    try:
        rows = []
        for item in batch:
            letter, values = _OUT[type(item)]
            rows.append((letter, values(item)))
        return bytes((_MARSHAL,)) + marshal.dumps(rows)
    except (KeyError, ValueError):  # a subclass of an item, or values marshal cannot hold
        return pickle.dumps(list(batch), pickle.HIGHEST_PROTOCOL)


def decode_batch(payload: bytes) -> list[Item]:
    """Return the items of a batch's payload."""
    if payload[0] != _MARSHAL:
        return cast(list[Item], pickle.loads(payload))
    return [_TYPES[letter](*values) for letter, values in marshal.loads(memoryview(payload)[1:])]


# ----- the crawl's side ------------------------------------------------------------------------


class StoreProcess:
    """A store process, from the crawl's side: `write` sends a batch and waits for its answer.

    Called from one thread at a time (the store pipeline's writer thread), and blocking.
    """

    def __init__(self, database_url: str, baseline: Mapping[str, bool]) -> None:
        self.hello = frame(marshal.dumps((database_url, dict(baseline))))
        self.process: subprocess.Popen[bytes] | None = None
        self.socket: socket.socket | None = None
        self.incoming: BinaryIO | None = None
        self.restarts = 0

    def start(self) -> None:
        """Start the store process if none runs (it connects to the database as it starts)."""
        if self.process is None:
            self.process, self.socket = spawn("crawler.store_worker")
            # Reaped the moment it ends, whatever the writer thread is doing: a store process
            # that a signal to the crawl's group ended must not outlive the crawl as a zombie
            # (where no init reaps orphans, as in some containers).
            threading.Thread(
                target=self.process.wait, name=f"store process {self.process.pid}", daemon=True
            ).start()
            self.incoming = self.socket.makefile("rb")
            self.socket.sendall(self.hello)

    def write(self, batch: Sequence[Item]) -> Written:
        """Have the store process write `batch`; start a new one if it dies (see the module)."""
        payload = frame(encode_batch(batch))
        for attempt in (1, 2):
            try:
                self.start()
                assert self.socket is not None and self.incoming is not None
                self.socket.sendall(payload)
                answer = read_frame(self.incoming)
                if answer is not None:
                    counted, failed, batch_error = marshal.loads(answer)
                    return counted, failed, batch_error
                why = "it ended"
            except Exception as exc:  # noqa: BLE001 - the exchange broke: as if it had died
                why = error_text(exc)
            self.stop()
            self.restarts += 1
            logger.warning(
                "the store process died writing a batch of %d items, the first %s (%s); %s",
                len(batch),
                batch[0].url,
                why,
                "starting a new one" if attempt == 1 else "the batch is given up",
            )
        reason = "the store process died twice writing this batch"
        return [], [(index, reason) for index in range(len(batch))], None

    def stop(self) -> None:
        """Close our end of the socket and wait for the store process to exit (it finishes
        the batch it holds first); kill it if it does not within `STOP_SECONDS`."""
        process, sock, incoming = self.process, self.socket, self.incoming
        self.process = self.socket = self.incoming = None
        if incoming is not None:
            incoming.close()
        if sock is not None:
            sock.close()
        if process is None:
            return
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("the store process %d did not stop; killing it", process.pid)
            process.kill()
            process.wait()


# ----- the store process -----------------------------------------------------------------------


def serve(fd: int) -> None:
    """Write the batches that arrive on socket `fd` until it is closed (the store process)."""
    with socket.socket(fileno=fd) as sock, sock.makefile("rb") as incoming:
        hello = read_frame(incoming)  # sent as the process is started
        if hello is None:
            return
        database_url, baseline = marshal.loads(hello)
        writer = BatchWriter(session_factory(database_url), baseline)

        def connect() -> None:  # before the first batch arrives
            with writer.sessions.begin() as session:
                session.execute(text("select 1"))

        settle_in(connect)
        try:
            while (payload := read_frame(incoming)) is not None:
                sock.sendall(frame(marshal.dumps(writer.write(decode_batch(payload)))))
        finally:
            # SQLite moves its write-ahead log into the file as its last connection closes.
            dispose_engines()
