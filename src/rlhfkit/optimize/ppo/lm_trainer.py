"""KL-regularised PPO for language models (Ziegler et al. 2019; Stiennon et al. 2020), top to bottom.

A completion is one episode: the state ``s_t`` is the prompt and the completion
tokens before ``t``, the action is token ``t``, and the episode ends at the
completion's last real token (its eos, or token ``max_new_tokens`` when it was
cut). Each step:

1. draw ``prompts_per_step`` prompts and sample one completion of each from the
   current policy (no gradient), keeping the sampler's per-token log-probs (they
   equal the training log-probs, see ``TextPolicy``);
2. score each completion with the reward being optimised, ``s = reward_fn(prompts,
   completions)``, one number per completion;
3. estimate the KL to the frozen reference policy per token,
   ``kl_t = k(log pi(y_t|s_t), log ref(y_t|s_t))`` with ``k1`` or ``k3``;
4. token rewards (:func:`~rlhfkit.optimize.ppo.loss.token_rewards`): ``r_t = -beta * kl_t`` on every real
   token, plus ``s`` at the last real token, 0 after the end;
5. values ``V(s_t)`` from the policy's value head, and GAE along the token axis
   with the end of each completion terminal (:func:`~rlhfkit.optimize.ppo.loss.token_gae`);
6. ``update_epochs`` PPO epochs over minibatches of whole completions
   (:func:`rlhfkit.optimize.ppo.loss.ppo_update`, its means over real tokens only);
7. the KL controller updates ``beta`` from the measured mean KL per token.

So the policy maximises ``E[s(x, y)] - beta * KL(pi(.|x) || ref(.|x))`` with the
KL summed over the completion's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rlhfkit.checks import non_negative, positive, require, unit_interval
from rlhfkit.models.text import ReferencePolicy, TextPolicy
from rlhfkit.models.text_batch import Prompt, TextRewardFn
from rlhfkit.optimize.kl import KLConfig, KLController, kl_controller
from rlhfkit.optimize.ppo.loss import PPOConfig, ppo_update, token_gae, token_kl, token_rewards


@dataclass(frozen=True)
class TextPPOConfig:
    """KL-regularised PPO settings for a language model with a value head."""

    RENAMED: ClassVar[dict[str, str]] = {
        "learning_rate": "lr",
        "beta": "kl.beta",
        "kl_estimator": "kl.estimator",
        "adaptive_kl": "kl.adaptive",
        "kl_target": "kl.target (now nats per token)",
        "kl_horizon": "kl.horizon (now in tokens)",
    }
    """Old field names a config file may still hold -> their names now (a dotted name is a whole path)."""

    prompts_per_step: int = 16
    """Prompts per step, one completion each: a step samples prompts_per_step completions."""
    max_new_tokens: int = 32
    """Longest completion, in tokens."""
    update_epochs: int = 4
    """PPO passes over each step's completions."""
    minibatch_size: int = 8
    """Completions per gradient step (whole sequences; at most prompts_per_step)."""
    lr: float = 1e-5
    """Adam learning rate, shared by the language model and its value head."""
    gamma: float = 1.0
    """Discount over tokens; 1 keeps the sequence score undiscounted at every token."""
    gae_lambda: float = 0.95
    """GAE lambda over tokens."""
    clip_coef: float = 0.2
    """Surrogate clipping epsilon."""
    vf_coef: float = 0.1
    """Weight of the value loss (the value head shares the language model's trunk)."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "prompts_per_step": (positive, ">= 1"),
                "max_new_tokens": (positive, ">= 1"),
                "update_epochs": (positive, ">= 1"),
                "minibatch_size": (lambda m: 1 <= m <= self.prompts_per_step, "in [1, prompts_per_step]"),
                "lr": (positive, "> 0"),
                "gamma": (lambda g: 0 < g <= 1, "in (0, 1]"),
                "gae_lambda": (unit_interval, "in [0, 1]"),
                "clip_coef": (positive, "> 0"),
                "vf_coef": (non_negative, ">= 0"),
                "max_grad_norm": (positive, "> 0"),
            },
        )

    def ppo_config(self) -> PPOConfig:
        """The domain-agnostic PPO core's settings for the update (no entropy bonus, no early stop)."""
        return PPOConfig(
            update_epochs=self.update_epochs,
            minibatch_size=self.minibatch_size,
            lr=self.lr,
            anneal_lr=False,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            clip_coef=self.clip_coef,
            ent_coef=0.0,
            vf_coef=self.vf_coef,
            max_grad_norm=self.max_grad_norm,
            target_kl=None,
            normalize_reward=False,
        )


TEXT_PPO_KL = KLConfig(beta=0.05, estimator="k1")
"""The KL penalty a text PPO trainer uses when given none: k1 per token in the reward, weight 0.05."""


