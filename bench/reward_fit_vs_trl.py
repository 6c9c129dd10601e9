"""Reward-model fitting speed and accuracy: the one reward fit (``fit_reward``) vs TRL's ``RewardTrainer``.

The same tiny GPT-2-shaped reward model (``load_reward_model("tiny", ...)``: 2 layers,
128 wide, byte-level BPE with 1,024 tokens), built once and saved with
``save_pretrained`` (model + tokenizer) into a temporary folder; both sides load
their initial weights and tokenizer from that folder. Both train with AdamW at
the same constant learning rate on the same seeded synthetic data (epochs and
batches below), in two shapes:

(a) ``pairs``: one preference pair per prompt; prompts ~48 tokens, responses ~16.
    TRL gets ``prompt``/``chosen``/``rejected`` rows.
(b) ``groups``: four completions per prompt, all six pairs labelled (the
    UltraFeedback shape). TRL gets six ``prompt``/``chosen``/``rejected`` rows per
    prompt; ours stores each prompt's 4 completions once and its 6 pairs as comparisons, and scores them
    in one prompt piece (one prompt encoding for the 4 completions).

Data: prompts and responses are random words from a fixed list of 80. Four of
them are "liked" and four "disliked"; a completion's score is the number of liked
words in it minus the number of disliked ones, and the completion with the higher
score is preferred (responses of one prompt have equal length). The reward model
has to learn eight word identities and their signs from pairs whose scores differ
by one to four, in one or two epochs, so held-out accuracy stays below 1 and the two
sides' accuracies can be compared. Held-out accuracy is measured on the same
held-out pairs for both sides (TRL: the trained model scores chosen and rejected
in the child process, tokenised by TRL's own ``_prepare_dataset``).

Timing (pairs/s = the data set's training pairs / seconds of the whole fit):
- TRL: wall time of ``trainer.train()`` (dataloader, collation, forward, backward,
  optimizer step and TRL's per-step metric bookkeeping; model loading and dataset
  tokenisation happen before, in ``RewardTrainer.__init__``, and are excluded).
- ours: wall time of the ``fit_reward`` call with no held-out set (tokenising the
  texts, planning the steps, padding, cached-prefix forward, backward, optimizer
  step); model loading and building the answers (``pairs_to_answers``) are
  excluded, held-out accuracy is computed afterwards with ``measure``. Unlike TRL's
  side, ours counts its tokenisation. The fit's own ``seconds`` (the training
  steps alone: not tokenising the texts or planning the steps) give the
  ``metric_pairs_per_second`` printed too.

Epochs and batches: **both sides train the same number of epochs** in each shape,
``--pairs-epochs`` (default 1) in (a) and ``--group-epochs`` (default 2) in (b), and
take the same ``--batch`` labelled pairs per optimiser step: TRL's
``per_device_train_batch_size``, ours ``RewardConfig.batch_size`` (with a
padded-token budget, ``--max-tokens``, that by default always fits ``--batch``
pairs, so the pair count is what cuts our batches). In (a) both make
``pairs / batch`` steps an epoch; in (b) ours packs whole prompt groups (6 pairs
each) under the pair cap, so it makes a few more steps than TRL (5 groups, 30
pairs, a step). A prompt group is seen once an epoch by ours; TRL sees each
completion three times an epoch (in three of its six pair rows). The JSON line
gives both sides' epochs and optimiser steps (``ours_epochs``, ``trl_epochs``,
``ours_steps``, ``trl_steps``; steps are means over the seeds).

(Until issue 10 the accuracy comparison was at unequal training: ours two epochs
and more pairs per step in (b), TRL one epoch. ``docs/benchmarks.md`` keeps those
figures, marked as such.)

Seeds: each of ``--seeds`` (default 0 to 7) makes its own data, initial model and
batch order, and both sides run on it. One seed's held-out accuracy moves by about
0.02 with the batch order alone, so accuracy is compared per seed: the JSON's
``accuracy_diff`` holds, per shape, the paired differences ours − TRL of each seed,
their mean and their standard deviation over the seeds. pairs/s is all pairs over
all seconds.

Both processes run with ``torch.set_num_threads(--threads)`` (default 1). TRL runs in
``bench/.venv-trl`` (see ``bench/_peer_env.py``), never in the project's ``.venv``.
The last line printed is one JSON object.

    .venv/bin/python bench/reward_fit_vs_trl.py [--pairs 2000] [--prompts 400] [--seeds 0 1 2] [--threads 1]
        [--pairs-epochs 1] [--group-epochs 2] [--batch 32]
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
from pathlib import Path

TRL_REQUIREMENTS = ["torch==2.13.0", "transformers==5.24.0", "trl==1.16.0"]


# ----------------------------------------------------------------------------- data


def make_data(args: argparse.Namespace) -> dict[str, list[dict[str, str]]]:
    """Seeded rows ``{"prompt", "chosen", "rejected"}`` for both shapes, train and held-out.

    Completions start with a space so that ``prompt + completion`` tokenises as the
    two parts tokenised separately (byte-level BPE splits before spaces).
    """
    import random

    rng = random.Random(args.seed)
    words = [
        f"{a}{b}"
        for a in ("ka", "lo", "mi", "nu", "pe", "ri", "so", "tu")
        for b in ("b", "d", "g", "k", "m", "n", "r", "s", "t", "z")
    ]

    def prompt() -> str:
        n = args.prompt_len + rng.randint(-8, 8)
        return " ".join(rng.choice(words) for _ in range(n))

    liked, disliked = words[:4], words[4:8]
    neutral = words[8:]

    def completion(length: int, score: int) -> str:
        """``length`` words whose liked-minus-disliked count is ``score`` (between -3 and 3)."""
        n_liked = rng.randint(max(0, score), min(3, 3 + score))
        n_disliked = n_liked - score
        toks = [rng.choice(neutral) for _ in range(length - n_liked - n_disliked)]
        for w in [rng.choice(liked) for _ in range(n_liked)] + [rng.choice(disliked) for _ in range(n_disliked)]:
            toks.insert(rng.randint(0, len(toks)), w)
        return " " + " ".join(toks)

    def pair_rows(n: int) -> list[dict[str, str]]:
        rows = []
        for _ in range(n):
            length = args.resp_len + rng.randint(-4, 4)
            lo, hi = sorted(rng.sample(range(-2, 3), 2))  # scores -2..2, chosen has the higher
            rows.append({"prompt": prompt(), "chosen": completion(length, hi), "rejected": completion(length, lo)})
        return rows

    def group_rows(n: int) -> list[dict[str, str]]:
        rows = []
        for _ in range(n):
            p = prompt()
            length = args.resp_len + rng.randint(-4, 4)
            scores = sorted(rng.sample(range(-2, 3), 4))
            comps = [completion(length, s) for s in scores]  # comps[i] has the i-th lowest score
            for hi in range(4):
                for lo in range(hi):
                    rows.append({"prompt": p, "chosen": comps[hi], "rejected": comps[lo]})
            # shuffle within the prompt so chosen/rejected order carries no signal
            rows[-6:] = rng.sample(rows[-6:], 6)
        return rows

    return {
        "pairs_train": pair_rows(args.pairs),
        "pairs_eval": pair_rows(args.eval_pairs),
        "groups_train": group_rows(args.prompts),
        "groups_eval": group_rows(args.eval_prompts),
    }


# ----------------------------------------------------------------------------- TRL side (peer venv)


def trl_child(in_path: str, out_path: str) -> None:
    """Runs in the peer venv: RewardTrainer, each shape's epochs, then held-out accuracy."""
    from _peer_env import CPU_TRAINER_ARGS, quiet_peer_child

    spec = json.loads(Path(in_path).read_text())
    quiet_peer_child(spec["threads"])
    import datasets
    import torch
    import trl
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback
    from trl import RewardConfig, RewardTrainer

    out: dict[str, object] = {"trl_version": trl.__version__, "torch_threads": torch.get_num_threads()}
    for shape in ("pairs", "groups"):
        tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
        model = AutoModelForSequenceClassification.from_pretrained(spec["model_dir"], num_labels=1)
        cfg = RewardConfig(
            output_dir=os.path.join(spec["tmp"], f"trl-{shape}"),
            num_train_epochs=spec["epochs"][shape],
            per_device_train_batch_size=spec["batch"],
            learning_rate=spec["lr"],
            max_grad_norm=0.0,  # no clipping (ours does not clip)
            eval_strategy="no",
            seed=spec["seed"],
            max_length=None,
            **CPU_TRAINER_ARGS,
        )
        train = datasets.Dataset.from_list(spec["data"][f"{shape}_train"])
        trainer = RewardTrainer(model=model, args=cfg, train_dataset=train, processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)  # no end-of-training log line on stdout
        n_pairs = len(trainer.train_dataset)
        tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset)
        torch.set_num_threads(spec["threads"])  # in case the trainer touched it
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0

        # Held-out accuracy: score chosen and rejected, tokenised exactly as for training.
        held = trainer._prepare_dataset(
            datasets.Dataset.from_list(spec["data"][f"{shape}_eval"]), trainer.processing_class, cfg, "eval"
        )
        collator = trainer.data_collator
        net = trainer.model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(held), 64):
                rows = [held[j] for j in range(i, min(i + 64, len(held)))]
                batch = collator([{"chosen_ids": r["chosen_ids"], "rejected_ids": r["rejected_ids"]} for r in rows])
                r = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
                rc, rr = torch.chunk(r, 2)
                correct += int((rc > rr).sum())
        out[shape] = {
            "pairs": n_pairs,
            "seconds": seconds,
            "pairs_per_second": n_pairs / seconds,
            "steps": int(trainer.state.global_step),
            "epochs": spec["epochs"][shape],
            "tokens": tokens,
            "accuracy": correct / len(held),
            "n_eval": len(held),
        }
    Path(out_path).write_text(json.dumps(out))


