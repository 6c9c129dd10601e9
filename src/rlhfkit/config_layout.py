"""Reading run configs written before the one config schema, and the settings each domain starts from.

Before the one loop, a control config held ``env_steps_per_round``, ``eval_episodes``,
``[ppo]``, ``[base]`` at the top and ``feedback.segment_length``; a text config held
``steps_per_round``, ``eval_per_prompt``, ``optimizer``, ``[optim]``, ``[ppo]``
(with its own KL fields), ``[base]`` and ``feedback.max_new_tokens``, and its group
methods' ``optim.beta`` with k3 fixed. :func:`upgrade_layout` moves each to its
place now (``[control]``, ``[text]``, the shared ``[kl]``) and says what it moved,
so example configs and run folders from before keep working. Where an old file
cannot be read one way (two different completion lengths), it is one error naming
both fields.
"""

from __future__ import annotations

import copy
from typing import Any

from rlhfkit.errors import ConfigError

CONTROL_KEYS = ("env_steps_per_round", "eval_episodes", "ppo", "base")
TEXT_KEYS = ("steps_per_round", "eval_per_prompt", "optimizer", "optim", "ppo", "base")
OLD_PPO_KL = {
    "beta": "beta",
    "kl_estimator": "estimator",
    "adaptive_kl": "adaptive",
    "kl_target": "target",
    "kl_horizon": "horizon",
}
"""An old text [ppo] section's KL fields -> their [kl] names."""

TEXT_REWARD: dict[str, Any] = {"ensemble_size": 1, "epochs": 3, "lr": 1e-3, "weight_decay": 0.0}
"""A text run's reward fit where it differs from RewardConfig's defaults."""


def domain_of(task: str) -> str:
    """The domain a task belongs to: 'text' for ``text:...``, else 'control'."""
    return "text" if task.startswith("text:") else "control"


