"""The errors the feedback store raises."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A write the store refused; nothing from it was stored."""


class StoreUnavailableError(StoreError):
    """The database cannot be opened, reached or written (down, locked, full, read-only)."""
