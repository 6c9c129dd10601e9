"""Shared by the tests of the formats: preference rows of every shape, and a stand-in video renderer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlhfkit.feedback.formats import (
    PreferenceFormat,
    PreferenceRecord,
    export_store,
    import_into_store,
    read_hh,
    read_scored,
    read_trl,
    read_trl_conversational,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Generation, Segment


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write rows as JSON Lines; a ``str`` row is written verbatim (for malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read(path: Path, format: PreferenceFormat, **options: Any) -> list[PreferenceRecord]:
    """The records of a preference file read with ``format``'s own reader."""
    if format == "trl":
        return list(read_trl(path, **options).records)
    if format == "trl_conversational":
        return list(read_trl_conversational(path, **options).records)
    if format == "hh":
        return list(read_hh(path, **options).records)
    return list(read_scored(path, **options).records)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def hh(*turns: str) -> str:
    """An HH transcript from alternating Human / Assistant turns."""
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


TRL_ROWS: list[Any] = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "2 + 2 =", "chosen": " 4", "rejected": " 5", "margin": 2.5},
    {"prompt": "Say hi", "chosen": "hi", "rejected": "hello", "mu": [0.5, 0.5]},
    {"prompt": "Best fruit?", "chosen": "Mango", "rejected": "Apple", "mu": [0.8, 0.2]},
    {"chosen": "Q: capital of France? A: Paris", "rejected": "Q: capital of France? A: Rome"},
    {"prompt": "Colour or number?", "chosen": "red", "rejected": "7", "mu": None},
    {"prompt": "ünïcödé ✓", "chosen": "ja", "rejected": "nein", "extra": "ignored"},
]

CONVERSATIONAL_ROWS: list[Any] = [
    {
        "prompt": [{"role": "system", "content": "Be brief."}, user("What colour is the sky?")],
        "chosen": [assistant("Blue.")],
        "rejected": [assistant("Green.")],
    },
    {"prompt": [user("Hi")], "chosen": [assistant("Hello!")], "rejected": [assistant("Go away.")], "mu": [0.6, 0.4]},
    {"chosen": [user("2+2?"), assistant("4")], "rejected": [user("2+2?"), assistant("5")]},
    {"prompt": [user("Tie?")], "chosen": [assistant("a")], "rejected": [assistant("b")], "mu": [0.5, 0.5]},
]

HH_ROWS: list[Any] = [
    {"chosen": hh("How do I bake bread?", "Mix flour, water, yeast."), "rejected": hh("How do I bake bread?", "No.")},
    {
        "chosen": hh("Hi", "Hello! How can I help?", "Tell me a joke", "Why did the chicken cross the road?"),
        "rejected": hh("Hi", "Hello! How can I help?", "Tell me a joke", "I don't know any."),
    },
    {"chosen": hh("Is this a tie?", "Maybe."), "rejected": hh("Is this a tie?", "Perhaps."), "mu": [0.5, 0.5]},
    {"chosen": hh("Graded?", " Yes,\nindented."), "rejected": hh("Graded?", "no"), "mu": [0.75, 0.25]},
]

SCORED_ROWS: list[Any] = [
    {
        "prompt": "Write a haiku",
        "completions": [
            {"text": "haiku one", "score": 6.5},
            {"response": "haiku two", "score": 9.0},
            {"text": "haiku three", "score": 2},
            {"text": "haiku four", "score": 9.0},
        ],
    },
    {"prompt": "Explain RLHF", "completions": [{"text": "short", "score": 1}, {"text": "long", "score": 4}]},
    {
        "prompt": "Name a prime",
        "completions": [{"text": "4", "score": 0}, {"text": "7", "score": 10}, {"text": "9", "score": 3}],
    },
]


def roundtrip(
    tmp_path: Path, store: FeedbackStore, rows: list[Any], format: PreferenceFormat, **options: Any
) -> tuple[list[PreferenceRecord], list[PreferenceRecord]]:
    original = write_jsonl(tmp_path / f"in-{format}.jsonl", rows)
    first = read(original, format, annotator_id="ann", **options)
    import_into_store(first, store)
    exported = tmp_path / f"out-{format}.jsonl"
    export_store(store, exported, format, include_incomparable=True)
    second = read(exported, format, annotator_id="ann", **options)
    return first, second


PROJECTS = {
    "comparison": 1,
    "comparison-control": 1,
    "correction": 1,
    "label": 1,
    "language": 1,
    "ranking": 2,
    "ranking-control": 1,
    "rating": 1,
    "rating-control": 1,
}
"""The projects an export of ``mixed_store`` (conftest.py) writes, with the tasks (records) of each."""

WEBM_MAGIC = b"\x1a\x45\xdf\xa3"  # the EBML header every WebM file starts with


def fake_video(g: Generation) -> bytes:
    """A stand-in renderer: bytes that name the generation (the real one is tested through the command line)."""
    return WEBM_MAGIC + f"video of {g.id}".encode()


def segment(seed: int) -> Segment:
    rng = np.random.default_rng(seed)
    return Segment(rng.normal(size=(5, 3)), rng.normal(size=(5, 1)), rng.normal(size=5), info={"env_id": "Pendulum-v1"})
