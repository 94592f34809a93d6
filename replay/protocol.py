"""The replay's HTTP/1.1 server: one asyncio event loop on a thread of its own.

Why not `http.server.ThreadingHTTPServer`: the replay stands for remote sites, yet it runs on
the crawler's own machine. A thread per connection, `email`'s header parser and a write per
header line cost about 0.6 ms of CPU a request, 6 CPU-seconds of a 10,000-post benchmark
crawl taken from the crawl's two cores, where a real site's server costs the crawler
nothing. Here a request costs about a tenth of that: its head is split by hand, its answer
leaves in one write, and no thread switch happens between requests.

What it speaks: HTTP/1.1 and 1.0 requests with a `Content-Length` body (or none), kept alive
unless the client says `Connection: close` (1.0: unless it says `keep-alive`), pipelined
requests answered in order, idle connections closed after `IDLE_TIMEOUT` seconds. A request
it cannot read gets 400 (431 for an oversized head, 411 for a chunked body, which no client
of the replay sends) and the connection is closed. `Nagle` is off (asyncio sets TCP_NODELAY),
and headers and body leave together.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

IDLE_TIMEOUT = 30.0
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
SERVER = "nginx"


class Headers:
    """A request's header fields: case-insensitive look-up, the client's order and spelling."""

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._index: dict[str, str] = {}
        for name, value in fields:
            self._index.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of field `name` (any case), or `default`."""
        return self._index.get(name.lower(), default)

    def items(self) -> list[tuple[str, str]]:
        """Return every (name, value) as the client sent them."""
        return list(self._fields)


@dataclass(frozen=True)
class Request:
    """One request as read off the connection."""

    command: str
    path: str
    version: str
    headers: Headers
    body: bytes = b""
    client: str = "-"


@dataclass
class Response:
    """One answer: status, header fields (after Server and Date), body, and whether to send it."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    send_body: bool = True


class _Date:
    """The Date header's value, formatted once a second rather than once a request."""

    second = -1
    value = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.value, cls.second = formatdate(second, usegmt=True), second
        return cls.value


def encode_response(response: Response, close: bool) -> bytes:
    """Return the bytes of a response: status line, Server, Date, its fields, then the body.

    Content-Length is the caller's (HEAD answers carry the length of the body they omit).
    """
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {response.status} {phrase}", f"Server: {SERVER}", f"Date: {_Date.now()}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head + response.body if response.send_body else head


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_head(head: bytes) -> tuple[str, str, str, Headers]:
    """Return (method, target, version, headers) of a request head without its blank line."""
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith("HTTP/1."):
        raise _BadRequest(400, f"bad request line {lines[0][:200]!r}")
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, f"bad header line {line[:200]!r}")
        fields.append((name, value.strip()))
    return words[0], words[1], words[2], Headers(fields)


class HTTPProtocol(asyncio.Protocol):
    """One client connection: reads requests, asks `handle` for each answer, writes it."""

    def __init__(
        self,
        handle: Callable[[Request], Response],
        connections: set[HTTPProtocol],
        log: Callable[[Request, int], None] | None = None,
    ) -> None:
        self.handle = handle
        self.connections = connections
        self.log = log
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.client = "-"
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else "-"
        self.connections.add(self)
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)

    def close(self) -> None:
        """Close the connection (what is already written still leaves)."""
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arm_timer()
        while self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._refuse(_BadRequest(431, "request head too large"))
                return
            if end > MAX_HEAD:
                self._refuse(_BadRequest(431, "request head too large"))
                return
            try:
                method, target, version, headers = _parse_head(bytes(self.buffer[:end]))
                length = self._body_length(headers)
            except _BadRequest as exc:
                self._refuse(exc)
                return
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            request = Request(method, target, version, headers, body, self.client)
            self._answer(request)

    @staticmethod
    def _body_length(headers: Headers) -> int:
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            raise _BadRequest(411, "chunked request bodies are not supported: send Content-Length")
        raw = headers.get("Content-Length")
        if raw is None:
            return 0
        if not raw.isdigit() or int(raw) > MAX_BODY:
            raise _BadRequest(400, f"bad Content-Length {raw[:40]!r}")
        return int(raw)

    def _answer(self, request: Request) -> None:
        connection = (request.headers.get("Connection") or "").lower()
        if request.version == "HTTP/1.0":
            close = "keep-alive" not in connection
        else:
            close = "close" in connection
        try:
            response = self.handle(request)
        except Exception:  # noqa: BLE001 - a server answers, and says why on stderr
            traceback.print_exc(file=sys.stderr)
            body = b"internal error"
            response = Response(
                500, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))], body
            )
        if self.log is not None:
            self.log(request, response.status)
        assert self.transport is not None
        self.transport.write(encode_response(response, close))
        if close:
            self.transport.close()

    def _refuse(self, error: _BadRequest) -> None:
        """Answer a request that cannot be read, then close (its end cannot be found)."""
        body = f"{error}\n".encode()
        response = Response(
            error.status,
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            body,
        )
        print(f"replay: refused a request from {self.client}: {error}", file=sys.stderr)
        assert self.transport is not None
        self.transport.write(encode_response(response, close=True))
        self.transport.close()
        self.buffer.clear()
