"""A built-in text task that runs offline: describe a character, nicely and briefly.

The task generates its own corpus of short descriptions ("the cat is happy and
kind ."), on which a tiny causal LM is pre-trained, and a prompt set ("the fox
is"). The simulated human judges completions by a known **true reward**:

    true(x) = min(pos, 3) - neg - 0.75 * max(0, adjectives - 3) - 1.0 * [no closing "."]

where ``pos``/``neg`` count positive/negative adjectives in the completion.
Nice words count, up to three; rambling on costs. The **proxy reward**
``pos`` (count the nice words) agrees with the true one on short answers and
is gamed by length: a policy that strings positive adjectives together scores
ever higher on the proxy while its true reward falls. That is the
over-optimisation the report should make visible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

POSITIVE = ("happy", "kind", "bright", "calm", "brave", "warm", "gentle", "clever")
NEGATIVE = ("sad", "angry", "dull", "cold", "rude", "lazy", "grim", "noisy")
SUBJECTS = ("cat", "dog", "bird", "fox", "girl", "boy", "king", "tree", "owl", "bear")

_WORD = re.compile(r"[a-z]+|\.")

INSTRUCTIONS = (
    "Each answer describes a character. A good one is nice and brief: up to three kind words ("
    + ", ".join(POSITIVE)
    + "), no unkind ones ("
    + ", ".join(NEGATIVE)
    + "), and it ends with a full stop. Piling on more adjectives, even nice ones, makes it worse."
)
"""What people are asked to judge on this task (the default of ``feedback.instructions``): the true reward in words."""


def prompts() -> list[str]:
    """The task's prompts: one per subject."""
    return [f"the {s} is" for s in SUBJECTS]


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` pre-training sentences: a subject and 1–6 adjectives, a mix of nice and not.

    Roughly half of the adjectives are negative and lengths are uniform, so the
    pre-trained model is "competent but unaligned": fluent, not nice, not brief.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 7))
        words = [str(rng.choice(POSITIVE if rng.random() < 0.5 else NEGATIVE)) for _ in range(k)]
        adjs = words[0] if k == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        out.append(f"the {rng.choice(SUBJECTS)} is {adjs} .")
    return out


def _counts(completion: str) -> tuple[int, int, int, bool]:
    words = _WORD.findall(completion.lower())
    if "." in words:
        words, closed = words[: words.index(".")], True
    else:
        closed = False
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    return pos, neg, pos + neg, closed


def true_reward(completion: str) -> float:
    """The human's reward for a completion (text after the prompt), as in the module docstring."""
    pos, neg, adjectives, closed = _counts(completion)
    return float(min(pos, 3) - neg - 0.75 * max(0, adjectives - 3) - (0.0 if closed else 1.0))


def proxy_reward(completion: str) -> float:
    """The gameable proxy: the number of positive adjectives, however many."""
    return float(_counts(completion)[0])


def true_rewards(completions: Sequence[str]) -> np.ndarray:
    """:func:`true_reward` of each completion, shape ``(N,)``."""
    return np.array([true_reward(c) for c in completions], dtype=np.float64)


def preference_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Labelled pairs in TRL's format, ``{"prompt", "chosen", "rejected"}``, judged by the true reward.

    Sentence ``i`` of ``corpus(n, seed)`` gives the prompt ("the cat is") and one completion, sentence ``i`` of
    ``corpus(n, seed + 1)`` the other; the one with the higher true reward is chosen, ties are left out. What a
    team's preference file would hold, for ``rlhfkit fit-reward`` in the examples and tests.
    """
    rows = []
    for x, y in zip(corpus(n, seed), corpus(n, seed + 1), strict=True):
        (prompt, a), b = x.split(" is ", 1), y.split(" is ", 1)[1]
        ta, tb = true_reward(a), true_reward(b)
        if ta != tb:
            chosen, rejected = (a, b) if ta > tb else (b, a)
            rows.append({"prompt": prompt + " is", "chosen": " " + chosen, "rejected": " " + rejected})
    return rows


def pretrain_base_model(
    n_sentences: int = 4000, steps: int = 600, batch_size: int = 32, lr: float = 3e-3, seed: int = 0
) -> tuple[Any, Any]:
    """The task's base model: a tiny GPT-2 and tokenizer trained on :func:`corpus` (about a minute on 2 cores).

    Returns ``(model, tokenizer)``; save both with ``save_pretrained`` to reuse them.
    """
    from rlhfkit.models.text_builders import tiny_gpt2, train_tiny_tokenizer

    sentences = corpus(n_sentences, seed)
    tokenizer = train_tiny_tokenizer(sentences, vocab_size=320)
    model = tiny_gpt2(tokenizer, n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=seed)
    pretrain(model, tokenizer, sentences, steps, batch_size, lr, seed)
    return model, tokenizer


def pretrain(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[str],
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> None:
    """Train any causal LM on ``sentences`` (each between eos tokens), AdamW with a linearly decaying rate; in place.

    Makes a "competent but unaligned" base of any architecture from the task's :func:`corpus`.
    """
    import torch

    eos = tokenizer.eos_token_id
    encoded = [[eos, *tokenizer(s, add_special_tokens=False)["input_ids"], eos] for s in sentences]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        rows = [encoded[int(i)] for i in rng.integers(0, len(encoded), batch_size)]
        n = max(len(r) for r in rows)
        ids = torch.full((batch_size, n), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((batch_size, n), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        for g in opt.param_groups:
            g["lr"] = lr * (1 - step / steps)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
