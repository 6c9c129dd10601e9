"""Example reward functions and a judge for ``[text.objective] functions`` and ``[text] judge``.

A reward function takes the prompts and the completions (lists of equal length; a prompt is a string or a
list of chat messages) and returns one float per completion. A judge takes the prompts and two lists of
completions and returns, per row, the probability that the first is the better one. Anything can stand
behind them: a rule, a classifier, a call to a judge model.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlhfkit.tasks import text as describe_task


def brevity(prompts: Sequence[object], completions: Sequence[str]) -> list[float]:
    """-1 per word beyond twelve: a rule that keeps answers short."""
    return [-float(max(0, len(c.split()) - 12)) for c in completions]


def niceness(prompts: Sequence[object], completions: Sequence[str]) -> list[float]:
    """The built-in text task's score: up to three kind words, no unkind ones, a closing full stop."""
    return [describe_task.true_reward(c) for c in completions]


def judge(prompts: Sequence[object], a: Sequence[str], b: Sequence[str]) -> list[float]:
    """P(a is better than b): 1, 0 or 0.5 by :func:`niceness`."""
    out = []
    for x, y in zip(niceness(prompts, a), niceness(prompts, b), strict=True):
        out.append(1.0 if x > y else 0.0 if x < y else 0.5)
    return out
