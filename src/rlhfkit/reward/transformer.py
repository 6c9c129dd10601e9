"""The transformer reward model: a scalar head on a sequence model, each prompt encoded once.

The model is any ``AutoModelForSequenceClassification`` with one output (or a
backbone with a scalar head in that shape: ``model.base_model`` gives hidden
states, ``model.score`` maps the last real token's state to the reward).

Scoring is organised by prompt. A :class:`PromptGroup` holds one prompt and its
``k`` completions (and, where labelled, pairs among them). :func:`group_rewards`
encodes each prompt **once** and reuses its key/value cache for all of the
prompt's completions (a cached prefix), so a pair costs ``P + 2R`` token
positions instead of ``2(P + R)``, and a group of four completions with its six
pairs ``P + 4R`` instead of ``12(P + R)``. :func:`plain_rewards` is the
straightforward forward pass over whole sequences; the two agree to float
precision (a test holds them to 1e-5).

:class:`SequenceRewardModel` makes the transformer a reward model of the one fit
(``reward/fit.py``) for every kind of feedback: it tokenises texts, scores any
subset of them grouped by prompt, and plans each kind's training steps as whole
prompt pieces under a token budget (``reward/prompt_batches.py``).
:class:`RewardModelScorer` is the same scoring as the reward function the
policy optimisers take, and :func:`load_reward_model` builds or loads the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.models.adapters import unwrap
from rlhfkit.models.text import checkpointing_now
from rlhfkit.models.text_builders import ModelFolderError, tiny_gpt2, train_tiny_tokenizer
from rlhfkit.reward.config import RewardConfig
from rlhfkit.reward.prompt_batches import length_batches, plan_prompt_batches
from rlhfkit.types import Content, Message, Text

TextValue = str | tuple[Message, ...]


@dataclass(frozen=True)
class PromptGroup:
    """One prompt, its completions (token ids) and labelled pairs among them.

    ``pairs[i] = (a, b)`` indexes ``completions``; ``mu[i] = (mu_a, mu_b)``.
    Incomparable answers are left out before building a group. A group for
    scoring only has no pairs.
    """

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[tuple[int, ...], ...]
    pairs: tuple[tuple[int, int], ...]
    mu: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("a prompt group needs a non-empty prompt (at least a BOS token)")
        if any(len(c) == 0 for c in self.completion_ids):
            raise ValueError("every completion needs at least one token")
        k = len(self.completion_ids)
        if len(self.pairs) != len(self.mu) or any(not (0 <= a < k and 0 <= b < k and a != b) for a, b in self.pairs):
            raise ValueError(f"pairs must index {k} completions and match mu one to one")

    @property
    def n_tokens(self) -> int:
        return len(self.prompt_ids) + max(len(c) for c in self.completion_ids)

    @property
    def n_rows(self) -> int:
        return len(self.completion_ids)

    @property
    def n_answers(self) -> int:
        return len(self.pairs)

    def answer_rows(self, i: int) -> tuple[int, ...]:
        return self.pairs[i]

    def piece(self, answers: Sequence[int]) -> PromptGroup:
        """This prompt with the pairs ``answers`` only, and only the completions they compare."""
        used = sorted({c for i in answers for c in self.pairs[i]})
        new = {c: j for j, c in enumerate(used)}
        return PromptGroup(
            self.prompt_ids,
            tuple(self.completion_ids[c] for c in used),
            tuple((new[self.pairs[i][0]], new[self.pairs[i][1]]) for i in answers),
            tuple(self.mu[i] for i in answers),
        )


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, n - len(s) :] = torch.tensor(s)
            mask[i, n - len(s) :] = 1
    return ids, mask


def _right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def _score(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The scalar head (``model.score``, as transformers' sequence classifiers name it) on ``(..., H)``.

    Of a LoRA model (a peft model) the head inside, its trainable copy.
    """
    head = getattr(unwrap(model), "score", None)
    if not isinstance(head, nn.Module):
        raise TypeError(f"{type(model).__name__} has no scalar head `score`; use AutoModelForSequenceClassification")
    out: torch.Tensor = head(hidden)
    return out[..., 0]


def _body(model: nn.Module) -> nn.Module:
    """The backbone that turns token ids into hidden states (``model.base_model`` in transformers).

    Of a LoRA model (a peft model) the backbone inside, with its adapters: a peft model's own
    ``base_model`` is the adapter wrapper, which runs the whole classifier.
    """
    body = getattr(unwrap(model), "base_model", None)
    if not isinstance(body, nn.Module):
        raise TypeError(f"{type(model).__name__} has no `base_model` backbone")
    return body


