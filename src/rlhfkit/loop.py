"""The RLHF loop: collect feedback, fit the reward, optimise the policy; repeat.

One round ``k = 1..rounds``:

1. **sample** segments from the current policy and pair them uniformly into
   comparison queries (stored as pending); with ``feedback.kinds`` the round's
   queries are split between the kinds by their shares and drawn uniformly
   (``feedback/mix.py``);
2. **ask** the human every pending query of this round; each answer is
   committed to the store before anything uses it;
3. **fit** the reward ensemble (warm start) on every usable answer stored, of
   every kind, in the one reward fit (``reward/fit.py``);
4. **optimise** the policy with PPO on the learned reward minus beta * KL to the base;
5. **evaluate** (true return, learned return, KL to base, reward-model accuracy);
6. **checkpoint** everything needed to continue, then rewrite ``metrics.jsonl``
   (``human_minutes``: the human time spent on every stored answer, at the
   ``feedback.effort`` costs).

With ``feedback.human = "web"`` people answer in ``rlhfkit serve RUN_DIR``: step 2
does not ask anyone, step 3 fits on the answers stored so far (waiting only
until ``feedback.web_min_answers`` exist), and an admin's pause holds the loop
between PPO updates (see :mod:`rlhfkit.feedback.web`).

Resuming (``rlhfkit run --resume RUN_DIR``) loads the last checkpoint and starts
the next round. If that round had already stored its queries, they are reused
and only the unanswered ones are asked: no stored answer is lost, none is asked
twice.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rlhfkit.config import ConfigError, RunConfig, config_to_toml, load_config
from rlhfkit.domains.control import evaluate_policy, policy_rollout, segments_from_rollout
from rlhfkit.feedback.answers import read_answers
from rlhfkit.feedback.mix import (
    KindTools,
    comparisons_only,
    query_size,
    run_kind_setup,
    select_queries,
    split_queries,
)
from rlhfkit.feedback.queries import QuerySelector, UniformPairs
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore
from rlhfkit.feedback.teacher import Human, SimulatedHuman, TeacherConfig
from rlhfkit.feedback.web import WebHuman, open_run_store
from rlhfkit.files import atomic_torch_save, atomic_write_bytes
from rlhfkit.models.control import ActorCritic, RolloutCollector, SpaceSpec, make_vector_env
from rlhfkit.optimize.kl import AdaptiveKL, FixedKL, KLController
from rlhfkit.optimize.ppo.env_trainer import PPOTrainer
from rlhfkit.reward.fit import NoUsableFeedbackError, RewardMetrics, fit_reward, make_reward_optimizer
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.reward.segment_model import SegmentRewardModel
from rlhfkit.samples import ROLLOUT_STEPS, rollout_samples, write_samples
from rlhfkit.tasks import Task, get_task
from rlhfkit.types import Content, Generation, Query, Segment, new_id

Progress = Callable[[str], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(run_dir: Path, round_: int, payload: dict[str, Any], history: list[dict[str, float]]) -> None:
    """Save round ``round_``'s checkpoint, point ``latest`` at it, then rewrite ``metrics.jsonl`` from ``history``.

    Each file is replaced atomically and in this order, so a kill at any point
    leaves the last finished round loadable and its metrics consistent.
    """
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    atomic_torch_save({**payload, "round": round_, "history": history}, ckpt_dir / f"round-{round_:04d}.pt")
    atomic_write_bytes(ckpt_dir / "latest", str(round_).encode())
    lines = "".join(json.dumps(_json_safe(h)) + "\n" for h in history)
    atomic_write_bytes(run_dir / "metrics.jsonl", lines.encode())


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The last finished round's checkpoint, or None if the run stopped before its first one."""
    latest = run_dir / "checkpoints" / "latest"
    if not latest.exists():
        return None
    k = int(latest.read_text())
    ckpt: dict[str, Any] = torch.load(
        run_dir / "checkpoints" / f"round-{k:04d}.pt", map_location="cpu", weights_only=False
    )
    return ckpt


