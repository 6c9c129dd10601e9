"""The shared network builder: a plain multi-layer perceptron.

Used by the control policy's actor and critic (:mod:`rlhfkit.models.control`) and by
the per-step reward networks (:mod:`rlhfkit.reward.nets`), so both layers build their
MLPs the same way without one importing the other.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``Linear -> activation`` for each width in ``hidden``, then a last ``Linear`` to ``out_dim`` (no activation).

    Maps ``(..., in_dim)`` to ``(..., out_dim)``; with ``hidden = ()`` it is one linear layer.
    """
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), activation()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)