def group_rewards(model: nn.Module, groups: Sequence[PromptGroup], pad_id: int) -> list[torch.Tensor]:
    """Rewards of every completion, each prompt encoded once: a list of ``(k_g,)`` tensors.

    Prompts are left-padded to a common length ``P`` and run through the
    backbone with ``use_cache``; the cache rows are then repeated for each of a
    prompt's completions, which are right-padded and continue the positions of
    their own prompt. The reward is read at each completion's last real token.
    """
    body = _body(model)
    prompt_ids, prompt_mask = _left_pad([g.prompt_ids for g in groups], pad_id)
    prompt_pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    body(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_pos, cache=cache, use_cache=True)

    owner = torch.tensor([gi for gi, g in enumerate(groups) for _ in g.completion_ids])
    cache.batch_select_indices(owner)
    comps = [c for g in groups for c in g.completion_ids]
    comp_ids, comp_mask = _right_pad(comps, pad_id)
    prompt_len = prompt_mask.sum(-1)[owner]
    comp_pos = prompt_len[:, None] + torch.arange(comp_ids.shape[1])[None, :]
    full_mask = torch.cat([prompt_mask[owner], comp_mask], dim=1)
    out = body(input_ids=comp_ids, attention_mask=full_mask, position_ids=comp_pos, cache=cache, use_cache=True)
    last = comp_mask.sum(-1) - 1
    hidden = out.last_hidden_state[torch.arange(len(comps)), last]
    rewards = _score(model, hidden)
    return list(torch.split(rewards, [len(g.completion_ids) for g in groups]))


def plain_rewards(model: nn.Module, sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Rewards of whole sequences (prompt + completion), left-padded, one forward pass: ``(N,)``."""
    ids, mask = _left_pad(sequences, pad_id)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = _body(model)(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    return _score(model, out.last_hidden_state[:, -1])


def pair_tensors(groups: Sequence[PromptGroup], rewards: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``(r_a, r_b, mu)`` over all labelled pairs of the groups."""
    ra, rb, mu = [], [], []
    for g, r in zip(groups, rewards, strict=True):
        if not g.pairs:
            continue
        idx = torch.tensor(g.pairs)
        ra.append(r[idx[:, 0]])
        rb.append(r[idx[:, 1]])
        mu.append(torch.tensor(g.mu, dtype=r.dtype))
    return torch.cat(ra), torch.cat(rb), torch.cat(mu)


# -- text to token ids ------------------------------------------------------------------


def render(tokenizer: PreTrainedTokenizerBase, value: TextValue, as_prompt: bool) -> str:
    """Text of a prompt or completion; chat messages go through the tokenizer's chat template."""
    if isinstance(value, str):
        return value
    messages = [{"role": m["role"], "content": m["content"]} for m in value]
    if as_prompt:
        out = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=bool(messages))
        return out if isinstance(out, str) else ""
    return "".join(m["content"] for m in messages)


def _start_token(tokenizer: PreTrainedTokenizerBase) -> int:
    return int(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: str) -> tuple[int, ...]:
    """Token ids of a rendered prompt; an empty prompt becomes the bos (or eos) token."""
    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
    return tuple(ids) if ids else (_start_token(tokenizer),)


def completion_token_ids(tokenizer: PreTrainedTokenizerBase, completion: str) -> tuple[int, ...]:
    """A completion's ids without special tokens, closed by eos so the reward is read where it ends."""
    return (*tokenizer(completion, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id)


Encoded = list[tuple[tuple[int, ...], tuple[int, ...]]]
"""Per item: (prompt token ids, completion token ids)."""


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[TextValue], completions: Sequence[str]
) -> Encoded:
    """:func:`prompt_token_ids` and :func:`completion_token_ids` of each pair, each distinct prompt tokenised once."""
    rendered = [render(tokenizer, p, as_prompt=True) for p in prompts]
    distinct = list(dict.fromkeys(rendered))
    nonempty = [p for p in distinct if p]
    ids = (
        dict(zip(nonempty, tokenizer(nonempty, add_special_tokens=True)["input_ids"], strict=True)) if nonempty else {}
    )
    start = (_start_token(tokenizer),)
    prompt_ids = {p: (tuple(ids[p]) or start) if p else start for p in distinct}
    comp = tokenizer(list(completions), add_special_tokens=False)["input_ids"] if completions else []
    eos = tokenizer.eos_token_id
    return [(prompt_ids[p], (*c, eos)) for p, c in zip(rendered, comp, strict=True)]


# -- the reward model of the fit --------------------------------------------------------


