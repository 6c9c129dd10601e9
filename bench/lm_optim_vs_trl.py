"""Language-model optimisation throughput: our GRPO (``GroupPGTrainer``) vs TRL's ``GRPOTrainer``.

Both sides start from the same tiny GPT-2-shaped policy (2 layers, 128 wide, a
byte-level BPE with 1,024 tokens trained on the bench's word list), built once and
saved with ``save_pretrained`` (model + tokenizer) into a temporary folder; both
load the policy *and* a frozen reference copy from that folder. With ``--arch llama``
the policy is a Llama-architecture model of the same width and depth instead (4 heads
with 2 key/value heads, a 512-wide SwiGLU MLP, rotary positions, untied output
embeddings; same tokenizer), loaded the same way by both sides. Same prompts, same
reward function, same settings:

- 8 prompts per step, 4 completions per prompt (32 completions per step);
- at most 32 new tokens, sampled at temperature 1 from the full distribution
  (no top-k / top-p);
- beta = 0.04 (so the reference model is run on every batch; k3 KL in the loss);
- one gradient step per batch (TRL: ``num_iterations=1``, ``steps_per_generation=1``),
  Adam(W) at the same constant learning rate, gradient-norm clip 1.0, group-standardised
  advantages (GRPO), ratio clip 0.2.

The reward is a known function of the completion text that a random tiny model can
learn to raise: the share of its characters that are vowels (``aeiou``).

Throughput = generated completion tokens (the eos token counted, padding not) over
the wall time of the training steps, generation included. Both sides are timed
alike: each repeat runs in a fresh child process (ours in the project's Python,
TRL in ``bench/.venv-trl``, see ``bench/_peer_env.py``); the child imports,
loads the policy and the reference from the folder and builds its trainer, and
only then does the clock start, so set-up and imports are outside it on both
sides and the first step's one-off costs (lazy kernel initialisation) inside it
on both:

- TRL: from the start of its first step to the end of its last (a
  ``TrainerCallback``'s ``on_step_begin`` / ``on_step_end``): its dataloader,
  ``generate``, reward call, reference and policy forward passes, backward,
  optimiser step and per-step metrics. The optimiser and ``accelerate``'s wrapping,
  which ``trainer.train()`` builds before its first step, are set-up and not
  timed (the whole call's time is reported as ``trl_train_call_s``). The tokens
  are counted in the reward function from TRL's ``completion_ids``.
- ours: ``GroupPGTrainer.train(...)``, which is only the steps (sampling with
  log-probs, reward, reference forward, policy forward and backward, optimiser
  step; the optimiser is built with the trainer). Tokens counted from the
  completion masks.

Reward gain: mean reward over the last ``--window`` steps minus the first ``--window``.

Both sides run with ``torch.set_num_threads(--threads)`` (default 1), alternately
(ours, TRL, ours, TRL, ...) ``--repeats`` times. The headline ``ratio`` is the
median over repeats of the paired ratio ours / TRL (each pair ran back to back,
under about the same load); ``best_ratio`` is best repeat against best repeat.
The last line printed is one JSON object.

    .venv/bin/python bench/lm_optim_vs_trl.py [--steps 40] [--threads 1] [--arch llama]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRL_REQUIREMENTS = ["torch==2.13.0", "transformers==5.24.0", "trl==1.16.0"]
VOWELS = frozenset("aeiou")


def vowel_share(text: str) -> float:
    """The reward: the share of a completion's characters that are vowels (0 for an empty one)."""
    return sum(c in VOWELS for c in text) / len(text) if text else 0.0


