"""The RLHF loop on text: the same three steps as :mod:`rlhfkit.loop`, for a language model.

One round ``k``:

1. **sample** two completions for each of ``n`` prompts from the current policy
   and store each pair as a comparison query (with ``feedback.kinds``: queries of
   each kind by its share, each showing completions of one prompt, four for a ranking);
2. **ask** the (simulated) human, committing each answer;
3. **fit** the transformer reward model (warm start) on every usable stored answer
   of every kind in the one reward fit (``reward/fit.py``), each step whole prompt
   pieces with one prompt encoding each (``reward/transformer.py``);
4. **optimise** the policy with RLOO or GRPO on the learned reward, with
   ``beta * KL(pi || pi_base)`` in the loss;
5. **evaluate** on fixed prompts and seeds: true reward, learned reward, the
   task's proxy, completion length and KL to the base model (``true_return``,
   ``learned_return``, ``kl_to_base`` in ``metrics.jsonl``, so one report serves
   both domains), then checkpoint.

Resume works as for control: a round's stored queries are reused and only the
unanswered ones are asked.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm
from transformers import GPT2ForSequenceClassification

from rlhfkit.checks import positive, require
from rlhfkit.config import ConfigError, from_dict
from rlhfkit.feedback.answers import read_answers
from rlhfkit.feedback.edits import completion_text
from rlhfkit.feedback.effort import EffortConfig
from rlhfkit.feedback.mix import KindTools, check_kinds, comparisons_only, query_size, run_kind_setup, split_queries
from rlhfkit.feedback.store import AnnotationSettings
from rlhfkit.feedback.teacher import SimulatedHuman, TeacherConfig
from rlhfkit.feedback.web import WebHuman, open_run_store
from rlhfkit.loop import ask_pending, existing_run_folder, load_latest_checkpoint, new_run_folder, save_checkpoint
from rlhfkit.models.text import TextPolicy
from rlhfkit.models.text_batch import Prompt
from rlhfkit.models.text_builders import load_causal_lm, reward_model_config
from rlhfkit.optimize.group.trainer import GroupPGConfig, GroupPGTrainer
from rlhfkit.optimize.ppo.lm_trainer import TextPPOConfig, TextPPOTrainer
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.fit import NoUsableFeedbackError, RewardMetrics, fit_reward
from rlhfkit.reward.transformer import RewardModelScorer, SequenceRewardModel
from rlhfkit.samples import TEXT_SAMPLES, text_samples, write_samples
from rlhfkit.tasks import text as describe_task
from rlhfkit.types import Generation, Query, new_id

TEXT_TASKS = ("text:describe",)

TEXT_REWARD: dict[str, Any] = {"ensemble_size": 1, "epochs": 3, "lr": 1e-3, "weight_decay": 0.0}
"""A text run's reward fit where it differs from :class:`RewardConfig`'s defaults (also for a partial [reward])."""


@dataclass(frozen=True)
class TextFeedbackConfig:
    """Step 1 on text: how many comparisons, how long the completions, who answers."""

    initial_comparisons: int = 60
    """Comparisons asked in round 1 (about the base model's completions)."""
    comparisons_per_round: int = 30
    """Comparisons asked in each later round."""
    max_new_tokens: int = 24
    """Longest completion, in tokens."""
    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(beta=4.0))
    """The simulated human's noise model (it judges the task's true reward)."""
    human: Literal["simulated", "web"] = "simulated"
    """Who answers: 'simulated' (the teacher above), or 'web': people in `rlhfkit serve RUN_DIR`."""
    web_min_answers: int = 10
    """With human = 'web': usable answers that must be stored before the reward is fitted (the loop waits)."""
    web_poll_s: float = 2.0
    """With human = 'web': seconds between looks at the store while waiting for answers or while paused."""
    store_url: str = ""
    """Feedback store URL shared with `rlhfkit serve --db`; empty = RUN_DIR/feedback.sqlite."""
    instructions: str = ""
    """What people in the web app are asked to look for (what "better" means), shown on every query; empty =
    the task's default. The rating scale and label choices they answer on are teacher.rating_scale and
    teacher.label_choices, the simulated human's too."""
    kinds: dict[str, float] = field(default_factory=lambda: {"comparison": 1.0})
    """Share of each round's queries per feedback kind, summing to 1, e.g. {comparison = 0.5, ranking = 0.25,
    correction = 0.25}. Kinds: comparison, ranking (4 completions of a prompt), rating, label, correction (an
    edited completion), language. With any kind besides comparison, initial_comparisons and comparisons_per_round
    count queries of every kind and the reward model is fitted on all stored answers (reward/fit.py)."""
    interpreter: Literal["keyword", "embedding"] = "keyword"
    """How language answers become training signal: 'keyword' (word lists) or 'embedding'
    (all-MiniLM-L6-v2 sentence embeddings, offline)."""
    effort: EffortConfig = field(default_factory=EffortConfig)
    """Human-seconds per answer of each kind; metrics.jsonl's human_minutes adds them up over stored answers."""

    def __post_init__(self) -> None:
        check_kinds(self.kinds, self.human, "text")
        require(
            self,
            {
                "initial_comparisons": (positive, ">= 1"),
                "comparisons_per_round": (lambda v: v >= 0, ">= 0"),
                "max_new_tokens": (positive, ">= 1"),
                "web_min_answers": (positive, ">= 1"),
                "web_poll_s": (positive, "> 0"),
            },
        )


