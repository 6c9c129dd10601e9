"""The text domain: a causal language model, its completions of prompts as generations, RLOO/GRPO/PPO.

:class:`TextDomain` is what the loop drives (:class:`~rlhfkit.domains.base.Domain`);
:class:`TextConfig` is its section of the run config (``[text]``).

One round, as the loop asks for it:

The prompts are the task's built-in ones, or the user's own file (``[text] prompts``,
:mod:`rlhfkit.feedback.formats.prompts`) split by a hash into prompts for queries and training and a
held-out share for evaluation.

1. **sample**: for each query, completions of one prompt from the current policy
   (two for a comparison, four for a ranking, one for a rating, label, correction
   or language query);
2. the reward model is a transformer sequence classifier of the base's
   architecture, fitted (warm start) by the one reward fit, each step whole prompt
   pieces with one prompt encoding each (``reward/transformer.py``);
3. **optimise** with RLOO or GRPO (``beta * KL(pi || pi_base)`` per token in the
   loss) or PPO (the KL per token in the reward), ``steps_per_round`` steps;
4. **evaluate** on the evaluation prompts at a fixed seed: true reward, learned reward, the
   task's proxy, completion length and KL to the base model (``true_return``,
   ``learned_return``, ``kl_to_base`` in ``metrics.jsonl``, as for control).

Larger models on one device (``[text.policy_memory]``, ``[text.reward_memory]``,
:mod:`rlhfkit.models.adapters`): LoRA adapters, activation checkpointing and bf16 weights.
With a LoRA policy the base policy is the same model with its adapters off (no second copy),
and a LoRA reward model starts from the base's body rather than a random one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification

from rlhfkit.checks import positive, require
from rlhfkit.domains.base import DomainContext, Hold
from rlhfkit.domains.samples import TEXT_SAMPLES, text_samples
from rlhfkit.feedback.formats.prompts import read_prompts, split_prompts
from rlhfkit.feedback.mix import query_size
from rlhfkit.models.adapters import MemoryConfig, prepare_model, reference_policy
from rlhfkit.models.text import TextPolicy
from rlhfkit.models.text_batch import Prompt
from rlhfkit.models.text_builders import load_causal_lm, reward_model_config
from rlhfkit.optimize.group.trainer import GroupPGConfig, GroupPGTrainer
from rlhfkit.optimize.ppo.lm_trainer import TextPPOConfig, TextPPOTrainer
from rlhfkit.reward.transformer import RewardModelScorer, SequenceRewardModel
from rlhfkit.tasks import text as describe_task
from rlhfkit.types import Content, Generation, Query, completion_text, new_id

TEXT_TASKS = ("text:describe",)
"""The built-in text tasks."""


@dataclass(frozen=True)
class TextBaseConfig:
    """The base model pi_base: the task's pre-trained tiny LM, or a saved causal LM."""

    path: str = ""
    """A save_pretrained folder; empty = pre-train the task's tiny model (cached in the run folder)."""
    pretrain_steps: int = 600
    """Pre-training steps for the task's tiny model."""