# ----------------------------------------------------------------------------- ours


def run_ours(spec: dict) -> dict[str, object]:
    import torch
    from transformers.utils import logging as hf_logging

    from rlhfkit.reward.fit import fit_reward, measure
    from rlhfkit.reward.fit_files import file_config, pairs_to_answers
    from rlhfkit.reward.transformer import SequenceRewardModel, load_reward_model

    hf_logging.disable_progress_bar()
    torch.set_num_threads(spec["threads"])
    out: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    for shape in ("pairs", "groups"):
        model, tokenizer = load_reward_model(spec["model_dir"], [])
        reward_model = SequenceRewardModel(model, tokenizer)
        train, held = (
            pairs_to_answers([(r["prompt"], r["chosen"], r["rejected"], (1.0, 0.0)) for r in rows], tokenizer)
            for rows in (spec["data"][f"{shape}_train"], spec["data"][f"{shape}_eval"])
        )
        # token ids of each generation (what the fit will encode), for the budget and the token counts below
        encoded = reward_model.encode([g.content for g in train.generations.values()])
        ids = dict(zip(train.generations, encoded, strict=True))
        shown = [train.queries[f.query_id].generation_ids for f in train.feedback]
        n_pairs = len(train)
        # TRL's pairs per step; a token budget that always fits them (each pair adds at most two rows)
        longest = max(len(p) + len(c) for p, c in ids.values())  # a prompt and its longest completion
        max_tokens = spec["max_tokens"] or 2 * spec["batch"] * longest
        # center_coef 0: TRL's center_rewards_coefficient is None by default
        config = file_config(
            epochs=spec["epochs"][shape],
            lr=spec["lr"],
            max_tokens=max_tokens,
            batch_size=spec["batch"],
            seed=spec["seed"],
            center_coef=0.0,
        )
        t0 = time.perf_counter()
        metrics = fit_reward(reward_model, train, None, config)
        seconds = time.perf_counter() - t0
        prompts = {p for p, _ in ids.values()}
        tokens = sum(len(p) for p in prompts) + sum(len(c) for _, c in ids.values())
        # What the same pairs cost as whole sequences (TRL's rows): a check that both sides see the same tokens.
        as_rows = sum(2 * len(ids[a][0]) + len(ids[a][1]) + len(ids[b][1]) for a, b in shown)
        out[shape] = {
            "pairs": n_pairs,
            "groups": len(prompts),
            "seconds": seconds,
            "pairs_per_second": n_pairs / seconds,
            "metric_pairs_per_second": n_pairs * config.epochs / metrics.seconds,
            "steps": metrics.steps,
            "epochs": config.epochs,
            "max_tokens": max_tokens,
            "tokens": tokens,
            "tokens_as_rows": as_rows,
            "accuracy": measure(reward_model, held)[0],
            "n_eval": len(held),
        }
    return out


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="shape (a): training prompts, one pair each")
    parser.add_argument("--eval-pairs", type=int, default=500, help="shape (a): held-out pairs")
    parser.add_argument(
        "--prompts", type=int, default=400, help="shape (b): training prompts, 4 completions / 6 pairs each"
    )
    parser.add_argument("--eval-prompts", type=int, default=100, help="shape (b): held-out prompts (6 pairs each)")
    parser.add_argument("--prompt-len", type=int, default=48, help="mean prompt length in words (+-8)")
    parser.add_argument("--resp-len", type=int, default=16, help="mean response length in words (+-4)")
    parser.add_argument(
        "--batch", type=int, default=32, help="pairs per step: TRL's per_device_train_batch_size, our batch_size"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=0, help="our padded-token budget per step; 0: one that fits --batch pairs"
    )
    parser.add_argument("--pairs-epochs", type=int, default=1, help="shape (a): epochs, both sides")
    parser.add_argument("--group-epochs", type=int, default=2, help="shape (b): epochs, both sides")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)), help="data, model and order seeds")
    parser.add_argument("--trl-child", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_child:
        trl_child(*args.trl_child)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _peer_env import ensure_peer_venv
    from transformers.utils import logging as hf_logging

    from rlhfkit.reward.transformer import load_reward_model

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    t_start = time.perf_counter()
    peer_python = ensure_peer_venv("trl", TRL_REQUIREMENTS)
    epochs = {"pairs": args.pairs_epochs, "groups": args.group_epochs}
    runs: list[tuple[dict, dict]] = []
    for seed in args.seeds:
        data = make_data(argparse.Namespace(**{**vars(args), "seed": seed}))
        texts = [r[k] for rows in data.values() for r in rows for k in ("prompt", "chosen", "rejected")]
        with tempfile.TemporaryDirectory(prefix="reward-fit-vs-trl-") as tmp:
            model_dir = os.path.join(tmp, "model")
            model, tokenizer = load_reward_model("tiny", texts, seed=seed)
            model.save_pretrained(model_dir, safe_serialization=True)
            tokenizer.save_pretrained(model_dir)
            n_params = sum(p.numel() for p in model.parameters())
            spec = {
                "model_dir": model_dir,
                "tmp": tmp,
                "data": data,
                "threads": args.threads,
                "batch": args.batch,
                "max_tokens": args.max_tokens,
                "lr": args.lr,
                "epochs": epochs,
                "seed": seed,
            }
            in_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "trl.json")
            Path(in_path).write_text(json.dumps(spec))
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
            env["OMP_NUM_THREADS"] = str(args.threads)
            subprocess.run(
                [str(peer_python), str(Path(__file__).resolve()), "--trl-child", in_path, out_path],
                check=True,
                env=env,
            )
            trl = json.loads(Path(out_path).read_text())
            ours = run_ours(spec)
        for shape in ("pairs", "groups"):
            if ours[shape]["tokens_as_rows"] != trl[shape]["tokens"] or ours[shape]["pairs"] != trl[shape]["pairs"]:
                raise SystemExit(f"{shape}: the two sides tokenised different data ({ours[shape]} vs {trl[shape]})")
            o, t = ours[shape], trl[shape]
            print(
                f"seed {seed} {shape:6s}: ours {o['pairs_per_second']:8.1f} pairs/s ({o['pairs']} pairs, "
                f"{o['groups']} groups, {o['epochs']} epochs, {o['steps']} steps, {o['seconds']:.1f} s, "
                f"{o['tokens']} tokens, own metric {o['metric_pairs_per_second']:.1f}), acc {o['accuracy']:.3f} | "
                f"TRL {t['pairs_per_second']:8.1f} pairs/s ({t['pairs']} pairs, {t['epochs']} epochs, "
                f"{t['steps']} steps, {t['seconds']:.1f} s, {t['tokens']} tokens), acc {t['accuracy']:.3f} "
                f"(held-out {o['n_eval']}/{t['n_eval']} pairs)",
                file=sys.stderr,
                flush=True,
            )
        runs.append((ours, trl))

    def pooled(side: int, shape: str) -> tuple[float, float]:
        """(pairs/s over all seeds = all pairs / all seconds, mean held-out accuracy)."""
        pairs = sum(r[side][shape]["pairs"] for r in runs)
        seconds = sum(r[side][shape]["seconds"] for r in runs)
        return pairs / seconds, sum(r[side][shape]["accuracy"] for r in runs) / len(runs)

    (op, oa), (og, ob) = pooled(0, "pairs"), pooled(0, "groups")
    (tp, ta), (tg, tb) = pooled(1, "pairs"), pooled(1, "groups")
    print(
        f"TRL {runs[0][1]['trl_version']}, model {n_params} params, seeds {args.seeds}, threads {args.threads}, "
        f"{args.batch} pairs per step both sides (our max_tokens {runs[0][0]['pairs']['max_tokens']} / "
        f"{runs[0][0]['groups']['max_tokens']} in seed {args.seeds[0]}), epochs {epochs} both sides, lr {args.lr}; "
        f"total {time.perf_counter() - t_start:.1f} s",
        file=sys.stderr,
    )

    def paired_difference(shape: str) -> dict[str, object]:
        """Per-seed held-out accuracy ours − TRL, with its mean and sample standard deviation."""
        diffs = [r[0][shape]["accuracy"] - r[1][shape]["accuracy"] for r in runs]
        mean = sum(diffs) / len(diffs)
        std = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else None
        return {"mean": mean, "std": std, "per_seed": diffs}

    def mean_steps(side: int, shape: str) -> float:
        return sum(r[side][shape]["steps"] for r in runs) / len(runs)

    def median_pair_ratio(shape: str) -> float:
        """The median over seeds of ours / TRL pairs per second (each seed's two fits ran back to back)."""
        return statistics.median(r[0][shape]["pairs_per_second"] / r[1][shape]["pairs_per_second"] for r in runs)

    shapes = ("pairs", "groups")
    result = {
        "median_pair_ratio": {shape: median_pair_ratio(shape) for shape in shapes},
        "ratio_pairs": op / tp,
        "ratio_groups": og / tg,
        "ours_accuracy": min(oa, ob),
        "trl_accuracy": min(ta, tb),
        "ours_pairs_per_s": {"pairs": op, "groups": og},
        "trl_pairs_per_s": {"pairs": tp, "groups": tg},
        "accuracy": {"ours": {"pairs": oa, "groups": ob}, "trl": {"pairs": ta, "groups": tb}},
        "accuracy_diff": {shape: paired_difference(shape) for shape in shapes},
        "ours_epochs": epochs,
        "trl_epochs": {shape: runs[0][1][shape]["epochs"] for shape in shapes},
        "ours_steps": {shape: mean_steps(0, shape) for shape in shapes},
        "trl_steps": {shape: mean_steps(1, shape) for shape in shapes},
        "accuracy_per_seed": {
            side: {shape: [r[k][shape]["accuracy"] for r in runs] for shape in ("pairs", "groups")}
            for k, side in ((0, "ours"), (1, "trl"))
        },
        "n_train_pairs": {"pairs": runs[0][0]["pairs"]["pairs"], "groups": runs[0][0]["groups"]["pairs"]},
        "n_eval_pairs": {"pairs": runs[0][0]["pairs"]["n_eval"], "groups": runs[0][0]["groups"]["n_eval"]},
        "seeds": args.seeds,
        "threads": args.threads,
        "trl_version": runs[0][1]["trl_version"],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