@dataclass(frozen=True)
class TextBaseConfig:
    """The base model pi_base: the task's pre-trained tiny LM, or a saved causal LM."""

    path: str = ""
    """A save_pretrained folder; empty = pre-train the task's tiny model (cached in the run folder)."""
    pretrain_steps: int = 600
    """Pre-training steps for the task's tiny model."""


@dataclass(frozen=True)
class TextRunConfig:
    """A whole RLHF run on a text task."""

    task: Literal["text:describe"] = "text:describe"
    """The built-in text task."""
    rounds: int = 4
    """Rounds of collect feedback -> fit reward -> optimise policy."""
    seed: int = 0
    """Seed of every random generator in the run."""
    steps_per_round: int = 30
    """Policy-optimisation steps per round."""
    eval_per_prompt: int = 8
    """Completions per prompt for each round's evaluation (fixed seeds)."""
    feedback: TextFeedbackConfig = field(default_factory=TextFeedbackConfig)
    """Step 1: collecting feedback."""
    reward: RewardConfig = field(default_factory=lambda: RewardConfig(**TEXT_REWARD))
    """Step 2: fitting the transformer reward model (one member: ensemble_size = 1)."""
    optimizer: Literal["grpo", "rloo", "ppo"] = "grpo"
    """Step 3's method: 'grpo' or 'rloo' (a group baseline, no value network; settings in [optim]), or 'ppo'
    (a value head and a per-token KL penalty in the reward; settings in [ppo])."""
    optim: GroupPGConfig = field(default_factory=lambda: GroupPGConfig(max_new_tokens=24, beta=0.05))
    """Step 3 with optimizer = 'grpo' or 'rloo': the group method, with the KL to the base model in the loss."""
    ppo: TextPPOConfig = field(default_factory=lambda: TextPPOConfig(max_new_tokens=24, lr=2e-4))
    """Step 3 with optimizer = 'ppo': KL-regularised PPO (k1 or k3 per token, fixed or adaptive beta)."""
    base: TextBaseConfig = field(default_factory=TextBaseConfig)
    """The base model."""

    def __post_init__(self) -> None:
        require(self, {"rounds": (positive, ">= 1"), "steps_per_round": (positive, ">= 1")})
        if self.reward.ensemble_size != 1:
            raise ValueError(
                f"reward.ensemble_size must be 1 for a text run (its reward model is one transformer), "
                f"got {self.reward.ensemble_size}"
            )


