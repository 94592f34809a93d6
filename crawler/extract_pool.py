"""Page reading off the reactor thread: worker processes, so parsing uses another core.

A crawl's own thread downloads, schedules and stores; reading a page (lxml parse, cleaning,
dates, the content hash; list pages too) is pure CPU work of about 2 ms a page, which in one
process stalls the downloads. With `EXTRACT_WORKERS` > 0 (default: 1 on a machine with more
than one core, 0 on one core) pages are read in that many worker processes.

Each worker is `python -m crawler.extract_worker`, a helper process as crawler.children
starts them: a socket to the crawl and nothing else, a lower priority than the crawl's
(`WORKER_NICE`), in the crawl's process group. The crawl's event loop writes pages to the
socket and reads the answers from it like any other connection: no threads, no locks, one
write and one read per page. The sources spider sends each page from a
downloader middleware (`crawler.middlewares.ReadAheadMiddleware`), so that its callbacks find
the answer waiting and need not be coroutines. Pages and answers are marshalled (pickled
when marshal cannot hold them; see the wire below), each framed by its length.

A worker that dies (killed, out of memory, a crash in a C library) loses nothing: a new
worker is started and the pages the dead one held go to it; a page on which two workers die
is given up as unreadable (the crawl records it as a failed article, and the next cycle
fetches it again).
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import pickle
import re
import socket
import subprocess
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

from crawler.children import HEADER, frame, read_frame, settle_in, several_cores, spawn
from crawler.pages.model import Attachment, ExtractedArticle, ListEntry, ListPage

logger = logging.getLogger(__name__)


def default_workers() -> int:
    """Return the default EXTRACT_WORKERS: 1 when this process may use several cores, else 0."""
    return 1 if several_cores() else 0


def extract_page(
    kind: str,
    url: str,
    html: bytes,
    headers: Mapping[str, str],
    crawl_time: datetime,
    list_date: datetime | None,
    encoding: str | None,
) -> tuple[ExtractedArticle, str | None, str | None]:
    """Return the article, its content hash, and the traceback if extraction failed.

    The hash (crawler.normalize.content_hash) is taken here, on the worker's core, so that
    the crawl process does not normalise every article again to store it.
    """
    # Imported here: a crawl with a worker never reads a page itself, and starts 60 ms sooner
    # without the extractors (the worker imports them as it starts, in `_warm_up`).
    from crawler.normalize import content_hash
    from crawler.pages.article import EXTRACTORS

    try:
        article = EXTRACTORS[kind].extract(url, html, headers, crawl_time, list_date, encoding)
        return article, content_hash(article.title, article.body), None
    except Exception:  # noqa: BLE001 - a page that cannot be read is an empty article
        return ExtractedArticle(url=url, title="", body=""), None, traceback.format_exc()


def read_list(
    url: str, html: bytes, headers: Mapping[str, str], options: Mapping[str, Any]
) -> tuple[ListPage, str | None]:
    """Return a column list page's posts and further pages, and the traceback if reading failed.

    A bad `article_pattern` or `list_pattern` (re.error) is raised, as by parse_list.
    """
    from crawler.pages.listing import parse_list_strict  # see extract_page

    try:
        page = parse_list_strict(
            url,
            html,
            headers,
            options["article_pattern"],
            options.get("list_pattern"),
            options.get("encoding"),
            options.get("crawl_time"),
        )
        return page, None
    except re.error:
        raise
    except Exception:  # noqa: BLE001 - a list that cannot be read shows no posts
        return ListPage(url=url), traceback.format_exc()


def _warm_up() -> None:
    """Import and build what extraction needs once per worker, not on its first page."""
    page = b"<html><body><p>x</p></body></html>"
    extract_page("generic", "http://127.0.0.1/", page, {}, datetime(2000, 1, 1), None, None)
    read_list(
        "http://127.0.0.1/",
        page,
        {},
        {"article_pattern": "x", "list_pattern": None, "encoding": None, "crawl_time": None},
    )


class _Job:
    """One page sent to a worker: its frame (kept to send again), its answer, its attempts."""

    __slots__ = ("attempt", "frame", "future", "name", "url")

    def __init__(self, frame: bytes, future: asyncio.Future[Any], name: str, url: str) -> None:
        self.frame = frame
        self.future = future
        self.name = name
        self.url = url
        self.attempt = 1


class _Worker(asyncio.Protocol):
    """One worker process, its end of the socket, and the jobs it holds."""

    def __init__(self, pool: ExtractionPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.jobs: dict[int, _Job] = {}
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.queued: list[bytes] = []  # frames written before the connection is made
        self.dead = False
        self.closing = False  # closed by the pool: its end is no death
        self.process, ours = spawn("crawler.extract_worker")
        self.pid = self.process.pid
        self.socket = ours
        self.connecting = loop.create_task(
            loop.create_unix_connection(lambda: self, sock=ours),
            name=f"extraction worker {self.pid}",
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the frames queued while connecting."""
        self.transport = cast(asyncio.Transport, transport)
        if self.queued:
            self.transport.writelines(self.queued)
            self.queued.clear()

    def send(self, job_id: int, job: _Job) -> None:
        """Hand one job to this worker."""
        self.jobs[job_id] = job
        if self.transport is None:
            self.queued.append(job.frame)
        else:
            self.transport.write(job.frame)

    def data_received(self, data: bytes) -> None:
        """Settle the jobs whose answers are complete in the buffer."""
        buffer = self.buffer
        buffer += data
        while len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            end = HEADER.size + size
            if len(buffer) < end:
                break
            job_id, ok, value = decode_answer(bytes(memoryview(buffer)[HEADER.size : end]))
            del buffer[:end]
            job = self.jobs.pop(job_id, None)
            if job is not None and not job.future.done():
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def connection_lost(self, exc: Exception | None) -> None:
        """The worker died (or was closed): hand its jobs back to the pool."""
        self.dead = True
        if self.closing:
            return
        if self.process.poll() is None:  # its socket broke, yet it runs: end it
            self.process.kill()
            self.process.wait(timeout=5)
        self.pool._worker_died(self)

    def close(self) -> None:
        """Stop the worker: close its socket and kill it; its jobs are dropped."""
        self.dead = self.closing = True
        if not self.loop.is_closed():
            self.connecting.cancel()
            if self.transport is not None:
                self.transport.abort()
        self.socket.close()
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("extraction worker %d did not stop", self.pid)


