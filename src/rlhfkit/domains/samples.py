"""What the policy does, kept each round so the report can show base and latest side by side.

A run writes ``RUN_DIR/samples/round_NNNN.json`` after each round's evaluation
(round 0 is the base policy):

- text: ``{"round": k, "domain": "text", "samples": [{"prompt", "completion",
  "true_reward", "learned_reward"}, ...]}`` (null where a task has no true reward), one completion for each of the
  task's first prompts, drawn with the evaluation's fixed seed, so every round
  answers the same prompts under the same random numbers;
- control: ``{"round": k, "domain": "control", "env_id", "seed", "observations"
  (T, obs_dim), "actions" (T,) or (T, act_dim), "true_rewards" (T,)}``, the first
  ``T`` steps of the deterministic policy's first evaluation episode (fixed seed).

The files are data, not pictures: the report renders a control rollout with the
web app's renderer when it is written. JSON keeps them readable by anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlhfkit.types import Message, Segment

Prompt = str | Sequence[Message]

SAMPLES_DIR = "samples"
TEXT_SAMPLES = 6
"""Completions kept per round of a text run (one per prompt, the task's first prompts)."""
ROLLOUT_STEPS = 120
"""Steps kept of a control rollout (Pendulum: 4 s at its 30 frames per second)."""

_NAME = re.compile(r"^round_(\d{4,})\.json$")


def sample_path(run_dir: Path, round_: int) -> Path:
    return run_dir / SAMPLES_DIR / f"round_{round_:04d}.json"


def write_samples(run_dir: Path, round_: int, data: dict[str, Any]) -> Path:
    """Write one round's samples (replacing those of an interrupted earlier try at the round)."""
    from rlhfkit.files import atomic_write_bytes

    path = sample_path(run_dir, round_)
    path.parent.mkdir(exist_ok=True)
    atomic_write_bytes(path, json.dumps({"round": round_, **data}, allow_nan=False).encode("utf-8"))
    return path


def text_samples(
    prompts: Sequence[Prompt], completions: Sequence[str], true: Sequence[float], learned: Sequence[float]
) -> dict[str, Any]:
    """A text round's samples: one record per (prompt, completion), with its true and learned reward.

    A chat prompt is kept as its turns, one ``role: content`` line each.
    """
    rows = zip(prompts, completions, true, learned, strict=True)
    return {
        "domain": "text",
        "samples": [
            {"prompt": _prompt_text(p), "completion": c, "true_reward": _finite(t), "learned_reward": _finite(r)}
            for p, c, t, r in rows
        ],
    }


def _finite(v: float) -> float | None:
    """A score, or None (JSON null) where there is none (a task without a true reward)."""
    return float(v) if np.isfinite(v) else None


def _prompt_text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in prompt)


def rollout_samples(segment: Segment) -> dict[str, Any]:
    """A control round's sample: one rollout, as arrays of plain numbers."""
    return {
        "domain": "control",
        "env_id": str(segment.info.get("env_id", "")),
        "seed": segment.info.get("seed"),
        "observations": _rounded(segment.observations),
        "actions": _rounded(segment.actions),
        "true_rewards": _rounded(segment.true_rewards),
    }


def _rounded(values: np.ndarray) -> Any:
    """Plain lists; floats to 5 decimals (plenty to draw a state, and a third of the file)."""
    a = np.asarray(values)
    return a.tolist() if a.dtype.kind in "iub" else np.round(a.astype(np.float64), 5).tolist()


def rollout_segment(data: dict[str, Any]) -> Segment:
    """The :class:`Segment` of a control round's sample (what the renderer takes)."""
    actions = np.asarray(data["actions"])
    return Segment(
        np.asarray(data["observations"], dtype=np.float64),
        actions if actions.dtype.kind in "iu" else actions.astype(np.float64),
        np.asarray(data["true_rewards"], dtype=np.float64),
        {"env_id": data.get("env_id", "")},
    )


def read_samples(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Every round's samples in the run folder, by round; unreadable files are left out."""
    out: dict[int, dict[str, Any]] = {}
    folder = run_dir / SAMPLES_DIR
    if not folder.is_dir():
        return out
    for path in folder.iterdir():
        m = _NAME.match(path.name)
        if m is None:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("domain") in ("text", "control"):
            out[int(m.group(1))] = data
    return out
