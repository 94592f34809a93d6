"""HTTP side of the replay: routes `/<site_id>/...` to the sites, answers conditional requests
with 304, serves the admin API under `/_admin/`, and logs every site request."""

from __future__ import annotations

import hashlib
import json
import sys
import traceback
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from replay.challenge import CookieChallenge
from replay.protocol import Request, Response
from replay.sites import Page
from replay.store import now_cst, parse_cst

if TYPE_CHECKING:
    from replay.server import ReplayServer


def etag_of(page: Page) -> str:
    """Return an nginx-looking ETag (`"<mtime hex>-<hash>"`) that changes with the content."""
    digest = hashlib.sha1(page.body).hexdigest()[:10]
    return f'"{int(page.last_modified.timestamp()):x}-{digest}"'


def http_date(moment: datetime) -> str:
    """Return `moment` as an HTTP date in GMT."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def site_challenge(site: object) -> CookieChallenge | None:
    """Return the cookie challenge in front of `site` (its `challenge` attribute), if any."""
    challenge = getattr(site, "challenge", None)
    return challenge if isinstance(challenge, CookieChallenge) else None


class AdminError(Exception):
    """A bad admin request; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ReplayHandler:
    """Answers one request to a `ReplayServer` (replay/protocol.py reads and writes the wire)."""

    def __init__(self, replay: ReplayServer, request: Request) -> None:
        self.replay = replay
        self.request = request
        self.command = request.command
        self.path = request.path
        self.headers = request.headers
        self.response: Response | None = None
        self._log_next_response = False

    def respond(self) -> Response:
        """Return the answer to the request (a 500 if answering it crashed)."""
        if self.command == "HEAD":
            self._dispatch(send_body=False)
        elif self.command in ("GET", "POST", "DELETE"):
            self._dispatch(send_body=True)
        else:
            self._send_bytes(501, b"not implemented", "text/plain", {}, True)
        assert self.response is not None
        return self.response

    # ----- routing ---------------------------------------------------------------------------

    def _dispatch(self, send_body: bool) -> None:
        """Route the request and answer it, turning crashes into 500s."""
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        # Site requests are logged as their response starts, before the client can read it
        # and send its next request, so the log keeps the order the client saw.
        self._log_next_response = not path.startswith("/_admin/")
        try:
            if path.startswith("/_admin/"):
                self._admin(path, send_body)
                return
            self._site_request(path, parse_qs(parts.query, keep_blank_values=True), send_body)
        except Exception:  # noqa: BLE001 - a replay must answer, and say why it failed
            traceback.print_exc(file=sys.stderr)
            self._send_bytes(500, b"internal error", "text/plain", {}, send_body)

    def _site_request(self, path: str, query: dict[str, list[str]], send_body: bool) -> int:
        """Answer a GET/HEAD on a site path and return the status sent."""
        if self.command not in ("GET", "HEAD"):
            self._send_bytes(405, b"method not allowed", "text/plain", {}, send_body)
            return 405
        if path in ("/", "/index.html"):
            page = Page(self.replay.index_html().encode(), "text/html; charset=utf-8", now_cst())
            return self._send_page(page, send_body)
        site_id, _, rest = path.lstrip("/").partition("/")
        site = self.replay.sites.get(site_id)
        if site is None:
            self._send_bytes(404, b"404 Not Found", "text/plain", {}, send_body)
            return 404
        challenge = site_challenge(site)
        if challenge is not None and not challenge.passes(self.headers.get("Cookie")):
            return self._send_page(challenge.page(), send_body)
        cache = self.replay.page_cache if site.cacheable else None
        if cache is not None:
            version = site.column.version
            kept = cache.get(site_id)
            if kept is None or kept[0] != version:  # the column changed: every page may have
                kept = cache[site_id] = (version, {})
            cached = kept[1].get(self.path)
            if cached is not None:
                return self._send_page(cached[0], send_body, cached[1])
        prefix = f"/{site_id}"
        page = site.route("/" + rest, query, prefix) or site.not_found(prefix)
        if cache is not None:
            kept[1][self.path] = (page, etag_of(page))
        return self._send_page(page, send_body)

    def _send_page(self, page: Page, send_body: bool, etag: str | None = None) -> int:
        """Send `page`, or 304 if the client's copy is current; return the status sent."""
        headers = dict(page.headers)
        if page.status == 200:
            etag = etag or etag_of(page)
            headers["ETag"] = etag
            headers["Last-Modified"] = http_date(page.last_modified)
            if self._not_modified(etag, page.last_modified):
                self._send_bytes(304, b"", None, headers, send_body=False)
                return 304
        self._send_bytes(page.status, page.body, page.content_type, headers, send_body)
        return page.status

    def _not_modified(self, etag: str, last_modified: datetime) -> bool:
        """Return whether the request's validators match (If-None-Match wins, RFC 9110)."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [tag.strip() for tag in if_none_match.split(",")]
            return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since:
            try:
                since = parsedate_to_datetime(if_modified_since)
            except (TypeError, ValueError):
                return False
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            return int(last_modified.timestamp()) <= int(since.timestamp())
        return False

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str],
        send_body: bool,
    ) -> None:
        """Set the complete response (logging it first when it answers a site request)."""
        if self._log_next_response:
            self._log_next_response = False
            self.replay._record(self.command, self.path, status, dict(self.headers.items()))
        fields = [("Content-Type", content_type)] if content_type else []
        fields += headers.items()
        if status != 304:
            fields.append(("Content-Length", str(len(body))))
        self.response = Response(status, fields, body, send_body and status != 304)

    # ----- admin API -------------------------------------------------------------------------

    def _admin(self, path: str, send_body: bool) -> None:
        """Answer an admin request with JSON (never logged)."""
        try:
            result = self._admin_result(path)
            status = 200
        except AdminError as exc:
            result, status = {"error": str(exc)}, exc.status
        except KeyError as exc:
            result, status = {"error": str(exc.args[0] if exc.args else exc)}, 404
        except (TypeError, ValueError) as exc:
            result, status = {"error": str(exc)}, 400
        body = json.dumps(result, ensure_ascii=False, default=str).encode("utf-8")
        self._send_bytes(status, body, "application/json; charset=utf-8", {}, send_body)

    def _read_json(self) -> dict[str, Any]:
        """Return the JSON object in the request body."""
        data = json.loads(self.request.body.decode("utf-8") or "{}")
        if not isinstance(data, dict):
            raise AdminError(400, "expected a JSON object")
        return data

    def _admin_result(self, path: str) -> Any:
        """Return the JSON-able result of an admin request; raise on bad input."""
        parts = path.strip("/").split("/")[1:]
        if parts == ["requests"]:
            if self.command == "GET":
                return [record.as_dict() for record in self.replay.requests]
            if self.command in ("DELETE", "POST"):
                self.replay.clear_log()
                return {"cleared": True}
        if parts == ["requests", "clear"] and self.command == "POST":
            self.replay.clear_log()
            return {"cleared": True}
        if parts == ["sites"] and self.command == "GET":
            return self.replay.describe()
        if len(parts) == 2 and self.command == "POST":
            site_id, action = parts
            if site_id not in self.replay.sites:
                raise AdminError(404, f"unknown site {site_id!r}")
            return self._mutate(site_id, action, self._read_json())
        raise AdminError(404, f"no admin endpoint {self.command} {path}")

    def _mutate(self, site_id: str, action: str, data: dict[str, Any]) -> dict[str, Any]:
        """Run publish/edit/delete from a JSON body and return the JSON answer."""
        if action == "publish":
            if not isinstance(data.get("title"), str) or not isinstance(
                data.get("paragraphs"), list
            ):
                raise AdminError(400, "publish needs 'title' (string) and 'paragraphs' (list)")
            published_at = data.get("published_at")
            url = self.replay.publish(
                site_id,
                data["title"],
                [str(p) for p in data["paragraphs"]],
                published_at=parse_cst(published_at) if published_at else None,
                source=data.get("source"),
                attachments=data.get("attachments"),
            )
            return {"url": url}
        if action == "rotate_challenge":
            self.replay.rotate_challenge(site_id)
            return {"rotated": site_id}
        target = data.get("url", data.get("post_id"))
        if target is None:
            raise AdminError(400, f"{action} needs 'url'")
        if action == "edit":
            paragraphs = data.get("paragraphs")
            self.replay.edit(
                site_id,
                target,
                title=data.get("title"),
                paragraphs=[str(p) for p in paragraphs] if paragraphs is not None else None,
            )
            return {"url": self.replay.article_url(site_id, target)}
        if action == "delete":
            self.replay.delete(site_id, target)
            return {"deleted": str(target)}
        raise AdminError(404, f"unknown action {action!r}")
