"""Tests for rlhfkit.reward.losses against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.reward.losses import bradley_terry_loss, expected_calibration_error, reward_centering_penalty

# -log P(A > B) and -log P(B > A) for d = r_A - r_B = 1, by hand:
#   P(A > B) = e^1 / (e^1 + e^0) = 1 / (1 + e^-1)  =>  -log P(A > B) = log(1 + e^-1)
#   P(B > A) = 1 / (1 + e^1)                       =>  -log P(B > A) = log(1 + e^1)
NLL_A_D1 = math.log(1.0 + math.exp(-1.0))  # 0.31326168751822286
NLL_B_D1 = math.log(1.0 + math.exp(1.0))  # 1.3132616875182228


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_hand_numbers_are_what_we_think() -> None:
    assert math.isclose(NLL_A_D1, 0.31326168751822286, rel_tol=0, abs_tol=1e-15)
    assert math.isclose(NLL_B_D1, 1.3132616875182228, rel_tol=0, abs_tol=1e-15)


@pytest.mark.parametrize(
    ("mu", "expected"),
    [
        ((1.0, 0.0), NLL_A_D1),  # A > B
        ((0.0, 1.0), NLL_B_D1),  # B > A
        ((0.5, 0.5), 0.5 * NLL_A_D1 + 0.5 * NLL_B_D1),  # about equal: 0.81326...
        ((0.9, 0.1), 0.9 * NLL_A_D1 + 0.1 * NLL_B_D1),  # graded: 0.41326...
    ],
)
def test_single_pair_loss(mu: tuple[float, float], expected: float) -> None:
    terms = bradley_terry_loss(_t(1.0), _t(0.0), torch.tensor([mu], dtype=torch.float64))
    assert terms.loss.item() == pytest.approx(expected, abs=1e-12)
    assert terms.n_usable == 1
    assert terms.p_a.item() == pytest.approx(1.0 / (1.0 + math.exp(-1.0)), abs=1e-12)


def test_loss_depends_only_on_difference() -> None:
    mu = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    a = bradley_terry_loss(_t(1.0), _t(0.0), mu).loss
    b = bradley_terry_loss(_t(101.0), _t(100.0), mu).loss
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_batch_loss_is_mean_and_gradient_by_hand() -> None:
    ra = _t(1.0, 0.0, 2.0).requires_grad_()
    rb = _t(0.0, 1.0, 2.0).requires_grad_()
    mu = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]], dtype=torch.float64)
    terms = bradley_terry_loss(ra, rb, mu)
    # row 0: d = 1, hard A; row 1: d = -1, graded 0.9/0.1; row 2: d = 0, tie: log 2
    expected = (NLL_A_D1 + (0.9 * NLL_B_D1 + 0.1 * NLL_A_D1) + math.log(2.0)) / 3
    assert terms.loss.item() == pytest.approx(expected, abs=1e-12)
    terms.loss.backward()
    # d loss / d r_A = -(mu_A - sigmoid(d)) / N
    s = 1.0 / (1.0 + math.exp(-1.0))
    want = [-(1.0 - s) / 3, -(0.9 - (1 - s)) / 3, -(0.5 - 0.5) / 3]
    assert ra.grad is not None and rb.grad is not None
    assert ra.grad.tolist() == pytest.approx(want, abs=1e-12)
    assert rb.grad.tolist() == pytest.approx([-w for w in want], abs=1e-12)


def test_incomparable_rows_add_no_loss_and_no_gradient() -> None:
    ra = _t(1.0, 5.0, 0.0, -3.0, 2.0).requires_grad_()
    rb = _t(0.0, -4.0, 1.0, 6.0, 2.0).requires_grad_()
    # Rows 1 and 3 are incomparable; their mu rows hold junk on purpose.
    mu = torch.tensor([[1.0, 0.0], [3.0, -7.0], [0.9, 0.1], [0.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    usable = torch.tensor([True, False, True, False, True])
    terms = bradley_terry_loss(ra, rb, mu, usable)
    terms.loss.backward()
    assert terms.n_usable == 3
    assert ra.grad is not None and rb.grad is not None
    for i in (1, 3):
        assert ra.grad[i].item() == 0.0
        assert rb.grad[i].item() == 0.0
    for i in (0, 2):  # usable rows do get gradient
        assert ra.grad[i].item() != 0.0

    keep = torch.tensor([0, 2, 4])
    ra2 = ra.detach()[keep].clone().requires_grad_()
    rb2 = rb.detach()[keep].clone().requires_grad_()
    without = bradley_terry_loss(ra2, rb2, mu[keep])
    assert terms.loss.item() == pytest.approx(without.loss.item(), abs=1e-12)
    without.loss.backward()
    assert ra2.grad is not None
    assert ra.grad[keep].tolist() == pytest.approx(ra2.grad.tolist(), abs=1e-12)
    # by hand: (log(1 + e^-1) + [0.9 log(1 + e^1) + 0.1 log(1 + e^-1)] + log 2) / 3
    assert terms.loss.item() == pytest.approx(
        (NLL_A_D1 + 0.9 * NLL_B_D1 + 0.1 * NLL_A_D1 + math.log(2.0)) / 3, abs=1e-12
    )


def test_no_usable_rows_gives_zero_loss() -> None:
    ra = _t(1.0, 2.0).requires_grad_()
    terms = bradley_terry_loss(ra, _t(0.0, 0.0), torch.zeros(2, 2, dtype=torch.float64), torch.tensor([False, False]))
    assert terms.loss.item() == 0.0
    assert terms.n_usable == 0
    terms.loss.backward()
    assert ra.grad is not None
    assert ra.grad.abs().sum().item() == 0.0


def test_extreme_differences_are_stable() -> None:
    terms = bradley_terry_loss(_t(1000.0, -1000.0), _t(0.0, 0.0), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert math.isfinite(terms.loss.item())
    assert terms.loss.item() == pytest.approx(1000.0 / 2, rel=1e-9)  # row 1 costs -log sigmoid(-1000) ~ 1000


def test_ensemble_shape() -> None:
    # K = 2 members, N = 2 pairs with the same labels.
    ra = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    rb = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    mu = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    terms = bradley_terry_loss(ra, rb, mu)
    member0 = (NLL_A_D1 + NLL_B_D1) / 2  # d = 1, then d = -1
    member1 = (math.log(2.0) + NLL_B_D1) / 2  # d = 0, then d = -1
    assert terms.loss.shape == ()
    assert terms.loss.item() == pytest.approx((member0 + member1) / 2, abs=1e-12)
    assert terms.p_a.shape == (2, 2)
    # member 0: 1 of 2 right; member 1: d = 0 counts as not A, d = -1 wrong: 0 of 2 right
    assert terms.accuracy.item() == pytest.approx((0.5 + 0.0) / 2, abs=1e-12)
    terms.loss.backward()
    assert ra.grad is not None
    assert ra.grad.shape == (2, 2)


def test_ensemble_with_mask() -> None:
    ra = torch.tensor([[1.0, 9.0], [-1.0, 9.0]], dtype=torch.float64, requires_grad=True)
    rb = torch.zeros(2, 2, dtype=torch.float64)
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    terms = bradley_terry_loss(ra, rb, mu, torch.tensor([True, False]))
    assert terms.loss.item() == pytest.approx((NLL_A_D1 + NLL_B_D1) / 2, abs=1e-12)
    terms.loss.backward()
    assert ra.grad is not None
    assert ra.grad[:, 1].tolist() == [0.0, 0.0]


def test_accuracy_ignores_ties_and_incomparable() -> None:
    ra = _t(1.0, 1.0, 5.0, -5.0, 0.3, 2.0)
    rb = _t(0.0, 0.0, 0.0, 0.0, 0.0, 3.0)
    mu = torch.tensor(
        [
            [1.0, 0.0],  # A preferred, predicted A: right
            [0.0, 1.0],  # B preferred, predicted A: wrong
            [0.5, 0.5],  # tie: ignored
            [0.5, 0.5],  # tie: ignored
            [0.9, 0.1],  # graded for A, predicted A: right
            [1.0, 0.0],  # incomparable (masked): ignored
        ],
        dtype=torch.float64,
    )
    usable = torch.tensor([True, True, True, True, True, False])
    terms = bradley_terry_loss(ra, rb, mu, usable)
    assert terms.accuracy.item() == pytest.approx(2 / 3, abs=1e-12)
    assert not terms.accuracy.requires_grad


def test_accuracy_of_only_ties_is_zero() -> None:
    terms = bradley_terry_loss(_t(1.0), _t(0.0), torch.tensor([[0.5, 0.5]]))
    assert terms.accuracy.item() == 0.0


def test_accuracy_counts_predicted_tie_as_wrong() -> None:
    mu = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    terms = bradley_terry_loss(_t(0.0, 0.0), _t(0.0, 0.0), mu)
    assert terms.accuracy.item() == 0.0


def test_bad_mu_shape_raises() -> None:
    with pytest.raises(ValueError, match="mu must have shape"):
        bradley_terry_loss(_t(1.0, 2.0), _t(0.0, 0.0), _t(1.0, 0.0))
    with pytest.raises(ValueError, match="mu must have shape"):
        bradley_terry_loss(_t(1.0, 2.0), _t(0.0, 0.0), torch.zeros(2, 3))


# -- calibration ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ece_hand_example(dtype: torch.dtype) -> None:
    p_a = torch.tensor([0.95, 0.92, 0.25, 0.65], dtype=dtype)
    mu_a = torch.tensor([1.0, 0.0, 0.0, 0.5], dtype=dtype)
    # n_bins = 5 over confidence [0.5, 1]: edges 0.5, 0.6, 0.7, 0.8, 0.9, 1.0
    # confidence max(p, 1 - p) = 0.95, 0.92, 0.75, 0.65 -> bins 4, 4, 2, 1
    # outcome (label mass on the predicted side) = 1, 0, 1 - 0 = 1, 0.5
    # bin 4: weight 2/4, |mean(0.95, 0.92) - mean(1, 0)| = |0.935 - 0.5| = 0.435
    # bin 2: weight 1/4, |0.75 - 1| = 0.25
    # bin 1: weight 1/4, |0.65 - 0.5| = 0.15
    expected = 0.5 * 0.435 + 0.25 * 0.25 + 0.25 * 0.15  # 0.3175
    assert expected == pytest.approx(0.3175, abs=1e-12)
    assert expected_calibration_error(p_a, mu_a, n_bins=5) == pytest.approx(expected, abs=1e-6)


def test_ece_of_calibrated_predictions_is_zero() -> None:
    p_a = torch.tensor([0.8, 0.2, 0.6])
    mu_a = torch.tensor([0.8, 0.2, 0.6])
    assert expected_calibration_error(p_a, mu_a) == pytest.approx(0.0, abs=1e-6)


def test_ece_of_confident_wrong_predictions_is_large() -> None:
    p_a = torch.tensor([0.99, 0.01])
    mu_a = torch.tensor([0.0, 1.0])
    assert expected_calibration_error(p_a, mu_a) == pytest.approx(0.99, abs=1e-6)


def test_ece_of_nothing_is_nan() -> None:
    assert math.isnan(expected_calibration_error(torch.zeros(0), torch.zeros(0)))


# -- centering --------------------------------------------------------------------


def test_reward_centering_penalty() -> None:
    r = torch.tensor([1.0, 2.0, 3.0, -2.0], dtype=torch.float64, requires_grad=True)
    pen = reward_centering_penalty(r)
    assert pen.item() == pytest.approx(1.0, abs=1e-12)  # mean = 1, squared
    pen.backward()
    assert r.grad is not None
    assert r.grad.tolist() == pytest.approx([2 * 1.0 / 4] * 4, abs=1e-12)  # d/dr_i mean^2 = 2 mean / n
    assert reward_centering_penalty(torch.tensor([[1.0, -1.0], [3.0, -3.0]])).item() == 0.0
    assert reward_centering_penalty(torch.tensor([[-2.0, -2.0]])).item() == pytest.approx(4.0)


def test_bootstrap_counts_weigh_pairs_like_repeated_rows() -> None:
    """Per-member weights (bootstrap counts) equal repeating each pair that often, member by member."""
    ra = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.0, 0.2, -0.4, 0.0]])
    rb = torch.tensor([[0.1, 0.4, -0.6, 0.5], [-0.3, 0.9, 0.8, 1.2]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.3], [0.5, 0.5]])
    counts = torch.tensor([[2, 0, 1, 3], [0, 1, 1, 1]])
    weighted = bradley_terry_loss(ra, rb, mu, weight=counts).loss
    repeated = [
        bradley_terry_loss(
            ra[k].repeat_interleave(counts[k]), rb[k].repeat_interleave(counts[k]), mu.repeat_interleave(counts[k], 0)
        ).loss
        for k in range(2)
    ]
    assert float(weighted) == pytest.approx(float(sum(repeated)) / 2, abs=1e-6)
    assert float(bradley_terry_loss(ra, rb, mu, weight=torch.ones(4)).loss) == pytest.approx(
        float(bradley_terry_loss(ra, rb, mu).loss), abs=1e-7
    )


@pytest.mark.parametrize("d", [-60.0, -2.0, 0.0, 0.7, 60.0])
def test_a_stated_slip_rate_is_the_mixture_likelihood(d: float) -> None:
    """P(A>B) = slip/2 + (1 - slip) sigmoid(d), by hand, at any margin (no overflow at +-60)."""
    slip = 0.2
    p = slip / 2 + (1 - slip) / (1 + math.exp(-d))
    mu = torch.tensor([[0.7, 0.3]], dtype=torch.float64)
    t = bradley_terry_loss(torch.tensor([d], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), mu, slip=slip)
    assert t.loss.item() == pytest.approx(-(0.7 * math.log(p) + 0.3 * math.log(1 - p)), rel=1e-12)
    assert t.p_a.item() == pytest.approx(p, rel=1e-12)


def test_a_slip_bounds_what_one_contrary_answer_costs() -> None:
    """However sure the model is that B wins, an answer A>B costs at most -log(slip/2) (plain: the whole margin)."""
    ra, rb, mu = torch.tensor([-50.0], requires_grad=True), torch.tensor([0.0]), torch.tensor([[1.0, 0.0]])
    plain = bradley_terry_loss(ra, rb, mu)
    slipped = bradley_terry_loss(ra, rb, mu, slip=0.1)
    assert plain.loss.item() == pytest.approx(50.0, rel=1e-6)
    assert slipped.loss.item() == pytest.approx(-math.log(0.05), rel=1e-4)
    (grad,) = torch.autograd.grad(slipped.loss, ra)
    assert abs(grad.item()) < 1e-18  # a confidently contradicted pair no longer drags the reward
    with pytest.raises(ValueError, match=r"slip must be in \[0, 1\), got 1.0"):
        bradley_terry_loss(ra, rb, mu, slip=1.0)
