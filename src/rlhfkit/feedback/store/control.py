"""Loop-control state: what the loop and the web app tell each other through the store.

The loop and the app never import each other (``shared/DESIGN.md``): they share
three small values, each kept under its own key of the ``loop_control`` table,
one JSON value per key:

- whether an admin has **paused** the loop (the app writes it, the loop holds
  before its next optimisation step while it is set);
- the loop's **status**, :class:`LoopStatus` (the loop writes its round and phase,
  the admin page shows them);
- the **annotation settings**, :class:`AnnotationSettings` (the run writes what
  people are asked and how they may answer when it starts; the app reads them),
  so that an app on another machine (``serve --db postgresql://...``) shows what
  the run asks, without the run's Python config classes.

:class:`~rlhfkit.feedback.store.FeedbackStore` has one typed pair of methods per
value (``set_paused``/``paused``, ``set_loop_status``/``loop_status``,
``write_annotation_settings``/``read_annotation_settings``); the keys are this
module's own. Their values are those earlier versions wrote, so older run folders
keep their state.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rlhfkit.feedback.store.errors import StoreError
from rlhfkit.feedback.store.tables import loop_control_table
from rlhfkit.feedback.teacher import TeacherConfig
from rlhfkit.feedback_records import NONE_OF_THESE

PAUSED = "paused"
"""Key of the pause: JSON ``true`` while an admin has paused the loop."""
LOOP_STATUS = "loop_status"
"""Key of the loop's :class:`LoopStatus`."""
ANNOTATION_SETTINGS = "annotation_settings"
"""Key of the run's :class:`AnnotationSettings` (its name also heads their error messages)."""


def set_control(engine: Engine, key: str, value: Any) -> None:
    """Set one loop-control value (JSON-able) under ``key``, inserting or replacing it."""
    t = loop_control_table
    for _ in range(3):
        with engine.begin() as conn:
            done = conn.execute(t.update().where(t.c.key == key).values(value=value, updated_at=time.time()))
            if done.rowcount:
                return
            try:
                conn.execute(t.insert().values(key=key, value=value, updated_at=time.time()))
                return
            except sa.exc.IntegrityError:
                pass  # another process inserted it first: update on the next try
    raise StoreError(f"could not set loop control {key!r}")


def control(engine: Engine, key: str, default: Any = None) -> Any:
    """The loop-control value under ``key``, or ``default`` if it was never set."""
    with engine.connect() as conn:
        r = conn.execute(sa.select(loop_control_table.c.value).where(loop_control_table.c.key == key)).first()
    return default if r is None else r.value


@dataclass(frozen=True)
class LoopStatus:
    """What the loop is doing, as the admin page shows it."""

    round: int
    """The round the loop is in (0: the base policy, before any feedback)."""
    phase: str
    """What it does there: "waiting for answers", "fitting the reward", "optimising", "paused", ..."""
    updated_at: float = field(default_factory=time.time)
    """When the loop said so (seconds since the epoch)."""
    answers: int | None = None
    """Usable answers stored, while the loop waits for them or fits on them."""
    needed: int | None = None
    """Usable answers the loop waits for before it fits."""

    def to_json(self) -> dict[str, Any]:
        """As stored and as the app shows it: ``round``, ``phase``, ``updated_at``, and the counts that are set."""
        data: dict[str, Any] = {"round": self.round, "phase": self.phase, "updated_at": self.updated_at}
        if self.answers is not None:
            data["answers"] = self.answers
        if self.needed is not None:
            data["needed"] = self.needed
        return data

    @classmethod
    def from_json(cls, data: Any) -> LoopStatus | None:
        """The status stored by :meth:`to_json`, or None for anything else (nothing stored, or not a status)."""
        if not isinstance(data, dict):
            return None

        def whole(v: Any) -> int | None:
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        round_, phase, updated_at = whole(data.get("round")), data.get("phase"), data.get("updated_at")
        if round_ is None or not isinstance(phase, str) or not isinstance(updated_at, int | float):
            return None
        return cls(round_, phase, float(updated_at), whole(data.get("answers")), whole(data.get("needed")))


