"""DPO and IPO training of a text policy on a fixed set of preference records.

Direct preference optimisation (Rafailov et al. 2023) and IPO (Azar et al. 2023)
fit a policy ``pi`` to preference pairs without a reward model: the implicit
reward of a completion is ``beta * (log pi(y|x) - log ref(y|x))`` against a
frozen reference ``ref`` (the policy as it was before training), and the losses
of :mod:`rlhfkit.optimize.dpo.loss` fit the difference of the two implicit
rewards of a pair to its label ``mu``.

Tokenisation (:func:`tokenize_records`): the prompt is rendered with
:meth:`TextPolicy.render` (the chat template with the assistant header for
messages) and tokenised as :meth:`TextPolicy.encode_prompts` does; each
completion -- the text as is, or the content of its one assistant message --
is tokenised on its own and ends with the eos token, so the policy learns to
stop where the preferred answer stops (a sampled completion ends the same
way). The completion tokens are those that follow the prompt tokens, exactly
as sampling would produce them.

Batches (:func:`pair_logprobs`) mirror :class:`~rlhfkit.models.text_batch.TextBatch`:
``2n`` rows, the ``n`` chosen completions then the ``n`` rejected ones, prompts
left-padded to a common ``P`` (prompt ends aligned), completions right-padded
to a common ``T``. One forward pass scores both sides of every pair; the
masked token log-probs are summed per completion. Pairs are grouped by length
(:func:`pair_batches`) under a budget of padded positions, as the reward
trainer does.

The reference log-probs are computed once per record, before training, under
``torch.no_grad`` and kept: ``ref`` never changes, so scoring it again each
epoch would only cost time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from rlhfkit.checks import non_negative, positive, require
from rlhfkit.feedback.formats import PreferenceRecord, TextValue
from rlhfkit.models.adapters import reference_policy
from rlhfkit.models.text import ReferencePolicy, TextPolicy
from rlhfkit.optimize.dpo.loss import dpo_loss, ipo_loss

__all__ = [
    "DPOConfig",
    "DPOMetrics",
    "TokenizedPair",
    "logratio_margins",
    "pair_batches",
    "pair_logprobs",
    "sequence_logprobs",
    "tokenize_records",
    "train_dpo",
]


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class DPOConfig:
    """DPO / IPO settings."""

    loss: Literal["dpo", "ipo"] = "dpo"
    """'dpo' (Bradley–Terry on the implicit rewards) or 'ipo' (squared regression of the log-ratio margin)."""
    beta: float = 0.1
    """Inverse temperature of the implicit reward, the strength of the anchor to the reference (IPO's tau)."""
    epochs: int = 1
    """Passes over the training pairs."""
    lr: float = 1e-6
    """AdamW learning rate. The default suits a pre-trained LM (the DPO paper used 1e-6); a tiny model trained
    from scratch needs about 1e-3."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 16
    """Most pairs per optimiser step (each pair is two rows of the batch)."""
    max_tokens: int = 8192
    """Most padded token positions per step, 2 * pairs * (P + T); pairs are batched by length under it and a
    longer pair gets a step of its own."""
    max_length: int | None = None
    """Most tokens per completion, eos included; a longer completion keeps its first max_length tokens and so
    loses its eos (it then says nothing about where to stop). None: no limit."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    seed: int = 0
    """Seeds the order of the batches in each epoch."""

    def __post_init__(self) -> None:
        require(
            self,
            {
                "loss": (lambda v: v in ("dpo", "ipo"), "'dpo' or 'ipo'"),
                "beta": (positive, "> 0"),
                "epochs": (_count, "an int >= 1"),
                "lr": (positive, "> 0"),
                "weight_decay": (non_negative, ">= 0"),
                "batch_size": (_count, "an int >= 1"),
                "max_tokens": (_count, "an int >= 1"),
                "max_length": (lambda v: v is None or _count(v), "None or an int >= 1"),
                "max_grad_norm": (positive, "> 0"),
                "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an int >= 0"),
            },
        )


