"""Larger models on one device: LoRA adapters, the adapter-off reference, activation checkpointing, bf16.

Every model is a tiny Llama (2 layers, hidden 64, grouped-query attention) built from its config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaForSequenceClassification, PreTrainedModel, PreTrainedTokenizerFast

from rlhfkit.models.adapters import (
    AdapterOffReference,
    MemoryConfig,
    check_bf16,
    linear_layer_names,
    prepare_model,
    reference_policy,
    trainable_share,
)
from rlhfkit.models.text import TextPolicy, checkpointing_now
from rlhfkit.models.text_batch import TextBatch
from rlhfkit.models.text_builders import load_causal_lm, reward_model_config, tiny_llama_like, train_tiny_tokenizer
from rlhfkit.optimize.group.trainer import GroupPGConfig, GroupPGTrainer
from rlhfkit.reward.transformer import SequenceRewardModel, encode_texts
from rlhfkit.tasks import text as describe_task

PROMPTS = ["the cat is", "a dog", "the old fox is very"]
LLAMA_LAYERS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tiny_tokenizer(describe_task.corpus(200, seed=0), vocab_size=300)


def llama(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> PreTrainedModel:
    return tiny_llama_like("llama", tokenizer, width=64, seed=seed, pad_token_id=tokenizer.pad_token_id)


@pytest.fixture(scope="module")
def base_folder(tokenizer: PreTrainedTokenizerFast, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llama")
    llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def lora_policy(folder: Path, config: MemoryConfig, value_head: bool = False) -> TextPolicy:
    model, tokenizer = load_causal_lm(folder)
    torch.manual_seed(1)  # the adapters' A matrices are drawn at random
    return TextPolicy(prepare_model(model, config, "causal_lm"), tokenizer, value_head=value_head)


def perturb_adapters(policy: TextPolicy, seed: int = 2) -> None:
    """Give every adapter's B (0 when made) random values, so the adapters change what the model computes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def length_reward(prompts: object, completions: list[str]) -> np.ndarray:
    return np.array([float(len(c)) for c in completions])


def test_defaults_are_full_fine_tuning_and_the_model_is_left_as_it_is(tokenizer: PreTrainedTokenizerFast) -> None:
    model = llama(tokenizer)
    assert not MemoryConfig().active
    assert prepare_model(model, MemoryConfig(), "causal_lm") is model
    assert all(p.requires_grad for p in model.parameters())


def test_config_checks_name_the_field(tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ValueError, match="lora_targets must be empty when lora_r = 0"):
        MemoryConfig(lora_targets=("q_proj",))
    with pytest.raises(ValueError, match="lora_r must be >= 0"):
        MemoryConfig(lora_r=-1)
    with pytest.raises(ValueError, match=r"text.policy_memory.lora_targets: qkv is not a linear layer .* q_proj"):
        prepare_model(
            llama(tokenizer), MemoryConfig(lora_r=2, lora_targets=("qkv",)), "causal_lm", "text.policy_memory"
        )
    assert linear_layer_names(llama(tokenizer)) == LLAMA_LAYERS  # the default targets: no lm_head


def test_lora_trains_under_five_percent_of_the_policy(base_folder: Path) -> None:
    policy = lora_policy(base_folder, MemoryConfig(lora_r=2), value_head=True)
    trainable, total = trainable_share(policy)
    share = trainable / total
    print(f"LoRA r=2 on {LLAMA_LAYERS}: {trainable} of {total} parameters train ({share:.2%})")
    assert 0 < share < 0.05
    names = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("value_head.") for n in names)
    assert {n.split(".")[-4] for n in names if "lora_" in n} == set(LLAMA_LAYERS)
    trainer = GroupPGTrainer(policy, reference_policy(policy), GroupPGConfig(max_new_tokens=4))
    in_optimizer = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert len(in_optimizer) == len(names) and all(p.requires_grad for p in in_optimizer)


def test_the_reference_is_the_untouched_base_before_and_after_training(base_folder: Path) -> None:
    policy = lora_policy(base_folder, MemoryConfig(lora_r=4))
    untouched = TextPolicy(*load_causal_lm(base_folder), value_head=False)
    ref = reference_policy(policy)
    assert isinstance(ref, AdapterOffReference) and ref.policy is policy  # no second copy of the model
    batch = policy.generate(PROMPTS, 8, n_per_prompt=2, seed=3)
    with torch.no_grad():
        base_before = untouched.sampled_logp(batch)
    torch.testing.assert_close(ref.sampled_logp(batch), base_before, atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.logp, base_before, atol=1e-5, rtol=0)  # B = 0: the policy starts as the base

    config = GroupPGConfig(max_new_tokens=8, n_per_prompt=2, prompts_per_step=3, lr=5e-2)
    trainer = GroupPGTrainer(policy, ref, config, seed=0)
    trainer.train(PROMPTS, length_reward, steps=3)

    with torch.no_grad():
        moved = policy.sampled_logp(batch)
        base_after = untouched.sampled_logp(batch)
    torch.testing.assert_close(base_after, base_before)  # the untouched copy did not change
    torch.testing.assert_close(ref.sampled_logp(batch), base_after, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref.completion_logprobs(batch.input_ids, batch.attention_mask, batch.prompt_len)[0],
                               base_after, atol=1e-5, rtol=0)  # fmt: skip
    assert float((moved - base_after).abs().max()) > 1e-2  # while the policy moved
    # the reference samples as the base does (the evaluation's base completions, people's verdicts)
    theirs, ours = untouched.generate(PROMPTS, 8, 2, seed=5), ref.generate(PROMPTS, 8, 2, seed=5)
    assert (
        ours.completions == theirs.completions
        and policy.generate(PROMPTS, 8, 2, seed=5).completions != ours.completions
    )


