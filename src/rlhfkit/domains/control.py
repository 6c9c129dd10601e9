"""The control domain: a gymnasium policy, segments of its rollouts as generations, PPO on the learned reward.

:class:`ControlDomain` is what the loop drives (:class:`~rlhfkit.domains.base.Domain`);
:class:`ControlConfig` is its section of the run config (``[control]``). The
policy (:class:`~rlhfkit.models.control.ActorCritic`) and the rollouts it is
trained on (:class:`~rlhfkit.models.control.RolloutCollector`) are in
:mod:`rlhfkit.models.control`; the helpers here cut segments from rollouts,
evaluate a policy and record a rollout to show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from rlhfkit.checks import non_negative, positive, require
from rlhfkit.domains.base import DomainContext, Hold
from rlhfkit.domains.samples import ROLLOUT_STEPS, rollout_samples
from rlhfkit.errors import ConfigError
from rlhfkit.feedback.mix import query_size
from rlhfkit.feedback.selection import select_queries_by
from rlhfkit.feedback.teacher import true_reward
from rlhfkit.files import atomic_torch_save
from rlhfkit.models.control import ActorCritic, EnvFactory, Rollout, RolloutCollector, SpaceSpec, make_vector_env
from rlhfkit.optimize.kl import kl_controller
from rlhfkit.optimize.ppo.env_trainer import PPOTrainer
from rlhfkit.optimize.ppo.explore import explore
from rlhfkit.optimize.ppo.loss import PPOConfig
from rlhfkit.reward.fit import make_reward_optimizer
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.reward.segment_model import SegmentRewardModel
from rlhfkit.tasks import Task, get_task
from rlhfkit.types import Content, Generation, Query, Segment, new_id


def segments_from_rollout(rollout: Rollout, length: int, env_id: str = "") -> list[Segment]:
    """Cut each env's stream into non-overlapping windows of ``length`` steps.

    Windows never cross an episode boundary. An episode that *terminates* inside a window (the
    pendulum fell, the hopper fell over) gives a shorter segment that ends with its terminal step: what
    follows a termination is worth nothing, so the segment's return, the sum over its steps, is what the
    whole window is worth, and segments of any length are compared on equal footing (the reward model
    sums its per-step rewards over the steps shown, as the human does). An episode cut short by a time
    limit (truncated) has a future the window does not show: that window is dropped. The next window
    starts at the first step of the new episode.
    """
    segments: list[Segment] = []
    T, N = rollout.ended.shape
    obs = rollout.obs.numpy()
    for i in range(N):
        t = 0
        while t < T:
            ends = np.flatnonzero(rollout.ended[t : t + length - 1, i])
            if ends.size and not rollout.terminated[t + int(ends[0]), i]:
                t += int(ends[0]) + 1  # truncated inside the window
                continue
            n = int(ends[0]) + 1 if ends.size else length
            if t + n > T:
                break  # the window runs past the rollout
            segments.append(
                Segment(
                    observations=obs[t : t + n, i],
                    actions=rollout.env_actions[t : t + n, i],
                    true_rewards=rollout.true_rewards[t : t + n, i],
                    info={"env_id": env_id, "env_index": i, "episode_step": int(rollout.episode_step[t, i])},
                )
            )
            t += n
    return segments


SAMPLE_ROLLOUTS = 25
"""Rollouts of ``4 * segment_length`` steps per env that a round may take to find its segments before it stops
with an error naming the cause (a segment longer than the task's episodes), instead of looping on."""

EVAL_SEED = 10_000
"""Evaluation episode ``j`` of a run with seed ``s`` starts from ``env.reset(seed=EVAL_SEED + s + j)``: the
benchmarks evaluate their baselines on the same episodes (:func:`eval_seed`)."""


def eval_seed(run_seed: int) -> int:
    """The first evaluation episode's reset seed for a run seeded ``run_seed``."""
    return EVAL_SEED + run_seed


@torch.no_grad()
def evaluate_policy(
    policy: ActorCritic,
    make_env: EnvFactory,
    n_episodes: int,
    seed: int,
    reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    base: ActorCritic | None = None,
    deterministic: bool = True,
) -> dict[str, float]:
    """Mean true return over ``n_episodes`` (seeded), and optionally learned return and KL to base.

    ``kl_to_base`` is the exact ``KL(pi(.|s) || pi_base(.|s))`` averaged over the
    visited states (closed form for Gaussians and categoricals).
    """
    env = make_env()
    true_returns, learned_returns, kls = [], [], []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        ret, learned = 0.0, 0.0
        while not done:
            o = np.asarray(obs, dtype=np.float32)[None]
            a = policy.act(o, deterministic=deterministic)
            if reward_fn is not None:
                learned += float(reward_fn(o, a)[0])
            if base is not None:
                ot = torch.as_tensor(o)
                kls.append(float(torch.distributions.kl_divergence(policy.distribution(ot), base.distribution(ot))[0]))
            obs, r, terminated, truncated, _ = env.step(a[0])
            ret += float(r)
            done = bool(terminated or truncated)
        true_returns.append(ret)
        learned_returns.append(learned)
    env.close()
    out = {"true_return": float(np.mean(true_returns)), "true_return_std": float(np.std(true_returns))}
    if reward_fn is not None:
        out["learned_return"] = float(np.mean(learned_returns))
    if base is not None:
        out["kl_to_base"] = float(np.mean(kls))
    return out


def policy_rollout(policy: ActorCritic, make_env: EnvFactory, seed: int, max_steps: int, env_id: str = "") -> Segment:
    """The first ``max_steps`` steps of one deterministic episode from ``env.reset(seed=seed)``.

    What the policy does, to show a person (the report's rollout of the base and the
    latest policy). ``true_rewards`` are the env's rewards, which the tasks make the true
    reward; ``info`` holds ``env_id`` (for the renderer) and ``seed``.
    """
    env = make_env()
    observations, actions, rewards = [], [], []
    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(max_steps):
            o = np.asarray(obs, dtype=np.float32)
            a = policy.act(o[None], deterministic=True)[0]
            observations.append(o)
            actions.append(a)
            obs, r, terminated, truncated, _ = env.step(a)
            rewards.append(float(r))
            if terminated or truncated:
                break
    finally:
        env.close()
    return Segment(np.array(observations), np.array(actions), np.array(rewards), {"env_id": env_id, "seed": seed})


# -- the domain the loop drives ------------------------------------------------------------


@dataclass(frozen=True)
class BaseConfig:
    """The base policy pi_phi that the KL term keeps the new policy close to."""

    kind: Literal["fresh", "checkpoint", "proxy"] = "fresh"
    """'fresh': newly initialised; 'checkpoint': loaded from `path`; 'proxy': pre-trained on the task's proxy reward."""
    path: str = ""
    """A policy file (`rlhfkit` checkpoint or base_policy.pt) for kind = 'checkpoint'."""
    proxy_steps: int = 100000
    """Env steps of PPO on the proxy reward for kind = 'proxy'."""

    def __post_init__(self) -> None:
        require(self, {"proxy_steps": (positive, ">= 1")})
        if self.kind == "checkpoint" and not self.path:
            raise ValueError("kind = 'checkpoint' needs path = the policy file to start from")


@dataclass(frozen=True)
class ControlConfig:
    """A control run's own settings (the [control] section): segments, PPO, evaluation, the base policy."""

    env_steps_per_round: int = 20000
    """PPO env steps per round on the learned reward."""
    eval_episodes: int = 10
    """Episodes (deterministic policy, fixed seeds) for each round's evaluation."""
    segment_length: int = 0
    """Steps per segment a person judges; 0 = the task's default."""
    explore_steps: int = 0
    """Env steps of unsupervised exploration before round 1's queries: PPO on a state-entropy reward
    (PEBBLE's pre-training, :mod:`rlhfkit.optimize.ppo.explore`), so the first segments are spread over
    the state space; counted in env_steps. 0 = off."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """Step 3: PPO; fields left out take the task's defaults."""
    base: BaseConfig = field(default_factory=BaseConfig)
    """The base policy."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "env_steps_per_round": (positive, ">= 1"),
                "eval_episodes": (positive, ">= 1"),
                "segment_length": (non_negative, ">= 0 (0 = the task's default)"),
                "explore_steps": (non_negative, ">= 0 (0 = no exploration)"),
            },
        )


def probe_spec(task: Task) -> SpaceSpec:
    """The task env's spaces, checked (raises :class:`UnsupportedSpaceError`)."""
    env = task.make_env()
    try:
        return SpaceSpec.of(env.observation_space, env.action_space, task.env_id)
    finally:
        env.close()


def segment_return(x: Content) -> float:
    """A control segment's true return: the sum of its true per-step rewards."""
    if not isinstance(x, Segment):
        raise TypeError("a control run's generations are segments")
    return float(np.sum(x.true_rewards))


def segment_true_rewards(x: Content) -> np.ndarray:
    """What the simulated human judges a control segment by: its own true per-step rewards."""
    if not isinstance(x, Segment):
        raise TypeError("a control run's generations are segments")
    return true_reward(x)


class ControlDomain:
    """A gymnasium task's policy in the loop (see :class:`~rlhfkit.domains.base.Domain`).

    Generations are segments of ``segment_length`` steps from rollouts of the
    current policy; the reward model is an ensemble of MLPs over (observation,
    action); step 3 is PPO on the learned per-step reward minus ``beta * KL`` per
    step; evaluation runs ``eval_episodes`` deterministic episodes from fixed seeds.
    """

    def __init__(self, ctx: DomainContext, config: ControlConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.task: Task = get_task(ctx.task)
        self.spec = probe_spec(self.task)
        self.instructions = self.task.instructions
        self.teacher_reward: Callable[[Content], np.ndarray] = segment_true_rewards
        self.segment_length = config.segment_length or self.task.segment_length
        self.return_scale = self.segment_length / 50
        ppo = config.ppo
        base = self._base_policy()
        self.policy = ActorCritic(self.spec, ppo.hidden, ppo.log_std_init, ppo.normalize_obs)
        self.policy.load_state_dict(base.state_dict())
        self.base = base.frozen_copy()
        rc = ctx.reward
        self.model = RewardEnsemble(
            self.spec.obs_dim, self.spec.act_dim, self.spec.n_actions, rc.ensemble_size, rc.hidden, rc.use_action
        )
        self.reward_optimizer: torch.optim.Optimizer | None = make_reward_optimizer(self.model, rc)
        self.kl = kl_controller(ctx.kl)
        self.trainer = PPOTrainer(
            self.policy,
            self.base,
            RolloutCollector(make_vector_env(self.task.make_env, ppo.n_envs), ctx.seed),
            ppo,
            self.kl,
            ctx.kl.estimator,
            seed=ctx.seed,
            lr_budget=ctx.rounds * config.env_steps_per_round,
        )

    def _base_policy(self) -> ActorCritic:
        cfg, ppo = self.config.base, self.config.ppo
        policy = ActorCritic(self.spec, ppo.hidden, ppo.log_std_init, ppo.normalize_obs)
        if cfg.kind == "fresh":
            return policy
        cached = self.ctx.run_dir / "base_policy.pt"
        if cfg.kind == "checkpoint" or cached.exists():
            path = cached if cached.exists() else Path(cfg.path)
            if not path.is_file():
                raise ConfigError(f"control.base.path: no policy file at {str(path)!r}")
            state = torch.load(path, map_location="cpu", weights_only=False)
            try:
                policy.load_state_dict(state.get("policy", state) if isinstance(state, dict) else state)
            except (RuntimeError, AttributeError) as e:
                raise ConfigError(f"control.base.path {path}: not a policy for task {self.task.name!r}: {e}") from None
            return policy
        if self.task.proxy_reward is None:
            raise ConfigError(f"control.base.kind = 'proxy' but task {self.task.name!r} has no proxy reward")
        envs = make_vector_env(self.task.make_env, ppo.n_envs)
        trainer = PPOTrainer(policy, None, RolloutCollector(envs, self.ctx.seed + 1), ppo, seed=self.ctx.seed + 1)
        bar = tqdm(total=cfg.proxy_steps, desc="base policy on proxy reward", disable=not self.ctx.progress)
        trainer.train(self.task.proxy_reward, cfg.proxy_steps, lambda log: bar.update(ppo.n_envs * ppo.n_steps))
        bar.close()
        envs.close()
        atomic_torch_save({"policy": policy.state_dict()}, cached)
        return policy

    # -- the steps ------------------------------------------------------------------------

    def sample(
        self, round_: int, counts: Mapping[str, int], rng: np.random.Generator
    ) -> tuple[list[Generation], list[Query]]:
        """Segments of fresh rollouts of the current policy, drawn into the round's queries (only those used kept)."""
        L = self.segment_length
        if round_ == 1 and self.config.explore_steps:
            self.trainer.env_steps += explore(
                self.policy, self.task.make_env, self.config.ppo, self.config.explore_steps, self.ctx.seed + 2
            )
        # the candidates the strategy chooses from: the queries' generations times the oversampling factor
        need = self.ctx.selection.in_round(round_).candidates * sum(c * query_size(kind) for kind, c in counts.items())
        envs = make_vector_env(self.task.make_env, self.config.ppo.n_envs)
        collector = RolloutCollector(envs, self.ctx.seed * 7 + round_)
        segments: list[Segment] = []
        lengths: list[int] = []  # of the episodes cut short by a time limit
        try:
            for _ in range(SAMPLE_ROLLOUTS):
                if len(segments) >= need:
                    break
                ro = collector.collect(self.policy, L * 4, update_obs_stats=False)
                segments += segments_from_rollout(ro, L, self.task.env_id)
                self.trainer.env_steps += ro.n_steps
                truncated = ro.ended & ~ro.terminated
                lengths += (ro.episode_step[truncated] + 1).tolist()
            if len(segments) < need:
                raise ConfigError(
                    f"control.segment_length = {L}: {SAMPLE_ROLLOUTS} rollouts gave {len(segments)} of the {need} "
                    f"segments this round needs; the task's episodes end by a time limit after "
                    f"{np.mean(lengths) if lengths else float('nan'):.0f} steps on average, before a segment "
                    "fits; set control.segment_length at most that long"
                )
        finally:
            envs.close()
        gens = [Generation(new_id(rng), round_, f"round-{round_ - 1}", seg) for seg in segments]
        queries = select_queries_by(self.ctx.selection.in_round(round_), gens, counts, rng, self.reward_model())
        used = {gid for q in queries for gid in q.generation_ids}
        return [g for g in gens if g.id in used], queries

    def evaluation_queries(self, round_: int, rng: np.random.Generator) -> tuple[list[Generation], list[Query]]:
        """None: a control run is judged by its true return."""
        return [], []

    def reward_model(self) -> SegmentRewardModel:
        return SegmentRewardModel(
            self.model, discrete=self.spec.n_actions is not None, recency=self.ctx.reward.recency_discount
        )

    def true_return(self, content: Content) -> float:
        return segment_return(content)

    def learned_reward(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """The reward model's per-step reward (the ensemble's mean)."""
        return self.model.step_reward(obs, act)

    def optimize(self, round_: int, hold: Hold) -> None:
        """PPO for ``env_steps_per_round`` env steps on the learned reward; ``hold`` between updates."""
        ppo = self.config.ppo
        steps = self.config.env_steps_per_round
        bar = tqdm(total=steps, desc=f"round {round_} PPO", leave=False, disable=not self.ctx.progress)

        def on_update(log: Any) -> None:
            bar.update(ppo.n_envs * ppo.n_steps)
            hold()

        self.trainer.train(self.learned_reward, steps, on_update)
        bar.close()

    def evaluate(self) -> tuple[dict[str, float], dict[str, Any]]:
        """True and learned return and KL to the base over the evaluation episodes; the first one's opening."""
        seed = eval_seed(self.ctx.seed)
        metrics = evaluate_policy(
            self.policy, self.task.make_env, self.config.eval_episodes, seed, self.learned_reward, self.base
        )
        segment = policy_rollout(self.policy, self.task.make_env, seed, ROLLOUT_STEPS, self.task.env_id)
        return metrics, rollout_samples(segment)

    def counters(self) -> dict[str, float]:
        return {"env_steps": self.trainer.env_steps}  # an int in metrics.jsonl

    @property
    def beta(self) -> float:
        return float(self.kl.beta)

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        assert self.reward_optimizer is not None
        return {
            "policy": self.policy.state_dict(),
            "base": self.base.state_dict(),
            "reward_model": self.model.state_dict(),
            "reward_optimizer": self.reward_optimizer.state_dict(),
            "ppo_optimizer": self.trainer.optimizer.state_dict(),
            "reward_scaler": self.trainer.scaler.rms.state_dict(),
            "beta": self.kl.beta,
            "env_steps": self.trainer.env_steps,
            "ppo_steps": self.trainer.ppo_steps,
        }

    def load_state_dict(self, state: dict[str, Any], round_: int) -> None:
        assert self.reward_optimizer is not None
        self.policy.load_state_dict(state["policy"])
        self.base.load_state_dict(state["base"])
        self.model.load_state_dict(state["reward_model"])
        self.reward_optimizer.load_state_dict(state["reward_optimizer"])
        self.trainer.optimizer.load_state_dict(state["ppo_optimizer"])
        self.trainer.scaler.rms.load_state_dict(state["reward_scaler"])
        self.kl.beta = state["beta"]
        self.trainer.env_steps = state["env_steps"]
        self.trainer.ppo_steps = state["ppo_steps"]
        # Fresh env episodes after a restart; the stream of random numbers differs from
        # an uninterrupted run, the stored feedback does not.
        self.trainer.collector = RolloutCollector(self.trainer.collector.envs, self.ctx.seed + 1000 * round_)