@dataclass(frozen=True)
class DPOMetrics:
    """What a run measured."""

    losses: tuple[float, ...]
    """The loss of each optimiser step."""
    margins: tuple[float, ...]
    """Mean implicit-reward margin ``beta * h_raw`` of each step's pairs (before the step)."""
    eval_reward_accuracy: float
    """Held-out: fraction of decisive records (not ties, not incomparable) whose implicit rewards order them like
    ``mu`` (a tie in implicit reward counts as wrong); nan without decisive held-out records."""
    eval_margin: float
    """Held-out: mean implicit-reward margin ``beta * h_raw`` over usable records, as ``margins`` (nan without any)."""
    n_train: int
    """Training pairs used (per epoch)."""
    n_skipped: int
    """Training records skipped as incomparable (``mu`` None)."""
    n_eval: int
    """Held-out records used (incomparable ones skipped)."""
    pairs_per_second: float
    """Training pairs per second of training (forward, backward and step; the one-off reference pass excluded)."""


# -- tokenisation ---------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizedPair:
    """One usable preference record as token ids: the prompt and the two completions (each ending in eos)."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    mu: tuple[float, float]

    @property
    def n_tokens(self) -> int:
        """Padded length of one row: prompt plus the longer completion."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


def _completion_text(value: TextValue, name: str) -> str:
    if isinstance(value, str):
        return value
    if len(value) != 1 or value[0]["role"] != "assistant":
        roles = [m["role"] for m in value]
        raise ValueError(f"{name} must be a plain text or one assistant message, got messages with roles {roles}")
    return value[0]["content"]


def _ids(policy: TextPolicy, text: str, special: bool) -> list[int]:
    return [int(t) for t in policy.tokenizer(text, add_special_tokens=special)["input_ids"]]


def tokenize_records(
    policy: TextPolicy, records: Sequence[PreferenceRecord], max_length: int | None = None
) -> tuple[list[TokenizedPair], int]:
    """``(pairs, n_skipped)``: the records as token ids, incomparable ones (``mu`` None) skipped and counted.

    See the module docstring for the layout; ``max_length`` cuts each completion
    to its first ``max_length`` tokens (eos included). Raises ``ValueError``
    naming the record when a chat completion is not one assistant message or a
    sequence would not fit the model's positions.
    """
    max_positions = getattr(policy.model.config.get_text_config(), "max_position_embeddings", None)
    eos = policy.eos_token_id
    pairs: list[TokenizedPair] = []
    skipped = 0
    for i, record in enumerate(records):
        if record.mu is None:
            skipped += 1
            continue
        prompt = _ids(policy, policy.render(record.prompt), special=isinstance(record.prompt, str))
        if not prompt:
            if policy.tokenizer.bos_token_id is None:
                raise ValueError(f"record {i}: the prompt is empty and the tokenizer has no bos token to start from")
            prompt = [int(policy.tokenizer.bos_token_id)]
        sides = []
        for name, value in (("chosen", record.chosen), ("rejected", record.rejected)):
            ids = [*_ids(policy, _completion_text(value, f"record {i}: {name}"), special=False), eos]
            sides.append(tuple(ids[:max_length] if max_length is not None else ids))
        pair = TokenizedPair(tuple(prompt), sides[0], sides[1], record.mu)
        if max_positions is not None and pair.n_tokens > max_positions:
            raise ValueError(
                f"record {i}: prompt and completion take {pair.n_tokens} tokens, more than the model's "
                f"{max_positions} positions; set max_length to cut completions"
            )
        pairs.append(pair)
    return pairs, skipped


# -- scoring --------------------------------------------------------------------------


