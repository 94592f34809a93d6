"""A WAF-style JavaScript cookie challenge in front of a replayed site (liangjiang uses one).

A request without a valid clearance cookie gets a 202 page whose inline script computes the
cookie from a nonce in the page, sets it and reloads; a request carrying it gets the real page.
`rotate()` forgets every nonce issued so far, so earned cookies stop working (as when a WAF
rotates its key). Only a client that runs the script (a browser) gets past it.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from replay.sites.base import Page
from replay.store import now_cst

CHALLENGE_STATUS = 202
COOKIE_NAME = "__waf_clearance"
COOKIE_MAX_AGE = 86400
_MODULUS = 1_000_003
_KEPT_NONCES = 10_000  # issued nonces remembered (oldest forgotten first)


def challenge_answer(nonce: str) -> int:
    """Return the number the challenge script computes from `nonce` (31-hash mod 1000003)."""
    value = 0
    for char in nonce:
        value = (value * 31 + ord(char)) % _MODULUS
    return value


def challenge_html(
    nonce: str, cookie_name: str = COOKIE_NAME, max_age: int = COOKIE_MAX_AGE
) -> str:
    """Return the challenge page: its script sets the clearance cookie and reloads at once."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title></title></head><body>'
        "<script>(function(){"
        f'var n="{nonce}",h=0;'
        f"for(var i=0;i<n.length;i++){{h=(h*31+n.charCodeAt(i))%{_MODULUS};}}"
        f'document.cookie="{cookie_name}="+n+"-"+h+"; path=/; max-age={max_age}";'
        "location.reload();})();</script></body></html>"
    )


class CookieChallenge:
    """The challenge of one site: issues nonces, checks Cookie headers, rotates."""

    def __init__(self, cookie_name: str = COOKIE_NAME, max_age: int = COOKIE_MAX_AGE) -> None:
        """Challenge with cookie `cookie_name`, which the script sets for `max_age` seconds."""
        self.cookie_name = cookie_name
        self.max_age = max_age
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.rotations = 0

    def _issue(self) -> str:
        """Return a fresh nonce and remember it."""
        nonce = secrets.token_hex(8)
        with self._lock:
            self._nonces[nonce] = None
            while len(self._nonces) > _KEPT_NONCES:
                self._nonces.popitem(last=False)
        return nonce

    def page(self) -> Page:
        """Return a 202 challenge page with a fresh nonce (never cached, no validators)."""
        text = challenge_html(self._issue(), self.cookie_name, self.max_age)
        return Page(
            text.encode("utf-8"),
            "text/html; charset=utf-8",
            now_cst(),
            status=CHALLENGE_STATUS,
            headers={"Cache-Control": "no-store"},
        )

    def passes(self, cookie_header: str | None) -> bool:
        """Return True when the Cookie header carries a clearance this challenge issued."""
        for part in (cookie_header or "").split(";"):
            name, _, value = part.strip().partition("=")
            nonce, _, answer = value.partition("-")
            if name == self.cookie_name and answer == str(challenge_answer(nonce)):
                with self._lock:
                    if nonce in self._nonces:
                        return True
        return False

    def solved_cookie(self) -> str:
        """Return a valid `name=value` pair, as the script would set it (for plain-HTTP tests)."""
        nonce = self._issue()
        return f"{self.cookie_name}={nonce}-{challenge_answer(nonce)}"

    def rotate(self) -> None:
        """Forget every nonce issued so far: every earned cookie stops working."""
        with self._lock:
            self._nonces.clear()
            self.rotations += 1