def load_text_config(path: str | Path) -> TextRunConfig:
    """Read and validate a text run config (errors name the file and field)."""
    import tomllib

    p = Path(path)
    try:
        data = _one_optimizer_name(tomllib.loads(p.read_text(encoding="utf-8")))
        table = data.pop("reward", {})
        if not isinstance(table, dict):
            raise ConfigError("reward: expected a table [reward]")
        reward = from_dict(RewardConfig, table, "reward.", defaults=TEXT_REWARD)
        if reward.ensemble_size != 1:
            raise ConfigError(
                f"reward.ensemble_size: a text run's reward model is one transformer; set 1, got {reward.ensemble_size}"
            )
        return dataclasses.replace(from_dict(TextRunConfig, data), reward=reward)
    except (ConfigError, tomllib.TOMLDecodeError, FileNotFoundError) as e:
        raise ConfigError(f"{p}: {e}") from None


def _one_optimizer_name(data: dict[str, Any]) -> dict[str, Any]:
    """Read the older spelling ``optimizer = "group"`` + ``[optim] algorithm = "grpo"`` as ``optimizer = "grpo"``.

    Run folders and configs written before the optimiser was named once still load;
    an ``optim.algorithm`` that contradicts ``optimizer`` is an error naming both.
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


def text_kind_setup(config: TextRunConfig) -> tuple[KindTools, TeacherConfig]:
    """What the configured feedback kinds need on the text task, and the simulated human's config."""
    fb = config.feedback
    try:
        return run_kind_setup(config.task, fb.kinds, fb.interpreter, fb.teacher, fb.human == "simulated")
    except ValueError as e:
        raise ConfigError(f"feedback.{e}") from None


