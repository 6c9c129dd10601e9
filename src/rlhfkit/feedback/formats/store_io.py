"""Preference pairs into the store and out of it as files: :func:`import_into_store` and :func:`export_store`.

:func:`import_into_store` writes what a reader returned into a
:class:`~rlhfkit.feedback.store.FeedbackStore` under ids derived from the
source and line, so importing the same file again stores nothing twice, and
:func:`export_store` writes a store's comparisons of texts back out in any of
the four preference shapes (TRL standard or conversational, HH-RLHF, scored).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rlhfkit.feedback.formats.common import (
    PREFERENCE_FORMATS,
    ImportReport,
    PreferenceFormat,
    PreferenceRecord,
    StoredPair,
    TextValue,
    as_json,
)
from rlhfkit.feedback.formats.hh import hh_row
from rlhfkit.feedback.formats.scored import scored_rows
from rlhfkit.feedback.formats.trl import conversational_row, trl_row
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback_records import Annotator, Answer, Comparison
from rlhfkit.types import Generation, Query, Text

_ROW_WRITERS: dict[str, Callable[[StoredPair], dict[str, Any]]] = {
    "trl": trl_row,
    "trl_conversational": conversational_row,
    "hh": hh_row,
}


def _digest(*parts: Any) -> str:
    data = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


def _generation_id(record: PreferenceRecord, completion: TextValue) -> str:
    return _digest("generation", record.source, record.source_line, as_json(record.prompt), as_json(completion))


def _answer(query_id: str, mu: tuple[float, float] | None, annotator_id: str) -> Comparison:
    if mu is None:
        return Comparison.make(query_id, Answer.INCOMPARABLE, annotator_id)
    if mu == (1.0, 0.0):
        return Comparison.make(query_id, Answer.A, annotator_id)
    if mu == (0.0, 1.0):
        return Comparison.make(query_id, Answer.B, annotator_id)
    if mu == (0.5, 0.5):
        return Comparison.make(query_id, Answer.EQUAL, annotator_id)
    return Comparison.make(query_id, Answer.GRADED, annotator_id, mu_a=mu[0])


def import_into_store(
    records: Iterable[PreferenceRecord],
    store: FeedbackStore,
    round: int = 0,
    annotator_id: str | None = None,
    *,
    policy_id: str = "dataset",
    batch_size: int = 500,
) -> ImportReport[PreferenceRecord]:
    """Store records as comparison answers; the report counts the answers ``stored`` (new) and ``duplicates``.

    Each record becomes two text :class:`~rlhfkit.types.Generation` records
    (the prompt with ``chosen`` as A, the prompt with ``rejected`` as B), one
    comparison :class:`~rlhfkit.types.Query` ``(A, B)`` and one
    :class:`~rlhfkit.feedback_records.Comparison`: answer A for ``mu = (1, 0)``, EQUAL for
    ``(0.5, 0.5)``, GRADED with ``mu_A = mu[0]`` otherwise, INCOMPARABLE for
    ``None``. A generation's ``info`` keeps ``source``, ``source_line`` and, when
    the record has them, its ``score`` and the pair's ``margin``, so that
    :func:`export_store` can write them back.

    Ids are hashes of the record's ``source`` and ``source_line`` (and of the
    texts), so importing the same file again stores no record twice: the
    generations and queries are found, and the store keeps one answer per
    (query, annotator). Records are written in batches of ``batch_size``: a
    batch's generations and queries are committed first, then each answer,
    so no answer is ever stored without its query; an interrupted import
    may leave some imported queries unanswered, and running it again completes them.
    Each annotator is registered as an :class:`~rlhfkit.feedback_records.Annotator` of kind
    ``"dataset"`` (a no-op for an id already known).

    Args:
        records: what a reader read (its report's ``records``).
        store: the store to write into.
        round: the round of the generations and queries.
        annotator_id: the answers' annotator; ``None`` keeps each record's own.
        policy_id: the generations' ``policy_id``.
        batch_size: records per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    new = answered = 0
    annotators: set[str] = set()  # registered as kind "dataset" by this call
    batch: list[PreferenceRecord] = []

    def flush() -> int:
        generations: dict[str, Generation] = {}
        queries: list[Query] = []
        answers: list[Comparison] = []
        for r in batch:
            ids = []
            scores: tuple[float | None, float | None] = (None, None) if r.scores is None else r.scores
            for completion, score in ((r.chosen, scores[0]), (r.rejected, scores[1])):
                info: dict[str, Any] = {"source": r.source, "source_line": r.source_line}
                if score is not None:
                    info["score"] = score
                if r.margin is not None:
                    info["margin"] = r.margin
                gid = _generation_id(r, completion)
                generations.setdefault(
                    gid, Generation(gid, round, policy_id, Text(prompt=r.prompt, completion=completion, info=info))
                )
                ids.append(gid)
            query = Query(id=_digest("query", r.source, r.source_line, *ids), generation_ids=tuple(ids), round=round)
            queries.append(query)
            who = r.annotator_id if annotator_id is None else annotator_id
            answers.append(_answer(query.id, r.mu, who))
        store.add_generations(generations.values())
        store.add_queries(queries)
        for who in sorted({a.annotator_id for a in answers} - annotators):
            store.add_annotator(Annotator(id=who, kind="dataset"))
            annotators.add(who)
        batch.clear()
        return sum(store.record(a) for a in answers)

    for record in records:
        batch.append(record)
        if len(batch) >= batch_size:
            answered += len(batch)
            new += flush()
    if batch:
        answered += len(batch)
        new += flush()
    return ImportReport(stored=new, duplicates=answered - new, annotators=tuple(sorted(annotators)))


def _stored_pairs(store: FeedbackStore, annotator_id: str | None, include_incomparable: bool) -> Iterator[StoredPair]:
    """The store's text comparisons, oldest first, oriented so that ``chosen`` is the preferred one."""
    answers = store.comparisons(annotator_id)
    queries = {q.id: q for q in store.queries()}
    needed = sorted({gid for c in answers for gid in queries[c.query_id].generation_ids})
    generations: dict[str, Generation] = {}
    for i in range(0, len(needed), 500):
        generations.update(store.generations(ids=needed[i : i + 500]))
    for c in answers:
        if c.mu is None and not include_incomparable:
            continue
        a, b = (generations[gid] for gid in queries[c.query_id].generation_ids)
        if not (isinstance(a.content, Text) and isinstance(b.content, Text)):
            continue  # a comparison of control segments has no text to write
        ta, tb = a.content, b.content
        if ta.prompt != tb.prompt:
            raise ValueError(f"query {c.query_id}: its two generations answer different prompts")
        mu, swap = c.mu, c.mu is not None and c.mu[0] < c.mu[1]
        if swap:
            assert mu is not None
            ta, tb, mu = tb, ta, (mu[1], mu[0])
        margin = ta.info.get("margin")
        if swap or margin is None or margin != tb.info.get("margin"):
            margin = None
        yield StoredPair(c.query_id, ta.prompt, ta, tb, mu, margin)


def export_store(
    store: FeedbackStore,
    path: str | Path,
    format: PreferenceFormat,
    *,
    include_incomparable: bool = False,
    annotator_id: str | None = None,
) -> int:
    """Write the store's text comparisons as a preference file; returns the number of rows.

    Rows follow the order the answers were stored in, and each answer is
    written with ``chosen`` = the preferred completion: B's for an answer B (or
    a graded answer with ``mu_B > mu_A``), A's otherwise. Ties and graded
    answers carry ``"mu": [mu_chosen, mu_rejected]`` so they read back as they
    were; ``"margin"`` is written when the store has one (imported records).
    ``"trl"`` and ``"trl_conversational"`` rows with an empty prompt are
    written in TRL's implicit-prompt form.

    - ``"trl"``: plain-text rows; chat content is an error.
    - ``"trl_conversational"``: message lists; plain text is converted (the
      prompt to one user message, a completion to one assistant message).
    - ``"hh"``: transcripts; the prompt's turns must be user/assistant and
      each completion one assistant message (plain text is converted as above).
    - ``"scored"``: one row per distinct prompt with its completions in order
      of first appearance; the scores are those imported from a scored file
      when every completion of the prompt has one, otherwise its wins (1 per
      win, ``mu`` for a tie or a graded answer). Plain text only.

    Incomparable answers are skipped: TRL would read any written pair as a
    real preference. With ``include_incomparable=True`` they are written with
    ``"mu": null`` (trl, trl_conversational, hh; never in ``"scored"``), which
    the readers read back as incomparable. Comparisons of control segments
    are skipped. ``annotator_id`` restricts the export to one annotator's
    answers. The file is replaced atomically.
    """
    if format not in PREFERENCE_FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(map(repr, PREFERENCE_FORMATS))}")
    pairs = _stored_pairs(store, annotator_id, include_incomparable)
    rows: Iterable[dict[str, Any]]
    if format == "scored":
        rows = scored_rows(pairs)
    else:
        make = _ROW_WRITERS[format]
        rows = (make(pair) for pair in pairs)
    lines = [json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(lines)
