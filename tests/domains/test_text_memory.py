"""A text run with LoRA, activation checkpointing and bf16 ([text.policy_memory], [text.reward_memory]).

The base is a tiny Llama (2 layers, hidden 32) written with ``save_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhfkit.config import ConfigError, load_config
from rlhfkit.domains.base import DomainContext
from rlhfkit.domains.text import TextBaseConfig, TextConfig, TextDomain
from rlhfkit.loop import Run, load_latest_checkpoint
from rlhfkit.models.adapters import AdapterOffReference, MemoryConfig
from rlhfkit.models.text import TextPolicy
from rlhfkit.models.text_builders import load_causal_lm
from rlhfkit.optimize.group.trainer import GroupPGConfig
from rlhfkit.optimize.kl import KLConfig
from rlhfkit.optimize.ppo.lm_trainer import TextPPOConfig
from rlhfkit.reward.config import RewardConfig
from rlhfkit.tasks import text as describe_task

RUN = """
task = "text:describe"
rounds = 2
seed = 0

[text]
steps_per_round = 2
eval_per_prompt = 2
max_new_tokens = 8

[text.group]
n_per_prompt = 2
prompts_per_step = 2

[text.base]
path = "{path}"

[text.policy_memory]
lora_r = 4
gradient_checkpointing = true
bf16 = true

[text.reward_memory]
lora_r = 4
lora_targets = ["q_proj", "v_proj"]
gradient_checkpointing = true

[feedback]
initial_comparisons = 6
comparisons_per_round = 4

[reward]
epochs = 1
"""


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlhfkit.models.text_builders import tiny_llama_like, train_tiny_tokenizer

    folder = tmp_path_factory.mktemp("llama")
    tokenizer = train_tiny_tokenizer(describe_task.corpus(200, seed=0), vocab_size=300)
    tiny_llama_like("llama", tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def lora_domain(base: Path, run_dir: Path, optimizer: str = "grpo") -> TextDomain:
    config = TextConfig(
        optimizer=optimizer,  # type: ignore[arg-type]  # a Literal, from the test's parameter
        steps_per_round=3,
        eval_per_prompt=4,
        max_new_tokens=8,
        group=GroupPGConfig(max_new_tokens=8, n_per_prompt=2, prompts_per_step=3, lr=1e-2),
        ppo=TextPPOConfig(max_new_tokens=8, prompts_per_step=4, minibatch_size=4, update_epochs=2, lr=1e-2),
        base=TextBaseConfig(path=str(base)),
        policy_memory=MemoryConfig(lora_r=4),
        reward_memory=MemoryConfig(lora_r=4),
    )
    ctx = DomainContext("text:describe", 0, 1, RewardConfig(ensemble_size=1), KLConfig(), run_dir, progress=False)
    return TextDomain(ctx, config)


@pytest.mark.parametrize("optimizer", ["grpo", "ppo"])
def test_kl_to_base_is_measured_against_the_policy_with_its_adapters_off(
    base_folder: Path, tmp_path: Path, optimizer: str
) -> None:
    domain = lora_domain(base_folder, tmp_path, optimizer)
    assert isinstance(domain.ref, AdapterOffReference) and domain.ref.policy is domain.policy  # no second copy
    assert all(".score." in n or "lora_" in n for n, p in domain.model.named_parameters() if p.requires_grad)
    before, _ = domain.evaluate()
    assert abs(before["kl_to_base"]) < 1e-4  # the adapters start at 0: the policy is the base

    domain.optimize(1, lambda: None)
    after, _ = domain.evaluate()
    print(f"{optimizer} kl_to_base: {before['kl_to_base']:.2e} at round 0, {after['kl_to_base']:.4f} after 3 steps")
    assert after["kl_to_base"] > 1e-3

    untouched = TextPolicy(*load_causal_lm(base_folder), value_head=False)  # the base, read again from its folder
    batch = domain.policy.generate(domain.eval_prompts, 8, 2, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(domain.ref.sampled_logp(batch), untouched.sampled_logp(batch), atol=1e-5, rtol=0)


def test_a_checkpoint_round_trips_with_lora_on(base_folder: Path, tmp_path: Path) -> None:
    domain = lora_domain(base_folder, tmp_path)
    domain.optimize(1, lambda: None)
    state = domain.state_dict()
    metrics, _ = domain.evaluate()

    again = lora_domain(base_folder, tmp_path)
    again.load_state_dict(state, 1)
    for mine, theirs in ((domain.policy, again.policy), (domain.model, again.model)):
        for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    assert again.evaluate()[0] == metrics
    in_optimizer = [p for g in again.trainer.optimizer.param_groups for p in g["params"]]
    assert all(p.requires_grad for p in in_optimizer)
    assert len(in_optimizer) == sum(p.requires_grad for p in again.policy.parameters())


def test_a_lora_checkpointing_bf16_run_completes_and_resumes(base_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(path=base_folder), encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "run", progress=False)
    assert isinstance(run.domain, TextDomain)
    assert next(p for n, p in run.domain.policy.named_parameters() if "embed_tokens" in n).dtype == torch.bfloat16

    class KilledError(Exception):
        pass

    def kill(row: dict[str, float]) -> None:
        raise KilledError

    with pytest.raises(KilledError):
        run.run(on_round=kill)  # stopped after round 1 and its checkpoint
    checkpoint = load_latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None and checkpoint["round"] == 1

    resumed = Run.resume(tmp_path / "run", progress=False)
    assert isinstance(resumed.domain, TextDomain) and resumed.round == 1
    for name, value in checkpoint["policy"].items():
        assert torch.equal(resumed.domain.policy.state_dict()[name], value), name
    resumed.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[2]["rm_train_pairs"] > 0 and rows[2]["kl_to_base"] != 0.0


def test_the_policy_runs_without_lora_dropout(base_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    text = RUN.format(path=base_folder).replace("[text.policy_memory]\n", "[text.policy_memory]\nlora_dropout = 0.1\n")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"text: policy_memory\.lora_dropout must be 0, got 0\.1: the policy runs"):
        load_config(path)
