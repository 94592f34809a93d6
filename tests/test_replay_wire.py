"""The replay's HTTP/1.1 server (replay/protocol.py) on the wire: raw sockets on 127.0.0.1.

What clients of a real site rely on: kept-alive connections, pipelined requests answered in
order, HEAD, request bodies that arrive in pieces, and an unreadable request refused with a
status rather than a hang.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from replay import ReplayServer

LIST = "/kaiping/kpskgsj/zwgk/dwdt/index.html"


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    with ReplayServer(["kaiping"]) as server:
        yield server


def connect(replay: ReplayServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", replay.port), timeout=10)


def read_response(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> tuple:
    """Read one response off `sock` (leftovers stay in `buffer`): (status, headers, body)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    length = 0 if head_only or status == 304 else int(headers.get("content-length", 0))
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a body")
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return status, headers, body


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_one_connection_carries_many_requests_and_pipelined_ones_in_order(
    replay: ReplayServer,
) -> None:
    article = replay.seed_url("kaiping").removeprefix(replay.url)
    with connect(replay) as sock:
        buffer = bytearray()
        sock.sendall(f"GET {LIST} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, body = read_response(sock, buffer)
        assert status == 200 and headers["server"] == "nginx" and "date" in headers
        assert int(headers["content-length"]) == len(body) and b"<html" in body.lower()
        # Three requests in one write: answered one after the other on the same connection.
        sock.sendall(
            (
                f"GET {article} HTTP/1.1\r\nHost: x\r\n\r\n"
                f"GET /kaiping/no/such/page.html HTTP/1.1\r\nHost: x\r\n\r\n"
                f"GET {LIST} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {headers['etag']}\r\n\r\n"
            ).encode()
        )
        answers = [read_response(sock, buffer) for _ in range(3)]
        assert [a[0] for a in answers] == [200, 404, 304]
        assert answers[0][2] == replay_bytes(replay, article)
        assert answers[2][2] == b"" and answers[2][1]["etag"] == headers["etag"]


def replay_bytes(replay: ReplayServer, path: str) -> bytes:
    """Return the page at `path` fetched on a connection of its own."""
    with connect(replay) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, headers, body = read_response(sock, bytearray())
        assert status == 200 and headers["connection"] == "close"
        assert closed_by_server(sock)
        return body


def test_head_sends_the_length_without_the_body(replay: ReplayServer) -> None:
    with connect(replay) as sock:
        buffer = bytearray()
        sock.sendall(f"HEAD {LIST} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, _ = read_response(sock, buffer, head_only=True)
        assert status == 200 and int(headers["content-length"]) > 1000
        # The next answer starts right after the head: no body bytes came in between.
        sock.sendall(b"GET /kaiping/missing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer)[0] == 404


def test_http_1_0_closes_unless_kept_alive(replay: ReplayServer) -> None:
    with connect(replay) as sock:
        sock.sendall(f"GET {LIST} HTTP/1.0\r\n\r\n".encode())
        assert read_response(sock, bytearray())[0] == 200
        assert closed_by_server(sock)
    with connect(replay) as sock:
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(f"GET {LIST} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            assert read_response(sock, buffer)[0] == 200


def test_a_request_body_may_arrive_in_pieces(replay: ReplayServer) -> None:
    body = '{"title": "分開(kāi)送達(dá)", "paragraphs": ["甲。"]}'.encode()
    head = (
        "POST /_admin/kaiping/publish HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = len(replay.site("kaiping").column)
    with connect(replay) as sock:
        sock.sendall(head[:10])
        sock.sendall(head[10:] + body[:7])
        sock.sendall(body[7:])
        status, _, answer = read_response(sock, bytearray())
    assert status == 200 and b'"url"' in answer
    assert len(replay.site("kaiping").column) == before + 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST /_admin/requests HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ],
)
def test_an_unreadable_request_is_refused_and_the_connection_closed(
    replay: ReplayServer, request_bytes: bytes, status: int
) -> None:
    with connect(replay) as sock:
        sock.sendall(request_bytes)
        assert read_response(sock, bytearray())[0] == status
        assert closed_by_server(sock)
    # The server goes on answering others.
    assert len(replay_bytes(replay, LIST)) > 1000


def test_unknown_method_is_501_and_a_crash_is_500(replay: ReplayServer) -> None:
    with connect(replay) as sock:
        buffer = bytearray()
        sock.sendall(f"PUT {LIST} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        assert read_response(sock, buffer)[0] == 501
        site = replay.site("kaiping")
        original = site.route

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a broken renderer")

        site.route = broken  # type: ignore[method-assign]
        try:
            sock.sendall(f"GET {LIST} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, body = read_response(sock, buffer)
        finally:
            site.route = original  # type: ignore[method-assign]
        assert (status, body) == (500, b"internal error")
        sock.sendall(f"GET {LIST} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert read_response(sock, buffer)[0] == 200


def test_many_clients_at_once_each_get_their_own_pages(replay: ReplayServer) -> None:
    pages = [replay.list_url("kaiping", n).removeprefix(replay.url) for n in (1, 2)]
    expected = {path: replay_bytes(replay, path) for path in pages}
    failures: list[str] = []

    def client(number: int) -> None:
        try:
            with connect(replay) as sock:
                buffer = bytearray()
                for round_ in range(10):
                    path = pages[(number + round_) % 2]
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    status, _, body = read_response(sock, buffer)
                    if status != 200 or body != expected[path]:
                        failures.append(f"client {number} round {round_}: {status}")
        except OSError as exc:
            failures.append(f"client {number}: {exc}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_stop_closes_kept_alive_connections_and_frees_the_port() -> None:
    server = ReplayServer(["kaiping"])
    server.start()
    port = server.port
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {LIST} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert read_response(sock, bytearray())[0] == 200
    server.stop()
    assert closed_by_server(sock)
    sock.close()
    again = ReplayServer(["kaiping"], port=port)
    again.start()  # the port is free to bind again
    try:
        assert again.port == port
    finally:
        again.stop()


def test_a_crash_outside_the_routes_is_still_answered_500() -> None:
    with ReplayServer(["kaiping"]) as server:
        original = server._respond

        def broken(request: object) -> None:
            raise RuntimeError("a broken handler")

        server._respond = broken  # type: ignore[method-assign]
        try:
            with connect(server) as sock:  # a connection takes the handler it starts with
                sock.sendall(f"GET {LIST} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                status, _, body = read_response(sock, bytearray())
        finally:
            server._respond = original  # type: ignore[method-assign]
        assert (status, body) == (500, b"internal error")
        assert len(replay_bytes(server, LIST)) > 1000