@pytest.mark.parametrize(
    "config",
    [
        MemoryConfig(lora_r=4),
        MemoryConfig(gradient_checkpointing=True),
        MemoryConfig(lora_r=4, gradient_checkpointing=True),
    ],
    ids=["lora", "checkpointing", "lora+checkpointing"],
)
def test_sampled_logprobs_equal_training_logprobs(base_folder: Path, config: MemoryConfig) -> None:
    policy = lora_policy(base_folder, config, value_head=True)
    perturb_adapters(policy)
    batch = policy.generate(PROMPTS, 10, n_per_prompt=3, seed=4)  # rows share prompts: the cached prompt pass
    assert checkpointing_now(policy.model) == config.gradient_checkpointing  # in training mode, with gradients
    logp = policy.sampled_logp(batch)  # a training pass: checkpointed, the prompt's cache not shared
    assert logp.requires_grad
    torch.testing.assert_close(logp.detach(), batch.logp, atol=2e-5, rtol=0)
    logp_ppo, _ = policy.log_prob(batch.obs(), batch.completion_ids)
    torch.testing.assert_close(logp_ppo.detach(), batch.logp, atol=2e-5, rtol=0)


def _grads(policy: TextPolicy, batch: TextBatch) -> tuple[dict[str, torch.Tensor], int, int]:
    """Gradients of a loss on log-probs and values, and the first layer's MLP runs in the forward and backward pass."""
    mlp = next(m for n, m in policy.model.named_modules() if n.endswith("layers.0.mlp"))
    calls = [0]
    forward = mlp.forward

    def counted(x: torch.Tensor) -> torch.Tensor:  # (forward hooks do not see checkpointing's replay)
        calls[0] += 1
        out: torch.Tensor = forward(x)
        return out

    mlp.forward = counted
    policy.zero_grad()
    logp = policy.sampled_logp(batch)
    values = policy.completion_values(batch.input_ids, batch.attention_mask, batch.prompt_len)
    n_forward = calls[0]
    (-logp.sum() + values.pow(2).sum()).backward()
    del mlp.forward
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
    return grads, n_forward, calls[0] - n_forward


