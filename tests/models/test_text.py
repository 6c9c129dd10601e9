"""Language-model policy: exact sampling log-probs, save/load, chat template, masks, seeding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from rlhfkit.models.text import TextPolicy
from rlhfkit.models.text_batch import TextBatch, completion_mask_from, sample_tokens
from rlhfkit.models.text_builders import ModelFolderError, load_causal_lm, tiny_gpt2, train_tiny_tokenizer
from rlhfkit.types import Text

CORPUS = [
    "the pendulum swings up and holds still at the top",
    "a good answer is short, polite and correct",
    "the quick brown fox jumps over the lazy dog",
    "reward models learn from pairs of answers that people compare",
    "<|user|>\nhow are you?\n<|assistant|>\nfine, thank you.<|endoftext|>\n",
] * 4


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tiny_tokenizer(CORPUS, vocab_size=320)


@pytest.fixture(scope="module")
def policy(tokenizer: PreTrainedTokenizerFast) -> TextPolicy:
    return TextPolicy(tiny_gpt2(tokenizer, n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=0), tokenizer)


def prompt_of_length(tokenizer: PreTrainedTokenizerFast, n: int) -> str:
    """A prompt of exactly ``n`` tokens: corpus words, topped up with '~' (one byte token each, never merged)."""
    words = ["the", "pendulum", "swings", "up", "and", "holds", "still", "at", "the", "top"]
    text = ""
    for w in words:
        longer = f"{text} {w}".strip()
        if len(tokenizer(longer)["input_ids"]) > n - 1:
            break
        text = longer
    text += "~" * (n - len(tokenizer(text)["input_ids"]))
    assert len(tokenizer(text)["input_ids"]) == n
    return text


def manual_logp(policy: TextPolicy, batch: TextBatch, position_ids: torch.Tensor | None) -> torch.Tensor:
    """Completion log-probs from one plain forward pass, with the given position ids (or the model's default)."""
    with torch.no_grad():
        logits = policy.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids
        ).logits
    logits = logits[:, batch.prompt_len - 1 : -1]
    logp = F.log_softmax(logits, -1).gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    return logp * batch.completion_mask


def test_generate_logprobs_match_forward_pass_with_left_padding(policy: TextPolicy) -> None:
    prompts = [prompt_of_length(policy.tokenizer, n) for n in (3, 9, 17)]
    batch = policy.generate(prompts, max_new_tokens=12, n_per_prompt=2, seed=1)

    B, T = batch.completion_mask.shape
    assert (B, batch.prompt_len) == (6, 17)
    assert batch.input_ids.shape == batch.attention_mask.shape == (B, 17 + T)
    assert batch.logp.shape == (B, T)
    assert batch.prompt_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert batch.attention_mask[:, :17].sum(-1).tolist() == [3, 3, 9, 9, 17, 17]
    assert len(batch.completions) == B
    mask = batch.completion_mask.bool()
    assert mask.sum() > B  # real completion tokens to compare

    with torch.no_grad():
        logp, entropy = policy.token_logprobs(batch)
    assert logp.shape == entropy.shape == (B, T)
    assert (logp - batch.logp)[mask].abs().max() < 1e-5
    assert torch.all(entropy[mask] > 0) and torch.all(entropy[~mask] == 0)

    # The same check by hand: with the position-ids fix it matches, without it the
    # left-padded rows are read at shifted positions and their log-probs are wrong.
    fixed = manual_logp(policy, batch, (batch.attention_mask.cumsum(-1) - 1).clamp(min=0))
    assert (fixed - batch.logp)[mask].abs().max() < 1e-5
    unfixed = manual_logp(policy, batch, None)
    assert (unfixed - batch.logp)[mask].abs().max() > 1e-3
    # The longest prompt has no padding, so only the padded rows differ.
    assert (unfixed - batch.logp)[4:][mask[4:]].abs().max() < 1e-5


def test_ppo_protocol_adapter(policy: TextPolicy) -> None:
    batch = policy.generate(["the quick", "a good answer is"], max_new_tokens=6, seed=3)
    obs, actions = batch.obs(), batch.completion_ids
    assert obs.shape == (2, 3, batch.input_ids.shape[1])
    logp, entropy = policy.log_prob(obs, actions)
    assert logp.requires_grad and entropy.shape == actions.shape
    assert (logp - batch.logp)[batch.completion_mask.bool()].abs().max() < 1e-5
    values = policy.value(obs)
    assert values.shape == actions.shape
    (logp.sum() + values.sum()).backward()
    assert policy.value_head is not None and policy.value_head.weight.grad is not None
    policy.zero_grad(set_to_none=True)
    sub = batch.subset([1])
    assert sub.completions == batch.completions[1:] and torch.equal(sub.input_ids, batch.input_ids[1:])