class TextPPOTrainer:
    """Keeps the optimiser, the KL controller and the counters of one policy across calls.

    ``policy`` needs a value head; ``ref`` is the frozen reference
    (:func:`~rlhfkit.models.adapters.reference_policy` of the policy before training: a
    frozen copy, or a LoRA policy's own model with its adapters off).

    **k1 or k3 in the reward.** Both estimate the per-token KL without bias, so
    the summed penalty has the right expected value either way, and k3 is never
    negative and, near the reference, has the lower variance. But PPO treats a reward as fixed, and a
    penalty that depends on pi gets the right policy gradient only when its own
    expected gradient vanishes: ``E_pi[grad k1] = E_pi[grad log pi] = 0``, so
    with k1 the update follows the gradient of the KL-regularised objective
    (Ziegler et al.). With k3 the score-function term at the token's own
    step is ``grad KL(pi || ref) - grad KL(ref || pi)``, which vanishes to first
    order in ``pi - ref``: a token is barely pulled back by its own penalty,
    only by the penalties that follow it (through the values). k1 is the default;
    expect k3 to hold the KL less tightly at the same beta.
    """

    def __init__(
        self, policy: TextPolicy, ref: ReferencePolicy, config: TextPPOConfig, seed: int = 0, kl: KLConfig | None = None
    ) -> None:
        if policy.value_head is None:
            raise ValueError("TextPPOTrainer needs a policy with a value head (TextPolicy(..., value_head=True))")
        self.policy = policy
        self.ref = ref
        self.config = config
        self.kl_config = kl if kl is not None else TEXT_PPO_KL
        self.kl: KLController = kl_controller(self.kl_config)
        self.optimizer = torch.optim.Adam((p for p in policy.parameters() if p.requires_grad), lr=config.lr, eps=1e-5)
        self.ppo = config.ppo_config()
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.steps = 0
        self.generated_tokens = 0

    def step(self, prompts: Sequence[Prompt], reward_fn: TextRewardFn) -> dict[str, float]:
        """One sample-score-update step on a random draw of ``prompts``.

        The log: ``reward`` (mean score), ``kl`` (mean KL per completion with the
        configured estimator), ``kl_per_token`` and ``tokens`` (the controller's
        input: the same estimate per real token, and the step's real tokens), ``kl_k1``/``kl_k3`` (both
        estimates, per completion), ``beta`` (the weight used in this step's
        rewards; the controller updates it afterwards), ``objective`` (mean of
        score - beta * KL), ``length``, ``value_loss``, ``policy_loss``,
        ``clip_frac``, ``entropy``, ``approx_kl`` (of the update) and
        ``generated_tokens`` (all real tokens sampled so far).
        """
        cfg = self.config
        pick = self.rng.choice(len(prompts), size=cfg.prompts_per_step, replace=len(prompts) < cfg.prompts_per_step)
        chosen = [prompts[i] for i in pick]

        # 1. sample; the reference's log-probs and the values of the visited states
        with torch.no_grad():
            batch = self.policy.generate(chosen, cfg.max_new_tokens, seed=self.seed + self.steps)
            ref_logp = self.ref.sampled_logp(batch)
            values = self.policy.completion_values(batch.input_ids, batch.attention_mask, batch.prompt_len)
        mask = batch.completion_mask.bool()
        self.generated_tokens += int(mask.sum())

        # 2. score
        owners = [chosen[int(j)] for j in batch.prompt_index]
        scores = np.asarray(reward_fn(owners, batch.completions), dtype=np.float64)
        if scores.shape != (len(batch),) or not np.all(np.isfinite(scores)):
            raise FloatingPointError(f"reward function returned {scores!r} for {len(batch)} completions")
        score = torch.as_tensor(scores, dtype=torch.float32, device=mask.device)

        # 3. per-token KL to the reference
        kl = token_kl(batch.logp, ref_logp, mask, self.kl_config.estimator)

        # 4-5. token rewards, GAE over tokens
        beta = float(self.kl.beta)
        rewards = token_rewards(score, kl, mask, beta)
        advantages, returns = token_gae(rewards, values, mask, cfg.gamma, cfg.gae_lambda)

        # 6. PPO epochs over minibatches of completions, means over real tokens
        stats = ppo_update(
            self.policy,
            self.optimizer,
            batch.obs(),
            batch.completion_ids,
            batch.logp,
            advantages,
            returns,
            self.ppo,
            self.generator,
            mask=mask,
        )

        # 7. adapt beta from the measured KL per token
        kl_per_completion = kl.sum(-1)
        mean_kl = float(kl_per_completion.mean())
        n_tokens = int(mask.sum())
        kl_per_token = float(kl.sum()) / max(n_tokens, 1)
        self.kl.update(kl_per_token, n_tokens)
        self.steps += 1
        both = {e: float(token_kl(batch.logp, ref_logp, mask, e).sum(-1).mean()) for e in ("k1", "k3")}
        return {
            "step": float(self.steps),
            "reward": float(scores.mean()),
            "kl": mean_kl,
            "kl_per_token": kl_per_token,
            "tokens": float(n_tokens),
            "kl_k1": both["k1"],
            "kl_k3": both["k3"],
            "beta": beta,
            "objective": float((score - beta * kl_per_completion).mean()),
            "length": float(mask.sum(-1).float().mean()),
            "value_loss": stats.value_loss,
            "policy_loss": stats.policy_loss,
            "clip_frac": stats.clip_frac,
            "entropy": stats.entropy,
            "approx_kl": stats.approx_kl,
            "generated_tokens": float(self.generated_tokens),
        }

    def train(self, prompts: Sequence[Prompt], reward_fn: TextRewardFn, steps: int) -> list[dict[str, float]]:
        """``steps`` calls of :meth:`step`; one log dict per step."""
        return [self.step(prompts, reward_fn) for _ in range(steps)]
