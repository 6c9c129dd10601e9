"""How generations and answers become columns and back.

A generation's content is stored as bytes (:func:`content_to_bytes`): a text as
UTF-8 JSON, a control segment as ``.npz`` so that its arrays round-trip exactly.
A correction holds edited content inside an answer's JSON ``payload``, so content
also has a plain-JSON form (:func:`content_to_json`). An answer of any kind is one
row of the ``feedback`` table (:func:`feedback_columns`, :func:`feedback_from_row`).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from rlhfkit.feedback.store.errors import StoreError
from rlhfkit.feedback_records import (
    Answer,
    Comparison,
    Correction,
    Feedback,
    InvalidFeedbackError,
    Label,
    Language,
    Ranking,
    Rating,
)
from rlhfkit.types import Content, Segment, Text


def content_to_bytes(content: Segment | Text) -> bytes:
    """A generation's content as the ``payload`` column of ``generations``."""
    if isinstance(content, Text):
        return json.dumps(content.to_json(), ensure_ascii=False).encode("utf-8")
    return _segment_to_bytes(content)


def content_from_bytes(domain: str, payload: bytes, info: dict[str, Any]) -> Segment | Text:
    """The content stored by :func:`content_to_bytes` (``domain`` "text" or "control"; ``info`` its own column)."""
    if domain == "text":
        data = json.loads(payload.decode("utf-8"))
        return Text(prompt=data["prompt"], completion=data["completion"], info=info)
    return _segment_from_bytes(payload, info)


def _segment_to_bytes(segment: Segment) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf,
        observations=segment.observations,
        actions=segment.actions,
        true_rewards=segment.true_rewards,
    )
    return buf.getvalue()


def _segment_from_bytes(payload: bytes, info: dict[str, Any]) -> Segment:
    with np.load(io.BytesIO(payload)) as data:
        return Segment(
            observations=data["observations"],
            actions=data["actions"],
            true_rewards=data["true_rewards"],
            info=dict(info),
        )


def content_to_json(content: Content) -> dict[str, Any]:
    """A generation's content as plain JSON (floats round-trip exactly through Python's JSON)."""
    if isinstance(content, Text):
        return {"domain": "text", **content.to_json()}
    return {
        "domain": "control",
        "observations": content.observations.tolist(),
        "actions": content.actions.tolist(),
        "discrete": content.actions.dtype.kind in "iu",
        "true_rewards": content.true_rewards.tolist(),
        "info": dict(content.info),
    }


def content_from_json(data: dict[str, Any]) -> Content:
    """The content written by :func:`content_to_json` (actions keep their integer or float dtype)."""
    if data["domain"] == "text":
        return Text(prompt=data["prompt"], completion=data["completion"], info=data.get("info", {}))
    actions = np.asarray(data["actions"], dtype=np.int64 if data.get("discrete") else np.float64)
    return Segment(
        observations=np.asarray(data["observations"], dtype=np.float64),
        actions=actions,
        true_rewards=np.asarray(data["true_rewards"], dtype=np.float64),
        info=data.get("info", {}),
    )


def feedback_columns(feedback: Feedback) -> dict[str, Any]:
    """The ``answer``, ``mu_a``, ``mu_b`` and ``payload`` columns of one answer.

    Comparisons keep their label in ``answer``/``mu_*``; every other kind writes
    its kind name to ``answer`` and its own fields to the JSON ``payload``.
    """
    if isinstance(feedback, Comparison):
        mu = feedback.mu
        return {
            "answer": feedback.answer.value,
            "mu_a": None if mu is None else mu[0],
            "mu_b": None if mu is None else mu[1],
            "payload": {},
        }
    payload: dict[str, Any]
    if isinstance(feedback, Ranking):
        payload = {"ranked": list(feedback.ranked)}
    elif isinstance(feedback, Rating):
        payload = {"value": feedback.value, "scale": list(feedback.scale)}
    elif isinstance(feedback, Label):
        payload = {"label": feedback.label, "choices": list(feedback.choices), "ordinal": feedback.ordinal}
    elif isinstance(feedback, Correction):
        payload = {"corrected": content_to_json(feedback.corrected)}
    elif isinstance(feedback, Language):
        payload = {"utterance": feedback.utterance}
    else:
        raise InvalidFeedbackError(f"the store does not know feedback of type {type(feedback).__name__}")
    return {"answer": feedback.kind, "mu_a": None, "mu_b": None, "payload": payload}


def feedback_from_row(r: Any) -> Feedback:
    """The typed answer of one ``feedback`` row (:class:`StoreError` for a kind this version does not know)."""
    base = {"query_id": r.query_id, "annotator_id": r.annotator_id, "created_at": r.created_at}
    p = r.payload
    if r.kind == Comparison.kind:
        return Comparison(**base, answer=Answer(r.answer), mu=None if r.mu_a is None else (r.mu_a, r.mu_b))
    if r.kind == Ranking.kind:
        return Ranking(**base, ranked=tuple(p["ranked"]))
    if r.kind == Rating.kind:
        return Rating(**base, value=p["value"], scale=tuple(p["scale"]))
    if r.kind == Label.kind:
        return Label(**base, label=p["label"], choices=tuple(p["choices"]), ordinal=p["ordinal"])
    if r.kind == Correction.kind:
        return Correction(**base, corrected=content_from_json(p["corrected"]))
    if r.kind == Language.kind:
        return Language(**base, utterance=p["utterance"])
    raise StoreError(f"stored feedback of unknown kind {r.kind!r}")
