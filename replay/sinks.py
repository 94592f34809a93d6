"""Real local receivers of alerts for tests and the demo: an SMTP server and an HTTP receiver.

Both listen on 127.0.0.1 only, keep what they receive in thread-safe lists and can be told to
fail. `python -m replay.sinks` runs both and prints each arrival.
"""

from __future__ import annotations

import argparse
import email
import json
import logging
import signal
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

logger = logging.getLogger(__name__)
T = TypeVar("T")

_SMTP_FAILURES = {
    4: "4.3.0 Temporary failure (sink told to fail)",
    5: "5.7.1 Message refused (sink told to fail)",
}


@dataclass(frozen=True)
class ReceivedEmail:
    """One message the SMTP sink accepted: envelope and parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


class _Controller(Controller):
    """An aiosmtpd controller that learns its port when asked to listen on port 0."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None and self.server.sockets:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """A real SMTP server that stores every message it accepts; optionally STARTTLS, TLS, AUTH."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        ssl_context: ssl.SSLContext | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._tls_context = tls_context
        self._ssl_context = ssl_context
        self._credentials = credentials
        self._lock = threading.Lock()
        self._messages: list[ReceivedEmail] = []
        self._fail_code: int | None = None
        self._controller: _Controller | None = None

    @property
    def port(self) -> int:
        """Return the port listened on (fixed at the first start)."""
        return self._port

    @property
    def messages(self) -> list[ReceivedEmail]:
        """Return a copy of the messages accepted so far."""
        with self._lock:
            return list(self._messages)

    def fail_with(self, code: int | None) -> None:
        """Answer every DATA with SMTP `code` (e.g. 451, 550) until called with None."""
        with self._lock:
            self._fail_code = code

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._lock:
            self._messages.clear()

    def start(self) -> Self:
        """Start listening (again on the same port after a stop); return self."""
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self._port,
            "ssl_context": self._ssl_context,
        }
        if self._tls_context is not None:
            kwargs["tls_context"] = self._tls_context
        if self._credentials is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self._tls_context is not None or self._ssl_context is not None,
            )
        controller = _Controller(self, **kwargs)
        controller.start()
        self._port = controller.port
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening; the port is kept for the next start()."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """Return success only for a known username with its password."""
        if isinstance(auth_data, LoginPassword) and self._credentials is not None:
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if self._credentials.get(login) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Return the SMTP answer to one message, storing it unless told to fail."""
        with self._lock:
            code = self._fail_code
        if code is not None:
            return str(code) + " " + _SMTP_FAILURES.get(code // 100, "Sink told to fail")
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        parsed = email.message_from_bytes(raw, policy=DEFAULT_POLICY)
        assert isinstance(parsed, EmailMessage)
        received = ReceivedEmail(str(envelope.mail_from), list(envelope.rcpt_tos), parsed, raw)
        with self._lock:
            self._messages.append(received)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedEmail]:
        """Return the messages once at least `count` arrived; raise TimeoutError otherwise."""
        return _wait(lambda: self.messages, count, timeout)


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request the webhook sink got: path, headers (lower-case names), body, answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int


class WebhookSink:
    """A real HTTP server that records every POST/PUT; it can be told to fail the next ones."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._attempts: list[ReceivedRequest] = []
        self._failures: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """Return the port listened on (fixed at the first start)."""
        return self._port

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:40123/."""
        return "http://" + self.host + ":" + str(self._port) + "/"

    @property
    def attempts(self) -> list[ReceivedRequest]:
        """Return every request received, failed ones included."""
        with self._lock:
            return list(self._attempts)

    @property
    def deliveries(self) -> list[ReceivedRequest]:
        """Return the requests that were answered 200."""
        return [request for request in self.attempts if request.status == 200]

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` requests with HTTP `status`."""
        with self._lock:
            self._failures.extend([status] * count)

    def clear(self) -> None:
        """Forget the requests received so far and any pending failures."""
        with self._lock:
            self._attempts.clear()
            self._failures.clear()

    def start(self) -> Self:
        """Start serving in a thread (again on the same port after a stop); return self."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self.host, self._port), self._handler_class())
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="webhook-sink", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; the port is kept for the next start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Return the deliveries once at least `count` arrived; raise TimeoutError otherwise."""
        return _wait(lambda: self.deliveries, count, timeout)

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        """Store one request and return the status to answer."""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            status = self._failures.pop(0) if self._failures else 200
            self._attempts.append(ReceivedRequest(method, path, headers, body, parsed, status))
        return status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """Return a request handler class bound to this sink."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = sink._record(self.command, self.path, headers, body)
                answer = b'{"ok":true}' if status == 200 else b'{"ok":false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("webhook sink: %s", format % args)

        return Handler


def _wait(get: Callable[[], list[T]], count: int, timeout: float) -> list[T]:
    """Return get() once it holds at least `count` items; raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        items = get()
        if len(items) >= count:
            return items
        if time.monotonic() > deadline:
            raise TimeoutError(f"expected {count} arrival(s), got {len(items)}")
        time.sleep(0.02)


def _interrupt(signum: int, frame: object) -> None:
    """Return never: turn SIGTERM into KeyboardInterrupt so the sinks close their ports."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run both sinks until interrupted, printing each arrival; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--webhook-port", type=int, default=8026)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with (
        SmtpSink(args.host, args.smtp_port) as smtp,
        WebhookSink(args.host, args.webhook_port) as hook,
    ):
        print(f"SMTP sink on {args.host}:{smtp.port}; webhook sink at {hook.url}", flush=True)
        seen_mail = seen_hook = 0
        try:
            while True:
                mails, requests = smtp.messages, hook.attempts
                for mail in mails[seen_mail:]:
                    print(
                        "email  ", mail.message["Message-ID"], mail.message["Subject"], flush=True
                    )
                for request in requests[seen_hook:]:
                    key = request.headers.get("idempotency-key", "-")
                    print("webhook", request.status, request.path, key, flush=True)
                seen_mail, seen_hook = len(mails), len(requests)
                time.sleep(0.2)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
