"""Login tokens for annotators and admins.

A token is ``SELECTOR.SECRET``: 12 random bytes naming the row (hex) and 32
random bytes of secret (URL-safe base64), both from :mod:`secrets`. The store
keeps the selector and the SHA-256 of the secret, never the secret: whoever
reads the database (or a backup) cannot log in. With 256 bits of entropy a
plain SHA-256 is enough; a slow password hash protects low-entropy secrets,
and these are not. The check compares hashes with :func:`hmac.compare_digest`
so its time does not depend on how many leading characters matched.

``rlhfkit annotators add NAME`` prints the token once; it cannot be shown again
(add another token with ``--rotate``, or revoke with ``rlhfkit annotators revoke``).

Signing in on the pages opens a *session*: the cookie holds a fresh random id
(32 bytes), never the token, and the store keeps the id's SHA-256, the token it
was opened with and when it expires. Every request with the cookie looks the
session up (no cache), so signing out, revoking the token or rotating it ends
the session at the next request. Scripts keep sending the token itself
(``Authorization: Bearer``), checked through :class:`TokenVerifier`'s short cache.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.feedback_records import Annotator

TOKEN_RE = re.compile(r"^[0-9a-f]{24}\.[A-Za-z0-9_-]{43}$")
"""The exact shape of a token: anything else is refused before the store is asked."""

SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
"""The exact shape of a session id (32 random bytes, URL-safe base64)."""

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
"""Annotator names: they become ids in the store and appear in URLs and exports."""


@dataclass(frozen=True)
class Principal:
    """Who a request comes from."""

    annotator_id: str
    role: str  # "annotator" | "admin"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def secret_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh token: ``(token, selector, secret_sha256)``. Only the last two are stored."""
    selector = secrets.token_hex(12)
    secret = secrets.token_urlsafe(32)
    return f"{selector}.{secret}", selector, secret_sha256(secret)


def add_annotator(store: FeedbackStore, name: str, admin: bool = False, rotate: bool = False) -> str:
    """Register a person with a new login token and return the token (to be shown once).

    Refuses a name that already has a live token unless ``rotate`` (then the old
    tokens are revoked and a new one is made).
    """
    if not NAME_RE.match(name):
        raise StoreError(
            f"annotator name {name!r} must start with a letter or digit and use only letters, digits and _.@- "
            "(at most 64 characters)"
        )
    live = [t for t in store.tokens(name) if t.revoked_at is None]
    if live and not rotate:
        raise StoreError(
            f"annotator {name!r} already has a token; use --rotate to replace it or `annotators revoke {name}`"
        )
    if rotate:
        store.revoke_tokens(name)
    token, selector, digest = new_token()
    store.add_token(Annotator(id=name, kind="person", name=name), selector, digest, "admin" if admin else "annotator")
    return token


class TokenVerifier:
    """Checks tokens against the store, remembering answers for ``ttl_s`` seconds.

    A hot endpoint does not read the database on every request; a revoked token
    stops working within ``ttl_s``. Both memories are bounded and forget their
    least recently used entries first: real tokens (at most ``max_known``; only a
    selector that is in the store gets in), and selectors the store does not know
    (at most ``max_unknown``), so a flood of made-up tokens costs one lookup each
    and never pushes a real token out.
    """

    def __init__(
        self, store: FeedbackStore, ttl_s: float = 5.0, max_known: int = 10_000, max_unknown: int = 1_024
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_known = max_known
        self.max_unknown = max_unknown
        self._known: OrderedDict[str, tuple[float, str, Principal | None]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str | None) -> Principal | None:
        """The token's owner, or None for a missing, malformed, unknown, wrong or revoked token."""
        if not token or not TOKEN_RE.match(token):
            return None
        selector, secret = token.split(".", 1)
        digest = secret_sha256(secret)
        now = time.monotonic()
        with self._lock:
            if self._unknown.get(selector, 0.0) > now:
                self._unknown.move_to_end(selector)
                return None
            hit = self._known.get(selector)
            if hit is not None and hit[0] > now:
                self._known.move_to_end(selector)
        if hit is None or hit[0] <= now:
            hit = self._look_up(selector, now)
            if hit is None:
                return None
        _, expected, principal = hit
        if principal is None or not hmac.compare_digest(expected.encode(), digest.encode()):
            return None
        return principal

    def _look_up(self, selector: str, now: float) -> tuple[float, str, Principal | None] | None:
        stored = self.store.token(selector)
        with self._lock:
            if stored is None:
                self._known.pop(selector, None)
                self._remember(self._unknown, selector, now + self.ttl_s, self.max_unknown)
                return None
            entry: tuple[float, str, Principal | None] = (
                now + self.ttl_s,
                stored.secret_sha256,
                None if stored.revoked_at is not None else Principal(stored.annotator_id, stored.role),
            )
            self._unknown.pop(selector, None)
            self._remember(self._known, selector, entry, self.max_known)
        return entry

    @staticmethod
    def _remember(memory: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > limit:
            memory.popitem(last=False)

    def forget(self) -> None:
        """Drop everything remembered (the next check of each token reads the store)."""
        with self._lock:
            self._known.clear()
            self._unknown.clear()

    def remembered(self) -> tuple[int, int]:
        """How many (real, unknown) selectors are remembered now."""
        with self._lock:
            return len(self._known), len(self._unknown)


def session_id_sha256(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def open_session(store: FeedbackStore, token: str, ttl_s: float) -> str:
    """Open a web session for an already verified ``token``; returns the new session id (for the cookie only)."""
    session_id = secrets.token_urlsafe(32)
    selector = token.split(".", 1)[0]
    store.add_session(session_id_sha256(session_id), selector, time.time() + ttl_s)
    return session_id


def session_principal(store: FeedbackStore, session_id: str | None) -> Principal | None:
    """Who a live session belongs to, or None (no such session, signed out, expired, token revoked)."""
    if not session_id or not SESSION_RE.match(session_id):
        return None
    stored = store.session(session_id_sha256(session_id))
    return None if stored is None else Principal(stored.annotator_id, stored.role)


def end_session(store: FeedbackStore, session_id: str | None) -> bool:
    """Sign out: the session stops working at once. False if there was no such session."""
    if not session_id or not SESSION_RE.match(session_id):
        return False
    return store.end_session(session_id_sha256(session_id))
