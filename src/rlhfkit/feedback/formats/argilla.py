"""Argilla 2.x: one dataset per kind, ``OUT/KIND``, in Argilla's own on-disk layout; answers from its flat records.

Each folder holds what ``rg.Dataset.to_disk`` writes, so that
``rg.Dataset.from_disk("OUT/KIND", client=client)`` creates the dataset on an
Argilla server and logs its records in one call:

- ``.argilla/settings.json``: the fields, questions and metadata as
  ``rg.Settings.to_json`` writes them (a question's ``type`` and options under
  ``settings``); ``rg.Settings.from_json`` reads it;
- ``.argilla/dataset.json``: the dataset's name (``rlhfkit-<folder>``) and guidelines;
- ``records.json``: one record per query, its ``id`` the query id, its
  ``fields``, ``metadata`` (``round``) and ``suggestions``;

and beside them the same records as a ``datasets`` dataset (``save_to_disk``;
``datasets.load_from_disk("OUT/KIND")`` reads it) in the flat layout of
``dataset.records.to_datasets()``: ``id``, a column per field, ``round``, and
per question ``Q.responses``, ``Q.responses.users``, ``Q.responses.status``
(empty until people answer), with ``correction.suggestion`` (``.score``,
``.agent``) holding the completion to edit.

========== =========================== ============================================
kind       fields                       questions
========== =========================== ============================================
comparison ``prompt``, ``a``, ``b``     ``preference`` (label: A, B, equal,
                                        incomparable); ``confidence`` (rating 5-10,
                                        optional: tenths of P(chosen is better))
rating     ``prompt``, ``item``         ``rating`` (rating, the exported scale; Argilla
                                        offers whole numbers 0-10)
label      ``prompt``, ``item``         ``label`` (label: the choices, "none of these")
ranking    ``prompt``, ``item_1``..     ``ranking`` (ranking of ``item_1``.. ``item_k``)
language   ``prompt``, ``a``, ``b``     ``comment`` (text)
correction ``prompt``, ``item``         ``correction`` (text; suggested: the completion)
========== =========================== ============================================

Text fields are plain text (``prompt`` once; chat turns as "role: content"
lines). **Videos**: control queries have no ``prompt``, and their items are
custom fields (``rg.CustomField``) whose value is ``{"src": "data:video/webm;base64,..."}``
and whose template shows it in a ``<video>`` element: the records carry their
videos, so nothing needs serving. Control segments are rendered by the
caller's :data:`MediaRenderer`.

**Answers** come back as the dataset's flat records saved to disk, e.g.
``dataset.records.to_datasets().save_to_disk("answers/comparison")`` (or a
copy of the exported folder with the response columns filled): every
``submitted`` response to the kind's question is stored, by annotator
``argilla:<user id>``; other statuses (draft, discarded) are left out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlhfkit.feedback.formats.common import ImportReport, InteropError
from rlhfkit.feedback.formats.labelling import (
    DEFAULT_SCALES,
    MEDIA_TYPE,
    ExportReport,
    MediaRenderer,
    Project,
    Row,
    Scales,
    build,
    check_query,
    item_names,
    pending_projects,
    plain,
    render_media,
    shared_prompt,
    store_all,
    write_atomic,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import NONE_OF_THESE, Feedback
from rlhfkit.types import Generation, Query

QUESTION = {
    "comparison": "preference",
    "rating": "rating",
    "label": "label",
    "ranking": "ranking",
    "language": "comment",
    "correction": "correction",
}
"""The question that holds each kind's answer."""

_VIDEO_TEMPLATE = (
    '<video src="{{{{record.fields.{name}.src}}}}" controls loop muted preload="metadata" '
    'style="max-width: 100%"></video>'
)
_SUGGESTION_AGENT = "rlhfkit: the completion as generated"


