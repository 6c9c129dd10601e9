"""The ``rlhfkit`` command line.

``rlhfkit run CONFIG.toml [--out DIR] [--seed N]`` starts a run,
``rlhfkit run --resume RUN_DIR`` continues one after a stop or crash,
``rlhfkit report RUN_DIR`` rebuilds its HTML report,
``rlhfkit serve RUN_DIR`` serves the annotation web app, ``rlhfkit annotators add NAME``
gives a person a login token, ``rlhfkit export RUN_DIR --format labelstudio|argilla --out PATH``
writes the pending queries for Label Studio or Argilla and ``rlhfkit import RUN_DIR --format ... --data PATH``
stores the answers given there, and
``rlhfkit config-help`` lists every config field with its meaning.

One module per group of commands holds their handlers (:mod:`~rlhfkit.cli.run`,
:mod:`~rlhfkit.cli.train`, :mod:`~rlhfkit.cli.people`, :mod:`~rlhfkit.cli.exchange`);
this one holds the parser and :func:`main`. Every handler imports what it needs
when it runs, so ``rlhfkit --help`` and mistakes in the arguments answer before
torch, transformers or SQLAlchemy are loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rlhfkit.cli import exchange, people, run, train
from rlhfkit.errors import is_person_facing


def _add_preference_args(parser: argparse.ArgumentParser, model_help: str) -> None:
    """The arguments every command that reads a preference file shares."""
    parser.add_argument("--data", required=True, help="preference JSONL (TRL, TRL conversational, HH-RLHF or scored)")
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--out", required=True, help="folder for the trained model and metrics.json")
    parser.add_argument("--format", default="auto", choices=["auto", "trl", "trl_conversational", "hh", "scored"])
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows (and count them)")


def _add_interop_args(parser: argparse.ArgumentParser, export: bool = False) -> None:
    """The arguments `export` and `import` share: the store, the fallback scales `serve` takes; and export's own."""
    parser.add_argument("--db", metavar="URL", help="feedback store URL, e.g. postgresql://user:pw@host/db")
    _add_fallback_scale_args(parser)
    if export:
        parser.add_argument(
            "--media-url",
            default="media/",
            metavar="PREFIX",
            help="labelstudio: how tasks refer to the videos in OUT/media, PREFIX<generation id>.webm "
            "(e.g. /data/local-files/?d=export/media/ with Label Studio's local files storage)",
        )


def _add_fallback_scale_args(parser: argparse.ArgumentParser) -> None:
    """``--rating-scale`` and ``--labels``: only for a store no run has written its settings to."""
    parser.add_argument(
        "--rating-scale",
        metavar="LOW,HIGH",
        help="scale of rating queries (default 1,7) for a store no run has written; a run's comes from its "
        "feedback.teacher.rating_scale",
    )
    parser.add_argument(
        "--labels",
        help="comma-separated label choices, worst first (default bad,ok,good), for a store no run has written; "
        "a run's come from its feedback.teacher.label_choices",
    )