class ExtractionPool:
    """Read pages in worker processes (or in this process when `workers` is 0)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(0, workers)
        self.running: list[_Worker] = []
        self.restarts = 0
        self._next_id = 0
        self._closed = False

    def start(self) -> None:
        """Start the worker processes now, from the running event loop, rather than on the
        first page: a worker takes about a third of a second to start (Python, lxml, OpenCC,
        a warm-up page), which would otherwise stall the first list page of every crawl while
        the crawl had nothing else to do. Before the event loop runs this does nothing: the
        workers start on a later call, or with the first page."""
        if not self.workers or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._worker(loop)

    def pids(self) -> set[int]:
        """Return the process ids of the running workers (none before the first page)."""
        return {worker.pid for worker in self.running if not worker.dead}

    async def extract(self, kind: str, url: str, html: bytes, **options: Any) -> ExtractedArticle:
        """Return the extracted article at `url`; failures are logged and give an empty one."""
        article, _digest = await self.extract_hashed(kind, url, html, **options)
        return article

    async def extract_hashed(
        self, kind: str, url: str, html: bytes, **options: Any
    ) -> tuple[ExtractedArticle, str | None]:
        """Return the extracted article at `url` and its content hash (None when it failed)."""
        return article_answer(await self.read(article_job(kind, url, html, **options)))

    async def read_list(
        self, url: str, html: bytes, headers: Mapping[str, str], **options: Any
    ) -> ListPage:
        """Return the posts and further pages of a column list page (crawler.pages.listing).

        A page that cannot be read is logged and shows no posts; a bad pattern raises re.error.
        """
        return list_answer(await self.read(list_job(url, html, headers, **options)))

    async def read(self, job: PageJob) -> Any:
        """Return the raw answer of `job` (see `article_answer`, `list_answer`), from a worker
        when there is a pool."""
        if not self.workers:
            return self.read_here(job)
        loop = asyncio.get_running_loop()
        self._next_id += 1
        job_id = self._next_id
        payload = encode_job(job_id, job.name, job.args)
        sent = _Job(frame(payload), loop.create_future(), job.name, job.url)
        self._worker(loop).send(job_id, sent)
        return await sent.future

    @staticmethod
    def read_here(job: PageJob) -> Any:
        """Return the raw answer of `job`, read in this process and thread."""
        return FUNCTIONS[job.name](*job.args)

    def _worker(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        """Return the live worker holding the fewest jobs, starting workers as needed."""
        if any(worker.loop is not loop for worker in self.running):
            # A pool used from another event loop (tests call asyncio.run more than once):
            # the old loop's connections are gone with it.
            for worker in self.running:
                worker.close()
            self.running = []
        self.running = [worker for worker in self.running if not worker.dead]
        while len(self.running) < self.workers:
            self.running.append(_Worker(self, loop))
        return min(self.running, key=lambda worker: len(worker.jobs))

    def _worker_died(self, dead: _Worker) -> None:
        """Start a new worker for the jobs of a dead one; give up those that already had two.

        A page whose worker died is given to a new worker once; if that one dies too, the
        page itself is what kills them (a crash in a C library, say): it is given up, as an
        empty article or list, rather than read here, where it would take the crawl down.
        """
        if dead in self.running:
            self.running.remove(dead)
        jobs = [(job_id, job) for job_id, job in dead.jobs.items() if not job.future.done()]
        dead.jobs.clear()
        if self._closed:
            return
        self.restarts += 1
        if jobs:
            logger.warning("an extraction worker died (at %s); starting a new one", jobs[0][1].url)
        else:
            logger.warning("an extraction worker died while idle; the next page starts a new one")
        for job_id, job in jobs:
            if job.attempt == 2:
                error = f"the extraction worker died twice on this page ({job.url})"
                job.future.set_result(_given_up(job.name, job.url, error))
                continue
            job.attempt = 2
            self._worker(dead.loop).send(job_id, job)

    def close(self) -> None:
        """Stop the workers (pages still queued are not read)."""
        self._closed = True
        for worker in self.running:
            worker.close()
        self.running = []


def _given_up(name: str, url: str, error: str) -> Any:
    """Return the answer of a page given up: an empty list page or an empty article."""
    if name == "list":
        return ListPage(url=url), error
    return ExtractedArticle(url=url, title="", body=""), None, error


FUNCTIONS: dict[str, Callable[..., Any]] = {"extract": extract_page, "list": read_list}


class PageJob(NamedTuple):
    """One page to read: the function (a key of FUNCTIONS), its arguments, the page's URL."""

    name: str
    args: tuple[Any, ...]
    url: str


