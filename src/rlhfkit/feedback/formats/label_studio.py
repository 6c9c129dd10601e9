"""Label Studio: a project per kind, ``OUT/KIND/label_config.xml`` + ``OUT/KIND/tasks.json``; answers from its export.

A Label Studio project has one labelling interface, so each kind (and, in a
store that holds both, each domain: ``KIND-control``) is its own folder: create
a project, paste ``label_config.xml`` as its labelling interface and import
``tasks.json``. Every task's ``data`` holds ``query_id``, ``kind``, ``round``
and ``generation_ids`` besides what the interface shows:

========== ============================================================================
kind       shown (text: ``prompt`` once, then the completions; control: videos)
========== ============================================================================
comparison ``a``, ``b`` side by side; ``Choices`` ``preference`` and an optional
           ``Number`` ``confidence``
rating     ``item``; ``Rating`` ``rating`` (a ``Number`` when the scale does not start at 1)
label      ``item``; ``Choices`` ``label`` (the exported choices and "none of these")
ranking    ``items``, a ``List`` of ``{"id": generation id, "title", "body" | "html"}``;
           ``Ranker`` ``ranking`` reorders it
language   ``a``, ``b``; ``TextArea`` ``comment``
correction ``prompt``; ``TextArea`` ``correction`` pre-filled with the completion
           (its ``value="$item"``); text only
========== ============================================================================

**Videos.** Control segments are rendered (:data:`MediaRenderer`) into
``OUT/media/<generation id>.webm``, and the tasks refer to them as
``MEDIA_URL<generation id>.webm``: with the default ``media/`` the path resolves
from ``OUT``. Label Studio's browser fetches them by URL, so serve ``OUT/media``
and export with a ``media_url`` that reaches it, either

- Label Studio's local files storage: start Label Studio with
  ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` a folder above ``OUT``, add a local
  storage for ``OUT/media`` to the project, and export with
  ``media_url="/data/local-files/?d=<OUT relative to that root>/media/"``; or
- any web server that serves ``OUT`` (``media_url="https://host/path/media/"``).

**Answers** come back in Label Studio's JSON export of a project (one file per
project; import each): every task with its ``annotations``, each with
``completed_by`` and a ``result`` list of ``{"from_name", "to_name", "type",
"value"}`` regions. The values read, by ``from_name``:

============== ======================================================================
``preference`` ``{"choices": ["A" | "B" | "equal" | "incomparable"]}`` (or a ``Pairwise``
               ``{"selected": "left" | "right"}``)
``confidence`` ``{"number": p}``, p in [0.5, 1]: a graded answer, P(chosen is better) = p
``rating``     ``{"rating": n}`` or ``{"number": n}`` on the exported scale
``label``      ``{"choices": [one of the exported choices, or "none of these"]}``
``ranking``    ``{"ranker": {"ranking": [generation ids, best first]}}``
``comment``    ``{"text": ["..."]}``
``correction`` ``{"text": ["the edited completion"]}``
============== ======================================================================

Cancelled (skipped) annotations are left out. A bad row stops the import with
one :class:`InteropError` naming the file, the line the task starts on and the
field; nothing is stored then.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from rlhfkit.feedback.formats.common import ImportReport, InteropError
from rlhfkit.feedback.formats.labelling import (
    DEFAULT_SCALES,
    MEDIA_DIR,
    MEDIA_SUFFIX,
    ExportReport,
    MediaRenderer,
    Project,
    Row,
    Scales,
    build,
    check_query,
    get,
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

CONFIG_FILE = "label_config.xml"
TASKS_FILE = "tasks.json"


def export_label_studio(
    store: FeedbackStore,
    out_dir: str | Path,
    kinds: Sequence[str] | None = None,
    scales: Scales = DEFAULT_SCALES,
    render: MediaRenderer | None = None,
    media_url: str = f"{MEDIA_DIR}/",
) -> ExportReport:
    """Write the pending queries as Label Studio projects, ``OUT/<project>/{label_config.xml,tasks.json}``.

    Every video first (``OUT/media``, rendered by ``render``; an export with
    control queries and no renderer is refused), then each project's files, each
    written whole: a failed render leaves no task file behind that points at a
    missing video. Nothing is written when no query is pending.
    """
    out = Path(out_dir)
    projects, gens, skipped = pending_projects(store, kinds)
    media = render_media(projects, gens, render)
    for gid, data in media.items():
        write_atomic(out / MEDIA_DIR / f"{gid}{MEDIA_SUFFIX}", data)
    written: dict[str, int] = {}
    for p in projects:
        tasks = [{"data": _task_data(q, p, gens, scales, media_url)} for q in p.queries]
        write_atomic(out / p.name / CONFIG_FILE, label_config(p, scales))
        write_atomic(out / p.name / TASKS_FILE, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
        written[p.name] = len(tasks)
    return ExportReport(written, len(media), skipped)


def _video_html(url: str) -> str:
    return f'<video src={quoteattr(url)} controls loop muted preload="metadata" style="max-width: 100%"></video>'


def _task_data(q: Query, p: Project, gens: dict[str, Generation], scales: Scales, media_url: str) -> dict[str, Any]:
    items = [gens[g] for g in q.generation_ids]
    names = item_names(q.kind, len(items))
    data: dict[str, Any] = {
        "query_id": q.id,
        "kind": q.kind,
        "round": q.round,
        "generation_ids": list(q.generation_ids),
    }

    def shown(g: Generation) -> str:
        return f"{media_url}{g.id}{MEDIA_SUFFIX}" if p.control else plain(g.text.completion)

    if not p.control:
        data["prompt"] = shared_prompt(names, [g.text for g in items])
    if q.kind == "ranking":
        data["items"] = [
            {"id": g.id, "title": str(i + 1), **({"html": _video_html(shown(g))} if p.control else {"body": shown(g)})}
            for i, g in enumerate(items)
        ]
    else:
        data.update({name: shown(g) for name, g in zip(names, items, strict=True)})
    if q.kind == "rating":
        data["scale"] = list(scales.rating)
    if q.kind == "label":
        data["choices"] = list(scales.labels)
    return data


def _rating_control(scales: Scales, to: str) -> str:
    low, high = scales.rating
    if low == 1 and float(high).is_integer() and high >= 2:
        return f'  <Rating name="rating" toName="{to}" maxRating="{int(high)}" required="true"/>'
    return f'  <Number name="rating" toName="{to}" min="{low:g}" max="{high:g}" required="true"/>'


def label_config(p: Project, scales: Scales) -> str:
    """The labelling interface of a project (see the module docstring for its tags)."""

    def shown(name: str) -> str:
        tag = "Video" if p.control else "Text"
        return f'<{tag} name="{name}" value="${name}"/>'

    lines = ["<View>", f"  <!-- rlhfkit {p.kind} queries, {'videos' if p.control else 'text'}: one task per query -->"]
    if not p.control:
        lines += ["  <Style>.htx-text { white-space: pre-wrap; }</Style>", '  <Header value="Prompt"/>']
        lines.append('  <Text name="prompt" value="$prompt"/>')
    kind = p.kind
    if kind in ("comparison", "language"):
        lines.append('  <View style="display: flex; gap: 1em;">')
        lines += [f'    <View style="flex: 1;"><Header value="{n.upper()}"/>{shown(n)}</View>' for n in ("a", "b")]
        lines.append("  </View>")
    elif kind == "ranking":
        lines.append('  <List name="items" value="$items" title="Drag into order, best first"/>')
    elif kind != "correction":
        lines.append(f"  {shown('item')}")
    if kind == "comparison":
        lines += [
            '  <Header value="Which is better?"/>',
            '  <Choices name="preference" toName="a" choice="single" required="true">',
            '    <Choice value="A"/><Choice value="B"/><Choice value="equal"/><Choice value="incomparable"/>',
            "  </Choices>",
            '  <Header value="How sure are you that it is better? (optional; 0.5 is a coin flip, 1 certain)"/>',
            '  <Number name="confidence" toName="a" min="0.5" max="1" step="0.05"/>',
        ]
    elif kind == "rating":
        lines += [f'  <Header value="Rate it from {scales.rating[0]:g} to {scales.rating[1]:g}"/>']
        lines.append(_rating_control(scales, "item"))
    elif kind == "label":
        options = "".join(f"<Choice value={quoteattr(c)}/>" for c in (*scales.labels, NONE_OF_THESE))
        lines.append(f'  <Choices name="label" toName="item" choice="single" required="true">{options}</Choices>')
    elif kind == "ranking":
        lines.append('  <Ranker name="ranking" toName="items"/>')
    elif kind == "language":
        lines += ['  <Header value="What should change, and in which?"/>']
        lines.append('  <TextArea name="comment" toName="a" rows="4" maxSubmissions="1" required="true"/>')
    else:
        lines += [
            '  <Header value="Edit the completion into a better one"/>',
            '  <TextArea name="correction" toName="prompt" value="$item" rows="8" editable="true" '
            'maxSubmissions="1" required="true"/>',
        ]
    return "\n".join([*lines, "</View>"]) + "\n"


# -- import ------------------------------------------------------------------------------


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


def _answer(kind: str, results: Any, row: Row, field: str) -> dict[str, Any] | None:
    """The answer in one Label Studio annotation's ``result`` list (None if it holds none)."""
    if not isinstance(results, list):
        raise row.fail(field, "expected a list of regions")
    by_name: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, region in enumerate(results):
        name = get(region, "from_name", row, f"{field}[{i}].from_name", str)
        by_name[name] = (i, get(region, "value", row, f"{field}[{i}].value", dict))

    def value(name: str, key: str, types: type | tuple[type, ...]) -> Any:
        i, v = by_name[name]
        return get(v, key, row, f"{field}[{i}].value.{key}", types)

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
        key = "number" if "number" in by_name["rating"][1] else "rating"
        return {"rating": value("rating", key, (int, float))}
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


