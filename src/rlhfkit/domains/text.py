"""The text domain: a causal language model, its completions of prompts as generations, RLOO/GRPO/PPO.

:class:`TextDomain` is what the loop drives (:class:`~rlhfkit.domains.base.Domain`);
:class:`TextConfig` is its section of the run config (``[text]``).

One round, as the loop asks for it:

Tasks: ``text:describe`` (a built-in toy task that runs offline: its own prompts, a tiny
pre-trained base and a known true reward, :mod:`rlhfkit.tasks.text`) and ``text:chat`` (your model,
your prompts, your reward: no built-in parts). The prompts are the task's built-in ones, or the
user's own file (``[text] prompts``, :mod:`rlhfkit.feedback.formats.prompts`) split by a hash into
prompts for queries and training and a held-out share for evaluation. What the policy maximises is
``[text.objective]`` (:mod:`rlhfkit.domains.text_objective`): the loop's reward model, reward
functions, or a weighted sum.

1. **sample**: for each query, completions of one prompt from the current policy
   (two for a comparison, four for a ranking, one for a rating, label, correction
   or language query); with ``[feedback] query_strategy = "entropy"``, from round 2,
   ``candidates`` times as many, of which the query asks those the reward model is
   least sure of (:func:`~rlhfkit.feedback.selection.choose_in_prompt`);
2. the reward model is a transformer sequence classifier of the base's
   architecture (or loaded from ``[text.objective] reward_model``), fitted (warm
   start) by the one reward fit, each step whole prompt pieces with one prompt
   encoding each (``reward/transformer.py``); a frozen one (``refit = false``) or
   an objective without it skips steps 1 and 2;
3. **optimise** the objective with RLOO or GRPO (``beta * KL(pi || pi_base)`` per
   token in the loss) or PPO (the KL per token in the reward), ``steps_per_round`` steps;
4. **evaluate** on the evaluation prompts at a fixed seed (the same random numbers
   every round): ``learned_return`` (the reward model's mean score; NaN where the objective leaves
   it out) and
   ``learned_return_vs_base`` (its mean score of the policy's completions minus that of the
   base's, both scored by this round's reward model),
   ``objective_return`` (what the policy maximises), ``kl_to_base``,
   ``length_words`` and ``length_tokens``; ``true_return`` where a true reward is
   known (text:describe's, or ``[text] true_reward``), NaN otherwise;
   ``win_rate_vs_base`` with a ``[text] judge``: the share of evaluation prompts on
   which the judge prefers the policy's completion to the base policy's.

Larger models on one device (``[text.policy_memory]``, ``[text.reward_memory]``,
:mod:`rlhfkit.models.adapters`): LoRA adapters, activation checkpointing and bf16 weights.
With a LoRA policy the base policy is the same model with its adapters off (no second copy),
and a new LoRA reward model starts from the base's body rather than a random one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification

from rlhfkit.checks import positive, require
from rlhfkit.domains.base import DomainContext, Hold
from rlhfkit.domains.samples import TEXT_SAMPLES, text_samples
from rlhfkit.domains.text_objective import Judge, Objective, ObjectiveConfig, ScoreFn, ScoreFunction, load_function
from rlhfkit.errors import ConfigError
from rlhfkit.feedback.formats.prompts import read_prompts, split_prompts
from rlhfkit.feedback.mix import query_size
from rlhfkit.feedback.selection import choose_in_prompt, ensemble_scores
from rlhfkit.feedback.win_rate import BASE_POLICY, EVALUATION_PREFIX
from rlhfkit.models.adapters import MemoryConfig, prepare_model, reference_policy
from rlhfkit.models.text import TextPolicy
from rlhfkit.models.text_batch import Prompt
from rlhfkit.models.text_builders import ModelFolderError, load_causal_lm, reward_model_config
from rlhfkit.optimize.group.trainer import GroupPGConfig, GroupPGTrainer
from rlhfkit.optimize.ppo.lm_trainer import TextPPOConfig, TextPPOTrainer
from rlhfkit.reward.transformer import RewardModelScorer, SequenceRewardModel, load_reward_model
from rlhfkit.tasks import text as describe_task
from rlhfkit.types import Content, Generation, Query, Text, completion_text, new_id

TEXT_TASKS = ("text:describe", "text:chat")
"""The text tasks: the built-in toy task, and your own model, prompts and reward."""

TEXT_STRATEGIES = ("uniform", "entropy")
"""The ``[feedback] query_strategy`` values a text run takes. A text round asks one query per prompt, about
completions of that prompt (:func:`~rlhfkit.feedback.selection.choose_in_prompt`): there is no round of pairs for the
k-center strategies to spread apart, and the reward model is one transformer, no ensemble to disagree
(disagreement, bald)."""

EVAL_SEED = 123_457
"""The evaluation's sampling seed: every round answers the same prompts under the same random numbers."""

