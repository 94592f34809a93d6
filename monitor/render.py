"""One alert as data (`AlertMessage`, its JSON payload) and as subject, text, HTML and markdown.

Scraped text (titles, names, excerpts, diffs) is only ever concatenated, never used as a format
string, and is escaped for HTML and markdown, so a hostile title cannot inject markup.

Payload schema, version 1 (what webhooks receive and the outbox stores)::

    {
      "schema_version": 1,
      "idempotency_key": str,           # stable per alert; also the webhook Idempotency-Key
      "kind": "new" | "changed" | "health" | "test" | "digest",
      "title": str, "url": str,
      "source_id": str, "source_name": str,
      "published_at": str | null,       # ISO 8601 with offset, e.g. "2024-05-01T10:00:00+08:00"
      "topics": [{"name": str, "score": float,
                  "matched": {group: [term, ...]}, "evidence": str | [str],
                  "label": str, "group_labels": {group: str}}],   # labels from the topics file
      "parties": [str],
      "excerpt": str,                   # first ~200 characters of the body
      "diff": str | null,               # unified diff, "changed" alerts only
      "entries": [payload, ...],        # the alerts of a "digest" (without schema_version)
      "reposts": [{"title": str, "url": str, "source_id": str}]   # a digest entry's reposts
    }
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

SCHEMA_VERSION = 1
CST = timezone(timedelta(hours=8), "CST")
KINDS = ("new", "changed", "health", "test", "digest")

_SUBJECT_MAX = 150
_DIFF_MAX_LINES = {"text": 200, "html": 200, "markdown": 40}
# Inline markup anywhere; block markup (heading, list, quote) only where a line could start.
_MARKDOWN_INLINE = re.compile(r"([\\`*_~\[\]()<>|!])")
_MARKDOWN_LINE_START = re.compile(r"^(?:()([#+\-=>])|(\d+)([.)])(?=\s|$))")


@dataclass(frozen=True)
class AlertMessage:
    """One alert to send: the post, why it matched, and a diff for changed posts."""

    idempotency_key: str
    kind: str
    title: str
    url: str
    source_id: str
    source_name: str
    published_at: datetime | None = None
    topics: list[dict[str, Any]] = field(default_factory=list)
    parties: list[str] = field(default_factory=list)
    excerpt: str = ""
    diff: str | None = None
    entries: list[AlertMessage] = field(default_factory=list)
    # Other posts of the same story (reposts), each {title, url, source_id}; shown in digests.
    reposts: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {KINDS}")

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON-serialisable payload (schema in this module's docstring)."""
        payload = {"schema_version": SCHEMA_VERSION}
        payload.update(self._fields())
        return payload

    def _fields(self) -> dict[str, Any]:
        """Return the payload without its schema_version."""
        return {
            "idempotency_key": self.idempotency_key,
            "kind": self.kind,
            "title": self.title,
            "url": self.url,
            "source_id": self.source_id,
            "source_name": self.source_name,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "topics": [dict(topic) for topic in self.topics],
            "parties": list(self.parties),
            "excerpt": self.excerpt,
            "diff": self.diff,
            "entries": [entry._fields() for entry in self.entries],
            "reposts": [dict(repost) for repost in self.reposts],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AlertMessage:
        """Return the message a payload of schema version 1 describes."""
        version = payload.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"alert payload schema_version {version!r} is not supported")
        published = payload.get("published_at")
        return cls(
            idempotency_key=str(payload["idempotency_key"]),
            kind=str(payload["kind"]),
            title=str(payload.get("title") or ""),
            url=str(payload.get("url") or ""),
            source_id=str(payload.get("source_id") or ""),
            source_name=str(payload.get("source_name") or ""),
            published_at=datetime.fromisoformat(published) if published else None,
            topics=list(payload.get("topics") or []),
            parties=[str(party) for party in payload.get("parties") or []],
            excerpt=str(payload.get("excerpt") or ""),
            diff=payload.get("diff"),
            entries=[cls.from_payload(entry) for entry in payload.get("entries") or []],
            reposts=[
                {key: str(value) for key, value in repost.items()}
                for repost in payload.get("reposts") or []
            ],
        )