def make_texts(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Seeded prompts and a tokenizer-training corpus of random words."""
    import random

    rng = random.Random(args.seed)
    syllables = [a + b for a in "bdgkmnprstz" for b in "aeiou"] + ["st", "nd", "rk", "mp", "tr", "sk"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(300)]

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    prompts = [sentence(args.prompt_words + rng.randint(-4, 4)) for _ in range(args.prompts)]
    corpus = [sentence(30) for _ in range(400)]
    return prompts, corpus


def build_policy(arch: str, tokenizer: Any, seed: int) -> Any:
    """The tiny policy both sides start from: GPT-2 (``tiny_gpt2``'s defaults) or a Llama of its size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlhfkit.models.text_builders import tiny_gpt2

    torch.manual_seed(seed)
    if arch == "gpt2":
        return tiny_gpt2(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,  # tiny_gpt2's n_embd, n_layer, n_head and n_positions
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as Llama-family models use
        intermediate_size=512,  # GPT-2's 4 x width
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# ----------------------------------------------------------------------------- TRL side (peer venv)


def trl_side(spec: dict) -> dict[str, object]:
    """In the peer venv: build ``GRPOTrainer``, then time its ``steps`` training steps."""
    import datasets
    import torch
    import trl
    from _peer_env import CPU_TRAINER_ARGS
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepClock(TrainerCallback):
        """Wall time from the start of the first training step to the end of the last."""

        def __init__(self) -> None:
            self.start: float | None = None
            self.end = 0.0

        def on_step_begin(self, *_: object, **__: object) -> None:
            if self.start is None:
                self.start = time.perf_counter()

        def on_step_end(self, *_: object, **__: object) -> None:
            self.end = time.perf_counter()

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"])
    tokens = [0]
    step_rewards: list[float] = []

    def reward(prompts: list[str], completions: list[str], completion_ids: list[list[int]], **_: object) -> list[float]:
        tokens[0] += sum(len(ids) for ids in completion_ids)
        values = [vowel_share(c) for c in completions]
        step_rewards.append(sum(values) / len(values))
        return values

    n = spec["n_per_prompt"]
    cfg = GRPOConfig(
        output_dir=os.path.join(spec["tmp"], "trl-grpo"),
        max_steps=spec["steps"],
        per_device_train_batch_size=spec["prompts_per_step"] * n,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_generations=n,
        num_iterations=1,
        max_completion_length=spec["max_new_tokens"],
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        beta=spec["beta"],
        epsilon=spec["clip"],
        learning_rate=spec["lr"],
        max_grad_norm=1.0,
        scale_rewards="group",
        seed=spec["seed"],
        log_completions=False,
        **CPU_TRAINER_ARGS,
    )
    train = datasets.Dataset.from_list([{"prompt": p} for p in spec["prompts"]])
    clock = StepClock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=cfg,
        train_dataset=train,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)
    torch.set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    trainer.train()
    call_seconds = time.perf_counter() - t0
    assert clock.start is not None, "TRL ran no training step"
    seconds = clock.end - clock.start
    return {
        "trl_version": trl.__version__,
        "torch_threads": torch.get_num_threads(),
        "seconds": seconds,
        "train_call_seconds": call_seconds,
        "tokens": tokens[0],
        "tokens_per_s": tokens[0] / seconds,
        "steps": int(trainer.state.global_step),
        "rewards": step_rewards,
    }


# ----------------------------------------------------------------------------- ours (project venv)


def ours_side(spec: dict) -> dict[str, object]:
    """In the project's venv: build ``GroupPGTrainer``, then time its ``steps`` training steps."""
    import numpy as np
    import torch

    from rlhfkit.models.text import TextPolicy
    from rlhfkit.models.text_builders import load_causal_lm
    from rlhfkit.optimize.group.trainer import GroupPGConfig, GroupPGTrainer
    from rlhfkit.optimize.kl import KLConfig

    torch.manual_seed(spec["seed"])
    model, tokenizer = load_causal_lm(spec["model_dir"])
    ref_model, _ = load_causal_lm(spec["model_dir"])
    policy = TextPolicy(model, tokenizer, value_head=False)
    ref = TextPolicy(ref_model, tokenizer, value_head=False).requires_grad_(False).eval()
    config = GroupPGConfig(
        n_per_prompt=spec["n_per_prompt"],
        prompts_per_step=spec["prompts_per_step"],
        max_new_tokens=spec["max_new_tokens"],
        update_epochs=1,
        lr=spec["lr"],
        clip_coef=spec["clip"],
        max_grad_norm=1.0,
    )
    kl = KLConfig(beta=spec["beta"], estimator="k3")
    trainer = GroupPGTrainer(policy, ref, config, seed=spec["seed"], algorithm="grpo", kl=kl)

    def reward(_prompts: Sequence[Any], completions: Sequence[str]) -> np.ndarray:
        return np.array([vowel_share(c) for c in completions])

    torch.set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    logs = trainer.train(spec["prompts"], reward, spec["steps"])
    seconds = time.perf_counter() - t0
    return {
        "torch_threads": torch.get_num_threads(),
        "seconds": seconds,
        "tokens": trainer.generated_tokens,
        "tokens_per_s": trainer.generated_tokens / seconds,
        "steps": len(logs),
        "rewards": [log["reward"] for log in logs],
        "kl_last": logs[-1]["kl"],
    }


def child(side: str, in_path: str, out_path: str) -> None:
    """One repeat of one side, in a fresh process: reads the spec, writes that side's timings and rewards."""
    from _peer_env import quiet_peer_child

    spec = json.loads(Path(in_path).read_text())
    quiet_peer_child(spec["threads"])
    result = trl_side(spec) if side == "trl" else ours_side(spec)
    Path(out_path).write_text(json.dumps(result))


def run_child(python: str, side: str, in_path: str, out_path: str, env: dict[str, str]) -> dict:
    """Run :func:`child` for ``side`` under ``python`` and return what it wrote."""
    cmd = [python, str(Path(__file__).resolve()), "--child", side, in_path, out_path]
    subprocess.run(cmd, check=True, env=env)
    result: dict = json.loads(Path(out_path).read_text())
    return result


# ----------------------------------------------------------------------------- main


def gain(rewards: list[float], window: int) -> float:
    return sum(rewards[-window:]) / window - sum(rewards[:window]) / window


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimisation steps (each: 8 prompts x 4 completions)")
    parser.add_argument("--prompts", type=int, default=64, help="size of the prompt set")
    parser.add_argument("--prompt-words", type=int, default=12, help="mean prompt length in words (+-4)")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--n-per-prompt", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--window", type=int, default=5, help="steps averaged at each end for the reward gain")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side, each in a fresh process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--arch", choices=("gpt2", "llama"), default="gpt2", help="the policy: tiny GPT-2 or a Llama of its size"
    )
    parser.add_argument("--skip-trl", action="store_true", help="only time ours (development)")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.child:
        child(*args.child)
        return 0
    if args.beta <= 0:
        parser.error("--beta must be > 0: the comparison includes the reference model")

    import torch
    from _peer_env import ensure_peer_venv
    from transformers.utils import logging as hf_logging

    from rlhfkit.models.text_builders import train_tiny_tokenizer

    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    t_start = time.perf_counter()
    peer_python = None if args.skip_trl else ensure_peer_venv("trl", TRL_REQUIREMENTS)
    prompts, corpus = make_texts(args)
    with tempfile.TemporaryDirectory(prefix="lm-optim-vs-trl-") as tmp:
        model_dir = os.path.join(tmp, "model")
        tokenizer = train_tiny_tokenizer(corpus + prompts, vocab_size=1024)
        model = build_policy(args.arch, tokenizer, args.seed)
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        n_params = sum(p.numel() for p in model.parameters())
        spec = {
            "model_dir": model_dir,
            "tmp": tmp,
            "prompts": prompts,
            "threads": args.threads,
            "steps": args.steps,
            "prompts_per_step": args.prompts_per_step,
            "n_per_prompt": args.n_per_prompt,
            "max_new_tokens": args.max_new_tokens,
            "beta": args.beta,
            "clip": 0.2,
            "lr": args.lr,
            "seed": args.seed,
        }
        in_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        Path(in_path).write_text(json.dumps(spec))
        # Ours runs as this process does (its PYTHONPATH kept); TRL's venv must not see the project's paths.
        ours_env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        trl_env = {k: v for k, v in ours_env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        ours_runs: list[dict] = []
        trl_runs: list[dict] = []
        for _ in range(args.repeats):
            ours_runs.append(run_child(sys.executable, "ours", in_path, out_path, ours_env))
            if peer_python is not None:
                trl_runs.append(run_child(str(peer_python), "trl", in_path, out_path, trl_env))
    ours = max(ours_runs, key=lambda r: r["tokens_per_s"])
    trl = max(trl_runs, key=lambda r: r["tokens_per_s"]) if trl_runs else None
    pair_ratios = [o["tokens_per_s"] / t["tokens_per_s"] for o, t in zip(ours_runs, trl_runs, strict=False)]

    w = min(args.window, max(1, args.steps // 2))  # first and last w steps never overlap
    for i, run in enumerate(ours_runs):
        t_run = f" | TRL {trl_runs[i]['tokens_per_s']:8.1f} tokens/s | ratio {pair_ratios[i]:.3f}" if trl_runs else ""
        print(f"repeat {i + 1}: ours {run['tokens_per_s']:8.1f} tokens/s{t_run}", file=sys.stderr)
    print(
        f"best: ours {ours['tokens_per_s']:8.1f} tokens/s ({ours['tokens']} tokens, {ours['steps']} steps, "
        f"{ours['seconds']:.1f} s), reward gain {gain(ours['rewards'], w):+.3f}, last KL {ours['kl_last']:.4f}",
        file=sys.stderr,
    )
    if trl is None:
        print(json.dumps({"ours_tokens_per_s": ours["tokens_per_s"], "ours_reward_gain": gain(ours["rewards"], w)}))
        return 0
    print(
        f"best: TRL {trl['trl_version']} {trl['tokens_per_s']:8.1f} tokens/s ({trl['tokens']} tokens, {trl['steps']} "
        f"steps, {trl['seconds']:.1f} s of steps in a {trl['train_call_seconds']:.1f} s train() call), "
        f"reward gain {gain(trl['rewards'], w):+.3f}",
        file=sys.stderr,
    )
    print(
        f"model {args.arch}, {n_params} params, threads ours {ours['torch_threads']} / TRL {trl['torch_threads']}; "
        f"total {time.perf_counter() - t_start:.1f} s",
        file=sys.stderr,
    )
    result = {
        "ratio": statistics.median(pair_ratios),
        "best_ratio": ours["tokens_per_s"] / trl["tokens_per_s"],
        "pair_ratios": pair_ratios,
        "ours_tokens_per_s": ours["tokens_per_s"],
        "trl_tokens_per_s": trl["tokens_per_s"],
        "ours_tokens_per_s_per_repeat": [r["tokens_per_s"] for r in ours_runs],
        "trl_tokens_per_s_per_repeat": [r["tokens_per_s"] for r in trl_runs],
        "trl_train_call_s": [r["train_call_seconds"] for r in trl_runs],
        "repeats": args.repeats,
        "ours_reward_gain": gain(ours["rewards"], w),
        "trl_reward_gain": gain(trl["rewards"], w),
        "ours_reward_first_last": [sum(ours["rewards"][:w]) / w, sum(ours["rewards"][-w:]) / w],
        "trl_reward_first_last": [sum(trl["rewards"][:w]) / w, sum(trl["rewards"][-w:]) / w],
        "steps": args.steps,
        "threads": args.threads,
        "arch": args.arch,
        "trl_version": trl["trl_version"],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