def _add_memory_args(parser: argparse.ArgumentParser, what: str) -> None:
    """``--lora-r``, ``--lora-alpha``, ``--gradient-checkpointing``, ``--bf16``: a :class:`MemoryConfig`'s fields."""
    parser.add_argument(
        "--lora-r",
        type=int,
        default=0,
        help=f"train rank-r LoRA adapters of {what} on every attention and MLP linear layer, the rest frozen; "
        "the saved model has them merged in (default 0: full fine-tuning)",
    )
    parser.add_argument("--lora-alpha", type=int, default=16, help="LoRA scale: updates times lora_alpha / lora_r")
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: less memory, about one more forward pass of time",
    )
    parser.add_argument("--bf16", action="store_true", help="weights in bfloat16 (LoRA adapters stay float32)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhfkit", description="Reinforcement learning from human feedback.")
    sub = parser.add_subparsers(dest="command", required=True)
    rn = sub.add_parser("run", help="start a run from a TOML config, or resume one")
    rn.add_argument("config", nargs="?", help="the run's TOML config (see `rlhfkit config-help`)")
    rn.add_argument("--out", help="run folder to create (default: runs/CONFIG-TIMESTAMP)")
    rn.add_argument("--seed", type=int, help="override the config's seed")
    rn.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last finished round")
    rn.set_defaults(func=run.run_command)
    rep = sub.add_parser("report", help="write RUN_DIR/report.html with plots")
    rep.add_argument("run_dir")
    rep.set_defaults(func=run.report_command)
    fr = sub.add_parser("fit-reward", help="fit a text reward model to a preference file")
    _add_preference_args(fr, "a save_pretrained folder, or the preset 'tiny'")
    fr.add_argument("--eval-data", help="held-out preference file (default: a share of the prompts)")
    fr.add_argument("--eval-frac", type=float, default=0.1, help="share of prompts held out without --eval-data")
    fr.add_argument("--epochs", type=int, default=1)
    fr.add_argument("--lr", type=float, default=5e-4)
    fr.add_argument("--max-tokens", type=int, default=4096, help="padded token positions per batch")
    fr.add_argument(
        "--batch-size",
        "--max-pairs",
        dest="batch_size",
        type=int,
        default=32,
        help="labelled pairs per optimiser step (reward.batch_size); a prompt with more pairs is split across steps",
    )
    fr.add_argument("--seed", type=int, default=0)
    _add_memory_args(fr, "the reward model (its score head trains too); for a saved model, not the random 'tiny'")
    fr.set_defaults(func=train.fit_reward_command)
    dp = sub.add_parser("dpo", help="train a language model directly on preferences (DPO or IPO)")
    _add_preference_args(dp, "a causal-LM save_pretrained folder, or the preset 'tiny'")
    dp.add_argument("--eval-data", help="held-out preference file for the implicit-reward accuracy")
    dp.add_argument("--loss", default="dpo", choices=["dpo", "ipo"])
    dp.add_argument("--beta", type=float, default=0.1, help="strength of the implicit KL to the reference model")
    dp.add_argument("--epochs", type=int, default=1)
    dp.add_argument("--lr", type=float, default=1e-6, help="1e-6 suits pre-trained models; the tiny preset wants ~1e-3")
    dp.add_argument("--seed", type=int, default=0)
    _add_memory_args(dp, "the policy (the reference is then the same model with its adapters off)")
    dp.set_defaults(func=train.dpo_command)
    sv = sub.add_parser("serve", help="serve the annotation web app for a run folder")
    sv.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (its feedback.sqlite, media cache)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--db", metavar="URL", help="feedback store URL, e.g. postgresql://user:pw@host/db")
    sv.add_argument("--max-body", type=int, default=64 * 1024, help="largest request body in bytes (413 above)")
    sv.add_argument("--secure-cookies", action="store_true", help="mark the login cookie Secure (behind HTTPS)")
    sv.add_argument("--no-prerender", action="store_true", help="render control segments only when first viewed")
    _add_fallback_scale_args(sv)
    sv.set_defaults(func=people.serve_command)
    an = sub.add_parser("annotators", help="add, list or revoke the people who answer in the web app")
    an.add_argument("action", choices=["add", "list", "revoke"])
    an.add_argument("name", nargs="?", metavar="NAME", help="annotator name (add, revoke)")
    an.add_argument("--admin", action="store_true", help="an admin: sees progress and agreement, pauses the loop")
    an.add_argument("--rotate", action="store_true", help="replace the live token of an existing annotator")
    an.add_argument("--run", default=".", metavar="RUN_DIR", help="the run folder (default: the current folder)")
    an.add_argument("--db", metavar="URL", help="feedback store URL instead of RUN_DIR/feedback.sqlite")
    an.set_defaults(func=people.annotators_command)
    ex = sub.add_parser("export", help="write the pending queries as Label Studio tasks or Argilla datasets")
    ex.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (its feedback.sqlite)")
    ex.add_argument("--format", required=True, choices=["labelstudio", "argilla"])
    ex.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="folder to write, a project per kind: KIND/label_config.xml and KIND/tasks.json, videos in media/ "
        "(labelstudio); KIND/ an Argilla dataset (argilla)",
    )
    _add_interop_args(ex, export=True)
    ex.set_defaults(func=exchange.export_command)
    im = sub.add_parser("import", help="store the answers given in Label Studio or Argilla, all or nothing")
    im.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (its feedback.sqlite)")
    im.add_argument("--format", required=True, choices=["labelstudio", "argilla"])
    im.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="a project's JSON export (labelstudio); records saved with datasets' save_to_disk, or a folder of "
        "them, one per kind (argilla)",
    )
    _add_interop_args(im)
    im.set_defaults(func=exchange.import_command)
    ch = sub.add_parser("config-help", help="list every config field, its default and meaning")
    ch.set_defaults(func=run.config_help_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "annotators" and args.action in ("add", "revoke") and not args.name:
        parser.error(f"annotators {args.action} needs a NAME")
    try:
        return int(args.func(args))
    except Exception as e:
        if not is_person_facing(e):
            raise  # a bug: keep the traceback
        print(f"rlhfkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlhfkit: interrupted; continue with `rlhfkit run --resume RUN_DIR`", file=sys.stderr)
        return 130
