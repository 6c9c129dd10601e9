"""Login tokens and web sessions as the store keeps them (see :mod:`rlhfkit.app.auth`)."""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_ROLES = ("annotator", "admin")
"""Roles a login token can carry: an annotator sees their own queue and answers; an admin sees everything."""


@dataclass(frozen=True)
class StoredToken:
    """A login token's stored half: who it belongs to, never the secret."""

    selector: str
    secret_sha256: str
    annotator_id: str
    role: str
    created_at: float
    revoked_at: float | None