def export_argilla(
    store: FeedbackStore,
    out_dir: str | Path,
    kinds: Sequence[str] | None = None,
    scales: Scales = DEFAULT_SCALES,
    render: MediaRenderer | None = None,
) -> ExportReport:
    """Write the pending queries as Argilla datasets, one per project (``OUT/<project>``; see the module docstring).

    An export with control queries and no renderer is refused, and so is a
    rating scale Argilla cannot show; both before anything is written.
    """
    from datasets import Dataset

    out = Path(out_dir)
    projects, gens, skipped = pending_projects(store, kinds)
    if any(p.kind == "rating" for p in projects):
        _rating_values(scales)
    media = render_media(projects, gens, render)
    written: dict[str, int] = {}
    for p in projects:
        settings = argilla_settings(p, scales)
        records = [_record(q, p, gens, media) for q in p.queries]
        target = out / p.name
        table = _flat_table(records, settings)
        _save_quietly(Dataset.from_dict(table, features=_features(table, settings)), target)
        write_atomic(target / "records.json", json.dumps(records, ensure_ascii=False) + "\n")
        write_atomic(target / ".argilla" / "settings.json", json.dumps(settings, indent=1) + "\n")
        dataset = {"name": f"rlhfkit-{p.name}", "status": "draft", "guidelines": settings["guidelines"]}
        write_atomic(target / ".argilla" / "dataset.json", json.dumps(dataset, indent=1) + "\n")
        written[p.name] = len(records)
    return ExportReport(written, len(media), skipped)