def deep_merge(defaults: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` over ``defaults``, table by table (a value in ``data`` wins; tables merge)."""
    out = copy.deepcopy(defaults)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def domain_defaults(task: str, data: dict[str, Any], task_defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings a run of ``task`` starts from, below what its file says (``data``, new layout)."""
    if domain_of(task) == "control":
        return task_defaults
    text = data.get("text", {})
    text = text if isinstance(text, dict) else {}
    optimizer = text.get("optimizer", "grpo")
    tokens = text.get("max_new_tokens", 24)  # one completion length, for the optimisers too
    return {
        "rounds": 4,
        "text": {"group": {"max_new_tokens": tokens}, "ppo": {"max_new_tokens": tokens, "lr": 2e-4}},
        "feedback": {"initial_comparisons": 60, "comparisons_per_round": 30, "teacher": {"beta": 4.0}},
        "reward": TEXT_REWARD,
        # PPO puts k1 in the reward (its policy gradient is then exact), the group methods k3 in the loss.
        "kl": {"beta": 0.05, "estimator": "k1" if optimizer == "ppo" else "k3"},
    }


def upgrade_layout(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` in the layout of today, and what was moved (empty for a file already in it)."""
    task = data.get("task", "pendulum")
    domain = domain_of(task) if isinstance(task, str) else "control"
    feedback = data.get("feedback", {})
    feedback = feedback if isinstance(feedback, dict) else {}
    keys = CONTROL_KEYS if domain == "control" else TEXT_KEYS
    old = [k for k in keys if k in data]
    old_feedback = [k for k in ("segment_length", "max_new_tokens") if k in feedback]
    if not old and not old_feedback:
        return data, []
    if domain in data:
        moved = ", ".join([*old, *(f"feedback.{k}" for k in old_feedback)])
        raise ConfigError(f"{moved}: belong in [{domain}] now; this file has a [{domain}] section too: move them there")
    data = copy.deepcopy(data)
    if domain == "control":
        return _upgrade_control(data)
    return _upgrade_text(data)


def _upgrade_control(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    section: dict[str, Any] = {}
    moved: list[str] = []
    for key in CONTROL_KEYS:
        if key in data:
            section[key] = data.pop(key)
            moved.append(f"{key} -> control.{key}")
    feedback = data.get("feedback", {})
    if isinstance(feedback, dict) and "segment_length" in feedback:
        section["segment_length"] = feedback.pop("segment_length")
        moved.append("feedback.segment_length -> control.segment_length")
    data["control"] = section
    return data, moved


def _upgrade_text(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    data = _one_optimizer_name(data)
    if "kl" in data:
        raise ConfigError("kl: a text config of the old layout has no [kl]; move optim.beta or ppo's KL fields there")
    section: dict[str, Any] = {}
    moved: list[str] = []
    for key in ("steps_per_round", "eval_per_prompt", "optimizer", "base"):
        if key in data:
            section[key] = data.pop(key)
            moved.append(f"{key} -> text.{key}")
    optimizer = section.get("optimizer", "grpo")
    group = _table(data.pop("optim", {}), "optim")
    ppo = _table(data.pop("ppo", {}), "ppo")
    feedback = data.get("feedback", {})
    lengths = {
        f"{name}.max_new_tokens": table.pop("max_new_tokens")
        for name, table in (("feedback", feedback), ("optim", group), ("ppo", ppo))
        if isinstance(table, dict) and "max_new_tokens" in table
    }
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} = {v}" for k, v in lengths.items())
        raise ConfigError(f"{listed}: a text run has one completion length now; set text.max_new_tokens")
    tokens = next(iter(lengths.values()), 24)
    if lengths:
        section["max_new_tokens"] = tokens
        moved.append(f"{' and '.join(lengths)} -> text.max_new_tokens")
    kl: dict[str, Any] = {}
    if optimizer == "ppo":
        for old, new in OLD_PPO_KL.items():
            if old in ppo:
                kl[new] = ppo.pop(old)
                moved.append(f"ppo.{old} -> kl.{new}")
        if "target" in kl:
            kl["target"] = float(kl["target"]) / tokens
            moved.append(f"(kl.target per token = the old per-completion target / {tokens} tokens)")
        if "horizon" in kl:
            kl["horizon"] = float(kl["horizon"]) * tokens
            moved.append(f"(kl.horizon in tokens = the old horizon in completions * {tokens})")
        group.pop("beta", None)
    else:
        if "beta" in group:
            kl["beta"] = group.pop("beta")
            moved.append("optim.beta -> kl.beta")
        kl["estimator"] = "k3"  # the group methods' old fixed estimator
        for old in OLD_PPO_KL:
            ppo.pop(old, None)
    if group:
        section["group"] = group
        moved.append("optim -> text.group")
    if ppo:
        section["ppo"] = ppo
        moved.append("ppo -> text.ppo")
    data["text"] = section
    if kl:
        data["kl"] = kl
    return data, moved


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a table [{name}]")
    return value


def _one_optimizer_name(data: dict[str, Any]) -> dict[str, Any]:
    """Read the older spelling ``optimizer = "group"`` + ``[optim] algorithm = "grpo"`` as ``optimizer = "grpo"``.

    An ``optim.algorithm`` that contradicts ``optimizer`` is an error naming both.
    """
    optim = data.get("optim")
    if not isinstance(optim, dict) or "algorithm" not in optim:
        return {**data, "optimizer": "grpo"} if data.get("optimizer") == "group" else data
    algorithm = optim["algorithm"]
    if algorithm not in ("grpo", "rloo"):
        raise ConfigError(f"optim.algorithm: {algorithm!r} is not one of 'grpo', 'rloo' (better: set optimizer)")
    optimizer = data.get("optimizer", "group")
    if optimizer not in ("group", "ppo", algorithm):
        raise ConfigError(
            f"optim.algorithm = {algorithm!r} contradicts optimizer = {optimizer!r}; "
            "drop optim.algorithm: the optimizer is named once, by `optimizer`"
        )
    rest = {k: v for k, v in optim.items() if k != "algorithm"}
    # An old PPO run wrote the unused group algorithm too: PPO stays.
    return {**data, "optim": rest, "optimizer": "ppo" if optimizer == "ppo" else algorithm}
