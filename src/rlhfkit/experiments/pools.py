"""Pools of generations with a spread of true returns, for the feedback-kinds tests and benchmark.

- :func:`pendulum_segments`: 50-step Pendulum-v1 segments from a random policy and
  from crude swing-up controllers of varied gain and noise, so clips range from
  hanging to balancing.
- :func:`describe_texts`: completions for the text task's prompts written like its
  pre-training corpus (0 to 6 adjectives, nice or not, closed with "." or not),
  with no language model in the loop.
"""

from __future__ import annotations

import numpy as np

from rlhfkit.tasks import text as text_task
from rlhfkit.types import Segment, Text


def pendulum_segments(n: int, seed: int, length: int = 50) -> list[Segment]:
    """``n`` Pendulum segments of ``length`` steps from a mix of policies (deterministic given ``seed``)."""
    from rlhfkit.tasks.features import pendulum_simulate

    rng = np.random.default_rng(seed)
    out: list[Segment] = []
    while len(out) < n:
        m = min(64, n - len(out))
        th = rng.uniform(-np.pi, np.pi, m)
        thdot = rng.uniform(-1.0, 1.0, m)
        gain = rng.choice([0.0, 2.0, 5.0, 10.0], m)  # 0: a random policy
        noise = rng.uniform(0.3, 2.0, m)
        obs0 = np.stack([np.cos(th), np.sin(th), thdot], axis=-1)
        # Warm up for a random number of steps, then record: clips start anywhere in an episode.
        warm = int(rng.integers(0, 60))
        obs_t = obs0
        acts = np.zeros((m, warm + length, 1))
        for t in range(warm + length):
            a = -gain * np.arctan2(obs_t[:, 1], obs_t[:, 0]) - 0.3 * gain * obs_t[:, 2]
            acts[:, t, 0] = np.clip(a + noise * rng.normal(size=m), -2.0, 2.0)
            two = np.concatenate([acts[:, t : t + 1], np.zeros((m, 1, 1))], axis=1)
            obs_t = pendulum_simulate(obs_t, two)[0][:, 1]  # the state after this step
        obs, rew = pendulum_simulate(obs0, acts)
        for i in range(m):
            out.append(
                Segment(obs[i, warm:], acts[i, warm:], rew[i, warm:], info={"env_id": "Pendulum-v1", "pool": seed})
            )
    return out[:n]


def describe_texts(n: int, seed: int) -> list[Text]:
    """``n`` prompt/completion texts for the ``describe`` task (deterministic given ``seed``)."""
    rng = np.random.default_rng(seed)
    prompts = text_task.prompts()
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 7))
        p_nice = rng.uniform(0.2, 0.9)
        words = [str(rng.choice(text_task.POSITIVE if rng.random() < p_nice else text_task.NEGATIVE)) for _ in range(k)]
        body = "" if k == 0 else (words[0] if k == 1 else ", ".join(words[:-1]) + " and " + words[-1])
        end = " ." if rng.random() < 0.75 else ""
        out.append(Text(prompt=str(rng.choice(prompts)), completion=(" " + body + end).rstrip() or " .", info={}))
    return out


__all__ = ["describe_texts", "pendulum_segments"]
