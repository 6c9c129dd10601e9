"""Label Studio and Argilla: export pending queries to the tools labelling teams use, import their answers.

Both directions go through the store, and answers come back as the same
feedback records the web app and the loop write (:class:`Comparison`,
:class:`Rating`, :class:`Label`, :class:`Ranking`, :class:`Language`,
:class:`Correction` of a text), one per query and annotator: importing the same
file twice stores nothing new.

**Label Studio** (:func:`export_label_studio`, :func:`import_label_studio`):
a JSON list of tasks, ``{"data": {...}}`` each, and ``label_config.xml`` with
one control tag per kind. The answers come back in Label Studio's JSON export:
each task with its ``annotations``, each annotation with ``completed_by`` and a
``result`` list of ``{"from_name", "type", "value"}`` regions:

========== =============== ===================================================
kind       from_name       value
========== =============== ===================================================
comparison ``preference``  ``{"choices": ["A" | "B" | "equal" | "incomparable"]}``
           ``confidence``  ``{"number": p}`` optional, p in [0.5, 1]: a graded
                           answer, P(chosen is better) = p
rating     ``rating``      ``{"rating": n}`` on the exported scale
label      ``label``       ``{"choices": [one of the exported choices, or "none of these"]}``
ranking    ``ranking``     ``{"ranker": {...: [generation ids, best first]}}``
                           (or the list itself)
language   ``comment``     ``{"text": ["..."]}``
correction ``correction``  ``{"text": ["the edited completion"]}`` (text only)
========== =============== ===================================================

**Argilla** (:func:`export_argilla`, :func:`import_argilla`): one dataset per
kind in Argilla's on-disk layout, ``OUT/KIND/.argilla/settings.json`` with the
fields and questions, and the records written with the ``datasets`` library
(``save_to_disk``): an ``id`` (the query id), the text fields, and per question
the columns ``Q.responses``, ``Q.responses.users`` and ``Q.responses.status``
(empty when exported). Import reads every ``submitted`` response.

A bad row stops the import with one :class:`InteropError` naming the file, the
line (Label Studio) or row (Argilla) and the field; nothing is written then:
every row is checked against the store first, and the records are stored in one
transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.types import (
    NONE_OF_THESE,
    Annotator,
    Comparison,
    Correction,
    Feedback,
    Generation,
    InvalidFeedbackError,
    Label,
    Language,
    Query,
    Ranking,
    Rating,
    Segment,
    Text,
    check_correction,
)


class InteropError(ValueError):
    """A file that cannot be imported: the message names the file, line or row, and field. Nothing was stored."""


@dataclass(frozen=True)
class Scales:
    """What the stored queries leave implicit: the rating scale and the label choices shown to people."""

    rating: tuple[float, float] = (1.0, 7.0)
    labels: tuple[str, ...] = ("bad", "good")
    ordinal: bool = True


@dataclass(frozen=True)
class ImportReport:
    stored: int
    """New answers stored."""
    duplicates: int
    """Answers already in the store (the same annotator and query), left as they were."""
    annotators: tuple[str, ...]


def _plain(v: str | Sequence[Mapping[str, str]]) -> str:
    """A prompt or completion as plain text (chat turns as "role: content" lines)."""
    return v if isinstance(v, str) else "\n".join(f"{m['role']}: {m['content']}" for m in v)


def _pending(store: FeedbackStore, kinds: Sequence[str] | None) -> tuple[list[Query], dict[str, Generation]]:
    answered = {f.query_id for f in store.feedback()}
    queries = [q for q in store.queries() if q.id not in answered and (kinds is None or q.kind in kinds)]
    gens = store.generations([g for q in queries for g in q.generation_ids])
    return queries, gens


def _item_fields(prefix: str, g: Generation, media_prefix: str) -> dict[str, str]:
    c = g.content
    if isinstance(c, Segment):
        return {f"{prefix}video": f"{media_prefix}{g.id}.webm"}
    return {f"{prefix}prompt": _plain(c.prompt), f"{prefix}text": _plain(c.completion)}


def _task_data(q: Query, gens: dict[str, Generation], media_prefix: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "query_id": q.id,
        "kind": q.kind,
        "round": q.round,
        "generation_ids": list(q.generation_ids),
    }
    items = [gens[g] for g in q.generation_ids]
    names: tuple[str, ...]
    if q.kind in ("comparison", "language"):
        names = ("a", "b")
    elif q.kind == "ranking":
        names = tuple(str(i + 1) for i in range(len(items)))
    else:
        names = ("",)
    for name, g in zip(names, items, strict=True):
        data.update(_item_fields(f"{name}_" if name else "", g, media_prefix))
    return data


# -- Label Studio ------------------------------------------------------------------------

_LS_CONFIG = """<View>
  <!-- rlhfkit {kind} queries; fields are filled from each task's data -->
{body}
</View>
"""


def _ls_config(kind: str, data: dict[str, Any], scales: Scales) -> str:
    texts = [k for k in data if k.endswith("text") or k.endswith("video")]
    to = texts[0] if texts else "text"
    shown = []
    for k in texts:
        if k.endswith("video"):
            shown.append(f'  <Video name="{k}" value="${k}"/>')
        else:
            shown.append(f'  <Text name="{k.replace("text", "prompt")}" value="${k.replace("text", "prompt")}"/>')
            shown.append(f'  <Text name="{k}" value="${k}"/>')
    if kind == "comparison":
        control = (
            f'  <Choices name="preference" toName="{to}" choice="single" required="true">\n'
            '    <Choice value="A"/><Choice value="B"/><Choice value="equal"/><Choice value="incomparable"/>\n'
            "  </Choices>\n"
            f'  <Number name="confidence" toName="{to}" min="0.5" max="1" step="0.05"/>'
        )
    elif kind == "rating":
        control = f'  <Rating name="rating" toName="{to}" maxRating="{int(scales.rating[1])}"/>'
    elif kind == "label":
        options = "".join(f'<Choice value="{c}"/>' for c in (*scales.labels, NONE_OF_THESE))
        control = f'  <Choices name="label" toName="{to}" choice="single">{options}</Choices>'
    elif kind == "ranking":
        control = f'  <Ranker name="ranking" toName="{to}"/>'
    elif kind == "language":
        control = f'  <TextArea name="comment" toName="{to}"/>'
    else:
        control = f'  <TextArea name="correction" toName="{to}" editable="true"/>'
    return _LS_CONFIG.format(kind=kind, body="\n".join([*shown, control]))


def export_label_studio(
    store: FeedbackStore,
    out_dir: str | Path,
    kinds: Sequence[str] | None = None,
    scales: Scales = Scales(),
    media_prefix: str = "media/",
) -> int:
    """Write the pending queries as Label Studio tasks; returns how many.

    ``OUT/tasks.json`` holds every task; ``OUT/label_config_KIND.xml`` one
    labelling interface per kind. Control segments are referred to as
    ``MEDIA_PREFIX<generation id>.webm`` (``rlhfkit serve`` renders them into
    ``RUN_DIR/media``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    queries, gens = _pending(store, kinds)
    tasks = []
    configs: dict[str, str] = {}
    for q in queries:
        data = _task_data(q, gens, media_prefix)
        if q.kind == "rating":
            data["scale"] = list(scales.rating)
        if q.kind == "label":
            data["choices"] = list(scales.labels)
        tasks.append({"data": data})
        configs.setdefault(q.kind, _ls_config(q.kind, data, scales))
    (out / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for kind, xml in configs.items():
        (out / f"label_config_{kind}.xml").write_text(xml, encoding="utf-8")
    return len(tasks)


def _json_elements(path: Path) -> list[tuple[int, Any]]:
    """The elements of a JSON list (or JSON lines) with the line each starts on."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip(0)
    out: list[tuple[int, Any]] = []
    try:
        if pos < len(text) and text[pos] == "[":
            pos = skip(pos + 1)
            while pos < len(text) and text[pos] != "]":
                value, end = decoder.raw_decode(text, pos)
                out.append((line_of(pos), value))
                pos = skip(end)
                if pos < len(text) and text[pos] == ",":
                    pos = skip(pos + 1)
                elif pos < len(text) and text[pos] != "]":
                    raise InteropError(f"{path}:{line_of(pos)}: expected ',' or ']' between tasks")
            if pos >= len(text):
                raise InteropError(f"{path}:{line_of(pos)}: the task list is not closed with ']'")
        else:
            while pos < len(text):
                value, end = decoder.raw_decode(text, pos)
                out.append((line_of(pos), value))
                pos = skip(end)
    except json.JSONDecodeError as e:
        raise InteropError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    return out


class _Row:
    """Where a value came from, for error messages."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, problem: str) -> InteropError:
        return InteropError(f"{self.where}: {field}: {problem}")


def _get(obj: Any, key: str, row: _Row, field: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise row.fail(field, "missing")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise row.fail(field, f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__} {value!r:.60}")
    return value


def _check_query(store_queries: dict[str, Query], query_id: Any, row: _Row, field: str) -> Query:
    if not isinstance(query_id, str) or query_id not in store_queries:
        raise row.fail(field, f"no stored query {query_id!r}")
    return store_queries[query_id]


def _build(
    q: Query,
    annotator: str,
    answer: dict[str, Any],
    gens: dict[str, Generation],
    scales: Scales,
    row: _Row,
    field: str,
) -> Feedback:
    """A feedback record from a tool's answer, checked as the store will check it."""
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


def _store_all(store: FeedbackStore, records: list[Feedback], people: dict[str, str]) -> ImportReport:
    if not records:
        return ImportReport(0, 0, ())
    try:
        results = store.record_batch(records, all_or_nothing=True)
    except StoreError as e:
        raise InteropError(f"nothing imported: {e}") from None
    for pid, name in sorted(people.items()):
        store.add_annotator(Annotator(id=pid, kind="person", name=name))
    stored = sum(1 for r in results if r is True)
    return ImportReport(stored=stored, duplicates=len(results) - stored, annotators=tuple(sorted(people)))


def _ls_answer(kind: str, results: Any, row: _Row, field: str) -> dict[str, Any] | None:
    """The answer in one Label Studio annotation's ``result`` list (None if it holds none)."""
    if not isinstance(results, list):
        raise row.fail(field, "expected a list of regions")
    by_name: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, region in enumerate(results):
        name = _get(region, "from_name", row, f"{field}[{i}].from_name", str)
        by_name[name] = (i, _get(region, "value", row, f"{field}[{i}].value", dict))

    def value(name: str, key: str, types: type | tuple[type, ...]) -> Any:
        i, v = by_name[name]
        return _get(v, key, row, f"{field}[{i}].value.{key}", types)

    def one_of(name: str, key: str) -> str:
        i, _v = by_name[name]
        items = value(name, key, list)
        if len(items) != 1 or not isinstance(items[0], str):
            raise row.fail(f"{field}[{i}].value.{key}", f"expected one choice, got {items!r:.60}")
        return str(items[0])

    if kind == "comparison":
        if "preference" in by_name:
            answer: dict[str, Any] = {"choice": one_of("preference", "choices")}
        elif any(k for k in by_name if by_name[k][1].get("selected") is not None):
            name = next(k for k in by_name if by_name[k][1].get("selected") is not None)
            side = value(name, "selected", str)
            if side not in ("left", "right"):
                raise row.fail(f"{field}[{by_name[name][0]}].value.selected", f"{side!r} is not 'left' or 'right'")
            answer = {"choice": "A" if side == "left" else "B"}
        else:
            return None
        if "confidence" in by_name:
            answer["confidence"] = value("confidence", "number", (int, float))
        return answer
    if kind == "rating" and "rating" in by_name:
        return {"rating": value("rating", "rating", (int, float))}
    if kind == "label" and "label" in by_name:
        return {"label": one_of("label", "choices")}
    if kind == "ranking" and "ranking" in by_name:
        ranker = value("ranking", "ranker", (dict, list))
        if isinstance(ranker, dict):
            lists = [v for v in ranker.values() if isinstance(v, list)]
            ranker = lists[0] if len(lists) == 1 else None
        return {"ranked": ranker}
    if kind in ("language", "correction"):
        name = "comment" if kind == "language" else "correction"
        if name in by_name:
            parts = value(name, "text", list)
            return {"text": "\n".join(str(p) for p in parts)}
    return None


def import_label_studio(path: str | Path, store: FeedbackStore, scales: Scales = Scales()) -> ImportReport:
    """Store the answers in a Label Studio JSON export (see the module docstring); all or nothing."""
    p = Path(path)
    queries = {q.id: q for q in store.queries()}
    records: list[Feedback] = []
    people: dict[str, str] = {}
    elements = _json_elements(p)
    needed = {t["data"].get("query_id") for _, t in elements if isinstance(t, dict) and isinstance(t.get("data"), dict)}
    gens = store.generations([g for qid in needed if qid in queries for g in queries[qid].generation_ids])
    for n, (line, task) in enumerate(elements):
        row = _Row(f"{p}:{line} (task {n})")
        data = _get(task, "data", row, "data", dict)
        q = _check_query(queries, data.get("query_id"), row, "data.query_id")
        for a, ann in enumerate(_get(task, "annotations", row, "annotations", list)):
            field = f"annotations[{a}]"
            if not isinstance(ann, dict):
                raise row.fail(field, "expected an object")
            if ann.get("was_cancelled"):
                continue
            who = ann.get("completed_by")
            if isinstance(who, dict):
                who = who.get("email") or who.get("id")
            if not isinstance(who, str | int) or isinstance(who, bool) or who == "":
                raise row.fail(f"{field}.completed_by", "expected a user id or email")
            annotator = f"labelstudio:{who}"
            answer = _ls_answer(q.kind, ann.get("result"), row, f"{field}.result")
            if answer is None:
                raise row.fail(f"{field}.result", f"holds no answer for a {q.kind} query")
            records.append(_build(q, annotator, answer, gens, scales, row, f"{field}.result"))
            people[annotator] = str(who)
    return _store_all(store, records, people)


# -- Argilla -----------------------------------------------------------------------------


def _argilla_settings(kind: str, fields: Sequence[str], scales: Scales, n_items: int) -> dict[str, Any]:
    questions: list[dict[str, Any]]
    if kind == "comparison":
        questions = [
            {
                "name": "preference",
                "type": "label_selection",
                "labels": ["A", "B", "equal", "incomparable"],
                "required": True,
            },
            {
                "name": "confidence",
                "type": "rating",
                "values": list(range(5, 11)),
                "required": False,
                "description": "How sure you are that your choice is better, in tenths (5 = a coin flip, 10 = certain)",
            },
        ]
    elif kind == "rating":
        low, high = (int(v) for v in scales.rating)
        questions = [{"name": "rating", "type": "rating", "values": list(range(low, high + 1)), "required": True}]
    elif kind == "label":
        labels = [*scales.labels, NONE_OF_THESE]
        questions = [{"name": "label", "type": "label_selection", "labels": labels, "required": True}]
    elif kind == "ranking":
        values = [f"{i + 1}_text" for i in range(n_items)]
        questions = [{"name": "ranking", "type": "ranking", "values": values, "required": True}]
    else:
        questions = [{"name": "comment" if kind == "language" else "correction", "type": "text", "required": True}]
    return {
        "guidelines": f"rlhfkit {kind} queries",
        "fields": [{"name": f, "type": "text", "required": False} for f in fields],
        "questions": questions,
        "metadata": [{"name": "query_id", "type": "terms"}],
    }


def export_argilla(
    store: FeedbackStore, out_dir: str | Path, kinds: Sequence[str] | None = None, scales: Scales = Scales()
) -> dict[str, int]:
    """Write the pending queries as Argilla datasets, one per kind (``OUT/KIND``); returns the count per kind."""
    from datasets import Dataset

    out = Path(out_dir)
    queries, gens = _pending(store, kinds)
    counts: dict[str, int] = {}
    for kind in sorted({q.kind for q in queries}):
        rows = [_task_data(q, gens, "media/") for q in queries if q.kind == kind]
        n_items = max(len(r["generation_ids"]) for r in rows)
        fields = sorted({k for r in rows for k in r if k.endswith(("prompt", "text", "video"))})
        settings = _argilla_settings(kind, fields, scales, n_items)
        table: dict[str, list[Any]] = {"id": [r["query_id"] for r in rows]}
        for f in fields:
            table[f] = [r.get(f, "") for r in rows]
        table["generation_ids"] = [r["generation_ids"] for r in rows]
        for question in settings["questions"]:
            name = question["name"]
            table[f"{name}.responses"] = [[] for _ in rows]
            table[f"{name}.responses.users"] = [[] for _ in rows]
            table[f"{name}.responses.status"] = [[] for _ in rows]
        features = _argilla_features(table, settings)
        target = out / kind
        Dataset.from_dict(table, features=features).save_to_disk(str(target))
        (target / ".argilla").mkdir(exist_ok=True)
        (target / ".argilla" / "settings.json").write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        (target / ".argilla" / "dataset.json").write_text(json.dumps({"name": f"rlhfkit-{kind}"}) + "\n")
        counts[kind] = len(rows)
    return counts


def _argilla_features(table: dict[str, list[Any]], settings: dict[str, Any]) -> Any:
    from datasets import Features, Sequence, Value

    value_type = {"rating": Value("int64"), "ranking": Sequence(Value("string"))}
    spec: dict[str, Any] = {}
    for name in table:
        if name == "generation_ids":
            spec[name] = Sequence(Value("string"))
        elif name.endswith(".responses"):
            q = next(q for q in settings["questions"] if q["name"] == name.removesuffix(".responses"))
            spec[name] = Sequence(value_type.get(q["type"], Value("string")))
        elif name.endswith((".responses.users", ".responses.status")):
            spec[name] = Sequence(Value("string"))
        else:
            spec[name] = Value("string")
    return Features(spec)


def import_argilla(
    dataset_dir: str | Path, store: FeedbackStore, scales: Scales = Scales(), user_names: dict[str, str] | None = None
) -> ImportReport:
    """Store the submitted responses of an Argilla dataset written as :func:`export_argilla` writes one; all or nothing.

    Annotators are ``argilla:<user id>`` (or the name ``user_names`` gives the id).
    """
    from datasets import load_from_disk

    d = Path(dataset_dir)
    try:
        settings = json.loads((d / ".argilla" / "settings.json").read_text(encoding="utf-8"))
        ds = load_from_disk(str(d))
    except (OSError, ValueError) as e:
        raise InteropError(f"{d}: not an Argilla dataset written by export_argilla: {e}") from None
    questions = {q["name"]: q for q in settings.get("questions", [])}
    queries = {q.id: q for q in store.queries()}
    ids = [i for i in ds["id"] if i in queries]
    gens = store.generations([g for qid in ids for g in queries[qid].generation_ids])
    records: list[Feedback] = []
    people: dict[str, str] = {}
    main = next(iter(questions), None)
    if main is None:
        raise InteropError(f"{d}/.argilla/settings.json: questions: none declared")
    for n, rec in enumerate(ds):
        row = _Row(f"{d} (row {n})")
        q = _check_query(queries, rec.get("id"), row, "id")
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
            annotator = f"argilla:{(user_names or {}).get(user, user)}"
            answer = _argilla_answer(q.kind, main, value, rec, user, row, field)
            records.append(_build(q, annotator, answer, gens, scales, row, field))
            people[annotator] = (user_names or {}).get(user, user)
    return _store_all(store, records, people)


def _argilla_answer(
    kind: str, main: str, value: Any, rec: dict[str, Any], user: str, row: _Row, field: str
) -> dict[str, Any]:
    if kind == "comparison":
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
    if kind == "rating":
        return {"rating": value}
    if kind == "label":
        return {"label": value}
    if kind == "ranking":
        ids = rec.get("generation_ids") or []
        if not isinstance(value, list):
            raise row.fail(field, "a ranking response is the list of item names, best first")
        try:
            return {"ranked": [ids[int(str(v).split("_")[0]) - 1] for v in value]}
        except (ValueError, IndexError):
            raise row.fail(field, f"{value!r:.80} names items that are not in this record") from None
    return {"text": value}