class TextRun:
    """A text run folder and the loop over its rounds (see the module docstring)."""

    def __init__(self, run_dir: Path, config: TextRunConfig, progress: bool = True) -> None:
        self.dir = run_dir
        self.config = config
        self.progress = progress
        self.prompts: list[Prompt] = list(describe_task.prompts())
        fb = config.feedback
        self.mixed = not comparisons_only(fb.kinds)
        self.tools, teacher = text_kind_setup(config)
        self.store = open_run_store(run_dir, fb.store_url)
        instructions = fb.instructions or describe_task.INSTRUCTIONS
        self.store.write_annotation_settings(AnnotationSettings.of_run(fb.teacher, instructions, config.task))
        self.human: SimulatedHuman | WebHuman = (
            WebHuman(self.store, fb.web_min_answers, fb.web_poll_s, log=print if progress else None, run_dir=run_dir)
            if fb.human == "web"
            else SimulatedHuman(
                teacher,
                reward_fn=lambda t: np.array(describe_task.true_reward(t.completion)),
                seed=config.seed + 7919,
                annotator_id=f"simulated-{config.seed}",
                features=self.tools.features,
                editor=self.tools.editor,
            )
        )
        torch.manual_seed(config.seed)
        model, tokenizer = self._base_model()
        self.tokenizer = tokenizer
        self.policy = TextPolicy(model, tokenizer, value_head=config.optimizer == "ppo")
        self.ref = self.policy.frozen_copy()
        rm_config = reward_model_config(model.config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            self.reward_model = GPT2ForSequenceClassification(rm_config)
        self.trainer: GroupPGTrainer | TextPPOTrainer = (
            TextPPOTrainer(self.policy, self.ref, config.ppo, seed=config.seed)
            if config.optimizer == "ppo"
            else GroupPGTrainer(self.policy, self.ref, config.optim, seed=config.seed, algorithm=config.optimizer)
        )
        self.round = 0
        self.history: list[dict[str, float]] = []

    @classmethod
    def create(cls, config: TextRunConfig, run_dir: str | Path, progress: bool = True) -> TextRun:
        text_kind_setup(config)  # a feedback kind the task cannot support fails before anything is written
        return cls(new_run_folder(run_dir, config), config, progress)

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True) -> TextRun:
        d = existing_run_folder(run_dir)
        run = cls(d, load_text_config(d / "config.toml"), progress)
        run.load_latest_checkpoint()
        return run

    def _base_model(self) -> tuple[Any, Any]:
        cfg = self.config.base
        if cfg.path:
            return load_causal_lm(cfg.path)
        cached = self.dir / "base_model"
        if (cached / "config.json").exists():
            return load_causal_lm(cached)
        if self.progress:
            print("pre-training the task's tiny language model ...", flush=True)
        model, tokenizer = describe_task.pretrain_base_model(steps=cfg.pretrain_steps, seed=self.config.seed)
        model.save_pretrained(cached)
        tokenizer.save_pretrained(cached)
        return model, tokenizer

    @property
    def beta(self) -> float:
        """The KL coefficient now (PPO's may adapt; RLOO / GRPO keep theirs)."""
        if isinstance(self.trainer, TextPPOTrainer):
            return float(self.trainer.kl.beta)
        return float(self.config.optim.beta)

    # -- checkpoints ------------------------------------------------------------------

    def _checkpoint(self) -> None:
        payload = {
            "policy": self.policy.state_dict(),
            "reward_model": self.reward_model.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
            "steps": self.trainer.steps,
            "generated_tokens": self.trainer.generated_tokens,
            "beta": self.beta,
        }
        save_checkpoint(self.dir, self.round, payload, self.history)

    def load_latest_checkpoint(self) -> None:
        ck = load_latest_checkpoint(self.dir)
        if ck is None:
            return
        self.policy.load_state_dict(ck["policy"])
        self.reward_model.load_state_dict(ck["reward_model"])
        self.trainer.optimizer.load_state_dict(ck["optimizer"])
        self.trainer.steps = ck["steps"]
        self.trainer.generated_tokens = ck["generated_tokens"]
        if isinstance(self.trainer, TextPPOTrainer):
            self.trainer.kl.beta = float(ck["beta"])  # an adaptive beta goes on from where it was
        self.round = ck["round"]
        self.history = list(ck["history"])

    # -- the steps ----------------------------------------------------------------------

    def sample_queries(self, k: int) -> list[Query]:
        stored = self.store.queries(round=k)
        if stored:
            return stored
        fb = self.config.feedback
        n = fb.initial_comparisons if k == 1 else fb.comparisons_per_round
        if n == 0:
            return []
        if self.mixed:
            return self._sample_mixed(k, n)
        rng = np.random.default_rng([self.config.seed, k])
        prompts = [self.prompts[int(i)] for i in rng.integers(0, len(self.prompts), n)]
        with torch.no_grad():
            batch = self.policy.generate(prompts, fb.max_new_tokens, n_per_prompt=2, seed=self.config.seed * 1000 + k)
        texts = batch.to_texts(prompts)
        gens = [Generation(new_id(rng), k, f"round-{k - 1}", t) for t in texts]
        queries = [Query(new_id(rng), (gens[2 * j].id, gens[2 * j + 1].id), k) for j in range(n)]
        self.store.add_generations(gens)
        self.store.add_queries(queries)
        return queries

    def _sample_mixed(self, k: int, n: int) -> list[Query]:
        """``n`` queries of the configured kinds; each shows completions of one prompt (a ranking four)."""
        fb = self.config.feedback
        rng = np.random.default_rng([self.config.seed, k])
        gens: list[Generation] = []
        queries: list[Query] = []
        for j, (kind, count) in enumerate(split_queries(n, fb.kinds).items()):
            if count == 0:
                continue
            size = query_size(kind)
            prompts = [self.prompts[int(i)] for i in rng.integers(0, len(self.prompts), count)]
            with torch.no_grad():
                seed = self.config.seed * 1000 + k + 100_003 * (j + 1)
                batch = self.policy.generate(prompts, fb.max_new_tokens, n_per_prompt=size, seed=seed)
            new = [Generation(new_id(rng), k, f"round-{k - 1}", t) for t in batch.to_texts(prompts)]
            gens += new
            queries += [
                Query(new_id(rng), tuple(g.id for g in new[size * q : size * (q + 1)]), k, kind=kind)
                for q in range(count)
            ]
        self.store.add_generations(gens)
        self.store.add_queries(queries)
        return queries

    def ask(self, queries: Sequence[Query]) -> int:
        return ask_pending(self.store, self.human, queries, self.progress)

    def human_minutes(self) -> float:
        """Human-minutes spent on every stored answer, by the configured effort costs."""
        return self.config.feedback.effort.total_minutes(self.store.feedback())

    def fit(self) -> RewardMetrics:
        """Step 2: fit the transformer reward model (warm start) on every stored answer of every kind."""
        rc = self.config.reward
        train, heldout = read_answers(self.store).split(rc.holdout_frac)
        config = dataclasses.replace(rc, seed=rc.seed + self.config.seed + self.round)
        try:
            return fit_reward(
                SequenceRewardModel(self.reward_model, self.tokenizer),
                train,
                heldout,
                config,
                self.tools,
                true_return=lambda x: describe_task.true_reward(completion_text(x)),
            )
        except NoUsableFeedbackError as e:
            raise NoUsableFeedbackError(f"{self.dir}: {e}") from None

    def learned_reward(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> np.ndarray:
        """The reward model's score of each (prompt, completion)."""
        return RewardModelScorer(self.reward_model, self.tokenizer)(prompts, completions)

    def evaluate(self) -> dict[str, float]:
        """The metrics of the policy now, on every prompt at a fixed seed (see the module docstring)."""
        return self._evaluate()[0]

    @torch.no_grad()
    def _evaluate(self) -> tuple[dict[str, float], dict[str, Any]]:
        """:meth:`evaluate`'s metrics, and samples of the same completions for the report (no extra sampling)."""
        n = self.config.eval_per_prompt
        batch = self.policy.generate(self.prompts, self.config.feedback.max_new_tokens, n, seed=123_457)
        owners = [self.prompts[int(j)] for j in batch.prompt_index]
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
        first = [i * n for i in range(min(TEXT_SAMPLES, len(self.prompts)))]  # each prompt's first completion
        samples = text_samples(
            [self.prompts[int(batch.prompt_index[i])] for i in first],
            [batch.completions[i] for i in first],
            [float(true[i]) for i in first],
            [float(learned[i]) for i in first],
        )
        return metrics, samples

    def run_round(self) -> dict[str, float]:
        k = self.round + 1
        t0 = time.time()
        web = self.human if isinstance(self.human, WebHuman) else None
        if web is None:
            self.ask(self.sample_queries(k))
        else:  # people answer in the app meanwhile (see rlhfkit.feedback.web)
            web.hold(k, "sampling queries")
            self.sample_queries(k)
            web.wait_for_answers(k)
        rm = self.fit()
        steps = self.config.steps_per_round
        for _ in tqdm(range(steps), desc=f"round {k} policy", leave=False, disable=not self.progress):
            if web is not None:
                web.hold(k)
            self.trainer.step(self.prompts, self.learned_reward)
        self.round = k
        metrics, samples = self._evaluate()
        row = {
            "round": k,
            "n_feedback": self.store.count_feedback(),
            "human_minutes": self.human_minutes(),
            "generated_tokens": self.trainer.generated_tokens,
            **metrics,
            "rm_accuracy": rm.heldout_accuracy,
            "rm_true_accuracy": rm.true_accuracy,
            "rm_ece": rm.ece,
            "rm_train_pairs": rm.n_train,
            "beta": self.beta,
            "seconds": time.time() - t0,
        }
        self.history.append(row)
        write_samples(self.dir, k, samples)
        self._checkpoint()
        return row

    def run(self, on_round: Any = None) -> list[dict[str, float]]:
        if not self.history:
            metrics, samples = self._evaluate()
            row = {"round": 0, "n_feedback": 0, "human_minutes": self.human_minutes(), **metrics}
            self.history.append({**row, "rm_accuracy": float("nan")})
            write_samples(self.dir, 0, samples)
            self._checkpoint()
        bar = tqdm(total=self.config.rounds, initial=self.round, desc="rounds", disable=not self.progress)
        while self.round < self.config.rounds:
            row = self.run_round()
            bar.update(1)
            bar.set_postfix(true=f"{row['true_return']:.2f}", kl=f"{row['kl_to_base']:.2f}")
            if on_round is not None:
                on_round(row)
        bar.close()
        return self.history
