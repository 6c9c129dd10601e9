"""Active query selection: each strategy picks the pair its formula says it must, on a hand-built ensemble."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhfkit.config import ConfigError, FeedbackConfig, RunConfig, from_dict, load_config
from rlhfkit.domains.base import DomainContext
from rlhfkit.domains.control import ControlConfig, ControlDomain
from rlhfkit.feedback.mix import select_queries
from rlhfkit.feedback.queries import UniformPairs
from rlhfkit.feedback.selection import (
    ACTIVE_CANDIDATES,
    ActivePairs,
    QuerySelection,
    Scores,
    Strategy,
    choose_in_prompt,
    choose_pairs,
    choose_sets,
    ensemble_scores,
    kcenter,
    pair_probabilities,
    select_queries_by,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.loop import Run
from rlhfkit.optimize.kl import KLConfig
from rlhfkit.optimize.ppo.loss import PPOConfig
from rlhfkit.reward.config import RewardConfig
from rlhfkit.types import Generation, Segment

PAIRS = np.arange(10).reshape(5, 2)
"""Five disjoint candidate pairs of ten candidates: (0, 1), (2, 3), ..., (8, 9)."""

P_A = np.array(
    [
        # pair: 0     1     2     3     4
        [0.30, 0.10, 0.40, 0.02, 0.90],  # member 1's P(A > B)
        [0.70, 0.80, 0.45, 0.70, 0.95],  # member 2's
    ]
)


def _returns(p: np.ndarray) -> np.ndarray:
    """``(K, 10)`` returns with ``sigmoid(R_k[A] - R_k[B]) = p[k, pair]``: ``R[A] = log(p / (1 - p))``, ``R[B] = 0``."""
    R = np.zeros((p.shape[0], 2 * p.shape[1]))
    R[:, 0::2] = np.log(p / (1 - p))
    return R


R = _returns(P_A)

# Per pair, by hand (natural logs; H(p) = -p ln p - (1 - p) ln(1 - p)):
#   pair  mean P   Var_k P_k             H(mean P)   mean_k H(P_k)            BALD
#   0     0.500    0.2^2   = 0.0400      0.6931      (0.6109 + 0.6109)/2=0.6109  0.0823
#   1     0.450    0.35^2  = 0.1225      0.6881      (0.3251 + 0.5004)/2=0.4127  0.2754
#   2     0.425    0.025^2 = 0.0006      0.6812      (0.6730 + 0.6881)/2=0.6806  0.0006
#   3     0.360    0.34^2  = 0.1156      0.6534      (0.0980 + 0.6109)/2=0.3545  0.2990
#   4     0.925    0.025^2 = 0.0006      0.2664      (0.3251 + 0.1985)/2=0.2618  0.0046


def test_disagreement_picks_the_largest_variance_of_the_members_probabilities() -> None:
    # Pair 1 (0.1225) beats pair 3 (0.1156), then pair 0 (0.04). The variance of the return
    # differences instead (0.72, 3.21, 0.01, 5.62, 0.14) would put pair 3 first.
    assert choose_pairs("disagreement", R, PAIRS, 3) == [1, 3, 0]


def test_entropy_picks_the_mean_probability_nearest_one_half() -> None:
    # H(mean P): pair 0 (0.5, 0.6931) > pair 1 (0.6881) > pair 2 (0.6812). The mean of the members'
    # entropies instead would put pair 2 first (0.6806, both members near 0.5).
    assert choose_pairs("entropy", R, PAIRS, 3) == [0, 1, 2]


def test_bald_picks_confident_members_that_disagree() -> None:
    # H(mean) - mean H: pair 3 (0.2990) > pair 1 (0.2754) > pair 0 (0.0823); pair 3 loses to pair 1 on
    # variance, wins here because one member is sure (0.02) and the other is not.
    assert choose_pairs("bald", R, PAIRS, 3) == [3, 1, 0]


# One feature per candidate; a pair's features are [f(A), f(B)]:
#   pair 0 (0, 0), pair 1 (1, 0), pair 2 (0, 2), pair 3 (5, 5), pair 4 (4, 5).
F = np.array([0, 0, 1, 0, 0, 2, 5, 5, 4, 5], dtype=float)[:, None]


def test_kcenter_spreads_the_pairs_in_feature_space() -> None:
    # Mean (2, 2.4); distances to it: 3.12, 2.60, 2.04, 3.97, 3.28 -> pair 3 first.
    # Farthest from pair 3: pair 0 (sqrt 50 = 7.07; pair 1 6.40, pair 2 5.83, pair 4 1) -> pair 0.
    # Distance to the nearest center {3, 0}: pair 1 min(6.40, 1) = 1, pair 2 min(5.83, 2) = 2,
    # pair 4 min(1, 6.40) = 1 -> pair 2. Farthest from the last center only (pair 0) would take pair 4 (6.40).
    assert choose_pairs("kcenter", None, PAIRS, 3, F) == [3, 0, 2]
    assert kcenter(np.array([[0.0], [0.0], [1.0]]), 3) == [2, 0, 1]  # duplicates: each row once, lower first


# For the combinations:
#   pair  P_1   P_2    Var     H(mean)
#   0     0.30  0.70   0.0400  0.6931
#   1     0.10  0.90   0.1600  0.6931
#   2     0.90  0.95   0.0006  0.2664
#   3     0.05  0.05   0.0000  0.1985
#   4     0.20  0.70   0.0625  0.6881
R_MIX = _returns(np.array([[0.30, 0.10, 0.90, 0.05, 0.20], [0.70, 0.90, 0.95, 0.05, 0.70]]))


@pytest.mark.parametrize("strategy", ["disagreement+kcenter", "entropy+kcenter"])
def test_the_combinations_diversify_the_pairs_that_score_highest(strategy: str) -> None:
    # Both scores keep the top ceil(0.5 * 5) = 3 pairs: {0, 1, 4} (pairs 2 and 3 score lowest).
    # k-center among (0, 0), (1, 0), (4, 5): mean (1.67, 1.67); distances 2.36, 1.80, 3.73 -> pair 4;
    # then farthest from pair 4: pair 0 (6.40 > 5.83). Alone, disagreement asks [1, 4], entropy [0, 1]
    # and k-center [3, 0].
    assert choose_pairs(strategy, R_MIX, PAIRS, 2, F) == [4, 0]
    assert choose_pairs(strategy.partition("+")[0], R_MIX, PAIRS, 2) == ([1, 4] if "dis" in strategy else [0, 1])
    assert choose_pairs("kcenter", None, PAIRS, 2, F) == [3, 0]


def _gens(n: int, round_: int = 2) -> list[Generation]:
    seg = Segment(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2))
    return [Generation(f"g{i}", round_, "p", seg) for i in range(n)]


def test_uniform_asks_what_uniform_pairs_asks() -> None:
    # The same random numbers: one permutation of the candidates, the first n pairs of it.
    def never(_: object) -> Scores:
        raise AssertionError("uniform does not score")

    for n_gens, n in ((10, 5), (11, 3), (40, 4)):
        a = ActivePairs("uniform", never).select(_gens(n_gens), n, np.random.default_rng(7))
        b = UniformPairs().select(_gens(n_gens), n, np.random.default_rng(7))
        assert [(q.id, q.generation_ids) for q in a] == [(q.id, q.generation_ids) for q in b]


def test_active_pairs_scores_the_candidates_and_asks_the_chosen_disjoint_pairs() -> None:
    # Candidate i's return is i for member 1 and -i for member 2: P_1(A > B) = sigmoid(A - B) and
    # P_2 = 1 - P_1, so the variance is (P_1 - 1/2)^2, largest for the pair furthest apart.
    gens = _gens(12)

    def score(contents: object) -> Scores:
        i = np.arange(12, dtype=float)
        return Scores(np.stack([i, -i]))

    rng = np.random.default_rng(3)
    queries = ActivePairs("disagreement", score).select(gens, 2, rng)
    order = np.random.default_rng(3).permutation(12).reshape(6, 2)
    gaps = np.abs(order[:, 0] - order[:, 1])
    expected = [tuple(f"g{j}" for j in order[k]) for k in np.argsort(-gaps, kind="stable")[:2]]
    assert [q.generation_ids for q in queries] == expected
    ids = [g for q in queries for g in q.generation_ids]
    assert len(set(ids)) == 4 and all(q.kind == "comparison" and q.round == 2 for q in queries)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("greedy", R, PAIRS, 1), "unknown query strategy 'greedy'"),
        (("entropy", R, PAIRS, 6), "6 queries from 5 candidate pairs"),
        (("bald", None, PAIRS, 1), "needs the ensemble's returns"),
        (("entropy+kcenter", R, PAIRS, 1), "needs the candidates' features"),
    ],
)
def test_misuse_is_named(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_pairs(*args)


def test_a_ranking_set_has_the_greatest_summed_disagreement() -> None:
    # Members see opposite returns, x and -x: P_2 = 1 - P_1, so Var = (P_1 - 1/2)^2 = tanh^2(gap / 2) / 4.
    # x = (1, 3, 0, 0.5): the largest gap is candidates 1 and 2 (3 - 0 = 3). Then, against {1, 2}:
    #   candidate 0 (x = 1): tanh^2(1)/4 + tanh^2(0.5)/4 = 0.1450 + 0.0534 = 0.1984
    #   candidate 3 (x = 0.5): tanh^2(1.25)/4 + tanh^2(0.25)/4 = 0.1799 + 0.0150 = 0.1949 -> candidate 0.
    # (The summed gaps tie, 2 + 1 = 2.5 + 0.5, and would take candidate 0 by index too; their smallest gap, as
    # k-center would, takes 0 as well; the smallest summed score would take 3.)
    x = np.array([1.0, 3.0, 0.0, 0.5])
    assert choose_sets("disagreement", np.stack([x, -x]), 3, 1) == [[1, 2, 0]]


def test_a_ranking_set_by_entropy_is_of_candidates_the_ensemble_cannot_tell_apart() -> None:
    # Both members agree, P = sigmoid(x_i - x_j): the entropy is highest for the closest returns.
    # x = (0, 5, 0.4, 2, 0.1): closest are candidates 0 and 4 (0.1); then candidate 2 (gaps 0.4 and 0.3) beats
    # candidate 3 (2 and 1.9) and candidate 1 (5 and 4.9). A second set from the rest: {1, 3} only.
    x = np.array([0.0, 5.0, 0.4, 2.0, 0.1])
    assert choose_sets("entropy", np.stack([x, x]), 3, 1) == [[0, 4, 2]]
    assert choose_sets("entropy", np.stack([x, x]), 2, 2) == [[0, 4], [2, 3]]  # 0.4 vs 2: gap 1.6 < 3.0 to 5


def test_kcenter_ranking_sets_are_spread_out_and_disjoint() -> None:
    f = np.array([0.0, 1.0, 10.0, 11.0, 5.0, 5.5])[:, None]
    # Mean 5.42: farthest 3 (11), then farthest from it 0 (0), then the nearest-center distances
    # 1: 1, 2: 1, 4: 5, 5: 5.5 -> 5. The second set from {1, 2, 4}: mean 5.33 -> 2 (4.67), then 1 (9).
    assert choose_sets("kcenter", None, 3, 1, f) == [[3, 0, 5]]
    assert choose_sets("kcenter", None, 3, 2, f) == [[3, 0, 5], [2, 1, 4]]


def test_active_selection_asks_comparisons_and_rankings_of_disjoint_candidates() -> None:
    gens = _gens(24)

    class Model:
        def encode(self, items: object) -> np.ndarray:
            return np.arange(24, dtype=float)

        def returns(self, encoded: np.ndarray, idx: object = None) -> torch.Tensor:
            return torch.as_tensor(np.stack([encoded, -encoded]))

    queries = select_queries_by(
        QuerySelection("bald", 2), gens, {"comparison": 3, "ranking": 2}, np.random.default_rng(0), Model()
    )
    assert [q.kind for q in queries] == ["comparison"] * 3 + ["ranking"] * 2
    assert [len(q.generation_ids) for q in queries] == [2, 2, 2, 4, 4]
    ids = [g for q in queries for g in q.generation_ids]
    assert len(set(ids)) == len(ids) == 14


# -- within one prompt's completions (text runs) -------------------------------------------------

# One prompt's 4 candidates, 2 members: R_1 = (0, 2, 1, 3), R_2 = (0, 1, 3, 2.5). By hand (sigmoid(1) = 0.7311,
# sigmoid(0.5) = 0.6225):
#   pair    P_1 = s(R_1[A] - R_1[B])   P_2                   mean P   H(mean P)   mean_k H(P_k)
#   (0, 1)  s(-2) = 0.1192             s(-1)   = 0.2689      0.1941   0.4921      0.4738
#   (0, 2)  s(-1) = 0.2689             s(-3)   = 0.0474      0.1582   0.4366      0.3865
#   (0, 3)  s(-3) = 0.0474             s(-2.5) = 0.0759      0.0616   0.2315      0.2297
#   (1, 2)  s(1)  = 0.7311             s(-2)   = 0.1192      0.4251   0.6819      0.4738
#   (1, 3)  s(-1) = 0.2689             s(-1.5) = 0.1824      0.2257   0.5340      0.5286
#   (2, 3)  s(-2) = 0.1192             s(0.5)  = 0.6225      0.3708   0.6594      0.5141
# Entropy asks (1, 2); the members' mean entropy instead would ask (1, 3), the first pair (0, 1).
R_GROUP = np.array([[0.0, 2.0, 1.0, 3.0], [0.0, 1.0, 3.0, 2.5]])


def _entropy_by_hand(R: np.ndarray, a: int, b: int) -> float:
    p = sum(1 / (1 + math.exp(-(r[a] - r[b]))) for r in R) / len(R)
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


def test_within_a_prompt_entropy_asks_the_pair_whose_mean_probability_is_nearest_one_half() -> None:
    table = {(a, b): _entropy_by_hand(R_GROUP, a, b) for a in range(4) for b in range(a + 1, 4)}
    assert max(table, key=lambda pair: table[pair]) == (1, 2)
    assert round(table[(1, 2)], 4) == 0.6819 and round(table[(2, 3)], 4) == 0.6594  # the runner-up, by hand
    # A second prompt of 3 candidates, one member: returns (0, 3, 0.5); the closest returns are 0 and 2.
    assert choose_in_prompt("entropy", [R_GROUP, np.array([[0.0, 3.0, 0.5]])]) == [(1, 2), (0, 2)]


def test_within_a_prompt_ties_go_to_the_pair_drawn_first() -> None:
    # R_1 = (5, 0, 1, -1), R_2 = (5, 0, 1.5, -1.5): pairs (1, 2) and (1, 3) have mirrored differences, (-1, -1.5)
    # and (1, 1.5), so mean P = 0.2257 and 0.7743 and the same entropy 0.5340 (the highest; next (2, 3): 0.2868).
    # Scored in one direction only they would differ by round-off (by 1e-16, to (1, 3)).
    R = np.array([[5.0, 0.0, 1.0, -1.0], [5.0, 0.0, 1.5, -1.5]])
    assert _entropy_by_hand(R, 1, 2) == pytest.approx(_entropy_by_hand(R, 1, 3), abs=1e-15)
    assert choose_in_prompt("entropy", [R]) == [(1, 2)]
    # All candidates equal: every pair ties at P = 1/2; the first is asked.
    assert choose_in_prompt("entropy", [np.zeros((2, 5))]) == [(0, 1)]


def test_within_a_prompt_uniform_keeps_the_first_two_and_a_ranking_takes_the_greedy_set() -> None:
    assert choose_in_prompt("uniform", [R_GROUP, np.zeros((1, 2))]) == [(0, 1), (0, 1)]
    assert choose_in_prompt("uniform", [R_GROUP], size=4) == [(0, 1, 2, 3)]
    x = np.array([[0.0, 5.0, 0.4, 2.0, 0.1]])  # as in the ranking test above: 0 and 4, then 2
    assert choose_in_prompt("entropy", [x], size=3) == [(0, 4, 2)]


@pytest.mark.parametrize(
    ("strategy", "returns", "size", "message"),
    [
        ("kcenter", [R_GROUP], 2, "'kcenter' cannot choose within one prompt's completions"),
        ("entropy+kcenter", [R_GROUP], 2, "cannot choose within"),
        ("entropy", [np.zeros((1, 3))], 4, "a query of 4 .* from a prompt's 3 candidates"),
    ],
)
def test_choosing_within_a_prompt_names_misuse(strategy: str, returns: list, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_in_prompt(strategy, returns, size)


# -- config and the control domain ---------------------------------------------------------------


def test_the_default_is_uniform_as_before_and_active_strategies_oversample_four_times() -> None:
    assert FeedbackConfig().selection == QuerySelection("uniform", 1)
    assert FeedbackConfig(query_strategy="bald").selection == QuerySelection("bald", ACTIVE_CANDIDATES)
    assert FeedbackConfig(query_strategy="kcenter", candidates=10).selection == QuerySelection("kcenter", 10)
    assert QuerySelection("bald", 4).in_round(1) == QuerySelection()  # round 1: no answers to score with
    assert QuerySelection("bald", 4).in_round(2) == QuerySelection("bald", 4)


@pytest.mark.parametrize("counts", [{"comparison": 5}, {"comparison": 2, "ranking": 1, "rating": 3}])
def test_uniform_selection_asks_the_queries_of_before(counts: dict[str, int]) -> None:
    a = select_queries_by(QuerySelection(), _gens(20), counts, np.random.default_rng(5), None)
    b = select_queries(_gens(20), counts, np.random.default_rng(5))
    assert [(q.id, q.kind, q.generation_ids) for q in a] == [(q.id, q.kind, q.generation_ids) for q in b]


@pytest.mark.parametrize(
    ("feedback", "reward", "task", "message"),
    [
        ({"query_strategy": "entropy", "kinds": {"comparison": 0.5, "rating": 0.5}}, {}, "pendulum", "asks rating"),
        ({"query_strategy": "bald", "candidates": -1}, {}, "pendulum", "candidates must be >= 0"),
        ({"query_strategy": "disagreement+kcenter"}, {"ensemble_size": 1}, "pendulum", "reward.ensemble_size >= 2"),
        ({"query_strategy": "kcenter"}, {"ensemble_size": 1}, "text:describe", "a text run takes 'uniform' or"),
        ({"query_strategy": "disagreement"}, {}, "text:describe", "a text run takes 'uniform' or 'entropy'"),
        ({"query_strategy": "greedy"}, {}, "pendulum", "greedy"),
    ],
)
def test_bad_selection_configs_are_named(feedback: dict, reward: dict, task: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, {"task": task, "feedback": feedback, "reward": reward})


def _domain(tmp_path: Path, selection: QuerySelection) -> ControlDomain:
    ctx = DomainContext("pendulum", 0, 2, RewardConfig(ensemble_size=3), KLConfig(), tmp_path, False, selection)
    return ControlDomain(ctx, ControlConfig(segment_length=25, ppo=PPOConfig(n_envs=2)))


@pytest.mark.parametrize("strategy", ["disagreement", "kcenter", "entropy+kcenter"])
def test_the_control_domain_draws_candidates_times_the_segments_and_asks_the_chosen_pairs(
    tmp_path: Path, strategy: Strategy
) -> None:
    # 5 comparisons need 10 segments of 25 steps; each rollout (2 envs x 100 steps) gives 8.
    domain = _domain(tmp_path, QuerySelection(strategy, 4))
    gens, queries = domain.sample(1, {"comparison": 5}, np.random.default_rng(0))
    round_1 = domain.trainer.env_steps
    assert 10 * 25 <= round_1 < 40 * 25 and len(gens) == 10  # round 1: uniform, no oversampling (400 steps)
    gens, queries = domain.sample(2, {"comparison": 5}, np.random.default_rng(0))
    assert domain.trainer.env_steps - round_1 >= 40 * 25  # 4 x 10 candidates (5 rollouts, 1,000 steps)
    ids = [g for q in queries for g in q.generation_ids]
    assert len(queries) == 5 and len(set(ids)) == 10 and {g.id for g in gens} == set(ids)
    assert all(q.kind == "comparison" and q.round == 2 for q in queries)


def test_the_control_domain_asks_the_most_disputed_of_its_candidates(tmp_path: Path) -> None:
    # The same round with 1 and with 8 candidates per query: the same first segments, and the pairs
    # asked from 8x as many candidates disagree more under the (untrained, randomly initialised) ensemble.
    def asked_disagreement(candidates: int) -> float:
        torch.manual_seed(0)  # one ensemble for both (its initial weights come from torch's generator)
        domain = _domain(tmp_path, QuerySelection("disagreement", candidates))
        gens, queries = domain.sample(2, {"comparison": 4}, np.random.default_rng(0))
        scores = ensemble_scores(domain.reward_model(), [g.content for g in gens])
        index = {g.id: i for i, g in enumerate(gens)}
        pairs = np.array([[index[a] for a in q.generation_ids] for q in queries])
        return float(pair_probabilities(scores.returns, pairs).var(axis=0).mean())

    assert asked_disagreement(8) > 2 * asked_disagreement(1)


def test_a_run_asks_actively_chosen_comparisons_from_round_two(tiny_config: Path, tmp_path: Path) -> None:
    config = load_config(tiny_config)
    config = dataclasses.replace(
        config, feedback=dataclasses.replace(config.feedback, query_strategy="disagreement+kcenter")
    )
    run = Run.create(config, tmp_path / "run", progress=False)
    run.run()
    store = FeedbackStore.in_dir(tmp_path / "run")
    for round_, n in ((1, 12), (2, 6)):
        ids = [g for q in store.queries(round=round_) for g in q.generation_ids]
        assert len(ids) == 2 * n and len(set(ids)) == 2 * n
    assert len(store.comparisons()) == 18


def test_the_control_domain_chooses_rankings_too(tmp_path: Path) -> None:
    domain = _domain(tmp_path, QuerySelection("entropy", 2))
    gens, queries = domain.sample(2, {"comparison": 2, "ranking": 1}, np.random.default_rng(0))
    assert [(q.kind, len(q.generation_ids)) for q in queries] == [("comparison", 2)] * 2 + [("ranking", 4)]
    assert len(gens) == 8 == len({g for q in queries for g in q.generation_ids})