def _json_safe(row: dict[str, float]) -> dict[str, float | None]:
    """NaN and inf are not JSON: write them as null."""
    return {k: (v if np.isfinite(v) else None) for k, v in row.items()}


def new_run_folder(run_dir: str | Path, config: Any) -> Path:
    """Create a run folder holding ``config.toml``; refuses a folder that already holds a run."""
    d = Path(run_dir)
    if (d / "checkpoints").exists() and any((d / "checkpoints").iterdir()):
        raise FileExistsError(f"{d} already holds a run; use --resume {d} to continue it, or another --out")
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.toml").write_text(config_to_toml(config), encoding="utf-8")
    return d


def existing_run_folder(run_dir: str | Path) -> Path:
    """A run folder to resume (it must hold ``config.toml``)."""
    d = Path(run_dir)
    if not (d / "config.toml").exists():
        raise FileNotFoundError(f"{d} is not a run folder (no config.toml)")
    return d


def ask_pending(
    store: FeedbackStore, human: Human, queries: Sequence[Query], progress: bool, latency_s: float = 0.0
) -> int:
    """Ask ``human`` each of ``queries`` it has not answered yet, committing every answer; returns how many.

    A query answered before a stop is never asked again. A human that answers
    later (``answer`` returns None) leaves the query pending in the store.
    """
    pending_ids = {q.id for q in store.queries(pending_for=human.annotator_id)}
    pending = [q for q in queries if q.id in pending_ids]
    if not pending:
        return 0
    gens = store.generations([g for q in pending for g in q.generation_ids])
    stored = 0
    for q in tqdm(pending, desc="asking the human", leave=False, disable=not progress):
        if latency_s:
            time.sleep(latency_s)
        answer = human.answer(q, gens)
        if answer is not None:
            stored += store.record(answer)
    return stored


def segment_return(x: Content) -> float:
    """A control segment's true return: the sum of its true per-step rewards."""
    if not isinstance(x, Segment):
        raise TypeError("a control run's generations are segments")
    return float(np.sum(x.true_rewards))


def probe_spec(task: Task) -> SpaceSpec:
    """The task env's spaces, checked (raises :class:`UnsupportedSpaceError`)."""
    env = task.make_env()
    try:
        return SpaceSpec.of(env.observation_space, env.action_space, task.env_id)
    finally:
        env.close()


def kind_setup(config: RunConfig, task: Task) -> tuple[KindTools, TeacherConfig]:
    """What the configured feedback kinds need on this task, and the simulated human's config.

    Raises :class:`ConfigError` naming a kind the task cannot support.
    """
    fb = config.feedback
    length = fb.segment_length or task.segment_length
    try:
        # The built-in return ranges are for 50-step clips; a run's segments may be longer or shorter.
        return run_kind_setup(config.task, fb.kinds, fb.interpreter, fb.teacher, fb.human == "simulated", length / 50)
    except ValueError as e:
        raise ConfigError(f"feedback.{e}") from None


@dataclass
class RunState:
    """Everything that lives across rounds (and goes into a checkpoint)."""

    policy: ActorCritic
    base: ActorCritic
    reward_model: RewardEnsemble
    reward_optimizer: torch.optim.Optimizer
    trainer: PPOTrainer
    kl: KLController
    round: int
    history: list[dict[str, float]]