def _completion_batch(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(input_ids, attention_mask, P)``, each row the left-padded prompt then the right-padded completion."""
    P = max(len(p) for p in prompts)
    T = max(len(c) for c in completions)
    input_ids = torch.full((len(prompts), P + T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), P + T), dtype=torch.long)
    for row, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        input_ids[row, P - len(p) : P + len(c)] = torch.tensor([*p, *c], dtype=torch.long)
        attention_mask[row, P - len(p) : P + len(c)] = 1
    return input_ids, attention_mask, P


def sequence_logprobs(
    policy: ReferencePolicy, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]
) -> torch.Tensor:
    """``(N,)`` summed log-prob of each completion given its prompt (token ids), in one forward pass.

    Gradients flow (wrap in ``torch.no_grad`` for a reference policy).
    """
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(f"need as many prompts as completions, at least one; got {len(prompts)}, {len(completions)}")
    if any(len(c) == 0 for c in completions):
        raise ValueError("every completion needs at least one token")
    input_ids, attention_mask, P = _completion_batch(prompts, completions, policy.pad_token_id)
    logp, _ = policy.completion_logprobs(input_ids.to(policy.device), attention_mask.to(policy.device), P)
    return logp.sum(-1)  # masked positions are 0 already


def pair_logprobs(policy: ReferencePolicy, pairs: Sequence[TokenizedPair]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log pi(chosen), log pi(rejected))``, each ``(n,)``, from one forward pass over ``2n`` rows."""
    n = len(pairs)
    prompts = [p.prompt_ids for p in pairs] * 2
    completions = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
    logp = sequence_logprobs(policy, prompts, completions)
    return logp[:n], logp[n:]


def pair_batches(
    pairs: Sequence[TokenizedPair], batch_size: int, max_tokens: int, rng: np.random.Generator | None = None
) -> Iterator[list[int]]:
    """Indices of pairs in batches of similar length: at most ``batch_size`` pairs and ``max_tokens`` positions.

    The padded size of a batch of ``n`` pairs is ``2n * (P + T)``. Pairs are
    sorted by length (stably) and cut into consecutive runs; with ``rng`` the
    order of the batches is shuffled, their content stays the same.

    Why fixed content: the reference log-probs are computed over these same
    batches, so at the first step, where the policy equals the reference, the
    log-ratio margins are exactly 0 rather than padding-dependent round-off.
    That matters for ties: their gradient is proportional to the margin, and
    Adam would scale round-off up to full-size steps in random directions.
    """
    order = sorted(range(len(pairs)), key=lambda i: pairs[i].n_tokens)
    batches: list[list[int]] = []
    current: list[int] = []
    P = T = 0
    for i in order:
        pair = pairs[i]
        new_P = max(P, len(pair.prompt_ids))
        new_T = max(T, len(pair.chosen_ids), len(pair.rejected_ids))
        if current and (len(current) == batch_size or 2 * (len(current) + 1) * (new_P + new_T) > max_tokens):
            batches.append(current)
            current = []
            new_P = len(pair.prompt_ids)
            new_T = max(len(pair.chosen_ids), len(pair.rejected_ids))
        current.append(i)
        P, T = new_P, new_T
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)  # in place
    yield from batches


@torch.no_grad()
def _all_pair_logprobs(policy: ReferencePolicy, pairs: Sequence[TokenizedPair], config: DPOConfig) -> torch.Tensor:
    """``(N, 2)`` log-probs of (chosen, rejected) of every pair, in record order, without gradients."""
    out = torch.zeros((len(pairs), 2), dtype=torch.float32)
    was_training = policy.training
    policy.eval()
    for batch in pair_batches(pairs, config.batch_size, config.max_tokens):
        chosen, rejected = pair_logprobs(policy, [pairs[i] for i in batch])
        out[batch] = torch.stack([chosen, rejected], dim=-1).float().cpu()
    policy.train(was_training)
    return out


