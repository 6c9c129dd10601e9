"""``experiments/kinds_eval``: a fit's result depends on its seed only, not on what the process ran before."""

from __future__ import annotations

import dataclasses

import torch

from rlhfkit.experiments.kinds_eval import ask, fit_answers, fit_config, make_setup
from rlhfkit.reward.fit import agreement


def test_same_seed_same_fit_whatever_ran_before() -> None:
    setup = make_setup("describe", seed=0, pool_size=120, test_size=80, test_pairs=400)
    queries, feedback = ask(setup, {"rating": 60}, seed=0)
    config = fit_config(3, lr_schedule="constant")
    results = []
    for burn in (0, 17):
        torch.rand(burn)  # other work moving the global generator
        model, _ = fit_answers(setup, queries, feedback, config, steps=30)
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        results.append((params, agreement(model, setup.test_a, setup.test_b, setup.test_diff)))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    other, _ = fit_answers(setup, queries, feedback, dataclasses.replace(config, seed=4), steps=30)
    assert not torch.equal(results[0][0], torch.cat([p.detach().flatten() for p in other.parameters()]))