CHAT_INSTRUCTIONS = (
    "Read the prompt and both replies. Choose the reply that answers the prompt better: helpful, correct, "
    "honest and harmless. Say they are about equal when neither is better."
)
"""What people are asked on a text:chat run when the config gives no feedback.instructions."""


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
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """What the policy maximises: the loop's reward model, your reward functions, or a weighted sum."""
    true_reward: str = ""
    """A known reward, "module:function" (or "path/to/file.py:function") taking (prompts, completions) and returning
    one float per completion: the simulated human judges by it and the evaluation reports it as true_return;
    empty = the task's own (text:describe) or none (text:chat)."""
    people_win_rate: int = 0
    """Comparisons per round of the round's policy against the base on held-out prompts, asked of the human after
    each round's evaluation; the answers are stored, never fitted, and the report shows the policy's win rate
    per round (people answer when they can; the simulated human at once); 0 = none."""
    judge: str = ""
    """A judge, "module:function" taking (prompts, completions_a, completions_b) and returning P(a is better) per
    row: the evaluation reports win_rate_vs_base, the policy's completions against the base's; empty = none."""
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
                "people_win_rate": (lambda n: n >= 0, ">= 0"),
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


def check_text_parts(config: TextConfig) -> None:
    """Read the user's parts a text run names (prompts, functions, the reward model's folder) before a run folder is
    written; raises the error that names the first one that is unusable."""
    if config.prompts:
        split_prompts(read_prompts(config.prompts), config.heldout_prompts)
    for spec in config.objective.functions:
        load_function(spec, "text.objective.functions")
    if config.true_reward:
        load_function(config.true_reward, "text.true_reward")
    if config.judge:
        load_function(config.judge, "text.judge")
    folder = config.objective.reward_model
    if folder and not (Path(folder) / "config.json").is_file():
        raise ModelFolderError(f"text.objective.reward_model: {folder}: not a folder saved with save_pretrained")