def logratio_margins(
    policy: TextPolicy, ref: ReferencePolicy, pairs: Sequence[TokenizedPair], config: DPOConfig | None = None
) -> torch.Tensor:
    """``(N,)`` log-ratio margins ``h_raw = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r))``, no gradients.

    ``h_raw > 0`` means the policy has moved towards the chosen completion
    relative to the reference; ``beta * h_raw`` is the implicit-reward margin.
    """
    config = config or DPOConfig()
    pi = _all_pair_logprobs(policy, pairs, config)
    ref_logp = _all_pair_logprobs(ref, pairs, config)
    return (pi[:, 0] - ref_logp[:, 0]) - (pi[:, 1] - ref_logp[:, 1])


# -- training -------------------------------------------------------------------------


def train_dpo(
    policy: TextPolicy,
    ref: ReferencePolicy | None,
    records: Sequence[PreferenceRecord],
    config: DPOConfig,
    eval_records: Sequence[PreferenceRecord] = (),
) -> DPOMetrics:
    """Train ``policy`` in place with DPO or IPO on ``records``; evaluate on ``eval_records``.

    ``ref`` is the frozen reference; ``None`` takes the policy as it is before the first
    step (:func:`~rlhfkit.models.adapters.reference_policy`: a frozen copy, or for a LoRA
    policy its own model with the adapters off, no second copy). Incomparable records are skipped (and counted);
    ties and graded labels go into the loss as they are (a tie pulls the
    log-ratio margin to 0, it pushes neither side). Only the language model's
    parameters are trained (a value head, if any, is left alone).
    """
    train, n_skipped = tokenize_records(policy, records, config.max_length)
    if not train:
        raise ValueError(f"no usable training pairs: all {len(records)} records are incomparable")
    if ref is None:
        ref = reference_policy(policy)
    elif ref.tokenizer is not policy.tokenizer and ref.tokenizer.get_vocab() != policy.tokenizer.get_vocab():
        raise ValueError("ref must share the policy's vocabulary: both score the same token ids")
    ref_logp = _all_pair_logprobs(ref, train, config).to(policy.device)  # (N, 2), computed once
    mu = torch.tensor([p.mu for p in train], dtype=torch.float32, device=policy.device)  # (N, 2)
    preference_loss = dpo_loss if config.loss == "dpo" else ipo_loss

    params = [p for p in policy.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    losses: list[float] = []
    margins: list[float] = []
    seconds = 0.0
    policy.train()
    for _ in range(config.epochs):
        for batch in pair_batches(train, config.batch_size, config.max_tokens, rng):
            t0 = time.perf_counter()
            idx = torch.tensor(batch, device=policy.device)
            chosen_logp, rejected_logp = pair_logprobs(policy, [train[i] for i in batch])
            terms = preference_loss(
                chosen_logp, rejected_logp, ref_logp[idx, 0], ref_logp[idx, 1], mu[idx], beta=config.beta
            )
            opt.zero_grad()
            terms.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            losses.append(float(terms.loss.detach()))  # reading it back waits for the step on a GPU
            margins.append(float(terms.margin))
            seconds += time.perf_counter() - t0

    held_out, _ = tokenize_records(policy, eval_records, config.max_length)
    accuracy = eval_margin = math.nan
    if held_out:
        h_raw = logratio_margins(policy, ref, held_out, config)
        preferred = torch.tensor([p.mu[0] - p.mu[1] for p in held_out])
        decisive = preferred != 0
        correct = (torch.sign(h_raw) == torch.sign(preferred)) & decisive
        if decisive.any():
            accuracy = float(correct.sum()) / int(decisive.sum())
        eval_margin = config.beta * float(h_raw.mean())
    return DPOMetrics(
        losses=tuple(losses),
        margins=tuple(margins),
        eval_reward_accuracy=accuracy,
        eval_margin=eval_margin,
        n_train=len(train),
        n_skipped=n_skipped,
        n_eval=len(held_out),
        pairs_per_second=len(train) * config.epochs / seconds if seconds > 0 else math.nan,
    )