def make_digest(messages: list[AlertMessage], period: str) -> AlertMessage:
    """Return one "digest" message holding `messages`; its key depends only on their keys."""
    keys = "\n".join(sorted(message.idempotency_key for message in messages))
    names = sorted({topic.get("name", "") for m in messages for topic in m.topics} - {""})
    return AlertMessage(
        idempotency_key="digest-" + hashlib.sha256(keys.encode()).hexdigest()[:32],
        kind="digest",
        title=period + " " + str(len(messages)) + " 条公告",
        url="",
        source_id="",
        source_name="",
        topics=[{"name": name} for name in names],
        entries=list(messages),
    )


# --- plain pieces -----------------------------------------------------------------------------


def one_line(text: str) -> str:
    """Return `text` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def topic_label(topic: dict[str, Any]) -> str:
    """Return the label of a topic from the topics file (its `label`), else its name."""
    return str(topic.get("label") or topic.get("name", ""))


def _prefix(msg: AlertMessage) -> str:
    """Return the bracketed subject prefix for the kind and topics of `msg`."""
    label = "、".join(topic_label(t) for t in msg.topics[:2]) or "公告监测"
    prefixes = {
        "new": label,
        "changed": label + "·内容更新",
        "digest": label + "·汇总",
        "health": "采集异常",
        "test": "测试",
    }
    return "【" + prefixes[msg.kind] + "】"


def _when(published_at: datetime | None) -> str:
    """Return a publish time as Beijing time, or 未知."""
    if published_at is None:
        return "未知"
    if published_at.tzinfo is None:
        return published_at.strftime("%Y-%m-%d %H:%M")
    return published_at.astimezone(CST).strftime("%Y-%m-%d %H:%M") + "（北京时间）"


def _score(topic: dict[str, Any]) -> str:
    """Return the score of a topic as short text, or '' when it has none."""
    score = topic.get("score")
    return f"{score:.2f}" if isinstance(score, int | float) else ""


def _terms(topic: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (group, 'term, term') pairs of what a topic matched."""
    matched = topic.get("matched") or {}
    if not isinstance(matched, dict):
        return []
    labels = topic.get("group_labels") or {}
    return [
        (str(labels.get(group) or group), "、".join(str(t) for t in terms))
        for group, terms in matched.items()
    ]


def _evidence(topic: dict[str, Any]) -> list[str]:
    """Return the evidence sentences of a topic as a list."""
    evidence = topic.get("evidence")
    if not evidence:
        return []
    return [str(evidence)] if isinstance(evidence, str) else [str(e) for e in evidence]


def _clip_diff(diff: str, max_lines: int) -> str:
    """Return at most `max_lines` lines of a diff, noting how many were left out."""
    lines = diff.splitlines()
    if len(lines) <= max_lines:
        return "\n".join(lines)
    return "\n".join(lines[:max_lines]) + "\n… (" + str(len(lines) - max_lines) + " more lines)"


def _safe_href(url: str) -> str | None:
    """Return `url` if it is an http(s) link, else None (no javascript: or data: links)."""
    return url if re.match(r"(?i)^https?://[^\s]+$", url) else None


def render_subject(msg: AlertMessage) -> str:
    """Return the one-line Chinese subject, e.g. 【生物医药合作】<title>."""
    subject = _prefix(msg) + one_line(msg.title)
    return subject if len(subject) <= _SUBJECT_MAX else subject[: _SUBJECT_MAX - 1] + "…"


# --- plain text ----------------------------------------------------------------------------------