def _save_quietly(dataset: Any, target: Path) -> None:
    """``save_to_disk`` without its progress bar (a few records; the command prints what it wrote)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        dataset.save_to_disk(str(target))
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _rating_values(scales: Scales) -> list[int]:
    low, high = scales.rating
    if not (float(low).is_integer() and float(high).is_integer() and 0 <= low < high <= 10):
        raise InteropError(
            f"rating scale {low:g}..{high:g}: Argilla's rating question offers whole numbers from 0 to 10; "
            "choose a --rating-scale within them"
        )
    return list(range(int(low), int(high) + 1))


def _with_settings(
    name: str, title: str, settings: dict[str, Any], required: bool = True, **extra: Any
) -> dict[str, Any]:
    """A field or question as Argilla serialises it: its type and options under ``settings``, the type again beside."""
    out = {"name": name, "title": title, "description": None, "required": required, **extra}
    return {**out, "settings": settings, "type": settings["type"]}


def _options(values: Sequence[Any], texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    if texts is None:
        return [{"value": v} for v in values]
    return [{"value": v, "text": t} for v, t in zip(values, texts, strict=True)]


def argilla_settings(p: Project, scales: Scales) -> dict[str, Any]:
    """The dataset settings of a project, in the layout ``rg.Settings.to_json`` writes.

    A ranking has a field per item of its longest query; those beyond its
    shortest are optional, since a record lacks them.
    """
    sizes = [len(q.generation_ids) for q in p.queries]
    names = item_names(p.kind, max(sizes))
    titles = {"a": "A", "b": "B", "item": "Video" if p.control else "Completion"}
    fields = [] if p.control else [_with_settings("prompt", "Prompt", {"type": "text", "use_markdown": False})]
    for i, name in enumerate(names):
        title, required = titles.get(name, name.removeprefix("item_")), i < min(sizes)
        if p.control:
            video = {"type": "custom", "template": _VIDEO_TEMPLATE.format(name=name), "advanced_mode": False}
            fields.append(_with_settings(name, title, video, required=required))
        else:
            fields.append(_with_settings(name, title, {"type": "text", "use_markdown": False}, required=required))
    question = QUESTION[p.kind]
    if p.kind == "comparison":
        labels = ["A", "B", "equal", "incomparable"]
        choice = {"type": "label_selection", "options": _options(labels, labels), "visible_options": len(labels)}
        tenths = {"type": "rating", "options": _options(range(5, 11))}
        questions = [
            _with_settings(question, "Which is better?", choice),
            _with_settings("confidence", "How sure are you that it is better? (optional)", tenths, required=False),
        ]
        questions[1]["description"] = "In tenths: 5 is a coin flip, 10 is certain."
    elif p.kind == "rating":
        low, high = scales.rating
        rating = {"type": "rating", "options": _options(_rating_values(scales))}
        questions = [_with_settings(question, f"Rate it from {low:g} to {high:g}", rating)]
    elif p.kind == "label":
        labels = [*scales.labels, NONE_OF_THESE]
        visible = len(labels) if len(labels) >= 3 else None  # Argilla shows at least 3
        label = {"type": "label_selection", "options": _options(labels, labels), "visible_options": visible}
        questions = [_with_settings(question, "Which label fits?", label)]
    elif p.kind == "ranking":
        ranking = {"type": "ranking", "options": _options(names, [n.removeprefix("item_") for n in names])}
        questions = [_with_settings(question, "Order them, best first", ranking)]
    else:
        title = "What should change, and in which?" if p.kind == "language" else "Edit the completion into a better one"
        questions = [_with_settings(question, title, {"type": "text", "use_markdown": False})]
    return {
        "guidelines": f"rlhfkit {p.kind} queries ({'videos of control segments' if p.control else 'text'}).",
        "questions": questions,
        "fields": fields,
        "vectors": [],
        "metadata": [
            {
                "name": "round",
                "title": "round",
                "settings": {"type": "integer", "min": None, "max": None, "visible_for_annotators": False},
                "visible_for_annotators": False,
            }
        ],
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def _record(q: Query, p: Project, gens: dict[str, Generation], media: dict[str, bytes]) -> dict[str, Any]:
    """One query as an Argilla record in the nested layout of ``Record.to_dict``."""
    items = [gens[g] for g in q.generation_ids]
    names = item_names(q.kind, len(items))
    fields: dict[str, Any] = {}
    if p.control:
        for name, g in zip(names, items, strict=True):
            fields[name] = {"src": f"data:{MEDIA_TYPE};base64,{base64.b64encode(media[g.id]).decode('ascii')}"}
    else:
        fields["prompt"] = shared_prompt(names, [g.text for g in items])
        fields.update({name: plain(g.text.completion) for name, g in zip(names, items, strict=True)})
    suggestions = {}
    if q.kind == "correction":
        suggestions["correction"] = {"value": fields["item"], "score": None, "agent": _SUGGESTION_AGENT}
    meta = {"round": q.round}
    return {"id": q.id, "fields": fields, "metadata": meta, "suggestions": suggestions, "responses": {}, "vectors": {}}


def _flat_table(records: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, list[Any]]:
    """The records as columns, flattened as ``dataset.records.to_datasets()`` flattens them."""
    table: dict[str, list[Any]] = {"id": [r["id"] for r in records]}
    for f in settings["fields"]:
        table[f["name"]] = [r["fields"].get(f["name"]) for r in records]
    table["round"] = [r["metadata"]["round"] for r in records]
    for question in settings["questions"]:
        name = question["name"]
        for suffix in (".responses", ".responses.users", ".responses.status"):
            table[name + suffix] = [[] for _ in records]
        if any(name in r["suggestions"] for r in records):
            for key, suffix in (
                ("value", ".suggestion"),
                ("score", ".suggestion.score"),
                ("agent", ".suggestion.agent"),
            ):
                table[name + suffix] = [r["suggestions"].get(name, {}).get(key) for r in records]
    return table


def _features(table: dict[str, list[Any]], settings: dict[str, Any]) -> Any:
    from datasets import Features, Sequence, Value

    value_type = {"rating": Value("int64"), "ranking": Sequence(Value("string"))}
    questions = {q["name"]: q["type"] for q in settings["questions"]}
    custom = {f["name"] for f in settings["fields"] if f["type"] == "custom"}
    spec: dict[str, Any] = {}
    for name in table:
        if name in custom:
            spec[name] = {"src": Value("string")}
        elif name == "round":
            spec[name] = Value("int64")
        elif name.endswith(".responses"):
            spec[name] = Sequence(value_type.get(questions[name.removesuffix(".responses")], Value("string")))
        elif name.endswith((".responses.users", ".responses.status")):
            spec[name] = Sequence(Value("string"))
        elif name.endswith(".suggestion.score"):
            spec[name] = Value("float64")
        else:
            spec[name] = Value("string")
    return Features(spec)


# -- import ------------------------------------------------------------------------------


def import_argilla(
    dataset_dir: str | Path,
    store: FeedbackStore,
    scales: Scales = DEFAULT_SCALES,
    user_names: dict[str, str] | None = None,
) -> ImportReport[Feedback]:
    """Store the submitted responses of an Argilla dataset's flat records saved to disk; all or nothing.

    Each record's ``id`` is the query it answers; its kind names the question
    read (:data:`QUESTION`). Annotators are ``argilla:<user id>`` (or the name
    ``user_names`` gives the id).
    """
    from datasets import Dataset, load_from_disk

    d = Path(dataset_dir)
    try:
        ds = load_from_disk(str(d))
    except (OSError, ValueError) as e:
        raise InteropError(f"{d}: not a dataset saved with datasets' save_to_disk: {e}") from None
    if not isinstance(ds, Dataset) or "id" not in ds.column_names:
        raise InteropError(f"{d}: expected one dataset of Argilla records with an 'id' column (the query ids)")
    queries = {q.id: q for q in store.queries()}
    ids = [i for i in ds["id"] if i in queries]
    gens = store.generations([g for qid in ids for g in queries[qid].generation_ids])
    records: list[Feedback] = []
    people: dict[str, str] = {}
    names = user_names or {}
    for n, rec in enumerate(ds):
        row = Row(f"{d} (row {n})")
        q = check_query(queries, rec.get("id"), row, "id")
        main = QUESTION[q.kind]
        responses = rec.get(f"{main}.responses") or []
        users = rec.get(f"{main}.responses.users") or []
        status = rec.get(f"{main}.responses.status") or []
        if not (len(responses) == len(users) == len(status)):
            raise row.fail(f"{main}.responses", "responses, users and status must have the same length")
        for i, (value, user, state) in enumerate(zip(responses, users, status, strict=True)):
            if state != "submitted":
                continue
            field = f"{main}.responses[{i}]"
            if not isinstance(user, str) or not user:
                raise row.fail(f"{main}.responses.users[{i}]", "expected a user id")
            annotator = f"argilla:{names.get(user, user)}"
            answer = _answer(q, value, rec, user, row, field)
            records.append(build(q, annotator, answer, gens, scales, row, field))
            people[annotator] = names.get(user, user)
    return store_all(store, records, people)


def _answer(q: Query, value: Any, rec: dict[str, Any], user: str, row: Row, field: str) -> dict[str, Any]:
    if q.kind == "comparison":
        answer: dict[str, Any] = {"choice": value}
        conf_users = rec.get("confidence.responses.users") or []
        if user in conf_users:
            j = conf_users.index(user)
            if (rec.get("confidence.responses.status") or [])[j] == "submitted":
                tenths = rec["confidence.responses"][j]
                if not isinstance(tenths, int) or not 5 <= tenths <= 10:
                    raise row.fail(f"confidence.responses[{j}]", f"{tenths!r} is not a rating from 5 to 10")
                answer["confidence"] = tenths / 10
        return answer
    if q.kind == "rating":
        return {"rating": value}
    if q.kind == "label":
        return {"label": value}
    if q.kind == "ranking":
        names = item_names("ranking", len(q.generation_ids))
        if not isinstance(value, list) or any(v not in names for v in value):
            raise row.fail(field, f"{value!r:.80} is not an order of the items {', '.join(names)}")
        return {"ranked": [q.generation_ids[names.index(v)] for v in value]}
    return {"text": value}
