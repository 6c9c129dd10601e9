"""Learning test: the reward model learns Pendulum's true ordering from <= 200 comparisons."""

from __future__ import annotations

import numpy as np
import torch

from rlhfkit.domains.control import segments_from_rollout
from rlhfkit.feedback.teacher import SimulatedHuman
from rlhfkit.models.control import ActorCritic, RolloutCollector, SpaceSpec, make_vector_env
from rlhfkit.reward.fit import RewardFitConfig, fit_reward, make_pairs, ordering_accuracy
from rlhfkit.reward.nets import RewardEnsemble
from rlhfkit.tasks import get_task
from rlhfkit.types import Answer, Segment


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
    answers = [human.judge(human.segment_return(x), human.segment_return(y))[0] for x, y in zip(a, b, strict=True)]
    labels = np.array([[1.0, 0.0] if ans is Answer.A else [0.0, 1.0] for ans in answers], dtype=np.float32)
    train = make_pairs(a, b, labels, discrete=False)

    ta, tb = _pairs(test_segs, 1000, rng)
    test = make_pairs(ta, tb, np.zeros((len(ta), 2), dtype=np.float32), discrete=False)

    model = RewardEnsemble(spec.obs_dim, spec.act_dim, None, size=3)

    def accuracy() -> float:
        with torch.no_grad():
            ra = model.segment_returns(test.obs_a, test.act_a).mean(0)
            rb = model.segment_returns(test.obs_b, test.act_b).mean(0)
        return ordering_accuracy(ra - rb, test.true_a - test.true_b)

    before = accuracy()
    fit_reward(model, train, None, RewardFitConfig(epochs=60), torch.Generator().manual_seed(0))
    after = accuracy()
    assert len(train) == 200
    print(f"held-out ordering accuracy: untrained {before:.3f}, trained {after:.3f}")
    assert after >= 0.90, f"held-out ordering accuracy {after:.3f} < 0.90 (untrained: {before:.3f})"
    assert after - before >= 0.2