@dataclass(frozen=True)
class TextConfig:
    """A text run's own settings (the [text] section): completions, the optimiser, evaluation, the base model."""

    steps_per_round: int = 30
    """Policy-optimisation steps per round."""
    eval_per_prompt: int = 8
    """Completions per prompt for each round's evaluation (fixed seeds)."""
    max_new_tokens: int = 24
    """Longest completion, in tokens: for the completions people judge, for training and for evaluation."""
    prompts: str = ""
    """Your prompts: a JSONL file ({"prompt": "text"} or {"prompt": [{"role": ..., "content": ...}]} a line) or a
    folder saved by datasets with a 'prompt' column; empty = the task's built-in prompts."""
    heldout_prompts: float = 0.1
    """With prompts: the share held out (by a hash of each prompt) for evaluation only; queries and training
    use the rest. The built-in prompts are few and all used for both."""
    optimizer: Literal["grpo", "rloo", "ppo"] = "grpo"
    """Step 3's method: 'grpo' or 'rloo' (a group baseline, no value network; settings in [text.group]), or 'ppo'
    (a value head and a per-token KL penalty in the reward; settings in [text.ppo]). The KL is the run's [kl]."""
    group: GroupPGConfig = field(default_factory=lambda: GroupPGConfig(max_new_tokens=24))
    """Step 3 with optimizer = 'grpo' or 'rloo' (its max_new_tokens is text.max_new_tokens)."""
    ppo: TextPPOConfig = field(default_factory=lambda: TextPPOConfig(max_new_tokens=24, lr=2e-4))
    """Step 3 with optimizer = 'ppo' (its max_new_tokens is text.max_new_tokens)."""
    base: TextBaseConfig = field(default_factory=TextBaseConfig)
    """The base model."""
    policy_memory: MemoryConfig = field(default_factory=MemoryConfig)
    """How the policy trains within less memory: LoRA (the base policy is then the same model with its adapters
    off), activation checkpointing, bf16."""
    reward_memory: MemoryConfig = field(default_factory=MemoryConfig)
    """How the reward model trains within less memory: LoRA (the reward model then starts from the base's body,
    its reward head and adapters train), activation checkpointing, bf16."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "steps_per_round": (positive, ">= 1"),
                "eval_per_prompt": (positive, ">= 1"),
                "max_new_tokens": (positive, ">= 1"),
                "heldout_prompts": (lambda f: 0.0 < f < 1.0, "in (0, 1)"),
            },
        )
        for name in ("group", "ppo"):
            if getattr(self, name).max_new_tokens != self.max_new_tokens:
                raise ValueError(
                    f"{name}.max_new_tokens ({getattr(self, name).max_new_tokens}) differs from max_new_tokens "
                    f"({self.max_new_tokens}); set the length once, as text.max_new_tokens"
                )
        if self.policy_memory.lora_dropout != 0:
            raise ValueError(
                f"policy_memory.lora_dropout must be 0, got {self.policy_memory.lora_dropout}: the policy runs without "
                "dropout, so that its sampled log-probs equal its training log-probs"
            )


class TextDomain:
    """A causal language model in the loop (see the module docstring and :class:`~rlhfkit.domains.base.Domain`)."""

    return_scale = 1.0
    reward_optimizer: torch.optim.Optimizer | None = None  # each fit makes its own

    def __init__(self, ctx: DomainContext, config: TextConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.prompts: list[Prompt] = list(describe_task.prompts())
        self.eval_prompts = self.prompts
        if config.prompts:
            self.prompts, self.eval_prompts = split_prompts(read_prompts(config.prompts), config.heldout_prompts)
        self.instructions = describe_task.INSTRUCTIONS
        self.teacher_reward: Callable[[Content], np.ndarray] = lambda t: np.array(
            describe_task.true_reward(completion_text(t))
        )
        torch.manual_seed(ctx.seed)
        model, tokenizer = self._base_model()
        self.tokenizer = tokenizer
        # the reward model first: a LoRA one copies the base's body before the policy's options change it
        self.model = prepare_model(self._new_reward_model(model), config.reward_memory, "seq_cls", "text.reward_memory")
        policy_model = prepare_model(model, config.policy_memory, "causal_lm", "text.policy_memory")
        self.policy = TextPolicy(policy_model, tokenizer, value_head=config.optimizer == "ppo")
        self.ref = reference_policy(self.policy)  # a frozen copy, or with LoRA the policy's model, adapters off
        self.trainer: GroupPGTrainer | TextPPOTrainer = (
            TextPPOTrainer(self.policy, self.ref, config.ppo, seed=ctx.seed, kl=ctx.kl)
            if config.optimizer == "ppo"
            else GroupPGTrainer(self.policy, self.ref, config.group, ctx.seed, config.optimizer, ctx.kl)
        )

    def _new_reward_model(self, base: Any) -> Any:
        """A sequence classifier of the base's own architecture (GPT-2, Llama, Qwen2, ...), seeded by the run.

        Randomly initialised; with LoRA (``reward_memory.lora_r``) its body is the base's, since adapters on a
        frozen random body would leave little to learn beside the head.
        """
        rm_config = reward_model_config(base.config)
        if rm_config.pad_token_id is None:
            rm_config.pad_token_id = self.tokenizer.pad_token_id
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.seed + 1)
            model = AutoModelForSequenceClassification.from_config(rm_config)
        if self.config.reward_memory.lora_r:
            model.base_model.load_state_dict(base.base_model.state_dict())
        return model

    def _base_model(self) -> tuple[Any, Any]:
        cfg = self.config.base
        if cfg.path:
            return load_causal_lm(cfg.path)
        cached = self.ctx.run_dir / "base_model"
        if (cached / "config.json").exists():
            return load_causal_lm(cached)
        if self.ctx.progress:
            print("pre-training the task's tiny language model ...", flush=True)
        model, tokenizer = describe_task.pretrain_base_model(steps=cfg.pretrain_steps, seed=self.ctx.seed)
        model.save_pretrained(cached)
        tokenizer.save_pretrained(cached)
        return model, tokenizer

    # -- the steps ------------------------------------------------------------------------

    def sample(
        self, round_: int, counts: Mapping[str, int], rng: np.random.Generator
    ) -> tuple[list[Generation], list[Query]]:
        """For each query, completions of one prompt drawn at random (as many as the kind shows)."""
        gens: list[Generation] = []
        queries: list[Query] = []
        for j, (kind, count) in enumerate(counts.items()):
            if count == 0:
                continue
            size = query_size(kind)
            prompts = [self.prompts[int(i)] for i in rng.integers(0, len(self.prompts), count)]
            with torch.no_grad():
                seed = self.ctx.seed * 1000 + round_ + 100_003 * j
                batch = self.policy.generate(prompts, self.config.max_new_tokens, n_per_prompt=size, seed=seed)
            new = [Generation(new_id(rng), round_, f"round-{round_ - 1}", t) for t in batch.to_texts(prompts)]
            gens += new
            queries += [
                Query(new_id(rng), tuple(g.id for g in new[size * q : size * (q + 1)]), round_, kind=kind)
                for q in range(count)
            ]
        return gens, queries

    def reward_model(self) -> SequenceRewardModel:
        return SequenceRewardModel(self.model, self.tokenizer)

    def true_return(self, content: Content) -> float:
        return describe_task.true_reward(completion_text(content))

    def learned_reward(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> np.ndarray:
        """The reward model's score of each (prompt, completion)."""
        return RewardModelScorer(self.model, self.tokenizer)(prompts, completions)

    def optimize(self, round_: int, hold: Hold) -> None:
        """``steps_per_round`` steps of the configured optimiser on the learned reward; ``hold`` before each."""
        steps = self.config.steps_per_round
        for _ in tqdm(range(steps), desc=f"round {round_} policy", leave=False, disable=not self.ctx.progress):
            hold()
            self.trainer.step(self.prompts, self.learned_reward)

    @torch.no_grad()
    def evaluate(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Metrics on every prompt at a fixed seed, and samples of the same completions (no extra sampling)."""
        n = self.config.eval_per_prompt
        batch = self.policy.generate(self.eval_prompts, self.config.max_new_tokens, n, seed=123_457)
        owners = [self.eval_prompts[int(j)] for j in batch.prompt_index]
        true = describe_task.true_rewards(batch.completions)
        learned = self.learned_reward(owners, batch.completions)
        proxy = [describe_task.proxy_reward(c) for c in batch.completions]
        logp = batch.logp  # the sampler's log-probs equal the policy's (see TextPolicy)
        ref_logp = self.ref.sampled_logp(batch)
        mask = batch.completion_mask.to(logp.dtype)
        kl = ((logp - ref_logp) * mask).sum(-1)  # k1 per sequence: unbiased for KL(pi || pi_base)
        words = [len(c.split()) for c in batch.completions]
        metrics = {
            "true_return": float(true.mean()),
            "true_return_std": float(true.std()),
            "learned_return": float(learned.mean()),
            "proxy_return": float(np.mean(proxy)),
            "kl_to_base": float(kl.mean()),
            "length_words": float(np.mean(words)),
        }
        first = [i * n for i in range(min(TEXT_SAMPLES, len(self.eval_prompts)))]  # each prompt's first completion
        samples = text_samples(
            [self.eval_prompts[int(batch.prompt_index[i])] for i in first],
            [batch.completions[i] for i in first],
            [float(true[i]) for i in first],
            [float(learned[i]) for i in first],
        )
        return metrics, samples

    def counters(self) -> dict[str, float]:
        return {"generated_tokens": self.trainer.generated_tokens}  # an int in metrics.jsonl

    @property
    def beta(self) -> float:
        return float(self.trainer.kl.beta)

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "reward_model": self.model.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
            "steps": self.trainer.steps,
            "generated_tokens": self.trainer.generated_tokens,
            "beta": self.beta,
        }

    def load_state_dict(self, state: dict[str, Any], round_: int) -> None:
        self.policy.load_state_dict(state["policy"])
        self.model.load_state_dict(state["reward_model"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.trainer.steps = state["steps"]
        self.trainer.generated_tokens = state["generated_tokens"]
        self.trainer.kl.beta = float(state["beta"])  # an adaptive beta goes on from where it was
