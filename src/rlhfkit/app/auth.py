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
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.types import Annotator

TOKEN_RE = re.compile(r"^[0-9a-f]{24}\.[A-Za-z0-9_-]{43}$")
"""The exact shape of a token: anything else is refused before the store is asked."""

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
    """Checks tokens against the store, remembering good ones for ``ttl_s`` seconds.

    The cache keeps the answer per selector (with the hash to compare against),
    so a hot endpoint does not read the database on every request; a revoked
    token stops working within ``ttl_s``.
    """

    def __init__(self, store: FeedbackStore, ttl_s: float = 5.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str, Principal | None]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str | None) -> Principal | None:
        """The token's owner, or None for a missing, malformed, unknown, wrong or revoked token."""
        if not token or not TOKEN_RE.match(token):
            return None
        selector, secret = token.split(".", 1)
        digest = secret_sha256(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(selector)
        if hit is None or hit[0] < now:
            stored = self.store.token(selector)
            if stored is None or stored.revoked_at is not None:
                entry: tuple[float, str, Principal | None] = (now + self.ttl_s, "", None)
            else:
                entry = (now + self.ttl_s, stored.secret_sha256, Principal(stored.annotator_id, stored.role))
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[selector] = entry
            hit = entry
        _, expected, principal = hit
        if principal is None or not hmac.compare_digest(expected.encode(), digest.encode()):
            return None
        return principal