@pytest.mark.parametrize("lora_r", [0, 4], ids=["full", "lora"])
def test_checkpointing_gives_the_same_gradients(base_folder: Path, lora_r: int) -> None:
    plain = lora_policy(base_folder, MemoryConfig(lora_r=lora_r), value_head=True)
    ckpt = lora_policy(base_folder, MemoryConfig(lora_r=lora_r, gradient_checkpointing=True), value_head=True)
    if lora_r:
        perturb_adapters(plain)
    ckpt.load_state_dict(plain.state_dict())
    batch = plain.generate(PROMPTS, 8, n_per_prompt=2, seed=5)
    expected, _, replays = _grads(plain, batch)
    assert replays == 0
    got, forward, replays = _grads(ckpt, batch)
    assert replays == forward > 0  # each checkpointed pass ran again in the backward pass
    assert expected.keys() == got.keys() and len(expected) > 0
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("lora_r", [0, 4], ids=["full", "lora"])
def test_bf16_runs_a_training_step_on_cpu(base_folder: Path, lora_r: int) -> None:
    policy = lora_policy(base_folder, MemoryConfig(lora_r=lora_r, bf16=True), value_head=True)
    for name, p in policy.named_parameters():
        assert p.dtype == (torch.float32 if "lora_" in name else torch.bfloat16), name  # peft keeps adapters fp32
    before = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    config = GroupPGConfig(max_new_tokens=6, n_per_prompt=2, prompts_per_step=3, lr=1e-2)
    log = GroupPGTrainer(policy, reference_policy(policy), config).step(PROMPTS, length_reward)
    assert all(np.isfinite(v) for v in log.values())
    changed = [n for n, p in policy.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed and all(torch.isfinite(p).all() for p in policy.parameters())


def test_bf16_where_the_device_cannot_is_one_error_naming_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    check_bf16(torch.device("cpu"), "text.policy_memory.bf16")  # a CPU can
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    with pytest.raises(ValueError, match=r"text.policy_memory.bf16 = true, but the device cuda:0 cannot compute"):
        check_bf16(torch.device("cuda:0"), "text.policy_memory.bf16")


def test_a_lora_reward_model_trains_its_head_and_checkpointing_keeps_its_gradients(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    def reward_model(config: MemoryConfig) -> SequenceRewardModel:
        torch.manual_seed(0)
        body = LlamaForSequenceClassification(reward_model_config(llama(tokenizer).config))
        torch.manual_seed(1)
        return SequenceRewardModel(prepare_model(body, config, "seq_cls"), tokenizer)

    plain = reward_model(MemoryConfig(lora_r=2))
    ckpt = reward_model(MemoryConfig(lora_r=2, gradient_checkpointing=True))
    names = [n for n, p in plain.named_parameters() if p.requires_grad]
    assert any(".score." in n for n in names) and all("lora_" in n or ".score." in n for n in names)
    trainable, total = trainable_share(plain)
    assert trainable / total < 0.05
    encoded = encode_texts(tokenizer, ["the cat is"] * 3 + ["a dog"], ["calm", "very old", "red", "wise and tall"])
    plain.train()
    ckpt.train()
    with torch.no_grad():  # scoring (cached prompt) and training (whole rows under checkpointing) agree
        scored = plain.returns(encoded)
    grads = []
    for model in (plain, ckpt):
        model.zero_grad()
        r = model.returns(encoded)
        torch.testing.assert_close(r.detach(), scored, atol=1e-5, rtol=0)
        r.pow(2).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() == set(names)
    for name in names:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def _preference_file(path: Path, n: int) -> Path:
    """``n`` pairs of task completions, the one the task's true reward prefers first."""
    import json

    rng = np.random.default_rng(0)
    corpus = describe_task.corpus(4 * n, seed=0)
    rows: list[str] = []
    while len(rows) < n:
        a, b = (corpus[int(i)].split(" is", 1)[1] for i in rng.integers(0, len(corpus), 2))
        if describe_task.true_reward(a) != describe_task.true_reward(b):
            chosen, rejected = (a, b) if describe_task.true_reward(a) > describe_task.true_reward(b) else (b, a)
            prompt = f"the {rng.choice(describe_task.SUBJECTS)} is"
            rows.append(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")
    path.write_text("".join(rows), encoding="utf-8")
    return path


def test_dpo_and_fit_reward_train_lora_adapters_and_save_them_merged(base_folder: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from rlhfkit.cli import main

    data = _preference_file(tmp_path / "pairs.jsonl", 24)
    base, _ = load_causal_lm(base_folder)
    lora = ["--lora-r", "4", "--gradient-checkpointing"]
    common = ["--data", str(data), "--model", str(base_folder), "--lr", "1e-2", *lora]
    assert main(["dpo", *common, "--out", str(tmp_path / "dpo")]) == 0
    assert main(["fit-reward", *common, "--out", str(tmp_path / "rm"), "--eval-frac", "0.5"]) == 0

    policy, _ = load_causal_lm(tmp_path / "dpo")  # a plain model: the adapters are merged in
    reward = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    for model in (policy, reward):
        state = model.state_dict()
        assert not any("lora" in k or "base_layer" in k or "modules_to_save" in k for k in state)
        q, embed = "model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight"
        assert not torch.allclose(state[q], base.state_dict()[q])  # the merged adapter changed q_proj
        assert torch.equal(state[embed], base.state_dict()[embed])  # frozen: no adapter on the embeddings


def test_gpt2_gets_adapters_on_its_conv1d_layers(tokenizer: PreTrainedTokenizerFast) -> None:
    """The task's own tiny base is a GPT-2, whose linear layers are Conv1D (weights stored as (in, out))."""
    import warnings

    from rlhfkit.models.text_builders import tiny_gpt2

    untouched = TextPolicy(tiny_gpt2(tokenizer, n_embd=64, seed=0), tokenizer, value_head=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # peft warns when it has to guess fan_in_fan_out
        model = prepare_model(tiny_gpt2(tokenizer, n_embd=64, seed=0), MemoryConfig(lora_r=4), "causal_lm")
    policy = TextPolicy(model, tokenizer, value_head=False)
    assert linear_layer_names(untouched.model) == ["c_attn", "c_fc", "c_proj"]
    perturb_adapters(policy)
    batch = policy.generate(PROMPTS, 8, n_per_prompt=2, seed=6)
    torch.testing.assert_close(policy.sampled_logp(batch).detach(), batch.logp, atol=2e-5, rtol=0)
    with torch.no_grad():
        base = untouched.sampled_logp(batch)
    torch.testing.assert_close(reference_policy(policy).sampled_logp(batch), base, atol=1e-5, rtol=0)
    assert float((batch.logp - base).abs().max()) > 1e-3
