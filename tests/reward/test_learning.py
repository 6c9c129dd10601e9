"""Learning test: the reward model learns Pendulum's true ordering from <= 200 comparisons."""

from __future__ import annotations

import numpy as np
import torch

from rlhfkit.domains.control import segments_from_rollout
from rlhfkit.feedback.answers import AnswerSet
from rlhfkit.feedback.teacher import SimulatedHuman
from rlhfkit.feedback_records import Comparison
from rlhfkit.models.control import ActorCritic, RolloutCollector, SpaceSpec, make_vector_env
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.fit import fit_reward, ordering_accuracy
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.reward.segment_model import SegmentRewardModel
from rlhfkit.tasks import get_task
from rlhfkit.types import Generation, Query, Segment


class NoisyPD(ActorCritic):
    """A crude controller: push towards upright with noise (segments that differ from random ones)."""

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = torch.atan2(obs[:, 1], obs[:, 0])
        mean = (-4.0 * theta - 1.0 * obs[:, 2]).unsqueeze(-1)
        a = mean + torch.randn_like(mean)
        return a, torch.zeros(a.shape[0])


def _segments(policy: ActorCritic, seed: int, n_steps: int) -> list[Segment]:
    task = get_task("pendulum")
    envs = make_vector_env(task.make_env, 4)
    ro = RolloutCollector(envs, seed).collect(policy, n_steps, update_obs_stats=False)
    envs.close()
    return segments_from_rollout(ro, 50, task.env_id)


def _pairs(segments: list[Segment], n: int, rng: np.random.Generator) -> tuple[list[Segment], list[Segment]]:
    idx = rng.choice(len(segments), size=(n, 2), replace=True)
    idx = idx[idx[:, 0] != idx[:, 1]]
    return [segments[i] for i in idx[:, 0]], [segments[j] for j in idx[:, 1]]


def test_reward_model_orders_heldout_pairs_like_the_true_reward() -> None:
    torch.manual_seed(0)
    probe = get_task("pendulum").make_env()
    spec = SpaceSpec.of(probe.observation_space, probe.action_space)
    policies = [ActorCritic(spec), NoisyPD(spec)]
    # Two policies, disjoint env seeds for training and held-out segments.
    train_segs = [s for i, p in enumerate(policies) for s in _segments(p, seed=i, n_steps=400)]
    test_segs = [s for i, p in enumerate(policies) for s in _segments(p, seed=100 + i, n_steps=400)]
    rng = np.random.default_rng(0)

    human = SimulatedHuman(seed=0)
    a, b = _pairs(train_segs, 220, rng)
    a, b = a[:200], b[:200]
    gens = [Generation(f"g{i}", 0, "pool", s) for i, s in enumerate(train_segs)]
    by_segment = {id(s): g.id for s, g in zip(train_segs, gens, strict=True)}
    queries = [
        Query(f"q{i}", (by_segment[id(x)], by_segment[id(y)]), 0) for i, (x, y) in enumerate(zip(a, b, strict=True))
    ]
    answers = [
        Comparison.make(q.id, human.judge(human.segment_return(x), human.segment_return(y))[0], "simulated")
        for q, x, y in zip(queries, a, b, strict=True)
    ]
    train = AnswerSet.of(answers, queries, gens)

    ta, tb = _pairs(test_segs, 1000, rng)
    true_diff = torch.tensor([float(x.true_rewards.sum() - y.true_rewards.sum()) for x, y in zip(ta, tb, strict=True)])
    model = SegmentRewardModel(RewardEnsemble(spec.obs_dim, spec.act_dim, None, size=3))
    test_a, test_b = model.encode(ta), model.encode(tb)

    def accuracy() -> float:
        with torch.no_grad():
            ra = model.returns(test_a).mean(0)
            rb = model.returns(test_b).mean(0)
        return ordering_accuracy(ra - rb, true_diff.double())

    before = accuracy()
    fit_reward(model, train, None, RewardConfig(epochs=60))
    after = accuracy()
    assert len(train) == 200
    print(f"held-out ordering accuracy: untrained {before:.3f}, trained {after:.3f}")
    assert after >= 0.90, f"held-out ordering accuracy {after:.3f} < 0.90 (untrained: {before:.3f})"
    assert after - before >= 0.2