class TextDomain:
    """A causal language model in the loop (see the module docstring and :class:`~rlhfkit.domains.base.Domain`)."""

    return_scale = 1.0
    reward_optimizer: torch.optim.Optimizer | None = None  # each fit makes its own

    def __init__(self, ctx: DomainContext, config: TextConfig) -> None:
        self.ctx = ctx
        self.config = config
        describe = ctx.task == "text:describe"
        self.prompts: list[Prompt] = list(describe_task.prompts()) if describe else []
        self.eval_prompts = self.prompts
        if config.prompts:
            self.prompts, self.eval_prompts = split_prompts(read_prompts(config.prompts), config.heldout_prompts)
        self.instructions = describe_task.INSTRUCTIONS if describe else CHAT_INSTRUCTIONS
        self.true_scores: ScoreFn | None = (
            ScoreFunction(config.true_reward, "text.true_reward")
            if config.true_reward
            else (lambda _, completions: describe_task.true_rewards(completions))
            if describe
            else None
        )
        self.judge = Judge(config.judge) if config.judge else None
        torch.manual_seed(ctx.seed)
        model, tokenizer = self._base_model()
        self.tokenizer = tokenizer
        self.model, self.rm_tokenizer = self._reward_model(model)  # before the policy's options change the base
        self.model = prepare_model(self.model, config.reward_memory, "seq_cls", "text.reward_memory")
        policy_model = prepare_model(model, config.policy_memory, "causal_lm", "text.policy_memory")
        self.policy = TextPolicy(policy_model, tokenizer, value_head=config.optimizer == "ppo")
        self.ref = reference_policy(self.policy)  # a frozen copy, or with LoRA the policy's model, adapters off
        self.objective = Objective(config.objective, self.learned_reward)
        self.base_completions: list[str] | None = None  # the base policy's evaluation completions, once
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

    def _reward_model(self, base: Any) -> tuple[Any, Any]:
        """The loop's reward model and its tokenizer: loaded from the objective's folder, or a new one of the base's
        architecture reading the policy's tokens (:meth:`_new_reward_model`)."""
        folder = self.config.objective.reward_model
        if folder:
            try:
                return load_reward_model(folder, [])
            except ModelFolderError as e:
                raise ModelFolderError(str(e).replace("--model", "text.objective.reward_model", 1)) from None
        return self._new_reward_model(base), self.tokenizer

    # -- the steps ------------------------------------------------------------------------

    def sample(
        self, round_: int, counts: Mapping[str, int], rng: np.random.Generator
    ) -> tuple[list[Generation], list[Query]]:
        """For each query, completions of one prompt drawn at random (as many as the kind shows).

        From round 2 with ``[feedback] query_strategy = 'entropy'`` each query's prompt gets ``candidates`` times
        the completions the query shows, and the query asks those the reward model is least sure of
        (:meth:`_choose`); the others are not kept. Round 1 is uniform: its reward model has seen no answers.
        """
        selection = self.ctx.selection.in_round(round_)
        scorer = self.reward_model() if selection.strategy != "uniform" else None
        gens: list[Generation] = []
        queries: list[Query] = []
        for j, (kind, count) in enumerate(counts.items()):
            if count == 0:
                continue
            size = query_size(kind)
            drawn = size * selection.candidates if scorer is not None else size
            prompts = [self.prompts[int(i)] for i in rng.integers(0, len(self.prompts), count)]
            with torch.no_grad():
                seed = self.ctx.seed * 1000 + round_ + 100_003 * j
                batch = self.policy.generate(prompts, self.config.max_new_tokens, n_per_prompt=drawn, seed=seed)
            texts = batch.to_texts(prompts)
            groups = [texts[drawn * q : drawn * (q + 1)] for q in range(count)]
            if scorer is not None and drawn > size:
                groups = self._choose(selection.strategy, scorer, groups, size)
            new = [Generation(new_id(rng), round_, f"round-{round_ - 1}", t) for group in groups for t in group]
            gens += new
            queries += [
                Query(new_id(rng), tuple(g.id for g in new[size * q : size * (q + 1)]), round_, kind=kind)
                for q in range(count)
            ]
        return gens, queries

    def _choose(
        self, strategy: str, scorer: SequenceRewardModel, groups: Sequence[Sequence[Text]], size: int
    ) -> list[list[Text]]:
        """The ``size`` completions of each prompt's group of candidates that its query asks
        (:func:`~rlhfkit.feedback.selection.choose_in_prompt` on the reward model's ``(1, m)`` returns).

        Only distinct completions compete (the first of equal ones): two equal completions score the same, so
        ``P(A>B) = 1/2`` and the highest entropy, yet a person learns nothing from comparing them. A group with
        fewer than ``size`` distinct completions asks its first ones.
        """
        self.model.eval()  # as RewardModelScorer scores: no dropout
        returns = ensemble_scores(scorer, [t for group in groups for t in group]).returns
        m = len(groups[0])
        keep: list[list[int]] = []
        for group in groups:
            firsts: dict[str, int] = {}
            for i, t in enumerate(group):
                firsts.setdefault(str(t.completion), i)
            keep.append(list(firsts.values()) if len(firsts) >= size else list(range(size)))
        picks = choose_in_prompt(strategy, [returns[:, [m * q + i for i in idx]] for q, idx in enumerate(keep)], size)
        return [[group[idx[i]] for i in pick] for group, idx, pick in zip(groups, keep, picks, strict=True)]

    def evaluation_queries(self, round_: int, rng: np.random.Generator) -> tuple[list[Generation], list[Query]]:
        """``people_win_rate`` comparisons of the policy's and the base's completions of held-out prompts (the
        policy's side drawn per query), for people to judge; never fitted (:mod:`rlhfkit.feedback.win_rate`)."""
        n = self.config.people_win_rate
        if n == 0:
            return [], []
        prompts = [self.eval_prompts[int(i)] for i in rng.integers(0, len(self.eval_prompts), n)]
        seed = self.ctx.seed * 1000 + round_ + 200_003
        with torch.no_grad():
            mine = self.policy.generate(prompts, self.config.max_new_tokens, seed=seed).to_texts(prompts)
            base = self.ref.generate(prompts, self.config.max_new_tokens, seed=seed + 1).to_texts(prompts)
        gens: list[Generation] = []
        queries: list[Query] = []
        for policy_text, base_text in zip(mine, base, strict=True):
            pair = [
                Generation(new_id(rng), round_, f"round-{round_}", policy_text),
                Generation(new_id(rng), round_, BASE_POLICY, base_text),
            ]
            if rng.random() < 0.5:
                pair.reverse()
            gens += pair
            queries.append(Query(EVALUATION_PREFIX + new_id(rng), (pair[0].id, pair[1].id), round_))
        return gens, queries

    def reward_model(self) -> SequenceRewardModel | None:
        """The reward model to fit, or None when the objective keeps it frozen or leaves it out."""
        return SequenceRewardModel(self.model, self.rm_tokenizer) if self.config.objective.learns else None

    def teacher_reward(self, content: Content) -> np.ndarray:
        """The true reward the simulated human judges by (text:describe's, or ``[text] true_reward``)."""
        if self.true_scores is None:
            raise ConfigError(
                f"{self.ctx.task} has no true reward for the simulated human to judge by: "
                "set text.true_reward = 'module:function', or feedback.human = 'web'"
            )
        assert isinstance(content, Text)
        return np.asarray(self.true_scores([content.prompt], [completion_text(content)])[0])

    def true_return(self, content: Content) -> float:
        return float(self.teacher_reward(content)) if self.true_scores is not None else float("nan")

    def learned_reward(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> np.ndarray:
        """The reward model's score of each (prompt, completion)."""
        return RewardModelScorer(self.model, self.rm_tokenizer)(prompts, completions)

    def optimize(self, round_: int, hold: Hold) -> None:
        """``steps_per_round`` steps of the configured optimiser on the objective; ``hold`` before each."""
        steps = self.config.steps_per_round
        for _ in tqdm(range(steps), desc=f"round {round_} policy", leave=False, disable=not self.ctx.progress):
            hold()
            self.trainer.step(self.prompts, self.objective)

    @torch.no_grad()
    def evaluate(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Metrics on the evaluation prompts at a fixed seed, and samples of the same completions."""
        n = self.config.eval_per_prompt
        batch = self.policy.generate(self.eval_prompts, self.config.max_new_tokens, n, seed=EVAL_SEED)
        owners = [self.eval_prompts[int(j)] for j in batch.prompt_index]
        nan = np.full(len(owners), np.nan)
        true = self.true_scores(owners, batch.completions) if self.true_scores is not None else nan
        terms = self.objective.terms(owners, batch.completions)
        learned = terms.get("reward_model", nan)  # NaN where the objective leaves the reward model out
        base_learned = self.learned_reward(owners, self._base(owners)) if "reward_model" in terms else nan
        logp = batch.logp  # the sampler's log-probs equal the policy's (see TextPolicy)
        ref_logp = self.ref.sampled_logp(batch)
        mask = batch.completion_mask.to(logp.dtype)
        kl = ((logp - ref_logp) * mask).sum(-1)  # k1 per sequence: unbiased for KL(pi || pi_base)
        metrics = {
            "true_return": float(true.mean()),
            "true_return_std": float(true.std()),
            "learned_return": float(learned.mean()),
            # the same reward model on the base's completions: a gain that a refit's new scale cannot fake
            "learned_return_vs_base": float(learned.mean() - base_learned.mean()),
            "objective_return": float(self.objective.combine(terms).mean()),
            "kl_to_base": float(kl.mean()),
            "length_words": float(np.mean([len(c.split()) for c in batch.completions])),
            "length_tokens": float(mask.sum(-1).mean()),
        }
        if self.ctx.task == "text:describe":
            metrics["proxy_return"] = float(np.mean([describe_task.proxy_reward(c) for c in batch.completions]))
        if self.judge is not None:
            metrics["win_rate_vs_base"] = float(self.judge(owners, batch.completions, self._base(owners)).mean())
        first = [i * n for i in range(min(TEXT_SAMPLES, len(self.eval_prompts)))]  # each prompt's first completion
        samples = text_samples(
            [self.eval_prompts[int(batch.prompt_index[i])] for i in first],
            [batch.completions[i] for i in first],
            [float(true[i]) for i in first],
            [float(learned[i]) for i in first],
        )
        return metrics, samples

    def _base(self, owners: Sequence[Prompt]) -> list[str]:
        """The base policy's completions of the evaluation prompts at the evaluation's seed (made once)."""
        if self.base_completions is None:
            n = self.config.eval_per_prompt
            batch = self.ref.generate(self.eval_prompts, self.config.max_new_tokens, n, seed=EVAL_SEED + 1)
            self.base_completions = list(batch.completions)
        if len(self.base_completions) != len(owners):
            raise RuntimeError("the base completions do not match the evaluation prompts")
        return self.base_completions

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
