"""Your own chatbot through the whole loop (text:chat): your base model, your prompts, your reward.

The parts are what a team brings, made here as the team would make them: tiny Llama- and
Qwen2-architecture bases, pre-trained briefly on the describe task's corpus (fluent enough to
write words, not aligned) and saved with ``save_pretrained``, a prompts file, and a reward model from
``rlhfkit fit-reward`` on a preference file (nice-and-brief descriptions preferred, held-out accuracy
printed). Each run is two rounds from a fresh base, evaluated on the held-out prompts only, and must
raise what it optimises by :data:`MIN_RISE` with the KL to the base under :data:`MAX_KL`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhfkit.cli import main
from rlhfkit.config import ConfigError, load_config
from rlhfkit.domains.text import TextDomain
from rlhfkit.feedback.win_rate import read_win_rates
from rlhfkit.loop import Run
from rlhfkit.models.text_builders import tiny_llama_like, train_tiny_tokenizer
from rlhfkit.tasks import text as describe_task

MIN_RISE = 0.15
"""Least rise of the optimised score's held-out mean over two rounds (the reward model's scores of the base's
completions spread over about 1.5 either side of 0)."""
MAX_KL = 5.0
"""Most KL(pi || pi_base) per completion, in nats, after two rounds."""

ARCHES = ("llama", "qwen2")

FUNCTIONS = """
from rlhfkit.tasks import text as describe_task


def nice(prompts, completions):
    return [describe_task.true_reward(c) for c in completions]


def judge(prompts, a, b):
    scores = [(describe_task.true_reward(x), describe_task.true_reward(y)) for x, y in zip(a, b)]
    return [1.0 if x > y else 0.0 if x < y else 0.5 for x, y in scores]
"""

RUN = """
task = "text:chat"
rounds = 2
seed = 0

[text]
prompts = "{parts}/prompts.jsonl"
heldout_prompts = 0.3
steps_per_round = 12
eval_per_prompt = 8
max_new_tokens = 8
judge = "{parts}/functions.py:judge"

[text.group]
n_per_prompt = 6
prompts_per_step = 4
lr = 1e-3

[kl]
beta = 0.1

[text.base]
path = "{parts}/{arch}"

[text.objective]
{objective}
"""


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A team's parts: two bases, prompts, a preference file and the reward model fit-reward made from it."""
    out = tmp_path_factory.mktemp("parts")
    sentences = describe_task.corpus(2000, seed=0)
    tokenizer = train_tiny_tokenizer(sentences, vocab_size=300)
    for name in ARCHES:
        model = tiny_llama_like(name, tokenizer)
        describe_task.pretrain(model, tokenizer, sentences, steps=80, lr=1e-2)
        model.save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
    prompts = [{"prompt": f"the {s} {verb}"} for s in describe_task.SUBJECTS for verb in ("is", "seems")]
    prompts += [{"prompt": [{"role": "user", "content": f"the {s} looks"}]} for s in describe_task.SUBJECTS[:4]]
    (out / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    rows = describe_task.preference_rows(500, seed=2)
    (out / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["fit-reward", "--data", str(out / "prefs.jsonl"), "--model", "tiny", "--out", str(out / "rm")]
    assert main([*argv, "--epochs", "2", "--seed", "0"]) == 0
    accuracy = json.loads((out / "rm" / "metrics.json").read_text())["accuracy"]
    print(f"fit-reward's held-out accuracy: {accuracy:.3f}")
    assert accuracy > 0.8
    (out / "functions.py").write_text(FUNCTIONS, encoding="utf-8")
    return out


def _config(parts: Path, tmp_path: Path, arch: str, objective: str, extra: str = "") -> Path:
    path = tmp_path / f"{arch}.toml"
    path.write_text(RUN.format(parts=parts, arch=arch, objective=objective) + extra, encoding="utf-8")
    return path


def _rise(history: list[dict[str, float]], key: str) -> float:
    rise = history[-1][key] - history[0][key]
    last = history[-1]
    print(
        f"{key} {history[0][key]:.3f} -> {last[key]:.3f}; reward model vs base {last['learned_return_vs_base']:+.3f}; "
        f"KL {last['kl_to_base']:.3f}; win rate vs base {last['win_rate_vs_base']:.3f}"
    )
    return rise


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHES)
def test_a_reward_model_folder_from_fit_reward_is_raised_on_held_out_prompts(
    parts: Path, tmp_path: Path, arch: str
) -> None:
    config = _config(parts, tmp_path, arch, f'reward_model = "{parts}/rm"\nrefit = false')
    run = Run.create(load_config(config), tmp_path / "run", progress=False)
    assert isinstance(run.domain, TextDomain)
    frozen = {k: v.clone() for k, v in run.domain.model.state_dict().items()}
    held_out = run.domain.eval_prompts
    assert 0 < len(held_out) < len(run.domain.prompts) and not set(map(str, held_out)) & set(
        map(str, run.domain.prompts)
    )
    history = run.run()
    assert _rise(history, "learned_return") >= MIN_RISE
    assert history[-1]["kl_to_base"] <= MAX_KL
    assert history[-1]["n_feedback"] == 0  # a frozen reward model asks nobody
    assert all(torch.equal(frozen[k], v) for k, v in run.domain.model.state_dict().items())
    assert np.isnan(history[-1]["true_return"])  # text:chat knows no true reward


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHES)
def test_a_python_reward_function_is_raised_and_the_judge_prefers_the_policy(
    parts: Path, tmp_path: Path, arch: str
) -> None:
    objective = f'learned = 0.0\nfunctions = {{"{parts}/functions.py:nice" = 1.0}}'
    run = Run.create(load_config(_config(parts, tmp_path, arch, objective)), tmp_path / "run", progress=False)
    history = run.run()
    assert _rise(history, "objective_return") >= MIN_RISE
    assert history[-1]["kl_to_base"] <= MAX_KL
    assert history[-1]["win_rate_vs_base"] > history[0]["win_rate_vs_base"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHES)
