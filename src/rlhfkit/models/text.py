"""A causal language model as a policy, with exact sampling log-probs.

A :class:`TextPolicy` wraps a Hugging Face causal LM and its tokenizer. It samples
completions for a batch of prompts (:meth:`TextPolicy.generate`, returning a
:class:`TextBatch`) and recomputes the log-probs of given completion tokens with a
manual forward pass (:meth:`TextPolicy.token_logprobs`), which is what PPO trains.

Three details keep the two sets of log-probs equal (to float round-off):

- sampling is this module's own decoding loop on the model's key/value cache
  (not ``model.generate``, whose default ``top_k=50`` and the model's own
  ``generation_config`` would change the distribution): tokens are drawn from the
  full softmax of the raw logits at temperature 1, and the drawn token's
  log-prob is kept;
- prompts are left-padded, so the forward pass passes
  ``position_ids = cumsum(attention_mask) - 1`` (clamped at 0), the positions
  the sampler used; without it a left-padded row is read at shifted positions;
- dropout is switched off in the wrapped model, so train and eval mode agree.

Speed: each prompt is encoded once and its cache rows are repeated for its
completions, a token costs one uniform random number (inverse CDF), and a model
with SDPA attention gets a ready 4-D key mask each step instead of rebuilding a
causal mask. The scoring pass (:meth:`TextPolicy.token_logprobs`) likewise
encodes each prompt once for the rows that continue it.

Shapes: ``B`` rows (prompts times completions per prompt), ``P`` the padded prompt
length, ``T`` the completion length (at most ``max_new_tokens``; sampling stops
early once every row has produced an end-of-sequence token), ``V`` the vocabulary.

The batches it returns (:class:`~rlhfkit.models.text_batch.TextBatch`) and the token
helpers are in :mod:`rlhfkit.models.text_batch`; the tiny tokenizer and GPT-2 builders
and :func:`~rlhfkit.models.text_builders.load_causal_lm` in :mod:`rlhfkit.models.text_builders`.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.models.text_batch import Prompt, TextBatch, completion_mask_from, position_ids_from, sample_tokens


class ReferencePolicy(Protocol):
    """What the trainers ask of a reference policy pi_ref: log-probs of given completions, never trained.

    A :class:`TextPolicy` (e.g. :meth:`TextPolicy.frozen_copy`) is one; so is a LoRA policy's own
    model with its adapters off (:class:`~rlhfkit.models.adapters.AdapterOffReference`).
    """

    training: bool

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase: ...

    @property
    def pad_token_id(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def completion_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        prompt_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def sampled_logp(self, batch: TextBatch) -> torch.Tensor: ...

    def generate(
        self, prompts: Sequence[Prompt], max_new_tokens: int, n_per_prompt: int = 1, seed: int | None = None
    ) -> TextBatch: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


class TextPolicy(nn.Module):
    """A causal LM and its tokenizer as a policy over completion tokens.

    The action at completion step ``t`` is token ``t``; the state is the prompt
    and the tokens before it. With ``value_head`` a linear head on the LM's last
    hidden state gives ``V(s_t)`` for PPO. Dropout in ``model`` is switched off
    (in place), so log-probs do not depend on train/eval mode. ``model`` may be a peft
    ``PeftModel`` (LoRA adapters, :func:`~rlhfkit.models.adapters.prepare_model`): it reads the same.
    """

    def __init__(
        self, model: PreTrainedModel | Any, tokenizer: PreTrainedTokenizerBase, value_head: bool = True
    ) -> None:
        super().__init__()
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token; a completion could never end")
        self.model = model
        self.tokenizer = tokenizer
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        self.value_head: nn.Linear | None = None
        if value_head:
            hidden = int(model.config.get_text_config().hidden_size)
            self.value_head = nn.Linear(hidden, 1)
            nn.init.normal_(self.value_head.weight, std=1.0 / (hidden + 1) ** 0.5)
            nn.init.zeros_(self.value_head.bias)
            self.value_head.to(device=model.device, dtype=model.dtype)

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.eos_token_id if pad is None else int(pad)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- prompts ------------------------------------------------------------------

    def render(self, prompt: Prompt, add_generation_prompt: bool = True) -> str:
        """The prompt as text: a string as is, messages through the chat template.

        For messages, ``add_generation_prompt`` appends the assistant header so
        that the completion is the assistant's reply.
        """
        if isinstance(prompt, str):
            return prompt
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        out = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert isinstance(out, str)
        return out

    def encode_prompts(self, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask ``(N, P)`` of the prompts, left-padded to the longest.

        Raw strings get the tokenizer's special tokens (e.g. a bos), rendered chats
        do not (the template writes them). A prompt with no tokens starts from bos.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of prompts, not one string (wrap it in a list)")
        rows: list[list[int]] = []
        for i, prompt in enumerate(prompts):
            ids = list(self.tokenizer(self.render(prompt), add_special_tokens=isinstance(prompt, str))["input_ids"])
            if not ids:
                if self.tokenizer.bos_token_id is None:
                    raise ValueError(f"prompt {i} is empty and the tokenizer has no bos token to start from")
                ids = [int(self.tokenizer.bos_token_id)]
            rows.append([int(t) for t in ids])
        if not rows:
            raise ValueError("no prompts given")
        P = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), P), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), P), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, P - len(r) :] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, P - len(r) :] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    # -- sampling ------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        n_per_prompt: int = 1,
        seed: int | None = None,
    ) -> TextBatch:
        """Sample ``n_per_prompt`` completions for each prompt, with their log-probs.

        Sampling is from the model's full distribution at temperature 1 (no
        top-k, top-p or other logits processors). With ``seed`` the draw is
        reproducible, and the global torch RNG is left untouched. Returns a
        :class:`TextBatch` of ``B = len(prompts) * n_per_prompt`` rows, the
        completions of prompt ``j`` in rows ``j * n_per_prompt ...``.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if n_per_prompt < 1:
            raise ValueError(f"n_per_prompt must be >= 1, got {n_per_prompt}")
        prompt_ids, prompt_mask = self.encode_prompts(prompts)
        P = int(prompt_ids.shape[1])
        max_positions = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        if max_positions is not None and P + max_new_tokens > max_positions:
            raise ValueError(
                f"the longest prompt has {P} tokens; with max_new_tokens={max_new_tokens} that exceeds "
                f"the model's {max_positions} positions"
            )
        completion_ids, logp = self._sample(prompt_ids, prompt_mask, n_per_prompt, max_new_tokens, seed)
        # made under inference mode (cheaper per op), they could not enter autograd: normal copies
        completion_ids, logp = completion_ids.clone(), logp.clone()
        prompt_index = torch.arange(len(prompts), device=self.device).repeat_interleave(n_per_prompt)
        prompt_ids, prompt_mask = prompt_ids[prompt_index], prompt_mask[prompt_index]
        sequences = torch.cat([prompt_ids, completion_ids], dim=1)
        completion_mask = completion_mask_from(completion_ids, self.eos_token_id)
        logp = logp * completion_mask
        finished = (completion_ids == self.eos_token_id).any(-1)
        completions = []
        for row, n in zip(completion_ids, completion_mask.sum(-1), strict=True):
            ids = row[: int(n)].tolist()
            if ids and ids[-1] == self.eos_token_id:
                ids = ids[:-1]
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            assert isinstance(text, str)
            completions.append(text)
        return TextBatch(
            input_ids=sequences,
            attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
            prompt_len=P,
            completion_mask=completion_mask,
            logp=logp,
            completions=completions,
            prompt_index=prompt_index,
            finished=finished,
        )

    @torch.inference_mode()
    def _sample(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, n: int, max_new_tokens: int, seed: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Completion tokens and their log-probs, ``(N * n, T)`` each, for ``N`` left-padded prompts.

        A plain decoding loop on the model's key/value cache rather than
        ``model.generate``: each prompt is encoded once and its cache rows are
        repeated for its ``n`` completions; each step draws from the full softmax
        of the raw logits (so the model's own ``generation_config`` cannot change
        the distribution), keeps the drawn token's log-prob, and the loop stops as
        soon as every row has produced eos. Rows that have finished get pad tokens
        (log-prob 0). Tokens are drawn with :func:`sample_tokens`.
        """
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        positions = position_ids_from(prompt_mask)
        cache = self._new_cache()
        out = self.model(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=positions,
            logits_to_keep=1,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].repeat_interleave(n, dim=0)
        B = int(logits.shape[0])
        mask = torch.cat([prompt_mask.repeat_interleave(n, dim=0), prompt_mask.new_ones(B, max_new_tokens)], dim=1)
        if self._decode_mask_is_4d:
            # One query token attends to every real key: the mask is (B, 1, 1, keys) in
            # SDPA's boolean form, which the model takes as is instead of rebuilding a
            # causal mask every step (a sixth of the decoding time for a small model).
            mask = mask.bool()[:, None, None, :]
        next_position = positions[:, -1:].repeat_interleave(n, dim=0) + 1
        P = int(prompt_ids.shape[1])
        tokens = torch.full((B, max_new_tokens), self.pad_token_id, dtype=torch.long, device=self.device)
        logps = torch.zeros((B, max_new_tokens), device=self.device)
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        for t in range(max_new_tokens):
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            token = sample_tokens(logprobs, generator)
            token = token.masked_fill(done, self.pad_token_id)
            tokens[:, t] = token
            logps[:, t] = logprobs.gather(-1, token.unsqueeze(-1)).squeeze(-1).masked_fill(done, 0.0)
            done |= token == self.eos_token_id
            if t == max_new_tokens - 1 or bool(done.all()):
                return tokens[:, : t + 1], logps[:, : t + 1]
            out = self.model(
                input_ids=token.unsqueeze(-1),
                attention_mask=mask[..., : P + t + 1],
                position_ids=next_position + t,
                use_cache=True,
                **{self._cache_kw: cache},
            )
            logits = out.logits[:, -1]
        raise AssertionError("unreachable")  # the loop returns at its last step

    @property
    def _decode_mask_is_4d(self) -> bool:
        """Whether decoding may pass a ready 4-D key mask: SDPA attention and full attention in every layer."""
        config = self.model.config.get_text_config()
        layer_types = getattr(config, "layer_types", None) or ["full_attention"]
        return (
            getattr(config, "_attn_implementation", None) == "sdpa"
            and getattr(config, "sliding_window", None) is None
            and all(t == "full_attention" for t in layer_types)
        )

    def _new_cache(self) -> DynamicCache:
        try:
            return DynamicCache(config=self.model.config)
        except (TypeError, ValueError, AttributeError):
            return DynamicCache()

    @functools.cached_property
    def _cache_kw(self) -> str:
        """The model's keyword for a key/value cache (``cache`` in transformers 5, ``past_key_values`` before)."""
        get_base = getattr(self.model, "get_base_model", None)  # a peft model passes **kwargs to the model inside
        model = get_base() if callable(get_base) else self.model
        params = inspect.signature(model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    # -- scoring --------------------------------------------------------------------

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_completion: int,
        hidden: bool = False,
        prompt_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, T, V)`` predicting the last ``T = n_completion`` tokens, and hidden states ``(B, T, H)``.

        With ``prompt_index`` (which prompt each row continues) and rows that share
        a prompt, each prompt is encoded once and its key/value cache repeated for
        its rows (:meth:`_forward_shared`); the result is the same to float round-off. Not
        while activation checkpointing acts (a training pass): transformers drops the cache
        in a checkpointed layer, so each row then goes through whole.
        """
        if prompt_index is not None and len(prompt_index) > 1 and not checkpointing_now(self.model):
            shared = self._forward_shared(input_ids, attention_mask, n_completion, hidden, prompt_index)
            if shared is not None:
                return shared
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from(attention_mask),
            logits_to_keep=n_completion + 1,
            output_hidden_states=hidden,
            use_cache=False,
        )
        logits = out.logits[:, :-1]
        states = out.hidden_states[-1][:, -n_completion - 1 : -1] if hidden else None
        return logits, states

    def _forward_shared(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_completion: int,
        hidden: bool,
        prompt_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """:meth:`_forward` with each distinct prompt encoded once; None when no prompt is shared.

        The prompt rows go through the model once with a cache; the cache rows are
        then gathered for every completion row and the completions run on top of it.
        The logits that predict the first completion token come from the prompt pass.
        Gradients flow through both passes (the gather is differentiable).
        """
        P = int(input_ids.shape[1]) - n_completion
        owners, owner_of_row = torch.unique(prompt_index, return_inverse=True)
        if len(owners) == len(prompt_index) or P < 1:
            return None
        first_row = torch.full((len(owners),), len(prompt_index), dtype=torch.long, device=input_ids.device)
        first_row.scatter_reduce_(0, owner_of_row, torch.arange(len(prompt_index), device=input_ids.device), "amin")
        prompt_ids, prompt_mask = input_ids[first_row, :P], attention_mask[first_row, :P]
        if not (
            torch.equal(prompt_ids[owner_of_row], input_ids[:, :P])
            and torch.equal(prompt_mask[owner_of_row], attention_mask[:, :P])
        ):
            return None  # rows with one prompt index but different prompts: no sharing
        positions = position_ids_from(attention_mask)
        cache = self._new_cache()
        head = self.model(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=positions[first_row, :P],
            logits_to_keep=1,
            output_hidden_states=hidden,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        cache.batch_select_indices(owner_of_row)
        first_logits = head.logits[:, -1:][owner_of_row]
        first_states = head.hidden_states[-1][:, -1:][owner_of_row] if hidden else None
        if n_completion == 1:
            return first_logits, first_states
        # The last completion token's own logits would predict beyond the
        # completion: it is not fed (its key/value is never needed either).
        tail = self.model(
            input_ids=input_ids[:, P:-1],
            attention_mask=attention_mask[:, :-1],
            position_ids=positions[:, P:-1],
            output_hidden_states=hidden,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        logits = torch.cat([first_logits, tail.logits], dim=1)
        states = None
        if first_states is not None:
            states = torch.cat([first_states, tail.hidden_states[-1]], dim=1)
        return logits, states

    def completion_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        prompt_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi(token_t | s_t), entropy of pi(.|s_t))``, each ``(B, T)``, for the tokens after ``prompt_len``.

        ``input_ids`` and ``attention_mask`` are ``(B, P + T)``, prompts
        left-padded; positions where the mask is 0 get 0. Gradients flow. With
        ``prompt_index`` rows continuing the same prompt share one prompt pass.
        """
        logp, entropy = self._completion_terms(input_ids, attention_mask, prompt_len, prompt_index, entropy=True)
        assert entropy is not None
        return logp, entropy

    def _completion_terms(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        prompt_index: torch.Tensor | None,
        entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        T = int(input_ids.shape[1]) - prompt_len
        if T < 1:
            raise ValueError(f"no completion tokens: sequence length {input_ids.shape[1]}, prompt_len {prompt_len}")
        logits, _ = self._forward(input_ids, attention_mask, T, prompt_index=prompt_index)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        actions = input_ids[:, prompt_len:]
        mask = attention_mask[:, prompt_len:].to(logprobs.dtype)
        logp = logprobs.gather(-1, actions.unsqueeze(-1)).squeeze(-1) * mask
        if not entropy:
            return logp, None
        return logp, -(logprobs.exp() * logprobs).sum(-1) * mask

    def token_logprobs(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp, entropy)``, each ``(B, T)``, of the batch's completion tokens under this policy.

        A manual forward pass with left-padding-aware position ids: for the policy
        that sampled the batch it reproduces ``batch.logp``. 0 where
        ``batch.completion_mask`` is 0. Gradients flow (wrap in ``torch.no_grad``
        for a reference policy).
        """
        return self.completion_logprobs(batch.input_ids, batch.attention_mask, batch.prompt_len, batch.prompt_index)

    def sampled_logp(self, batch: TextBatch) -> torch.Tensor:
        """``(B, T)`` log-probs of the batch's completion tokens, as :meth:`token_logprobs` without the entropy.

        What RLOO/GRPO and the reference model need; skipping the entropy saves a
        pass over the ``(B, T, V)`` probabilities (and its autograd record).
        """
        logp, _ = self._completion_terms(
            batch.input_ids, batch.attention_mask, batch.prompt_len, batch.prompt_index, entropy=False
        )
        return logp

    def completion_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
        """``V(s_t)``, ``(B, T)``, before each completion token (0 where the mask is 0)."""
        if self.value_head is None:
            raise RuntimeError("this TextPolicy was built with value_head=False")
        T = int(input_ids.shape[1]) - prompt_len
        _, states = self._forward(input_ids, attention_mask, T, hidden=True)
        assert states is not None
        values = self.value_head(states).squeeze(-1).float()
        return values * attention_mask[:, prompt_len:].to(values.dtype)

    # -- the optimiser core's policy protocol ----------------------------------------

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp, entropy)``, ``(B, T)``, for ``obs = batch.obs()`` ``(B, 3, P + T)`` and ``actions`` ``(B, T)``.

        ``actions`` must be the completion tokens held in ``obs``.
        """
        input_ids, attention_mask, prompt_len = _unpack_obs(obs)
        if not torch.equal(input_ids[:, prompt_len:], actions):
            raise ValueError("actions must be the completion tokens of obs (batch.completion_ids)")
        return self.completion_logprobs(input_ids, attention_mask, prompt_len)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """``V(s_t)``, ``(B, T)``, for ``obs = batch.obs()`` ``(B, 3, P + T)``."""
        input_ids, attention_mask, prompt_len = _unpack_obs(obs)
        return self.completion_values(input_ids, attention_mask, prompt_len)

    def frozen_copy(self) -> TextPolicy:
        """A detached copy in eval mode with gradients off, e.g. the reference policy pi_ref."""
        ref = copy.deepcopy(self, memo={id(self.tokenizer): self.tokenizer})  # the tokenizer is shared
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref.eval()


def checkpointing_now(model: nn.Module) -> bool:
    """Whether ``model``'s forward pass now is checkpointed: activation checkpointing on, training mode, gradients on.

    Then transformers drops the key/value cache in every checkpointed layer (its replay in
    the backward pass would write the cache twice), so a pass that continues a cache must
    not run; sampling (``inference_mode``) and reference passes (``no_grad``) are not affected.
    """
    flag = getattr(model, "is_activation_checkpointing", None)
    if flag is None:  # transformers before the rename
        flag = getattr(model, "is_gradient_checkpointing", False)
    return bool(flag) and model.training and torch.is_grad_enabled()


def _unpack_obs(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    if obs.ndim != 3 or obs.shape[1] != 3:
        raise ValueError(f"text obs must be (B, 3, L) as made by TextBatch.obs(), got shape {tuple(obs.shape)}")
    region = obs[:, 2]
    n_completion = int(region[0].sum())
    if n_completion < 1 or not torch.all(region.sum(-1) == n_completion):
        raise ValueError("text obs: the completion-region row must mark the same T >= 1 last positions in every row")
    return obs[:, 0], obs[:, 1], int(obs.shape[2]) - n_completion