def _text_body(msg: AlertMessage) -> list[str]:
    """Return the plain-text lines describing one non-digest message."""
    lines = [_prefix(msg) + one_line(msg.title)]
    if msg.source_name or msg.source_id:
        lines.append(
            "来源：" + msg.source_name + ("（" + msg.source_id + "）" if msg.source_id else "")
        )
    if msg.kind in ("new", "changed"):
        lines.append("发布时间：" + _when(msg.published_at))
    if msg.url:
        lines.append("链接：" + msg.url)
    for topic in msg.topics:
        score = _score(topic)
        lines.append(
            "命中主题："
            + topic_label(topic)
            + " ["
            + str(topic.get("name", ""))
            + "]"
            + ("（得分 " + score + "）" if score else "")
        )
        lines.extend("  " + group + "：" + terms for group, terms in _terms(topic))
        lines.extend("  依据：" + one_line(sentence) for sentence in _evidence(topic))
    if msg.parties:
        lines.append("相关单位：" + "、".join(msg.parties))
    for repost in msg.reposts:
        lines.append("转载：" + one_line(repost.get("title", "")) + " " + repost.get("url", ""))
    if msg.excerpt:
        lines += ["", "摘要：", msg.excerpt.strip()]
    if msg.diff:
        lines += ["", "内容变化：", _clip_diff(msg.diff, _DIFF_MAX_LINES["text"])]
    return lines


def render_text(msg: AlertMessage) -> str:
    """Return the plain-text body of the alert (email text part, console)."""
    if msg.kind != "digest":
        return "\n".join(_text_body(msg)) + "\n"
    parts = [_prefix(msg) + one_line(msg.title)]
    for number, entry in enumerate(msg.entries, start=1):
        parts += ["", "—— " + str(number) + " ——"] + _text_body(entry)
    return "\n".join(parts) + "\n"


# --- HTML -----------------------------------------------------------------------------------------


def _h(text: str) -> str:
    """Return scraped text escaped for HTML element content and attribute values."""
    return html.escape(text, quote=True)


def _html_link(url: str, text: str) -> str:
    """Return an <a> element for an http(s) URL, or the escaped text when the URL is not one."""
    href = _safe_href(url)
    if href is None:
        return _h(text)
    return '<a href="' + _h(href) + '">' + _h(text) + "</a>"


def _html_body(msg: AlertMessage) -> list[str]:
    """Return the HTML fragments describing one non-digest message."""
    rows: list[tuple[str, str]] = []
    if msg.source_name or msg.source_id:
        source_id = " (" + _h(msg.source_id) + ")" if msg.source_id else ""
        rows.append(("来源", _h(msg.source_name) + source_id))
    if msg.kind in ("new", "changed"):
        rows.append(("发布时间", _h(_when(msg.published_at))))
    if msg.url:
        rows.append(("链接", _html_link(msg.url, msg.url)))
    for topic in msg.topics:
        score = _score(topic)
        detail = _h(topic_label(topic)) + (" (" + score + ")" if score else "")
        for group, terms in _terms(topic):
            detail += "<br>" + _h(group) + "：" + _h(terms)
        for sentence in _evidence(topic):
            detail += "<br><i>" + _h(one_line(sentence)) + "</i>"
        rows.append(("命中主题", detail))
    if msg.parties:
        rows.append(("相关单位", _h("、".join(msg.parties))))
    if msg.reposts:
        links = [_html_link(r.get("url", ""), one_line(r.get("title", ""))) for r in msg.reposts]
        rows.append(("转载", "<br>".join(links)))
    parts = ["<h2>" + _h(_prefix(msg)) + _html_link(msg.url, one_line(msg.title)) + "</h2>"]
    parts.append('<table cellpadding="4">')
    parts += [
        '<tr><th align="left" valign="top">' + k + "</th><td>" + v + "</td></tr>" for k, v in rows
    ]
    parts.append("</table>")
    if msg.excerpt:
        parts.append('<p style="white-space:pre-wrap">' + _h(msg.excerpt.strip()) + "</p>")
    if msg.diff:
        parts.append("<h3>内容变化</h3>" + _html_diff(msg.diff))
    return parts