def article_job(kind: str, url: str, html: bytes, **options: Any) -> PageJob:
    """Return the job extracting an article page with the extractor `kind`.

    Options: `headers`, `crawl_time` (required), `list_date`, `encoding` (see extract_page).
    """
    args = (
        kind,
        url,
        html,
        dict(options.get("headers") or {}),
        options["crawl_time"],
        options.get("list_date"),
        options.get("encoding"),
    )
    return PageJob("extract", args, url)


def list_job(url: str, html: bytes, headers: Mapping[str, str], **options: Any) -> PageJob:
    """Return the job reading a column list page (options as read_list's)."""
    return PageJob("list", (url, html, dict(headers), options), url)


def article_answer(answer: Any) -> tuple[ExtractedArticle, str | None]:
    """Return the article and content hash of an `article_job`'s answer; log a failure."""
    article, digest, error = answer
    if error is not None:
        logger.warning("extraction failed for %s\n%s", article.url, error.rstrip())
    return article, digest


def list_answer(answer: Any) -> ListPage:
    """Return the list page of a `list_job`'s answer; log a failure."""
    page, error = answer
    if error is not None:
        logger.warning("list parsing failed for %s\n%s", page.url, error.rstrip())
    return page


# ----- the wire --------------------------------------------------------------------------------
# A job or an answer is a frame: its length, then a pickle (which starts with byte 0x80) or, for
# the two functions a crawl calls on every page, the byte b"M" and a marshal of plain values
# (str, bytes, tuples, dicts). Pickling rebuilds dataclasses, datetimes and time zones through
# generic reduce calls: 30 microseconds a page of the crawl's thread, where marshal takes a
# few. Failures (exceptions) and other functions travel pickled.
_MARSHAL = b"M"[0]
_Moment = tuple[str, str | None] | None  # isoformat, and the IANA zone's key when it has one


def _moment_out(moment: datetime | None) -> _Moment:
    """Return a datetime as plain values: its ISO form, and its ZoneInfo key if any."""
    if moment is None:
        return None
    zone = moment.tzinfo
    return moment.isoformat(), zone.key if isinstance(zone, ZoneInfo) else None


def _moment_in(value: _Moment) -> datetime | None:
    """Return the datetime of `_moment_out`'s plain values, in the same zone."""
    if value is None:
        return None
    iso, key = value
    moment = datetime.fromisoformat(iso)
    return moment.astimezone(ZoneInfo(key)) if key is not None else moment


def _extract_args_out(args: tuple[Any, ...]) -> tuple[Any, ...]:
    kind, url, html, headers, crawl_time, list_date, encoding = args
    moments = _moment_out(crawl_time), _moment_out(list_date)
    return kind, url, html, headers, *moments, encoding


def _extract_args_in(data: tuple[Any, ...]) -> tuple[Any, ...]:
    kind, url, html, headers, crawl_time, list_date, encoding = data
    return kind, url, html, headers, _moment_in(crawl_time), _moment_in(list_date), encoding