def test_frozen_copy(policy: TextPolicy) -> None:
    ref = policy.frozen_copy()
    assert not ref.training and all(not p.requires_grad for p in ref.parameters())
    assert any(p.requires_grad for p in policy.parameters())
    assert ref.model is not policy.model
    batch = policy.generate(["the quick"], max_new_tokens=5, seed=0)
    with torch.no_grad():
        assert torch.allclose(ref.token_logprobs(batch)[0], policy.token_logprobs(batch)[0])


def test_save_load_round_trip(policy: TextPolicy, tmp_path: Path) -> None:
    policy.model.save_pretrained(tmp_path)
    policy.tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    model, tokenizer = load_causal_lm(tmp_path)

    text = "the pendulum swings up"
    assert tokenizer(text)["input_ids"] == policy.tokenizer(text)["input_ids"]
    assert tokenizer.padding_side == "left"
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<|pad|>")
    messages = [{"role": "user", "content": "hi"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == policy.render(messages, False)
    ids = torch.tensor([policy.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, policy.model(ids).logits)


def test_chat_template(policy: TextPolicy) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"},
    ]
    assert policy.render(messages, add_generation_prompt=False) == (
        "<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\nhello<|endoftext|>\n<|user|>\nhow are you?\n"
    )
    assert policy.render(messages[1:2]) == "<|user|>\nhi\n<|assistant|>\n"
    assert policy.render("plain text") == "plain text"
    # Role markers are single special tokens.
    tok = policy.tokenizer
    ids = tok(policy.render(messages[1:2]))["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[0] == "<|user|>"
    assert tok.convert_ids_to_tokens(ids)[-2:] == ["<|assistant|>", tok.convert_ids_to_tokens(ids)[-1]]
    with pytest.raises(Exception, match="unknown chat role"):
        policy.render([{"role": "tool", "content": "x"}])
    # A chat prompt generates, and rows become Text records.
    prompts = [messages[1:2], "the quick"]
    batch = policy.generate(prompts, max_new_tokens=4, seed=0)
    texts = batch.to_texts(prompts)
    assert all(isinstance(t, Text) for t in texts)
    assert texts[0].prompt == ({"role": "user", "content": "hi"},) and texts[1].prompt == "the quick"


def test_completion_mask_stops_after_first_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    eos = tokenizer.eos_token_id
    ids = torch.tensor([[5, eos, 7, eos], [5, 6, 7, 8], [eos, 1, 1, 1]])
    assert completion_mask_from(ids, eos).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]

    # A model that says eos often: sampled rows end early, and the batch is masked after the eos.
    model = tiny_gpt2(tokenizer, n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=0)
    with torch.no_grad():
        model.transformer.wte.weight[eos] *= 60.0  # tied with the output layer
    eager = TextPolicy(model, tokenizer, value_head=False)
    batch = eager.generate(["the quick", "a good answer is", "the pendulum"], max_new_tokens=10, n_per_prompt=3, seed=0)
    comp = batch.completion_ids
    assert batch.finished.any()
    for row, m, text, done in zip(comp, batch.completion_mask, batch.completions, batch.finished, strict=True):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()
        if done:
            assert int(row[n - 1]) == eos and eos not in row[: n - 1].tolist()
            assert torch.all(row[n:] == tokenizer.pad_token_id)
        else:
            assert n == comp.shape[1] and eos not in row.tolist()
        assert "<|endoftext|>" not in text
    P = batch.prompt_len
    assert torch.equal(batch.attention_mask[:, P:], batch.completion_mask)
    assert torch.all(batch.logp[batch.completion_mask == 0] == 0)
    logp, _ = eager.token_logprobs(batch)
    assert (logp - batch.logp).abs().max() < 1e-5


def test_generate_ignores_the_models_generation_config(tokenizer: PreTrainedTokenizerFast) -> None:
    # Processors switched on by the model's own generation_config (here top-k 2 and
    # suppressed tokens) would make the sampler's log-probs differ from the model's;
    # the policy samples from the raw logits, so they must have no effect.
    model = tiny_gpt2(tokenizer, n_layer=1, n_embd=64, n_head=4, n_positions=64, seed=0)
    plain = TextPolicy(model, tokenizer).generate(["the quick", "a"], max_new_tokens=10, n_per_prompt=3, seed=0)
    model.generation_config.suppress_tokens = [int(t) for t in plain.completion_ids[0, :3]]
    model.generation_config.top_k = 2
    policy = TextPolicy(model, tokenizer)
    batch = policy.generate(["the quick", "a"], max_new_tokens=10, n_per_prompt=3, seed=0)
    assert torch.equal(batch.input_ids, plain.input_ids) and torch.equal(batch.logp, plain.logp)
    with torch.no_grad():
        logp, _ = policy.token_logprobs(batch)
    assert (logp - batch.logp).abs().max() < 1e-5


def test_shared_prompt_forward_equals_the_plain_forward_pass(policy: TextPolicy) -> None:
    prompts = [prompt_of_length(policy.tokenizer, n) for n in (2, 7, 13)]
    batch = policy.generate(prompts, max_new_tokens=9, n_per_prompt=3, seed=4)
    T = batch.completion_mask.shape[1]
    for hidden in (False, True):
        shared = policy._forward(batch.input_ids, batch.attention_mask, T, hidden, batch.prompt_index)
        plain = policy._forward(batch.input_ids, batch.attention_mask, T, hidden)
        mask = batch.completion_mask.bool()
        assert (shared[0] - plain[0])[mask].abs().max() < 1e-5
        if hidden:
            assert shared[1] is not None and plain[1] is not None
            assert (shared[1] - plain[1])[mask].abs().max() < 1e-5
    # gradients agree too (the prompt pass is shared, so its gradient is summed over the rows)
    grads = []
    for index in (batch.prompt_index, None):
        policy.zero_grad()
        logp, _ = policy.completion_logprobs(batch.input_ids, batch.attention_mask, batch.prompt_len, index)
        logp.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)
    # one completion token: only the prompt pass is needed
    one = policy.generate(prompts, max_new_tokens=1, n_per_prompt=2, seed=5)
    with torch.no_grad():
        a, _ = policy.completion_logprobs(one.input_ids, one.attention_mask, one.prompt_len, one.prompt_index)
    assert a.shape == (6, 1) and (a - one.logp).abs().max() < 1e-5
    # rows that claim one prompt but hold different ones fall back to the plain pass
    lying = torch.zeros_like(batch.prompt_index)
    with torch.no_grad():
        a, _ = policy.completion_logprobs(batch.input_ids, batch.attention_mask, batch.prompt_len, lying)
    assert (a - batch.logp)[batch.completion_mask.bool()].abs().max() < 1e-5


def test_seeded_generate_is_reproducible(policy: TextPolicy) -> None:
    prompts = ["the quick", "reward models learn"]
    state = torch.random.get_rng_state()
    a = policy.generate(prompts, max_new_tokens=8, n_per_prompt=2, seed=7)
    b = policy.generate(prompts, max_new_tokens=8, n_per_prompt=2, seed=7)
    c = policy.generate(prompts, max_new_tokens=8, n_per_prompt=2, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.logp, b.logp) and a.completions == b.completions
    assert not torch.equal(a.input_ids, c.input_ids)


def test_generate_rejects_bad_input(policy: TextPolicy) -> None:
    with pytest.raises(TypeError, match="sequence of prompts"):
        policy.generate("the quick", max_new_tokens=4)
    with pytest.raises(ValueError, match="positions"):
        policy.generate(["the quick"], max_new_tokens=100)
    with pytest.raises(ValueError, match="max_new_tokens"):
        policy.generate(["the quick"], max_new_tokens=0)


def test_load_causal_lm_errors_name_the_folder(policy: TextPolicy, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFolderError, match=r"empty.*missing a model.*and a tokenizer") as info:
        load_causal_lm(empty)
    assert isinstance(info.value, ValueError) and str(empty) in str(info.value)

    only_model = tmp_path / "only-model"
    policy.model.save_pretrained(only_model)
    with pytest.raises(ModelFolderError, match="missing a tokenizer"):
        load_causal_lm(only_model)
    with pytest.raises(ModelFolderError, match="not a folder"):
        load_causal_lm(tmp_path / "nope")


def test_sample_tokens_draws_each_token_with_its_probability() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.1, 0.6]])
    n = 20_000
    logprobs = probs.log().repeat(n, 1)
    tokens = sample_tokens(logprobs, torch.Generator().manual_seed(0)).reshape(n, 3)
    for row in range(3):
        freq = torch.bincount(tokens[:, row], minlength=5).double() / n
        # binomial standard error at n = 20,000 is at most 0.0036: 0.015 is four of them
        assert (freq - probs[row].double()).abs().max() < 0.015, (row, freq)
        assert torch.all(freq[probs[row] == 0] == 0)  # a token of probability 0 is never drawn
    a = sample_tokens(logprobs[:100], torch.Generator().manual_seed(3))
    assert torch.equal(a, sample_tokens(logprobs[:100], torch.Generator().manual_seed(3)))


def test_eager_attention_decodes_with_the_models_own_mask(tokenizer: PreTrainedTokenizerFast) -> None:
    # Only SDPA models get the ready 4-D decoding mask; others go through the model's own.
    model = tiny_gpt2(tokenizer, n_layer=1, n_embd=64, n_head=4, n_positions=64, seed=0)
    model.set_attn_implementation("eager")
    policy = TextPolicy(model, tokenizer)
    assert not policy._decode_mask_is_4d
    batch = policy.generate([prompt_of_length(tokenizer, n) for n in (2, 8)], max_new_tokens=6, n_per_prompt=2, seed=1)
    with torch.no_grad():
        logp, _ = policy.token_logprobs(batch)
    mask = batch.completion_mask.bool()
    assert (logp - batch.logp)[mask].abs().max() < 1e-5