def import_label_studio(
    path: str | Path, store: FeedbackStore, scales: Scales = DEFAULT_SCALES
) -> ImportReport[Feedback]:
    """Store the answers in a Label Studio JSON export (see the module docstring); all or nothing."""
    p = Path(path)
    queries = {q.id: q for q in store.queries()}
    records: list[Feedback] = []
    people: dict[str, str] = {}
    elements = _json_elements(p)
    needed = {t["data"].get("query_id") for _, t in elements if isinstance(t, dict) and isinstance(t.get("data"), dict)}
    gens = store.generations([g for qid in needed if qid in queries for g in queries[qid].generation_ids])
    for n, (line, task) in enumerate(elements):
        row = Row(f"{p}:{line} (task {n})")
        data = get(task, "data", row, "data", dict)
        q = check_query(queries, data.get("query_id"), row, "data.query_id")
        for a, ann in enumerate(get(task, "annotations", row, "annotations", list)):
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
            answer = _answer(q.kind, ann.get("result"), row, f"{field}.result")
            if answer is None:
                raise row.fail(f"{field}.result", f"holds no answer for a {q.kind} query")
            records.append(build(q, annotator, answer, gens, scales, row, f"{field}.result"))
            people[annotator] = str(who)
    return store_all(store, records, people)