def _extract_answer_out(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    article, digest, error = answer
    fields = (
        article.url,
        article.title,
        article.body,
        _moment_out(article.published_at),
        article.source,
        tuple((file.url, file.name, file.type) for file in article.attachments),
        article.doc_number,
        article.description,
    )
    return fields, digest, error


def _extract_answer_in(data: tuple[Any, ...]) -> tuple[Any, ...]:
    fields, digest, error = data
    url, title, body, published_at, source, files, doc_number, description = fields
    article = ExtractedArticle(
        url,
        title,
        body,
        _moment_in(published_at),
        source,
        [Attachment(*file) for file in files],
        doc_number,
        description,
    )
    return article, digest, error


def _list_args_out(args: tuple[Any, ...]) -> tuple[Any, ...]:
    url, html, headers, options = args
    options = {**options, "crawl_time": _moment_out(options.get("crawl_time"))}
    return url, html, headers, options


def _list_args_in(data: tuple[Any, ...]) -> tuple[Any, ...]:
    url, html, headers, options = data
    options["crawl_time"] = _moment_in(options["crawl_time"])
    return url, html, headers, options


def _list_answer_out(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    page, error = answer
    entries = tuple((e.url, e.title, _moment_out(e.published_at)) for e in page.entries)
    return (page.url, entries, tuple(page.next_pages)), error


def _list_answer_in(data: tuple[Any, ...]) -> tuple[Any, ...]:
    (url, entries, next_pages), error = data
    listed = [ListEntry(u, title, _moment_in(moment)) for u, title, moment in entries]
    return ListPage(url, listed, list(next_pages)), error


class Codec(NamedTuple):
    """How one function's arguments and answer become plain values, and back."""

    args_out: Callable[[Any], Any]
    args_in: Callable[[Any], Any]
    answer_out: Callable[[Any], Any]
    answer_in: Callable[[Any], Any]


CODECS: dict[str, Codec] = {
    "extract": Codec(_extract_args_out, _extract_args_in, _extract_answer_out, _extract_answer_in),
    "list": Codec(_list_args_out, _list_args_in, _list_answer_out, _list_answer_in),
}


def encode_job(job_id: int, name: str, args: tuple[Any, ...]) -> bytes:
    """Return the frame payload of a job: marshal for a function in CODECS, else pickle.

    Arguments marshal cannot hold (a caller's own mapping type, say) go pickled.
    """
    codec = CODECS.get(name)
    if codec is not None:
        try:
            return bytes((_MARSHAL,)) + marshal.dumps((job_id, name, codec.args_out(args)))
        except ValueError:  # not plain values
            pass
    return pickle.dumps((job_id, name, args), pickle.HIGHEST_PROTOCOL)


def decode_job(payload: bytes) -> tuple[int, str, tuple[Any, ...]]:
    """Return (job id, function name, arguments) of a job's frame payload."""
    if payload[0] != _MARSHAL:
        return cast(tuple[int, str, tuple[Any, ...]], pickle.loads(payload))
    job_id, name, data = marshal.loads(memoryview(payload)[1:])
    return job_id, name, CODECS[name].args_in(data)


def encode_answer(name: str, answer: tuple[int, bool, Any]) -> bytes:
    """Return the frame payload of an answer: marshal for a value of a CODECS function."""
    job_id, ok, value = answer
    codec = CODECS.get(name)
    if ok and codec is not None:
        try:
            return bytes((_MARSHAL,)) + marshal.dumps((job_id, name, codec.answer_out(value)))
        except ValueError:  # not plain values
            pass
    return pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)


def decode_answer(payload: bytes) -> tuple[int, bool, Any]:
    """Return (job id, ok, value or exception) of an answer's frame payload."""
    if payload[0] != _MARSHAL:
        return cast(tuple[int, bool, Any], pickle.loads(payload))
    job_id, name, data = marshal.loads(memoryview(payload)[1:])
    return job_id, True, CODECS[name].answer_in(data)


def serve(fd: int) -> None:
    """Answer the jobs that arrive on socket `fd` until it is closed (the worker's main loop)."""
    settle_in(_warm_up)
    with socket.socket(fileno=fd) as sock, sock.makefile("rb") as incoming:
        while (payload := read_frame(incoming)) is not None:
            job_id, name, args = decode_job(payload)
            try:
                answer = (job_id, True, FUNCTIONS[name](*args))
            except Exception as exc:  # noqa: BLE001 - sent back, raised where it was asked
                answer = (job_id, False, exc)
            try:
                payload = encode_answer(name, answer)
            except Exception as exc:  # noqa: BLE001 - an answer that cannot cross the socket
                failure = RuntimeError(f"unpicklable answer: {type(exc).__name__}: {exc}")
                payload = pickle.dumps((job_id, False, failure), pickle.HIGHEST_PROTOCOL)
            sock.sendall(frame(payload))
