"""Group-baseline policy optimisation for language models (RLOO and GRPO), top to bottom.

Each step:

1. draw ``prompts_per_step`` prompts and sample ``n_per_prompt`` completions of
   each from the current policy, keeping the sampler's per-token log-probs
   (they equal the training log-probs, see ``TextPolicy``);
2. score every completion with the reward being optimised (a learned reward
   model, or any function of prompt and completion);
3. advantages from the group: RLOO's leave-one-out mean (Ahmadian et al. 2024)
   or GRPO's standardised group score (Shao et al. 2024) — no value network;
4. ``update_epochs`` clipped policy-gradient updates with ``beta * KL(pi || ref)``
   in the loss (per token, with the :class:`~rlhfkit.optimize.kl.KLConfig`'s
   estimator), the reference being the frozen base model (for a LoRA policy, its own model
   with the adapters off);
5. an adaptive ``beta`` moves towards the target KL per token.

The KL reported is the mean per-token estimate under the sampled tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from rlhfkit.checks import positive, require
from rlhfkit.models.text import ReferencePolicy, TextPolicy
from rlhfkit.models.text_batch import Prompt, TextRewardFn
from rlhfkit.optimize.group.loss import grpo_advantages, policy_gradient_loss, rloo_advantages
from rlhfkit.optimize.kl import KLConfig, kl_controller


@dataclass(frozen=True)
class GroupPGConfig:
    """RLOO / GRPO settings (which of the two is the trainer's ``algorithm``)."""

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "lr", "beta": "kl.beta"}
    """Old field names a config file may still hold -> their names now (a dotted name is a whole path)."""

    n_per_prompt: int = 4
    """Completions sampled per prompt (the group size G >= 2)."""
    prompts_per_step: int = 8
    """Prompts per step; a step samples prompts_per_step * n_per_prompt completions."""
    max_new_tokens: int = 32
    """Longest completion, in tokens."""
    update_epochs: int = 1
    """Gradient passes over each step's samples."""
    lr: float = 5e-4
    """Adam learning rate."""
    clip_coef: float = 0.2
    """Ratio clipping epsilon."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "n_per_prompt": (lambda g: g >= 2, ">= 2 (a group baseline needs company)"),
                "prompts_per_step": (positive, ">= 1"),
                "max_new_tokens": (positive, ">= 1"),
                "update_epochs": (positive, ">= 1"),
                "lr": (positive, "> 0"),
                "clip_coef": (positive, "> 0"),
                "max_grad_norm": (positive, "> 0"),
            },
        )


GROUP_KL = KLConfig(beta=0.04, estimator="k3")
"""The KL penalty a group trainer uses when given none: k3 per token in the loss, weight 0.04."""

GroupAlgorithm = Literal["rloo", "grpo"]
"""The group baseline: 'rloo' (leave-one-out mean) or 'grpo' (standardised within the group)."""


class GroupPGTrainer:
    """Keeps the optimiser and the step counter of one policy across calls.

    ``algorithm`` picks the group baseline; it is not a field of :class:`GroupPGConfig`
    so that a run config names its optimiser once (``optimizer = "grpo"``). ``kl`` is
    the run's shared ``[kl]`` section (default :data:`GROUP_KL`).
    """

    def __init__(
        self,
        policy: TextPolicy,
        ref: ReferencePolicy,
        config: GroupPGConfig,
        seed: int = 0,
        algorithm: GroupAlgorithm = "grpo",
        kl: KLConfig | None = None,
    ) -> None:
        if algorithm not in ("rloo", "grpo"):
            raise ValueError(f"algorithm must be 'rloo' or 'grpo', got {algorithm!r}")
        self.policy = policy
        self.ref = ref
        self.config = config
        self.algorithm = algorithm
        self.kl_config = kl if kl is not None else GROUP_KL
        self.kl = kl_controller(self.kl_config)
        self.optimizer = torch.optim.Adam((p for p in policy.parameters() if p.requires_grad), lr=config.lr)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.steps = 0
        self.generated_tokens = 0

    def step(self, prompts: Sequence[Prompt], reward_fn: TextRewardFn) -> dict[str, float]:
        """One sample-score-update step on a random draw of ``prompts``."""
        cfg = self.config
        pick = self.rng.choice(len(prompts), size=cfg.prompts_per_step, replace=len(prompts) < cfg.prompts_per_step)
        chosen = [prompts[i] for i in pick]

        # 1. sample
        with torch.no_grad():
            batch = self.policy.generate(chosen, cfg.max_new_tokens, cfg.n_per_prompt, seed=self.seed + self.steps)
        mask = batch.completion_mask.bool()
        self.generated_tokens += int(mask.sum())

        # 2. score
        owners = [chosen[int(j)] for j in batch.prompt_index]
        rewards = np.asarray(reward_fn(owners, batch.completions), dtype=np.float64)
        if rewards.shape != (len(batch),) or not np.all(np.isfinite(rewards)):
            raise FloatingPointError(f"reward function returned {rewards!r} for {len(batch)} completions")
        r = torch.as_tensor(rewards, dtype=torch.float32).reshape(cfg.prompts_per_step, cfg.n_per_prompt)

        # 3. group advantages
        adv = (rloo_advantages(r) if self.algorithm == "rloo" else grpo_advantages(r)).reshape(-1)

        # 4. update
        with torch.inference_mode():
            ref_logp = self.ref.sampled_logp(batch)
        beta = float(self.kl.beta)
        for _ in range(cfg.update_epochs):
            logp = self.policy.sampled_logp(batch)
            terms = policy_gradient_loss(
                logp,
                batch.logp,
                ref_logp,
                adv,
                mask,
                clip_coef=cfg.clip_coef,
                beta=beta,
                kl_estimator=self.kl_config.estimator,
            )
            self.optimizer.zero_grad()
            terms.loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
        # 5. adapt beta from the KL per token
        kl_per_token = float(terms.kl.detach())
        self.kl.update(kl_per_token, int(mask.sum()))
        self.steps += 1
        return {
            "step": float(self.steps),
            "reward": float(rewards.mean()),
            "kl": kl_per_token,
            "beta": beta,
            "clip_frac": float(terms.clip_frac),
            "length": float(mask.sum(-1).float().mean()),
        }

    def train(self, prompts: Sequence[Prompt], reward_fn: TextRewardFn, steps: int) -> list[dict[str, float]]:
        """``steps`` calls of :meth:`step`; one log dict per step."""
        return [self.step(prompts, reward_fn) for _ in range(steps)]