class Run:
    """A run folder and the loop over its rounds.

    Create with :meth:`create` (a new folder) or :meth:`resume` (an existing one).
    """

    def __init__(self, run_dir: Path, config: RunConfig, progress: bool = True) -> None:
        self.dir = run_dir
        self.config = config
        self.task: Task = get_task(config.task)
        self.progress = progress
        self.spec = probe_spec(self.task)
        fb = config.feedback
        self.store = open_run_store(run_dir, fb.store_url)
        # what people in the web app are asked, and on which scale: from this config, for `rlhfkit serve`
        instructions = fb.instructions or self.task.instructions
        self.store.write_annotation_settings(AnnotationSettings.of_run(fb.teacher, instructions, config.task))
        self.selector: QuerySelector = UniformPairs()
        self.mixed = not comparisons_only(fb.kinds)
        self.tools, teacher = kind_setup(config, self.task)
        self.human: Human = (
            WebHuman(self.store, fb.web_min_answers, fb.web_poll_s, log=print if progress else None, run_dir=run_dir)
            if fb.human == "web"
            else SimulatedHuman(
                teacher,
                seed=config.seed + 7919,
                annotator_id=f"simulated-{config.seed}",
                features=self.tools.features,
                editor=self.tools.editor,
            )
        )
        self.segment_length = config.feedback.segment_length or self.task.segment_length
        self.state = self._initial_state()

    # -- set-up ---------------------------------------------------------------------

    @classmethod
    def create(cls, config: RunConfig, run_dir: str | Path, progress: bool = True) -> Run:
        task = get_task(config.task)
        probe_spec(task)  # an unusable env or feedback kind fails here, before anything is written
        kind_setup(config, task)
        return cls(new_run_folder(run_dir, config), config, progress)

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True) -> Run:
        d = existing_run_folder(run_dir)
        run = cls(d, load_config(d / "config.toml"), progress)
        run._load_latest_checkpoint()
        return run

    def _initial_state(self) -> RunState:
        cfg = self.config
        seed_everything(cfg.seed)
        base = self._base_policy()
        policy = ActorCritic(self.spec, cfg.ppo.hidden, cfg.ppo.log_std_init, cfg.ppo.normalize_obs)
        policy.load_state_dict(base.state_dict())
        base = base.frozen_copy()
        model = RewardEnsemble(
            self.spec.obs_dim,
            self.spec.act_dim,
            self.spec.n_actions,
            cfg.reward.ensemble_size,
            cfg.reward.hidden,
            cfg.reward.use_action,
        )
        kl: KLController = (
            AdaptiveKL(cfg.kl.beta, cfg.kl.target, cfg.kl.horizon) if cfg.kl.adaptive else FixedKL(cfg.kl.beta)
        )
        envs = make_vector_env(self.task.make_env, cfg.ppo.n_envs)
        trainer = PPOTrainer(
            policy,
            base,
            RolloutCollector(envs, cfg.seed),
            cfg.ppo,
            kl,
            cfg.kl.estimator,
            seed=cfg.seed,
            lr_budget=cfg.rounds * cfg.env_steps_per_round,
        )
        return RunState(policy, base, model, make_reward_optimizer(model, cfg.reward), trainer, kl, 0, [])

    def _base_policy(self) -> ActorCritic:
        cfg = self.config
        policy = ActorCritic(self.spec, cfg.ppo.hidden, cfg.ppo.log_std_init, cfg.ppo.normalize_obs)
        if cfg.base.kind == "fresh":
            return policy
        cached = self.dir / "base_policy.pt"
        if cfg.base.kind == "checkpoint" or cached.exists():
            path = cached if cached.exists() else Path(cfg.base.path)
            if not path.is_file():
                raise ConfigError(f"base.path: no policy file at {str(path)!r}")
            state = torch.load(path, map_location="cpu", weights_only=False)
            try:
                policy.load_state_dict(state.get("policy", state) if isinstance(state, dict) else state)
            except (RuntimeError, AttributeError) as e:
                raise ConfigError(f"base.path {path}: not a policy for task {self.task.name!r}: {e}") from None
            return policy
        if self.task.proxy_reward is None:
            raise ConfigError(f"base.kind = 'proxy' but task {self.task.name!r} has no proxy reward")
        envs = make_vector_env(self.task.make_env, cfg.ppo.n_envs)
        trainer = PPOTrainer(policy, None, RolloutCollector(envs, cfg.seed + 1), cfg.ppo, seed=cfg.seed + 1)
        bar = tqdm(total=cfg.base.proxy_steps, desc="base policy on proxy reward", disable=not self.progress)
        trainer.train(
            self.task.proxy_reward,
            cfg.base.proxy_steps,
            lambda log: bar.update(trainer.config.n_envs * trainer.config.n_steps),
        )
        bar.close()
        envs.close()
        atomic_torch_save({"policy": policy.state_dict()}, cached)
        return policy

    # -- checkpoints ------------------------------------------------------------------

    def _checkpoint(self) -> None:
        s = self.state
        payload = {
            "policy": s.policy.state_dict(),
            "base": s.base.state_dict(),
            "reward_model": s.reward_model.state_dict(),
            "reward_optimizer": s.reward_optimizer.state_dict(),
            "ppo_optimizer": s.trainer.optimizer.state_dict(),
            "reward_scaler": s.trainer.scaler.rms.state_dict(),
            "beta": s.kl.beta,
            "env_steps": s.trainer.env_steps,
            "ppo_steps": s.trainer.ppo_steps,
        }
        save_checkpoint(self.dir, s.round, payload, s.history)

    def _load_latest_checkpoint(self) -> None:
        ck = load_latest_checkpoint(self.dir)
        if ck is None:
            return  # killed before the first checkpoint: start over, reusing stored queries
        s = self.state
        s.policy.load_state_dict(ck["policy"])
        s.base.load_state_dict(ck["base"])
        s.reward_model.load_state_dict(ck["reward_model"])
        s.reward_optimizer.load_state_dict(ck["reward_optimizer"])
        s.trainer.optimizer.load_state_dict(ck["ppo_optimizer"])
        s.trainer.scaler.rms.load_state_dict(ck["reward_scaler"])
        s.kl.beta = ck["beta"]
        s.trainer.env_steps = ck["env_steps"]
        s.trainer.ppo_steps = ck["ppo_steps"]
        s.round = ck["round"]
        s.history = list(ck["history"])
        seed_everything(self.config.seed + 1000 * s.round)
        # Fresh env episodes after a restart; the stream of random numbers differs from
        # an uninterrupted run, the stored feedback does not.
        s.trainer.collector = RolloutCollector(s.trainer.collector.envs, self.config.seed + 1000 * s.round)

    # -- one round ----------------------------------------------------------------------

    def _comparisons_for(self, k: int) -> int:
        fb = self.config.feedback
        return fb.initial_comparisons if k == 1 else fb.comparisons_per_round

    def sample_queries(self, k: int) -> list[Query]:
        """Step 1a: this round's queries, reusing the stored ones after a restart."""
        stored = self.store.queries(round=k)
        if stored:
            return stored
        n = self._comparisons_for(k)
        if n == 0:
            return []
        cfg, L = self.config, self.segment_length
        envs = make_vector_env(self.task.make_env, cfg.ppo.n_envs)
        collector = RolloutCollector(envs, self.config.seed * 7 + k)
        counts = split_queries(n, cfg.feedback.kinds) if self.mixed else {"comparison": n}
        segments: list[Segment] = []
        while len(segments) < sum(c * query_size(kind) for kind, c in counts.items()):
            ro = collector.collect(self.state.policy, L * 4, update_obs_stats=False)
            segments += segments_from_rollout(ro, L, self.task.env_id)
            self.state.trainer.env_steps += ro.n_steps
        envs.close()
        rng = np.random.default_rng([cfg.seed, k])
        gens = [Generation(new_id(rng), k, f"round-{k - 1}", seg) for seg in segments]
        queries = select_queries(gens, counts, rng) if self.mixed else self.selector.select(gens, n, rng)
        used = {gid for q in queries for gid in q.generation_ids}
        self.store.add_generations([g for g in gens if g.id in used])
        self.store.add_queries(queries)
        return queries

    def ask(self, queries: list[Query]) -> int:
        """Step 1b: ask the human each pending query; returns how many answers were stored."""
        return ask_pending(self.store, self.human, queries, self.progress, self.config.feedback.latency_s)

    def fit(self) -> RewardMetrics:
        """Step 2: fit the reward ensemble (warm start, with its optimizer) on every stored answer of every kind."""
        rc = self.config.reward
        train, heldout = read_answers(self.store).split(rc.holdout_frac)
        config = dataclasses.replace(rc, seed=rc.seed + self.config.seed * 101 + self.state.round)
        model = SegmentRewardModel(self.state.reward_model, discrete=self.spec.n_actions is not None)
        try:
            return fit_reward(
                model,
                train,
                heldout,
                config,
                self.tools,
                true_return=segment_return,
                optimizer=self.state.reward_optimizer,
            )
        except NoUsableFeedbackError as e:
            raise NoUsableFeedbackError(
                f"{self.dir}: {e}; check feedback.teacher.skip_threshold and the human's answers. "
                "Everything stored is kept."
            ) from None

    def human_minutes(self) -> float:
        """Human-minutes spent on every stored answer, by the configured effort costs."""
        return self.config.feedback.effort.total_minutes(self.store.feedback())

    def learned_reward(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        return self.state.reward_model.step_reward(obs, act)

    def evaluate(self) -> dict[str, float]:
        return evaluate_policy(
            self.state.policy,
            self.task.make_env,
            self.config.eval_episodes,
            seed=10_000 + self.config.seed,
            reward_fn=self.learned_reward,
            base=self.state.base,
        )

    def save_samples(self) -> None:
        """What the policy does now, for the report: the opening steps of its first evaluation episode."""
        seed = 10_000 + self.config.seed  # the evaluation's first episode
        segment = policy_rollout(self.state.policy, self.task.make_env, seed, ROLLOUT_STEPS, self.task.env_id)
        write_samples(self.dir, self.state.round, rollout_samples(segment))

    def run_round(self) -> dict[str, float]:
        s = self.state
        k = s.round + 1
        t0 = time.time()
        web = self.human if isinstance(self.human, WebHuman) else None
        if web is not None:
            web.hold(k, "sampling queries")
        queries = self.sample_queries(k)
        if web is None:
            self.ask(queries)
        else:  # people answer in the app meanwhile; fit on what has arrived (at least web_min_answers)
            web.wait_for_answers(k)
        rm = self.fit()
        bar = tqdm(total=self.config.env_steps_per_round, desc=f"round {k} PPO", leave=False, disable=not self.progress)
        cfg = self.config.ppo

        def on_update(log: Any) -> None:
            bar.update(cfg.n_envs * cfg.n_steps)
            if web is not None:
                web.hold(k)  # an admin's pause takes effect between PPO updates

        s.trainer.train(self.learned_reward, self.config.env_steps_per_round, on_update)
        bar.close()
        ev = self.evaluate()
        s.round = k
        row = {
            "round": k,
            "n_feedback": self.store.count_feedback(),
            "human_minutes": self.human_minutes(),
            "env_steps": s.trainer.env_steps,
            **ev,
            "rm_accuracy": rm.heldout_accuracy,
            "rm_true_accuracy": rm.true_accuracy,
            "rm_ece": rm.ece,
            "rm_loss": rm.loss,
            "n_incomparable": rm.n_incomparable,
            "beta": s.kl.beta,
            "seconds": time.time() - t0,
        }
        s.history.append(row)
        self.save_samples()
        self._checkpoint()
        return row

    def run(self, on_round: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Run (or continue) until ``config.rounds`` rounds are done; returns the metrics history."""
        s = self.state
        if not s.history:
            ev = self.evaluate()
            s.history.append(
                {
                    "round": 0,
                    "n_feedback": self.store.count_feedback(),
                    "human_minutes": self.human_minutes(),
                    "env_steps": s.trainer.env_steps,
                    **ev,
                    "rm_accuracy": float("nan"),
                    "rm_true_accuracy": float("nan"),
                    "rm_ece": float("nan"),
                    "beta": s.kl.beta,
                }
            )
            self.save_samples()
            self._checkpoint()
        rounds = tqdm(total=self.config.rounds, initial=s.round, desc="rounds", disable=not self.progress)
        while s.round < self.config.rounds:
            row = self.run_round()
            rounds.update(1)
            rounds.set_postfix(true_return=f"{row['true_return']:.1f}", kl=f"{row['kl_to_base']:.3f}")
            if on_round is not None:
                on_round(row)
        rounds.close()
        return s.history
