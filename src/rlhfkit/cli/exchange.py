"""``rlhfkit export`` and ``rlhfkit import``: pending queries out to Label Studio or Argilla, their answers back."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rlhfkit.cli.people import run_settings

if TYPE_CHECKING:
    from rlhfkit.feedback.formats import ImportReport, Scales
    from rlhfkit.feedback.store import FeedbackStore
    from rlhfkit.feedback_records import Annotator, Feedback


def _interop_scales(args: argparse.Namespace, store: FeedbackStore) -> Scales:
    """The rating scale and label choices people answer on: the run's, as ``serve`` reads them."""
    from rlhfkit.feedback.formats import Scales

    settings, _ = run_settings(args, store)
    return Scales(rating=settings.rating_scale, labels=settings.label_choices, ordinal=settings.label_ordinal)


def export_command(args: argparse.Namespace) -> int:
    """Write the pending queries as Label Studio projects or Argilla datasets, one per kind."""
    from rlhfkit.app.export_media import segment_renderer
    from rlhfkit.app.server import store_url_for
    from rlhfkit.feedback.formats import export_argilla, export_label_studio
    from rlhfkit.feedback.store import FeedbackStore

    out = Path(args.out)
    render = segment_renderer(args.run_dir)
    store = FeedbackStore(store_url_for(args.run_dir, args.db))
    try:
        scales = _interop_scales(args, store)
        if args.format == "labelstudio":
            report = export_label_studio(store, out, scales=scales, render=render, media_url=args.media_url)
            what = "Label Studio task"
            layout = "label_config.xml (its labelling interface) and tasks.json"
        else:
            report = export_argilla(store, out, scales=scales, render=render)
            what, layout = "Argilla record", "an Argilla dataset (rg.Dataset.from_disk loads it)"
    finally:
        store.close()
    n = report.total
    if not n:
        print(f"no pending queries: nothing written to {out}")
    else:
        per_project = ", ".join(f"{out / name} ({c})" for name, c in report.projects.items())
        print(f"wrote {n} {what}{'s' if n != 1 else ''}, one project per folder: {per_project}; each holds {layout}")
    if report.media and args.format == "labelstudio":
        print(
            f"{report.media} video{'s' if report.media != 1 else ''} in {out / 'media'}, referred to as "
            f"'{args.media_url}<generation id>.webm': Label Studio must reach them by that URL "
            "(serve the folder, e.g. as local files storage, and set --media-url)"
        )
    elif report.media:
        print(f"{report.media} video{'s' if report.media != 1 else ''} embedded in the records")
    if report.skipped:
        print(
            f"left out {len(report.skipped)} correction quer{'ies' if len(report.skipped) != 1 else 'y'} of control "
            f"segments ({', '.join(report.skipped[:5])}{', ...' if len(report.skipped) > 5 else ''}): "
            "neither tool can answer them; use `rlhfkit serve`"
        )
    return 0


def import_command(args: argparse.Namespace) -> int:
    """Store the answers of a Label Studio export or Argilla datasets, all or nothing."""
    from rlhfkit.app.server import store_url_for
    from rlhfkit.feedback.formats import InteropError, import_label_studio
    from rlhfkit.feedback.store import FeedbackStore

    url = store_url_for(args.run_dir, args.db)
    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such file or folder")
    store = FeedbackStore(url)
    try:
        scales = _interop_scales(args, store)
        if args.format == "labelstudio":
            if data.is_dir():
                raise InteropError(f"{data}: a folder; give the JSON file that Label Studio exported")
            try:
                report = import_label_studio(data, store, scales)
            except UnicodeDecodeError as e:
                raise InteropError(f"{data}: not UTF-8 text (byte {e.start})") from None
        else:
            report = _import_argilla_folders(data, store, scales)
    finally:
        store.close()
    print(
        f"{data}: stored {report.stored} answer{'s' if report.stored != 1 else ''}, "
        f"{report.duplicates} duplicate{'s' if report.duplicates != 1 else ''} (already stored, left as they were); "
        f"annotators: {', '.join(report.annotators) or 'none'}"
    )
    return 0


def _import_argilla_folders(path: Path, store: FeedbackStore, scales: Scales) -> ImportReport[Feedback]:
    """Import one Argilla dataset, or every dataset in the folder ``rlhfkit export`` wrote; all or nothing."""
    from rlhfkit.feedback.formats import ImportReport, InteropError, import_argilla
    from rlhfkit.feedback.store import StoreError

    def is_dataset(p: Path) -> bool:
        return (p / "state.json").is_file() or (p / "dataset_dict.json").is_file()

    folders = [path]
    if path.is_dir() and not is_dataset(path):
        folders = sorted(p for p in path.iterdir() if p.is_dir() and is_dataset(p)) or [path]
    if len(folders) == 1:
        return import_argilla(folders[0], store, scales)
    held = _HeldBackStore(store)
    for folder in folders:  # every row of every dataset is checked before one answer is stored
        import_argilla(folder, cast("FeedbackStore", held), scales)
    if not held.records:
        return ImportReport()
    try:
        results = store.record_batch(held.records, all_or_nothing=True)
    except StoreError as e:
        raise InteropError(f"nothing imported: {e}") from None
    for annotator in held.annotators.values():
        store.add_annotator(annotator)
    stored = sum(1 for r in results if r is True)
    return ImportReport(
        records=tuple(held.records),
        stored=stored,
        duplicates=len(results) - stored,
        annotators=tuple(sorted(held.annotators)),
    )


class _HeldBackStore:
    """A store that reads through to ``store`` and holds back what an import would write to it."""

    def __init__(self, store: FeedbackStore) -> None:
        self._store = store
        self.records: list[Feedback] = []
        self.annotators: dict[str, Annotator] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record_batch(self, feedback: Sequence[Feedback], all_or_nothing: bool = False) -> list[bool]:
        self.records.extend(feedback)
        return [True] * len(feedback)

    def add_annotator(self, annotator: Annotator) -> None:
        self.annotators[annotator.id] = annotator