def test_people_answering_over_http_refit_the_reward_model(parts: Path, tmp_path: Path, arch: str) -> None:
    """human = "web": a simulated annotator answers every query through the app's API while the loop runs."""
    from rlhfkit.app.auth import add_annotator
    from rlhfkit.app.bot import WebBot
    from rlhfkit.app.client import AnnotationClient
    from rlhfkit.app.server import AppConfig, create_app, run_in_thread
    from rlhfkit.feedback.teacher import SimulatedHuman, TeacherConfig

    # the loop fits on whatever has arrived: with every query asked up front and waited for, the answers it fits
    # on are the same however fast the bot is
    web = '\n[feedback]\nhuman = "web"\ninitial_comparisons = 16\ncomparisons_per_round = 0\nweb_min_answers = 16\n'
    web += "web_poll_s = 0.05\n"
    config = _config(parts, tmp_path, arch, f'reward_model = "{parts}/rm"', web)
    text = config.read_text(encoding="utf-8").replace("[text.group]", "people_win_rate = 4\n\n[text.group]")
    config.write_text(text, encoding="utf-8")
    run = Run.create(load_config(config), tmp_path / "run", progress=False)
    assert isinstance(run.domain, TextDomain) and run.domain.reward_model() is not None
    token = add_annotator(run.store, "erin")
    server, thread, port = run_in_thread(create_app(AppConfig(run.store.url, tmp_path / "media", prerender=False)))
    person = SimulatedHuman(
        TeacherConfig(beta=4.0),
        reward_fn=lambda t: np.asarray(describe_task.true_reward(t.completion)),
        seed=2,
        annotator_id="erin",
    )
    history: list[dict[str, float]] = []
    loop = threading.Thread(target=lambda: history.extend(run.run()), daemon=True)
    answered = 0
    try:
        loop.start()
        with AnnotationClient(f"http://127.0.0.1:{port}", token) as client:
            bot = WebBot(client, person, run.store)
            deadline = time.time() + 300
            while loop.is_alive() and time.time() < deadline:
                answered += bot.answer_pending()
                time.sleep(0.05)
        loop.join(timeout=30)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not loop.is_alive(), "the loop still waits for answers"
    assert answered >= 16 and run.store.count_feedback() == answered  # every answer sent is stored
    assert history[-1]["rm_train_pairs"] > 0  # refitted on the people's answers
    # each refit has its own scale: compare the policy with the base under the last round's reward model
    assert _rise(history, "learned_return") > 0 and history[-1]["learned_return_vs_base"] >= MIN_RISE
    verdicts = read_win_rates(tmp_path / "run")  # people's own comparisons of the policy against the base
    print(f"people's verdicts: {verdicts}")
    assert verdicts[0].round == 1 and verdicts[0].answers == 4
    assert history[-1]["kl_to_base"] <= MAX_KL


def test_a_chat_run_names_what_it_lacks(parts: Path, tmp_path: Path) -> None:
    """text:chat brings every part itself: a missing part, or a simulated human with no true reward, is one error."""
    no_prompts = RUN.format(parts=parts, arch="llama", objective="").replace(f'prompts = "{parts}/prompts.jsonl"', "")
    (tmp_path / "a.toml").write_text(no_prompts, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"text\.prompts: text:chat runs on your own model and prompts"):
        load_config(tmp_path / "a.toml")
    _config(parts, tmp_path, "llama", "")  # learns from a simulated human, who has nothing to judge by
    with pytest.raises(ConfigError, match=r"text\.true_reward: text:chat has no true reward"):
        load_config(tmp_path / "llama.toml")
    bad = _config(parts, tmp_path, "llama", 'learned = 0.0\nfunctions = {"functions_nowhere:nice" = 1.0}')
    with pytest.raises(ConfigError, match=r"text\.objective\.functions: 'functions_nowhere:nice': cannot import"):
        Run.create(load_config(bad), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # checked before the run folder is written
