"""How the app is set up: :class:`AppConfig` (``rlhfkit serve`` fills it from its arguments).

Its own module, below the server and the routes, so that both can name it
(the routes reach it through :data:`rlhfkit.app.deps.Config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhfkit.feedback.store import AnnotationSettings


@dataclass(frozen=True)
class AppConfig:
    """How the app is set up (``rlhfkit serve`` fills it from its arguments)."""

    store_url: str
    """SQLAlchemy URL of the feedback store."""
    media_dir: Path
    """Where rendered control segments are cached (``RUN_DIR/media``)."""
    max_body_bytes: int = 64 * 1024
    """Largest request body accepted; larger ones get 413 before they are read in full."""
    token_ttl_s: float = 5.0
    """How long a checked ``Bearer`` token is remembered (a revoked token stops working within this)."""
    session_ttl_s: float = 12 * 3600.0
    """How long a sign-in on the pages lasts; signing out or revoking the token ends it at once."""
    max_waiting_renders: int = 4
    """Renders of control segments that may run or wait at once; a request beyond that gets 503."""
    secure_cookies: bool = False
    """Mark the login cookie Secure (set it when the app is served over HTTPS)."""
    prerender: bool = True
    """Render the control segments of queued queries in the background, ahead of the people who will see them."""
    prerender_ahead: int = 16
    """Pending queries per person kept rendered ahead (see :mod:`rlhfkit.app.prerender`)."""
    prerender_poll_s: float = 5.0
    """Seconds between the pre-renderer's looks at the store for new queries."""
    run_dir: Path | None = None
    """The run folder, for the admin page's ``metrics.jsonl`` and ``report.html``; None = ``media_dir``'s parent."""
    # The run writes its instructions, rating scale and label choices to the store
    # (feedback/store/control.py: AnnotationSettings); the app uses those. The three fields below
    # are only a fallback for a store no run has written, defaulting to what a run with
    # a default config writes.
    rating_scale: tuple[float, float] = AnnotationSettings.rating_scale
    """Fallback scale of rating queries, (low, high), for a store no run has written settings to."""
    label_choices: tuple[str, ...] = AnnotationSettings.label_choices
    """Fallback choices of label queries ("none of these" is always offered too), for a store no run has written."""
    label_ordinal: bool = True
    """Fallback: whether the label choices are ordered worst to best."""
