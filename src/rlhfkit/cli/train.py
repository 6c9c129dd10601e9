"""``rlhfkit fit-reward`` and ``rlhfkit dpo``: a reward model, or a policy trained directly, from a preference file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rlhfkit.errors import ConfigError

if TYPE_CHECKING:
    from rlhfkit.models.adapters import MemoryConfig


def fit_reward_command(args: argparse.Namespace) -> int:
    """Fit a text reward model to ``--data`` and save it with ``metrics.json`` in ``--out``."""
    import math

    from rlhfkit.feedback.formats import preference_file
    from rlhfkit.reward.fit_files import file_config, fit_reward_files

    data = preference_file(args.data, "--data")
    eval_data = preference_file(args.eval_data, "--eval-data") if args.eval_data else None
    try:
        config = file_config(
            epochs=args.epochs, lr=args.lr, max_tokens=args.max_tokens, batch_size=args.batch_size, seed=args.seed
        )
    except ValueError as e:  # a bad option value, named as the config field (batch_size for --batch-size)
        raise ConfigError(f"fit-reward: {e}") from None
    memory = _memory_config(args, "fit-reward")
    result = fit_reward_files(
        data, args.model, args.out, eval_data, args.format, args.skip_bad_rows, args.eval_frac, config, memory
    )
    for note in (
        _skipped_note(result.skipped_rows - result.skipped_eval_rows, "--data", data),
        _skipped_note(result.skipped_eval_rows, "--eval-data", eval_data),
    ):
        if note:
            print(note, file=sys.stderr)
    if math.isnan(result.accuracy):
        why = _not_measured(eval_data, result.skipped_eval_rows, result.n_eval, args.eval_frac)
        print(f"warning: held-out accuracy not measured: {why}", file=sys.stderr)
        measured = "held-out accuracy not measured"
    else:
        measured = f"held-out accuracy {result.accuracy:.3f} on {result.n_eval} pairs"
    print(
        f"{measured}; trained on {result.n_train} pairs in {result.steps} steps "
        f"({result.pairs_per_second:.1f} pairs/s); model and metrics.json in {args.out}"
    )
    return 0


def dpo_command(args: argparse.Namespace) -> int:
    """Train a causal LM on ``--data`` with DPO or IPO and save it with ``metrics.json`` in ``--out``."""
    import json
    import math

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rlhfkit.feedback.formats import DataFormatError, preference_file, read_preferences
    from rlhfkit.files import atomic_write_bytes
    from rlhfkit.models.adapters import merged, prepare_model
    from rlhfkit.models.text import TextPolicy
    from rlhfkit.models.text_builders import load_causal_lm, tiny_gpt2, train_tiny_tokenizer
    from rlhfkit.optimize.dpo.trainer import DPOConfig, train_dpo

    try:
        config = DPOConfig(loss=args.loss, beta=args.beta, epochs=args.epochs, lr=args.lr, seed=args.seed)
    except ValueError as e:  # a bad option value, named as the config field
        raise ConfigError(f"dpo: {e}") from None
    memory = _memory_config(args, "dpo")
    data = preference_file(args.data, "--data")
    eval_data = preference_file(args.eval_data, "--eval-data") if args.eval_data else None
    report = read_preferences(data, args.format, args.skip_bad_rows)
    eval_report = read_preferences(eval_data, args.format, args.skip_bad_rows) if eval_data else None
    eval_records = eval_report.records if eval_report else ()
    for note in (
        _skipped_note(report.skipped, "--data", data),
        _skipped_note(eval_report.skipped if eval_report else 0, "--eval-data", eval_data),
    ):
        if note:
            print(note, file=sys.stderr)
    if not any(r.mu is not None for r in report.records):
        what = f"all {report.skipped} rows skipped as bad" if report.skipped else "every record is incomparable"
        raise DataFormatError(data, 0, "<file>", f"no usable training pairs ({what})")
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    if args.model == "tiny":
        texts = [
            v if isinstance(v, str) else " ".join(m["content"] for m in v)
            for r in report.records
            for v in (r.prompt, r.chosen, r.rejected)
        ]
        tokenizer = train_tiny_tokenizer(texts, vocab_size=1024)
        model = tiny_gpt2(tokenizer, n_positions=512, seed=args.seed)
    else:
        model, tokenizer = load_causal_lm(args.model)
    try:
        policy = TextPolicy(prepare_model(model, memory, "causal_lm", "dpo"), tokenizer, value_head=False)
    except ValueError as e:  # e.g. bf16 on a device without it
        raise ConfigError(f"dpo: {e}") from None
    metrics = train_dpo(policy, None, report.records, config, eval_records)  # a LoRA policy's reference: adapters off
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    merged(policy.model).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    summary = {
        "eval_reward_accuracy": metrics.eval_reward_accuracy,
        "eval_margin": metrics.eval_margin,
        "n_train": metrics.n_train,
        "n_eval": metrics.n_eval,
        "n_skipped_incomparable": metrics.n_skipped,
        "skipped_rows": report.skipped,
        "pairs_per_second": metrics.pairs_per_second,
        "final_loss": metrics.losses[-1] if metrics.losses else None,
    }
    atomic_write_bytes(out / "metrics.json", (json.dumps(summary, indent=2) + "\n").encode())
    if math.isnan(metrics.eval_reward_accuracy):
        why = _not_measured(eval_data, eval_report.skipped if eval_report else 0, metrics.n_eval, None)
        print(f"warning: held-out implicit-reward accuracy not measured: {why}", file=sys.stderr)
        measured = "held-out implicit-reward accuracy not measured"
    else:
        measured = f"held-out implicit-reward accuracy {metrics.eval_reward_accuracy:.3f} on {metrics.n_eval} pairs"
    print(
        f"{args.loss}: {measured}; trained on {metrics.n_train} pairs ({metrics.pairs_per_second:.1f} pairs/s); "
        f"model in {out}"
    )
    return 0


def _memory_config(args: argparse.Namespace, command: str) -> MemoryConfig:
    """The command's ``--lora-r``, ``--lora-alpha``, ``--gradient-checkpointing`` and ``--bf16`` as a MemoryConfig."""
    from rlhfkit.models.adapters import MemoryConfig

    try:
        return MemoryConfig(
            lora_r=args.lora_r,
            lora_alpha=args.lora_alpha,
            gradient_checkpointing=args.gradient_checkpointing,
            bf16=args.bf16,
        )
    except ValueError as e:  # named as the config field (lora_r for --lora-r)
        raise ConfigError(f"{command}: {e}") from None


def _skipped_note(n: int, option: str, path: str | None) -> str | None:
    """What ``--skip-bad-rows`` left out of the file given as ``option``, or None when nothing."""
    return f"skipped {n} bad row{'s' if n != 1 else ''} of {option} {path} (--skip-bad-rows)" if n else None


def _not_measured(eval_data: str | None, skipped_eval: int, n_eval: int, eval_frac: float | None) -> str:
    """Why a held-out accuracy is NaN and what to do: the warning the commands print in its place.

    ``eval_frac`` is None for a command that holds out nothing without ``--eval-data``.
    """
    if n_eval > 0:
        return f"the {n_eval} held-out pairs are all ties (mu = 0.5, 0.5)"
    if eval_data is not None:
        bad = f" (its {skipped_eval} bad rows were skipped)" if skipped_eval else ""
        return f"--eval-data {eval_data} holds no usable pairs{bad}"
    if eval_frac is None:
        return "no held-out data; give --eval-data FILE"
    return f"--eval-frac {eval_frac:g} held out none of the prompts; give --eval-data FILE or a larger --eval-frac"
