"""The text domain's reward model is built for the base's own architecture, never a hard-coded GPT-2.

A run whose ``[text.base] path`` is a Llama-architecture folder (tiny, random, written with
``save_pretrained``) used to die in start-up (``'LlamaConfig' object has no attribute 'embd_pdrop'``):
the loop built its reward model as a GPT-2 sequence classifier from the policy's config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import GPT2ForSequenceClassification, LlamaForSequenceClassification

from rlhfkit.config import load_config
from rlhfkit.domains.text import TextDomain
from rlhfkit.loop import Run
from rlhfkit.models.text_builders import reward_model_config, tiny_gpt2, tiny_llama_like, train_tiny_tokenizer
from rlhfkit.tasks import text as describe_task

RUN = """
task = "text:describe"
rounds = 1
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

[feedback]
initial_comparisons = 6

[reward]
epochs = 1
"""


def _llama_folder(folder: Path) -> Path:
    tokenizer = train_tiny_tokenizer(describe_task.corpus(200, seed=0), vocab_size=300)
    # grouped-query attention, as Llama-family models use; no pad id, as many Llama checkpoints: the reward
    # model takes the tokenizer's
    tiny_llama_like("llama", tokenizer, pad_token_id=None).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_llama_base_gets_a_llama_reward_model_and_runs_a_round(tmp_path: Path) -> None:
    base = _llama_folder(tmp_path / "llama")
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(path=base), encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "run", progress=False)
    assert isinstance(run.domain, TextDomain)
    assert isinstance(run.domain.model, LlamaForSequenceClassification)
    assert run.domain.model.config.pad_token_id == run.domain.tokenizer.pad_token_id is not None
    history = run.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1] and len(history) == 2
    assert rows[1]["rm_train_pairs"] > 0 and rows[1]["kl_to_base"] != 0.0  # fitted, and the policy moved


def test_a_gpt2_base_keeps_the_reward_model_it_had() -> None:
    """The same weights as the GPT-2 classifier the text loop built before, at the same seed: runs reproduce."""
    tokenizer = train_tiny_tokenizer(describe_task.corpus(200, seed=0), vocab_size=300)
    config = reward_model_config(tiny_gpt2(tokenizer).config)
    torch.manual_seed(1)
    before = GPT2ForSequenceClassification(config)
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    now = AutoModelForSequenceClassification.from_config(config)
    assert type(now) is GPT2ForSequenceClassification
    for (name, a), (_, b) in zip(before.state_dict().items(), now.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_run_on_your_own_prompts_asks_and_trains_on_them_and_evaluates_on_the_heldout_ones(tmp_path: Path) -> None:
    from rlhfkit.feedback.formats.prompts import split_prompts
    from rlhfkit.types import Text

    subjects = [f"the {a} {s} is" for a in ("old", "small", "wise", "tall") for s in describe_task.SUBJECTS]
    rows = [{"prompt": p} for p in subjects] + [{"prompt": [{"role": "user", "content": "the fox is"}]}]
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    text = RUN.replace('[text.base]\npath = "{path}"\n', "[text.base]\npretrain_steps = 20\n")
    text = text.replace(
        "max_new_tokens = 8\n", f'max_new_tokens = 8\nprompts = "{prompts_file}"\nheldout_prompts = 0.25\n'
    )
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    run = Run.create(load_config(path), tmp_path / "run", progress=False)
    run.run()
    domain = run.domain
    assert isinstance(domain, TextDomain)
    from rlhfkit.feedback.formats.prompts import read_prompts

    train, held = split_prompts(read_prompts(prompts_file), 0.25)
    assert domain.prompts == train and domain.eval_prompts == held

    def shown(prompt: object) -> str:  # a prompt as the report shows it (chat messages as "role: content")
        return prompt if isinstance(prompt, str) else "\n".join(f"{m['role']}: {m['content']}" for m in prompt)  # type: ignore[attr-defined, index]

    asked = {shown(g.content.prompt) for g in run.store.generations().values() if isinstance(g.content, Text)}
    assert asked and asked <= {shown(p) for p in train}  # queries only about training prompts
    samples = json.loads((tmp_path / "run" / "samples" / "round_0001.json").read_text())
    assert {s["prompt"] for s in samples["samples"]} <= {shown(p) for p in held}  # evaluation on held-out ones


def test_a_bad_prompts_file_is_one_error_naming_its_line_and_no_run_folder_is_written(tmp_path: Path) -> None:
    from rlhfkit.cli import main

    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text('{"prompt": "the cat is"}\n{"prompt": 7}\n', encoding="utf-8")
    text = RUN.replace('[text.base]\npath = "{path}"\n', "")
    text = text.replace("max_new_tokens = 8\n", f'max_new_tokens = 8\nprompts = "{prompts_file}"\n')
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
