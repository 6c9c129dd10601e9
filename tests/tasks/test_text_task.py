"""The built-in text task: its corpus, its true reward and the proxy that games it."""

from __future__ import annotations

import pytest

from rlhfkit.tasks import text


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (" happy .", 1.0),
        (" happy, kind and warm .", 3.0),
        (" happy, kind, warm and calm .", 3.0 - 0.75),  # a fourth nice word costs more than it earns
        (" sad and happy .", 0.0),
        (" happy", 0.0),  # no closing full stop: -1
        (" happy . sad sad sad", 1.0),  # only the text before the first full stop counts
        (" " + ", ".join(["kind"] * 8) + " .", 3.0 - 0.75 * 5),
    ],
)
def test_true_reward_by_hand(completion: str, expected: float) -> None:
    assert text.true_reward(completion) == pytest.approx(expected)


def test_proxy_is_gamed_by_length() -> None:
    lengths = range(1, 10)
    proxy = [text.proxy_reward(" " + " and ".join(["kind"] * n) + " .") for n in lengths]
    true = [text.true_reward(" " + " and ".join(["kind"] * n) + " .") for n in lengths]
    assert proxy == sorted(proxy) and proxy[-1] == 9.0  # the proxy keeps rising
    assert max(true) == true[2] and true[-1] < true[2] - 4  # the true reward peaks at three


def test_corpus_is_seeded_and_mixed() -> None:
    a, b = text.corpus(500, seed=1), text.corpus(500, seed=1)
    assert a == b and a != text.corpus(500, seed=2)
    assert all(s.startswith("the ") and s.endswith(" .") for s in a)
    words = " ".join(a).split()
    pos = sum(w.strip(",") in text.POSITIVE for w in words)
    neg = sum(w.strip(",") in text.NEGATIVE for w in words)
    assert 0.4 < pos / (pos + neg) < 0.6
    assert len(text.prompts()) == len(text.SUBJECTS)


def test_the_instructions_state_the_true_reward_in_words() -> None:
    """People are told what the simulated human judges by: the kind and unkind words, brevity, the full stop."""
    for word in (*text.POSITIVE, *text.NEGATIVE):
        assert word in text.INSTRUCTIONS
    assert "three" in text.INSTRUCTIONS and "full stop" in text.INSTRUCTIONS