def _html_diff(diff: str) -> str:
    """Return a unified diff as an escaped <pre>, added lines green and removed lines red."""
    out = []
    for line in _clip_diff(diff, _DIFF_MAX_LINES["html"]).splitlines():
        header = line.startswith(("+++", "---", "@@"))
        added, removed = line.startswith("+") and not header, line.startswith("-") and not header
        colour = "#1a7f37" if added else "#cf222e" if removed else ""
        escaped = _h(line)
        out.append(
            '<span style="color:' + colour + '">' + escaped + "</span>" if colour else escaped
        )
    return '<pre style="white-space:pre-wrap">' + "\n".join(out) + "</pre>"


def render_html(msg: AlertMessage) -> str:
    """Return the HTML body of the alert (email HTML part); all scraped text is escaped."""
    parts = ['<html><head><meta charset="utf-8"></head><body>']
    if msg.kind == "digest":
        parts.append("<h2>" + _h(_prefix(msg) + one_line(msg.title)) + "</h2>")
        for entry in msg.entries:
            parts += ["<hr>"] + _html_body(entry)
    else:
        parts += _html_body(msg)
    parts.append('<p style="color:#888">此邮件由公告监测程序自动发送。</p></body></html>')
    return "\n".join(parts)


# --- markdown (IM) ---------------------------------------------------------------------------------


def md_escape(text: str) -> str:
    """Return scraped text with markdown control characters backslash-escaped, on one line."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", one_line(text))
    return _MARKDOWN_LINE_START.sub(_escape_line_start, escaped)


def _escape_line_start(match: re.Match[str]) -> str:
    """Return a block marker (#, -, 1.) with a backslash before its markup character."""
    digits, marker = match.group(3) or "", match.group(2) or match.group(4)
    return digits + "\\" + marker


def _md_url(url: str) -> str:
    """Return an http(s) URL made safe inside markdown link parentheses."""
    return url.replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def _md_fence(text: str) -> str:
    """Return `text` in a fenced code block whose fence is longer than any backtick run inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return fence + "\n" + text + "\n" + fence


def _markdown_body(msg: AlertMessage, heading: str) -> list[str]:
    """Return the markdown lines describing one non-digest message."""
    href = _safe_href(msg.url)
    title = md_escape(msg.title)
    title_link = "[" + title + "](" + _md_url(href) + ")" if href else title
    lines = [heading + " " + md_escape(_prefix(msg)) + title_link, ""]
    if msg.source_name or msg.source_id:
        lines.append("- **来源**：" + md_escape(msg.source_name or msg.source_id))
    if msg.kind in ("new", "changed"):
        lines.append("- **发布时间**：" + _when(msg.published_at))
    for topic in msg.topics:
        score = _score(topic)
        terms = "；".join(md_escape(g) + "：" + md_escape(t) for g, t in _terms(topic))
        lines.append(
            "- **命中主题**："
            + md_escape(topic_label(topic))
            + ("（" + score + "）" if score else "")
            + ("；" + terms if terms else "")
        )
    if msg.parties:
        lines.append("- **相关单位**：" + md_escape("、".join(msg.parties)))
    for repost in msg.reposts:
        lines.append(
            "- **转载**："
            + md_escape(one_line(repost.get("title", "")))
            + " "
            + md_escape(repost.get("url", ""))
        )
    if msg.excerpt:
        lines += ["", "> " + md_escape(msg.excerpt)]
    if msg.diff:
        lines += [
            "",
            "**内容变化**：",
            "",
            _md_fence(_clip_diff(msg.diff, _DIFF_MAX_LINES["markdown"])),
        ]
    return lines


def render_markdown(msg: AlertMessage) -> str:
    """Return the markdown body of the alert for IM channels; scraped text is escaped."""
    if msg.kind != "digest":
        return "\n".join(_markdown_body(msg, "###")) + "\n"
    lines = ["### " + md_escape(_prefix(msg) + one_line(msg.title))]
    for entry in msg.entries:
        lines += [""] + _markdown_body(entry, "####")
    return "\n".join(lines) + "\n"
