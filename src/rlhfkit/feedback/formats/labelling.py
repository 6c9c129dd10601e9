"""What the Label Studio and Argilla formats share: pending queries grouped into projects, media, and the import checks.

A labelling project (a Label Studio project, an Argilla dataset) has one
interface, so the pending queries are split by kind and by domain: text queries
show a prompt and completions, control queries show videos. A
:class:`Project` is one such group, written to ``OUT/<name>``.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.feedback.formats.common import ImportReport, InteropError
from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.feedback_records import (
    Annotator,
    Comparison,
    Correction,
    Feedback,
    InvalidFeedbackError,
    Label,
    Language,
    Ranking,
    Rating,
    check_correction,
)
from rlhfkit.types import Generation, Query, Segment, Text

MediaRenderer = Callable[[Generation], bytes]
"""The WebM video of a control generation's segment, as bytes.

``rlhfkit export`` passes one that renders with the web app's renderer and its
``RUN_DIR/media`` cache (:mod:`rlhfkit.app.export_media`); this package never
imports the app, so a caller without a renderer cannot export control queries.
"""

MEDIA_DIR = "media"
MEDIA_SUFFIX = ".webm"
MEDIA_TYPE = "video/webm"


@dataclass(frozen=True)
class Scales:
    """What the stored queries leave implicit: the rating scale and the label choices shown to people."""

    rating: tuple[float, float] = (1.0, 7.0)
    labels: tuple[str, ...] = ("bad", "good")
    ordinal: bool = True


DEFAULT_SCALES = Scales()


@dataclass(frozen=True)
class ExportReport:
    projects: Mapping[str, int]
    """Tasks (Label Studio) or records (Argilla) written per project folder ``OUT/<name>``."""
    media: int = 0
    """Control segments rendered: video files in ``OUT/media`` (Label Studio), or embedded in the records (Argilla)."""
    skipped: tuple[str, ...] = ()
    """Pending queries left out: corrections of control segments, which neither tool can answer (a correction
    of a segment is a new trajectory, not an edit of text)."""

    @property
    def total(self) -> int:
        return sum(self.projects.values())


@dataclass(frozen=True)
class Project:
    """The pending queries of one kind and domain: one Label Studio project or Argilla dataset, ``OUT/<name>``.

    ``name`` is the kind, or ``KIND-control`` for the control queries of a kind
    that also has text queries in the same store (only a store shared by two runs).
    """

    name: str
    kind: str
    control: bool
    queries: tuple[Query, ...]


def plain(v: str | Sequence[Mapping[str, str]]) -> str:
    """A prompt or completion as plain text (chat turns as "role: content" lines)."""
    return v if isinstance(v, str) else "\n".join(f"{m['role']}: {m['content']}" for m in v)


def item_names(kind: str, n: int) -> tuple[str, ...]:
    """The names the items of a query go by in both tools: ``a``/``b`` for a pair, ``item_i`` in a ranking, ``item``."""
    if kind in ("comparison", "language"):
        return ("a", "b")
    if kind == "ranking":
        return tuple(f"item_{i + 1}" for i in range(n))
    return ("item",)


def shared_prompt(names: Sequence[str], texts: Sequence[Text]) -> str:
    """The prompt shown once above a query's completions; if they answer different prompts, each one, named."""
    prompts = [plain(t.prompt) for t in texts]
    if all(p == prompts[0] for p in prompts):
        return prompts[0]
    return "\n\n".join(f"[{name}] {p}" for name, p in zip(names, prompts, strict=True))


def pending_projects(
    store: FeedbackStore, kinds: Sequence[str] | None
) -> tuple[list[Project], dict[str, Generation], tuple[str, ...]]:
    """The unanswered queries as projects (sorted by kind, text first), their generations, and the ids left out."""
    answered = {f.query_id for f in store.feedback()}
    queries = [q for q in store.queries() if q.id not in answered and (kinds is None or q.kind in kinds)]
    gens = store.generations([g for q in queries for g in q.generation_ids])
    groups: dict[tuple[str, bool], list[Query]] = {}
    skipped: list[str] = []
    for q in queries:
        domains = {isinstance(gens[g].content, Segment) for g in q.generation_ids}
        if len(domains) != 1:
            raise InteropError(f"query {q.id} shows both text and control generations; no labelling interface fits it")
        control = domains.pop()
        if control and q.kind == "correction":
            skipped.append(q.id)
            continue
        groups.setdefault((q.kind, control), []).append(q)
    projects = [
        Project(f"{kind}-control" if control and (kind, False) in groups else kind, kind, control, tuple(qs))
        for (kind, control), qs in sorted(groups.items())
    ]
    return projects, gens, tuple(skipped)