class SequenceRewardModel(nn.Module):
    """A sequence classifier and its tokenizer as a reward model of texts (``reward/fit.py``).

    Returns have a leading ensemble axis of size 1: ``(1, n)``. Scoring without
    gradients (evaluation) is cut into batches of at most ``max_tokens`` padded
    positions, sorted by length; a training step scores its rows in one pass
    (its size is planned by :meth:`plan_batches`).
    """

    size = 1

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_tokens: int = 8192) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def encode(self, items: Sequence[Content]) -> Encoded:
        texts = [x for x in items if isinstance(x, Text) and isinstance(x.completion, str)]
        if len(texts) != len(items):
            raise TypeError("a SequenceRewardModel scores texts with plain-string completions")
        return encode_texts(self.tokenizer, [t.prompt for t in texts], [str(t.completion) for t in texts])

    def set_stats(self, encoded: Encoded) -> None:
        """Nothing to standardise: the transformer reads tokens."""

    def returns(self, encoded: Encoded, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(1, n)`` rewards of the rows ``idx`` (all when None), the completions of each prompt after one
        encoding of it (while activation checkpointing acts, each row whole: :func:`plain_rewards`)."""
        rows = list(range(len(encoded))) if idx is None else [int(i) for i in idx]
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        for j, i in enumerate(rows):
            by_prompt.setdefault(encoded[i][0], []).append(j)
        groups = [
            PromptGroup(prompt, tuple(encoded[rows[j]][1] for j in js), (), ()) for prompt, js in by_prompt.items()
        ]
        owners = list(by_prompt.values())
        if checkpointing_now(self.model):  # a checkpointed layer drops the cache: whole sequences, no sharing
            seqs = [(*encoded[i][0], *encoded[i][1]) for i in rows]
            return plain_rewards(self.model, seqs, int(self.tokenizer.pad_token_id)).unsqueeze(0)
        chunks = length_batches(groups, self.max_tokens) if not torch.is_grad_enabled() else [range(len(groups))]
        pad = int(self.tokenizer.pad_token_id)
        order: list[int] = []
        rewards: list[torch.Tensor] = []
        for chunk in chunks:
            rewards += group_rewards(self.model, [groups[g] for g in chunk], pad)
            order += [j for g in chunk for j in owners[g]]
        if not rewards:
            return torch.zeros((1, 0))
        out = torch.zeros(len(rows), dtype=rewards[0].dtype).index_put((torch.tensor(order),), torch.cat(rewards))
        return out.unsqueeze(0)

    def plan_batches(
        self, encoded: Encoded, touched: Sequence[tuple[int, ...]], config: RewardConfig, rng: np.random.Generator
    ) -> list[list[int]]:
        """One epoch's steps of one kind's answers: whole prompt pieces, one prompt encoding each.

        At most ``config.batch_size`` answers and ``config.max_tokens`` padded positions a step, shuffled (or
        sorted within pools, ``config.length_pool``); see ``reward/prompt_batches.py``.
        """
        return plan_prompt_batches(
            [p for p, _ in encoded],
            [len(c) for _, c in encoded],
            touched,
            config.batch_size,
            config.max_tokens,
            config.length_pool,
            rng,
        )


class RewardModelScorer:
    """A text reward model as the reward function the optimisers take: ``(prompts, completions) -> (N,)``.

    Prompts are rendered as :func:`render` does (chat prompts through the
    tokenizer's template with the generation prompt), so that the model scores
    exactly what it was fitted on; the completions of one prompt share its
    encoding, and batches are cut by length under ``max_tokens`` padded positions.
    """

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_tokens: int = 8192) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.reward_model = SequenceRewardModel(model, tokenizer, max_tokens)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[TextValue | Sequence[Message]], completions: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions: one prompt per completion")
        self.model.eval()
        values = [p if isinstance(p, str) else tuple(p) for p in prompts]
        encoded = encode_texts(self.tokenizer, values, completions)
        return self.reward_model.returns(encoded)[0].double().cpu().numpy()


def load_reward_model(
    model: str, training_texts: Sequence[str], seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A scalar-output sequence classifier and its tokenizer: the ``tiny`` preset or a saved folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2ForSequenceClassification

    tokenizer: PreTrainedTokenizerBase
    if model == "tiny":
        tokenizer = train_tiny_tokenizer(training_texts, vocab_size=1024)
        config = tiny_gpt2(tokenizer, n_layer=2, n_embd=128, n_head=4, n_positions=512).config
        config.num_labels = 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            reward_model = GPT2ForSequenceClassification(config)
        return reward_model, tokenizer
    path = Path(model)
    if not path.is_dir():
        raise ModelFolderError(f"--model {model!r}: not a preset (tiny) and not a folder saved with save_pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        reward_model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    except (OSError, ValueError) as e:
        raise ModelFolderError(f"--model {path}: cannot load a model and tokenizer ({e})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    reward_model.config.pad_token_id = tokenizer.pad_token_id
    return reward_model, tokenizer
