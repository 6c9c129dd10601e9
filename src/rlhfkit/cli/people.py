"""``rlhfkit serve`` and ``rlhfkit annotators``: the annotation web app for a run, and who may sign in to it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rlhfkit.errors import ConfigError

if TYPE_CHECKING:
    from rlhfkit.feedback.store import FeedbackStore
    from rlhfkit.feedback.web import AnnotationSettings


def serve_command(args: argparse.Namespace) -> int:
    """Serve the annotation web app on the run's store until interrupted."""
    from rlhfkit.app.server import AppConfig, serve, store_url_for
    from rlhfkit.feedback.store import FeedbackStore

    url = store_url_for(args.run_dir, args.db)
    store = FeedbackStore(url)  # one that cannot be opened (read-only, down, full) is one line and exit code 2
    try:
        settings, from_run = run_settings(args, store)
        _say_if_no_one_can_sign_in(store, args.run_dir)
    except BaseException:
        store.close()
        raise
    lo, hi = settings.rating_scale
    scale = f"ratings {lo:g}-{hi:g}, labels {' / '.join(settings.label_choices)}"
    if from_run:
        print(f"people answer as the run's config asks (task {settings.task or '?'}; {scale})", file=sys.stderr)
    else:
        print(
            f"no run has written its settings to this store: people see generic instructions and {scale} "
            "(--rating-scale, --labels); a run writes its own when it starts: then restart serve",
            file=sys.stderr,
        )
    config = AppConfig(
        store_url=url,
        media_dir=Path(args.run_dir) / "media",
        run_dir=Path(args.run_dir),
        max_body_bytes=args.max_body,
        secure_cookies=args.secure_cookies,
        prerender=not args.no_prerender,
        rating_scale=settings.rating_scale,
        label_choices=settings.label_choices,
    )
    print(f"serving {url.split('@')[-1]} on http://{args.host}:{args.port}/", file=sys.stderr)
    try:
        serve(config, args.host, args.port, store=store)
    finally:
        store.close()
    return 0


def run_settings(args: argparse.Namespace, store: FeedbackStore) -> tuple[AnnotationSettings, bool]:
    """The run's settings for people, from its store (True); ``--rating-scale``/``--labels`` only for a store no
    run has written (False). A flag that disagrees with the run is an error (:func:`settings_or_fallback`)."""
    from rlhfkit.feedback.web import settings_or_fallback

    scale = _pair_of_floats(args.rating_scale, "--rating-scale") if args.rating_scale else None
    labels = tuple(c.strip() for c in args.labels.split(",") if c.strip()) if args.labels else None
    try:
        return settings_or_fallback(store, scale, labels)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _add_annotator_hint(run_dir: str | Path) -> str:
    return f"`rlhfkit annotators add NAME --run {run_dir}` (it prints their token; add --admin for an admin)"


def _say_if_no_one_can_sign_in(store: FeedbackStore, run_dir: str | Path) -> None:
    """Tell the person starting ``serve`` when the store holds no live token (they can add one while it serves)."""
    if not any(t.revoked_at is None for t in store.tokens()):
        print(f"no annotators yet, so no one can sign in: add one with {_add_annotator_hint(run_dir)}", file=sys.stderr)


def _pair_of_floats(text: str, flag: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag}: expected LOW,HIGH such as 1,7, got {text!r}") from None
    if not low < high:
        raise ConfigError(f"{flag}: LOW must be below HIGH, got {text!r}")
    return low, high


def annotators_command(args: argparse.Namespace) -> int:
    """Add (printing the token once), revoke or list the people who sign in."""
    from rlhfkit.app.auth import add_annotator
    from rlhfkit.app.server import store_url_for
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(store_url_for(args.run, args.db))
    try:
        if args.action == "add":
            token = add_annotator(store, args.name, admin=args.admin, rotate=args.rotate)
            role = "admin" if args.admin else "annotator"
            print(f"{role} {args.name!r} added; the token is shown only this once:", file=sys.stderr)
            print(token)
        elif args.action == "revoke":
            n = store.revoke_tokens(args.name)
            print(f"revoked {n} token{'s' if n != 1 else ''} of {args.name!r}; their answers stay", file=sys.stderr)
        else:
            counts = store.feedback_counts()
            if not store.tokens():
                print(f"no annotators in {args.run}; add one with {_add_annotator_hint(args.run)}", file=sys.stderr)
            for t in store.tokens():
                state = "revoked" if t.revoked_at is not None else "active"
                print(f"{t.annotator_id}\t{t.role}\t{state}\t{counts.get(t.annotator_id, 0)} answers")
    finally:
        store.close()
    return 0
