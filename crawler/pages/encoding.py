"""Decoding HTML bytes: forced charset, BOM, HTTP header, <meta>, then detection; GB2312/GBK read as GB18030."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Charsets that pages declare for a superset they really use.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "hz-gb-2312": "gb18030",
    "big5": "big5hkscs",
    "cp950": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "ascii": "utf-8",
    "us-ascii": "utf-8",
    "utf8": "utf-8",
}
# Single-byte charsets decode any bytes without error, so a wrong declaration goes unnoticed.
_NEVER_FAIL = {"latin_1", "iso8859-1", "cp1252", "iso8859-15", "cp1251", "cp437"}
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
_XML_ENCODING = re.compile(
    rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Share of replacement characters (among non-ASCII ones) tolerated from a declared charset:
# a truncated response or one corrupt byte should not send a page to detection.
_TOLERATED_ERRORS = 0.005


def canonical_charset(name: str | None) -> str | None:
    """Return the Python codec name to use for a declared charset, or None if unknown."""
    if not name:
        return None
    key = name.strip().strip("\"'").lower()
    key = _SUPERSETS.get(key, key)
    try:
        codec = codecs.lookup(key).name
    except LookupError:
        return None
    return _SUPERSETS.get(codec, codec)


def _as_str(value: Any) -> str:
    """Return a header value (str, bytes or a list of them, as Scrapy gives) as text."""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def header_value(headers: Mapping[Any, Any] | None, name: str) -> str | None:
    """Return the value of header `name` (case-insensitive; str or bytes keys), or None."""
    if not headers:
        return None
    wanted = name.lower()
    try:
        items: Iterable[tuple[Any, Any]] = headers.items()
        for key, value in items:
            key_text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
            if key_text.lower() == wanted:
                return _as_str(value)
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def header_charset(headers: Mapping[Any, Any] | None) -> str | None:
    """Return the charset named in the Content-Type header, or None."""
    content_type = header_value(headers, "content-type")
    if not content_type:
        return None
    match = _HEADER_CHARSET.search(content_type)
    return match.group(1) if match else None


def meta_charset(html: bytes) -> str | None:
    """Return the charset declared by <meta charset>, <meta http-equiv> or an XML declaration, or None."""
    head = html[:8192]
    match = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


def _error_share(text: str) -> float:
    """Return the share of replacement characters among the non-ASCII characters of `text`."""
    bad = text.count("\ufffd")
    if not bad:
        return 0.0
    wide = sum(1 for ch in text if ord(ch) > 127)
    return bad / max(wide, 1)


def _try(html: bytes, codec: str) -> str | None:
    """Return `html` decoded with `codec` when it decodes cleanly (or nearly), else None."""
    try:
        return html.decode(codec)
    except UnicodeDecodeError:
        pass
    except (LookupError, UnicodeError, ValueError):
        # Unknown, or a codec that is no page encoding: idna, punycode, undefined.
        return None
    try:
        text = html.decode(codec, "replace")
    except (UnicodeError, ValueError):
        return None
    return text if _error_share(text) <= _TOLERATED_ERRORS else None


def _utf8_with_wide_chars(html: bytes) -> str | None:
    """Return `html` decoded when it is valid UTF-8 and contains multi-byte characters, else None."""
    if html.isascii():
        return None
    try:
        return html.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _detect(html: bytes) -> str | None:
    """Return the charset charset-normalizer finds most likely for `html`, or None."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    try:
        best = from_bytes(html[:200_000]).best()
    except Exception:  # noqa: BLE001 - detection is best effort on arbitrary bytes
        return None
    return canonical_charset(best.encoding) if best is not None else None


def decode_html(
    html: bytes, headers: Mapping[Any, Any] | None = None, declared: str | None = None
) -> tuple[str, str]:
    """Return the text of `html` and the encoding used to decode it."""
    text, codec, _ = decode_html_utf8(html, headers, declared)
    return text, codec


def decode_html_utf8(
    html: bytes, headers: Mapping[Any, Any] | None = None, declared: str | None = None
) -> tuple[str, str, bytes | None]:
    """Return `decode_html`'s text and encoding, and `html` when the text is its UTF-8 decoding.

    The third value (else None) is the text's UTF-8 encoding, which the parser then reads
    without encoding the text again.
    """
    if not html:
        return "", "utf-8", None
    if isinstance(html, str):
        return html, "utf-8", None
    for bom, codec in _BOMS:
        if html.startswith(bom):
            return html.decode(codec, "replace"), codec, None
    candidates: list[str] = []
    for name in (declared, header_charset(headers), meta_charset(html)):
        codec = canonical_charset(name)
        if codec and codec not in candidates:
            candidates.append(codec)
    # Valid multi-byte UTF-8 practically never arises by chance from GBK or Big5 text,
    # so it beats any declaration (sites that switched to UTF-8 often keep an old <meta>).
    utf8 = _utf8_with_wide_chars(html)
    if utf8 is not None:
        return utf8, "utf-8", html if type(html) is bytes else None
    for codec in candidates:
        if codec in _NEVER_FAIL and not html.isascii():
            continue
        text = _try(html, codec)
        if text is not None:
            return text, codec, None
    detected = _detect(html)
    if detected and detected not in _NEVER_FAIL:
        text = _try(html, detected)
        if text is not None:
            return text, detected, None
    for codec in ("gb18030", "big5hkscs"):
        text = _try(html, codec)
        if text is not None:
            return text, codec, None
    fallback = next((c for c in candidates if c not in _NEVER_FAIL), None) or "gb18030"
    return html.decode(fallback, "replace"), fallback, None
