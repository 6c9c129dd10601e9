"""A text run's active queries: from round 2, each prompt's least certain pair among more completions than it asks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from rlhfkit.cli import main
from rlhfkit.config import load_config
from rlhfkit.domains.text import TextDomain
from rlhfkit.loop import Run
from rlhfkit.models.text_batch import TextBatch
from rlhfkit.types import Text

RUN = """
task = "text:describe"
rounds = 2
seed = 0

[text]
steps_per_round = 1
eval_per_prompt = 2
max_new_tokens = 8

[text.group]
n_per_prompt = 2
prompts_per_step = 2

[text.base]
pretrain_steps = 40

[feedback]
initial_comparisons = 8
comparisons_per_round = 4
query_strategy = "{strategy}"

[reward]
epochs = 1
"""


def _config(tmp_path: Path, strategy: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(strategy=strategy), encoding="utf-8")
    return path


def _entropy(r_a: float, r_b: float) -> float:
    """H(P(A>B)) of one reward model, P = 1 / (1 + exp(-(r_a - r_b)))."""
    p = 1 / (1 + math.exp(-(r_a - r_b)))
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


def test_an_entropy_text_run_asks_each_prompts_least_certain_pair_of_more_completions_from_round_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Run.create(load_config(_config(tmp_path, "entropy")), tmp_path / "run", progress=False)
    domain = run.domain
    assert isinstance(domain, TextDomain)
    drawn: list[tuple[int, list[Text]]] = []  # each generate call: completions per prompt, and the completions
    generate = domain.policy.generate

    def spy(prompts: Any, max_new_tokens: int, n_per_prompt: int = 1, seed: int | None = None) -> TextBatch:
        batch = generate(prompts, max_new_tokens, n_per_prompt=n_per_prompt, seed=seed)
        drawn.append((n_per_prompt, batch.to_texts(prompts)))
        return batch

    monkeypatch.setattr(domain.policy, "generate", spy)
    # Round 1 as the loop runs it, up to the fit: uniform, as many completions as asked.
    run.ask(run.sample_queries(1))
    assert run.fit() is not None
    assert [n for n, _ in drawn] == [2] and len(drawn[0][1]) == 2 * 8
    # Round 2: candidates (4) x 2 completions of each prompt, one pair asked of each.
    queries = run.sample_queries(2)
    assert [n for n, _ in drawn] == [2, 8] and len(queries) == 4
    candidates = drawn[1][1]
    assert len(candidates) == 8 * 4
    stored = run.store.generations()
    assert len({g for q in queries for g in q.generation_ids} & set(stored)) == 8  # only the asked ones kept
    not_first = 0
    for q, query in enumerate(queries):
        group = candidates[8 * q : 8 * (q + 1)]
        completions = [str(t.completion) for t in group]
        r = domain.learned_reward([group[0].prompt] * 8, completions)  # the run's reward model, as fitted
        pairs = [(a, b) for a in range(8) for b in range(a + 1, 8) if completions[a] != completions[b]]
        best = max(pairs, key=lambda ab: _entropy(r[ab[0]], r[ab[1]]))  # max keeps the first of equals
        asked = tuple(str(stored[g].text.completion) for g in query.generation_ids)
        assert asked == (completions[best[0]], completions[best[1]]), q
        assert {stored[g].text.prompt for g in query.generation_ids} == {group[0].prompt}
        not_first += best != (0, 1)
    assert not_first >= 2  # the check can tell the chosen pair from the first two


def test_a_text_run_refuses_kcenter_with_one_error_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, "kcenter")
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"rlhfkit: error: {path}: feedback.query_strategy: ")
    for part in ("'kcenter'", "'uniform' or 'entropy'", "one query per prompt"):
        assert part in err[0]
    assert not (tmp_path / "run").exists()