def render_media(
    projects: Sequence[Project], gens: Mapping[str, Generation], render: MediaRenderer | None
) -> dict[str, bytes]:
    """The video of every control generation the projects show, by generation id, each rendered once."""
    ids = list(dict.fromkeys(g for p in projects if p.control for q in p.queries for g in q.generation_ids))
    if not ids:
        return {}
    if render is None:
        raise InteropError(
            f"{len(ids)} control segment{'s' if len(ids) != 1 else ''} to show, but no renderer was given "
            "(pass render=...; `rlhfkit export` renders them as the web app does)"
        )
    return {g: render(gens[g]) for g in ids}


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file under a temporary name and rename it, so that no reader sees half of it.

    The file gets the permissions of any new file (the umask's), not a private
    temporary file's: a web server may have to read the videos.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- import: rows checked against the store, stored all or nothing -----------------------


class Row:
    """Where a value came from, for error messages."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, problem: str) -> InteropError:
        return InteropError(f"{self.where}: {field}: {problem}")


def get(obj: Any, key: str, row: Row, field: str, kind: type | tuple[type, ...]) -> Any:
    """``obj[key]``, checked to be a ``kind``; a missing key or another type is an error naming ``field``."""
    if not isinstance(obj, dict) or key not in obj:
        raise row.fail(field, "missing")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise row.fail(field, f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__} {value!r:.60}")
    return value


def check_query(store_queries: dict[str, Query], query_id: Any, row: Row, field: str) -> Query:
    if not isinstance(query_id, str) or query_id not in store_queries:
        raise row.fail(field, f"no stored query {query_id!r}")
    return store_queries[query_id]


def build(
    q: Query,
    annotator: str,
    answer: dict[str, Any],
    gens: dict[str, Generation],
    scales: Scales,
    row: Row,
    field: str,
) -> Feedback:
    """A feedback record from a tool's answer, checked as the store will check it.

    ``answer`` holds, per kind: ``choice`` (and ``confidence``), ``rating``,
    ``label``, ``ranked`` (generation ids, best first) or ``text``.
    """
    try:
        if q.kind == "comparison":
            choice = answer["choice"]
            conf = answer.get("confidence")
            if choice not in ("A", "B", "equal", "incomparable"):
                raise row.fail(field, f"{choice!r} is not one of 'A', 'B', 'equal', 'incomparable'")
            if conf is not None and choice in ("A", "B"):
                if not isinstance(conf, int | float) or not 0.5 <= float(conf) <= 1.0 or not math.isfinite(conf):
                    raise row.fail(field + ".confidence", f"{conf!r} is not a probability in [0.5, 1]")
                if float(conf) < 1.0:
                    mu_a = float(conf) if choice == "A" else 1.0 - float(conf)
                    return Comparison.make(q.id, "graded", annotator, mu_a=mu_a)
            return Comparison.make(q.id, choice, annotator)
        if q.kind == "rating":
            value = answer["rating"]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise row.fail(field, f"a rating is a number, got {value!r:.60}")
            return Rating.make(q.id, float(value), annotator, scale=scales.rating)
        if q.kind == "label":
            return Label.make(q.id, str(answer["label"]), annotator, choices=scales.labels, ordinal=scales.ordinal)
        if q.kind == "ranking":
            ranked = answer["ranked"]
            if not isinstance(ranked, list) or sorted(ranked) != sorted(q.generation_ids):
                raise row.fail(field, f"must order exactly the query's generations {list(q.generation_ids)}")
            return Ranking.make(q.id, ranked, annotator)
        if q.kind == "language":
            return Language.make(q.id, str(answer["text"]), annotator)
        if q.kind == "correction":
            original = gens[q.generation_ids[0]].content
            if not isinstance(original, Text):
                raise row.fail(field, "only text corrections can be imported (a control segment needs its states)")
            corrected = Text(original.prompt, str(answer["text"]), info=original.info)
            check_correction(original, corrected)
            return Correction.make(q.id, corrected, annotator)
    except (InvalidFeedbackError, ValueError) as e:
        if isinstance(e, InteropError):
            raise
        raise row.fail(field, str(e)) from None
    raise row.fail("kind", f"unknown query kind {q.kind!r}")


def store_all(store: FeedbackStore, records: list[Feedback], people: dict[str, str]) -> ImportReport[Feedback]:
    """Store every record in one transaction (duplicates left as they were), then the people who gave them."""
    if not records:
        return ImportReport()
    try:
        results = store.record_batch(records, all_or_nothing=True)
    except StoreError as e:
        raise InteropError(f"nothing imported: {e}") from None
    for pid, name in sorted(people.items()):
        store.add_annotator(Annotator(id=pid, kind="person", name=name))
    stored = sum(1 for r in results if r is True)
    return ImportReport(
        records=tuple(records), stored=stored, duplicates=len(results) - stored, annotators=tuple(sorted(people))
    )
