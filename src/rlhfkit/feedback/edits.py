"""Editors: small, plausible edits of a generation.

An editor proposes nearby variants ``x + Δ`` of a generation ``x``. It plays two
parts, one per side of a correction:

- the simulated human corrects ``x`` by a few noisy improvement steps, each
  choosing among proposed edits by its reward ``r_H`` (``feedback/teacher.py``);
- the reward fit learns a correction ``x'`` as a reward-rational choice (Jeon,
  Milli, Dragan 2020): ``x'`` was chosen over ``x`` and over other edits of
  ``x``, which the same editor proposes (``reward/calibration.py``).

A control edit changes a chunk of the action sequence and replays it through
the task's dynamics, so the edited segment is a real trajectory from the same
start state (what a person editing a robot's motion sees). A text edit deletes,
substitutes or inserts a word, or adds or removes the closing full stop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from rlhfkit.types import Content, Segment, Text


class Editor(Protocol):
    """Proposes ``n`` nearby variants of a generation."""

    def propose(self, x: Content, rng: np.random.Generator, n: int) -> list[Content]: ...


Simulate = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Dynamics: ``(first_obs (..., obs_dim), actions (..., T, act_dim))`` to
``(observations (..., T, obs_dim), true_rewards (..., T))``."""


class SegmentEditor:
    """Edits a chunk of a control segment's actions and replays it from the segment's start state.

    Each proposal picks a chunk of ``T * chunk_frac`` steps (``chunk_frac`` drawn
    from ``[min_chunk, max_chunk]``), adds one offset ``~ N(0, noise^2)`` per action
    dimension to it (a "push harder here" edit) and clips to ``[low, high]``.

    Args:
        simulate: the task's dynamics (see :data:`Simulate`).
        low, high: action bounds.
        noise: standard deviation of the offset added to a chunk.
    """

    def __init__(
        self,
        simulate: Simulate,
        low: float,
        high: float,
        noise: float = 0.7,
        min_chunk: float = 0.2,
        max_chunk: float = 0.6,
    ) -> None:
        self.simulate = simulate
        self.low, self.high, self.noise = low, high, noise
        self.min_chunk, self.max_chunk = min_chunk, max_chunk

    def propose(self, x: Content, rng: np.random.Generator, n: int) -> list[Content]:
        if not isinstance(x, Segment):
            raise TypeError("a SegmentEditor edits control segments, got text")
        if x.actions.dtype.kind in "iu":
            raise TypeError("a SegmentEditor edits continuous actions; this segment has discrete ones")
        T = len(x)
        act = np.asarray(x.actions, dtype=np.float64).reshape(T, -1)
        acts = np.repeat(act[None], n, axis=0)
        for i in range(n):
            length = max(1, round(T * rng.uniform(self.min_chunk, self.max_chunk)))
            start = int(rng.integers(0, T - length + 1))
            acts[i, start : start + length] += rng.normal(0.0, self.noise, size=act.shape[1])
        acts = np.clip(acts, self.low, self.high)
        obs, rew = self.simulate(np.repeat(x.observations[:1], n, axis=0), acts)
        shape = x.actions.shape
        return [
            Segment(obs[i], acts[i].reshape(shape), rew[i], info={**dict(x.info), "edited": True}) for i in range(n)
        ]


_TOKEN = re.compile(r"[^\s,]+|,")


class TextEditor:
    """Word edits of a completion: delete, substitute or insert a word, or toggle the closing ".".

    Args:
        vocabulary: words that may be inserted or substituted (the words of the
            completion itself are always candidates too).
    """

    def __init__(self, vocabulary: Sequence[str]) -> None:
        if not vocabulary:
            raise ValueError("a TextEditor needs a non-empty vocabulary")
        self.vocabulary = tuple(vocabulary)

    def edit(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        """One random edit of a token list."""
        words = self.vocabulary
        op = int(rng.integers(0, 4)) if tokens else 2
        out = list(tokens)
        if op == 0 and len(out) > 1:
            del out[int(rng.integers(0, len(out)))]
        elif op == 1:
            out[int(rng.integers(0, len(out)))] = words[int(rng.integers(0, len(words)))]
        elif op == 3:
            if out and out[-1] == ".":
                out.pop()
            else:
                out.append(".")
        else:
            out.insert(int(rng.integers(0, len(out) + 1)), words[int(rng.integers(0, len(words)))])
        return out

    def propose(self, x: Content, rng: np.random.Generator, n: int) -> list[Content]:
        if not isinstance(x, Text):
            raise TypeError("a TextEditor edits texts, got a control segment")
        if not isinstance(x.completion, str):
            raise TypeError("a TextEditor edits plain-text completions")
        lead = " " if x.completion.startswith(" ") else ""
        tokens = _TOKEN.findall(x.completion)
        out: list[Content] = []
        for _ in range(n):
            edited = self.edit(tokens, rng) or tokens
            out.append(Text(prompt=x.prompt, completion=lead + " ".join(edited), info={**dict(x.info), "edited": True}))
        return out


def editor(task: str, **kwargs: Any) -> Editor:
    """A built-in task's editor: edited torque chunks replayed through the dynamics (pendulum), or word edits
    (describe)."""
    from rlhfkit.tasks import UnknownTaskError
    from rlhfkit.tasks.features import DESCRIBE_VOCABULARY, PENDULUM_MAX_TORQUE, pendulum_simulate

    if task == "pendulum":
        return SegmentEditor(pendulum_simulate, low=-PENDULUM_MAX_TORQUE, high=PENDULUM_MAX_TORQUE, **kwargs)
    if task == "describe":
        return TextEditor(DESCRIBE_VOCABULARY, **kwargs)
    raise UnknownTaskError(f"task {task!r} has no editor for corrections (built in: pendulum, describe)")