GENERIC_INSTRUCTIONS = (
    "Judge what the model does, not how the clip or text looks: pick the one that does its task better. "
    "When you cannot tell them apart, say they are about equal."
)
"""Instructions for a run whose task has none of its own."""


@dataclass(frozen=True)
class AnnotationSettings:
    """What people are asked and how they may answer, as the run's config sets it.

    The loop writes it to the store at start (``FeedbackStore.write_annotation_settings``);
    the app reads it (``FeedbackStore.read_annotation_settings``) to show the
    instructions and to offer, and accept, exactly this rating scale and these
    label choices. The simulated human of the same run answers on the same scale
    with the same choices (both come from ``feedback.teacher``), so simulated
    and real answers mean the same thing.
    """

    instructions: str = GENERIC_INSTRUCTIONS
    """What "better" means for this run, shown at the top of the annotation page (plain text)."""
    rating_scale: tuple[float, float] = TeacherConfig.rating_scale
    """(low, high) of rating queries; the page offers each whole number in it."""
    label_choices: tuple[str, ...] = TeacherConfig.label_choices
    """The choices of label queries, worst first when ``label_ordinal``; "none of these" is always offered too."""
    label_ordinal: bool = True
    """Whether the label choices are ordered worst to best."""
    task: str = ""
    """The run's task (shown to people; empty when unknown)."""

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.rating_scale)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"rating_scale must be finite (low, high) with low < high, got {self.rating_scale!r}")
        choices = tuple(self.label_choices)
        if len(choices) < 2 or len(set(choices)) != len(choices) or NONE_OF_THESE in choices:
            raise ValueError(
                f"label_choices must be 2 or more distinct names, without {NONE_OF_THESE!r} (always offered), "
                f"got {list(choices)!r}"
            )
        if not all(isinstance(c, str) and c.strip() and len(c) <= 200 for c in choices):
            raise ValueError(f"label_choices must be non-empty names of at most 200 characters, got {list(choices)!r}")
        object.__setattr__(self, "rating_scale", (low, high))
        object.__setattr__(self, "label_choices", choices)

    def to_json(self) -> dict[str, Any]:
        return {
            "instructions": self.instructions,
            "rating_scale": list(self.rating_scale),
            "label_choices": list(self.label_choices),
            "label_ordinal": self.label_ordinal,
            "task": self.task,
        }

    @classmethod
    def from_json(cls, data: Any) -> AnnotationSettings:
        """Settings read back from the store (``ValueError`` naming the field if they are malformed)."""
        if not isinstance(data, dict):
            raise ValueError(f"{ANNOTATION_SETTINGS}: expected an object, got {type(data).__name__}")
        try:
            scale = data["rating_scale"]
            if not (isinstance(scale, list) and len(scale) == 2 and all(isinstance(v, int | float) for v in scale)):
                raise ValueError(f"{ANNOTATION_SETTINGS}.rating_scale: expected [low, high], got {scale!r}")
            choices = data["label_choices"]
            if not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
                raise ValueError(f"{ANNOTATION_SETTINGS}.label_choices: expected a list of names, got {choices!r}")
            return cls(
                instructions=str(data.get("instructions") or GENERIC_INSTRUCTIONS),
                rating_scale=(float(scale[0]), float(scale[1])),
                label_choices=tuple(choices),
                label_ordinal=bool(data.get("label_ordinal", True)),
                task=str(data.get("task", "")),
            )
        except KeyError as e:
            raise ValueError(f"{ANNOTATION_SETTINGS}: missing field {e.args[0]!r}") from None

    @classmethod
    def of_run(cls, teacher: TeacherConfig, instructions: str, task: str) -> AnnotationSettings:
        """A run's settings: the scale and choices of its ``feedback.teacher``, its instructions, its task."""
        return cls(
            instructions=instructions.strip() or GENERIC_INSTRUCTIONS,
            rating_scale=teacher.rating_scale,
            label_choices=teacher.label_choices,
            task=task,
        )
