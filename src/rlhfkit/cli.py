"""The ``rlhfkit`` command line.

``rlhfkit run CONFIG.toml [--out DIR] [--seed N]`` starts a run,
``rlhfkit run --resume RUN_DIR`` continues one after a stop or crash,
``rlhfkit report RUN_DIR`` rebuilds its HTML report,
``rlhfkit serve RUN_DIR`` serves the annotation web app, ``rlhfkit annotators add NAME``
gives a person a login token, ``rlhfkit export RUN_DIR --format labelstudio|argilla --out PATH``
writes the pending queries for Label Studio or Argilla and ``rlhfkit import RUN_DIR --format ... --data PATH``
stores the answers given there, and
``rlhfkit config-help`` lists every config field with its meaning.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rlhfkit.errors import ConfigError, is_person_facing

if TYPE_CHECKING:
    from rlhfkit.feedback.interop import ImportReport, Scales
    from rlhfkit.feedback.store import FeedbackStore
    from rlhfkit.feedback.web import AnnotationSettings
    from rlhfkit.types import Annotator, Feedback


def _check_run_folder(path: Path) -> None:
    """Refuse, in one line, a ``--resume`` path that is not a run folder (before the slow imports)."""
    if path.is_file():
        hint = f"; to start a run from this config: rlhfkit run {path}" if path.suffix == ".toml" else ""
        raise FileNotFoundError(f"{path} is a file, not a run folder{hint}")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder")
    if not (path / "config.toml").is_file():
        raise FileNotFoundError(
            f"{path} is not a run folder (it has no config.toml, which `rlhfkit run CONFIG --out {path}` writes first)"
        )


def _run(args: argparse.Namespace) -> int:
    # Mistakes in the arguments are reported before the slow imports below.
    if args.resume:
        if args.config is not None or args.out is not None or args.seed is not None:
            raise ConfigError(
                "--resume RUN_DIR takes its config from RUN_DIR/config.toml; drop CONFIG, --out and --seed"
            )
        _check_run_folder(Path(args.resume))
    elif args.config is None:
        raise ConfigError("give a CONFIG.toml to start a run, or --resume RUN_DIR to continue one")
    elif not Path(args.config).is_file():
        raise ConfigError(f"{args.config}: no such config file")

    from rlhfkit.config import is_text_config, load_config
    from rlhfkit.loop import Run
    from rlhfkit.loop_text import TextRun, load_text_config
    from rlhfkit.report import write_report

    run: Run | TextRun
    if args.resume:
        text = is_text_config(Path(args.resume) / "config.toml")
        run = TextRun.resume(args.resume) if text else Run.resume(args.resume)
    else:
        config_file = str(args.config)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out) if args.out else Path("runs") / f"{Path(config_file).stem}-{stamp}"
        if is_text_config(config_file):
            text_cfg = load_text_config(config_file)
            if args.seed is not None:
                text_cfg = dataclasses.replace(text_cfg, seed=args.seed)
            run = TextRun.create(text_cfg, out)
        else:
            cfg = load_config(config_file)
            if args.seed is not None:
                cfg = dataclasses.replace(cfg, seed=args.seed)
            run = Run.create(cfg, out)
    print(f"run folder: {run.dir}", file=sys.stderr)

    def on_round(row: dict[str, float]) -> None:
        write_report(run.dir)

    history = run.run(on_round=on_round)
    report = write_report(run.dir)
    last = history[-1]
    print(
        f"done: {last['round']:.0f} rounds, true return {history[0]['true_return']:.1f} -> {last['true_return']:.1f}, "
        f"KL to base {last['kl_to_base']:.3f}, {last['n_feedback']:.0f} answers; report: {report}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from rlhfkit.report import write_report

    print(write_report(args.run_dir))
    return 0


def _fit_reward(args: argparse.Namespace) -> int:
    import math

    from rlhfkit.reward.fit_files import file_config, fit_reward_files
    from rlhfkit.reward.text_fit import not_measured, preference_file, skipped_note

    data = preference_file(args.data, "--data")
    eval_data = preference_file(args.eval_data, "--eval-data") if args.eval_data else None
    try:
        config = file_config(
            epochs=args.epochs, lr=args.lr, max_tokens=args.max_tokens, batch_size=args.max_pairs, seed=args.seed
        )
    except ValueError as e:  # a bad option value, named as the config field (batch_size for --max-pairs)
        raise ConfigError(f"fit-reward: {e}") from None
    result = fit_reward_files(
        data, args.model, args.out, eval_data, args.format, args.skip_bad_rows, args.eval_frac, config
    )
    for note in (
        skipped_note(result.skipped_rows - result.skipped_eval_rows, "--data", data),
        skipped_note(result.skipped_eval_rows, "--eval-data", eval_data),
    ):
        if note:
            print(note, file=sys.stderr)
    if math.isnan(result.accuracy):
        why = not_measured(eval_data, result.skipped_eval_rows, result.n_eval, args.eval_frac)
        print(f"warning: held-out accuracy not measured: {why}", file=sys.stderr)
        measured = "held-out accuracy not measured"
    else:
        measured = f"held-out accuracy {result.accuracy:.3f} on {result.n_eval} pairs"
    print(
        f"{measured}; trained on {result.n_train} pairs in {result.steps} steps "
        f"({result.pairs_per_second:.1f} pairs/s); model and metrics.json in {args.out}"
    )
    return 0


def _dpo(args: argparse.Namespace) -> int:
    import json
    import math

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rlhfkit.data.preferences import DataFormatError
    from rlhfkit.domains.text import TextPolicy, load_causal_lm, tiny_gpt2, train_tiny_tokenizer
    from rlhfkit.files import atomic_write_bytes
    from rlhfkit.optimize.dpo import DPOConfig, train_dpo
    from rlhfkit.reward.text_fit import not_measured, preference_file, read_preferences, skipped_note

    try:
        config = DPOConfig(loss=args.loss, beta=args.beta, epochs=args.epochs, lr=args.lr, seed=args.seed)
    except ValueError as e:  # a bad option value, named as the config field
        raise ConfigError(f"dpo: {e}") from None
    data = preference_file(args.data, "--data")
    eval_data = preference_file(args.eval_data, "--eval-data") if args.eval_data else None
    report = read_preferences(data, args.format, args.skip_bad_rows)
    eval_report = read_preferences(eval_data, args.format, args.skip_bad_rows) if eval_data else None
    eval_records = eval_report.records if eval_report else []
    for note in (
        skipped_note(report.skipped, "--data", data),
        skipped_note(eval_report.skipped if eval_report else 0, "--eval-data", eval_data),
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
    policy = TextPolicy(model, tokenizer, value_head=False)
    metrics = train_dpo(policy, None, report.records, config, eval_records)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    policy.model.save_pretrained(out, safe_serialization=True)
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
        why = not_measured(eval_data, eval_report.skipped if eval_report else 0, metrics.n_eval, None)
        print(f"warning: held-out implicit-reward accuracy not measured: {why}", file=sys.stderr)
        measured = "held-out implicit-reward accuracy not measured"
    else:
        measured = f"held-out implicit-reward accuracy {metrics.eval_reward_accuracy:.3f} on {metrics.n_eval} pairs"
    print(
        f"{args.loss}: {measured}; trained on {metrics.n_train} pairs ({metrics.pairs_per_second:.1f} pairs/s); "
        f"model in {out}"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rlhfkit.app.server import AppConfig, serve, store_url_for
    from rlhfkit.feedback.store import FeedbackStore

    url = store_url_for(args.run_dir, args.db)
    store = FeedbackStore(url)  # one that cannot be opened (read-only, down, full) is one line and exit code 2
    try:
        settings, from_run = _run_settings(args, store)
        _say_if_no_one_can_sign_in(store, args.run_dir)
    except BaseException:
        store.close()
        raise
    lo, hi = settings.rating_scale
    scale = f"ratings {lo:g}-{hi:g}, labels {' / '.join(settings.label_choices)}"
    if from_run:
        print(f"people answer as the run's config asks (task {settings.task or '?'}; {scale})", file=sys.stderr)
    else:
        print(
            f"no run has written its settings to this store: people see generic instructions and {scale} "
            "(--rating-scale, --labels); a run writes its own when it starts: then restart serve",
            file=sys.stderr,
        )
    config = AppConfig(
        store_url=url,
        media_dir=Path(args.run_dir) / "media",
        run_dir=Path(args.run_dir),
        max_body_bytes=args.max_body,
        secure_cookies=args.secure_cookies,
        prerender=not args.no_prerender,
        rating_scale=settings.rating_scale,
        label_choices=settings.label_choices,
    )
    print(f"serving {url.split('@')[-1]} on http://{args.host}:{args.port}/", file=sys.stderr)
    try:
        serve(config, args.host, args.port, store=store)
    finally:
        store.close()
    return 0


def _run_settings(args: argparse.Namespace, store: FeedbackStore) -> tuple[AnnotationSettings, bool]:
    """The run's settings for people, from its store (True); ``--rating-scale``/``--labels`` only for a store no
    run has written (False). A flag that disagrees with the run is an error (:func:`settings_or_fallback`)."""
    from rlhfkit.feedback.web import settings_or_fallback

    scale = _pair_of_floats(args.rating_scale, "--rating-scale") if args.rating_scale else None
    labels = tuple(c.strip() for c in args.labels.split(",") if c.strip()) if args.labels else None
    try:
        return settings_or_fallback(store, scale, labels)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _add_annotator_hint(run_dir: str | Path) -> str:
    return f"`rlhfkit annotators add NAME --run {run_dir}` (it prints their token; add --admin for an admin)"


def _say_if_no_one_can_sign_in(store: FeedbackStore, run_dir: str | Path) -> None:
    """Tell the person starting ``serve`` when the store holds no live token (they can add one while it serves)."""
    if not any(t.revoked_at is None for t in store.tokens()):
        print(f"no annotators yet, so no one can sign in: add one with {_add_annotator_hint(run_dir)}", file=sys.stderr)


def _pair_of_floats(text: str, flag: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag}: expected LOW,HIGH such as 1,7, got {text!r}") from None
    if not low < high:
        raise ConfigError(f"{flag}: LOW must be below HIGH, got {text!r}")
    return low, high


def _annotators(args: argparse.Namespace) -> int:
    from rlhfkit.app.auth import add_annotator
    from rlhfkit.app.server import store_url_for
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(store_url_for(args.run, args.db))
    try:
        if args.action == "add":
            token = add_annotator(store, args.name, admin=args.admin, rotate=args.rotate)
            role = "admin" if args.admin else "annotator"
            print(f"{role} {args.name!r} added; the token is shown only this once:", file=sys.stderr)
            print(token)
        elif args.action == "revoke":
            n = store.revoke_tokens(args.name)
            print(f"revoked {n} token{'s' if n != 1 else ''} of {args.name!r}; their answers stay", file=sys.stderr)
        else:
            counts = store.feedback_counts()
            if not store.tokens():
                print(f"no annotators in {args.run}; add one with {_add_annotator_hint(args.run)}", file=sys.stderr)
            for t in store.tokens():
                state = "revoked" if t.revoked_at is not None else "active"
                print(f"{t.annotator_id}\t{t.role}\t{state}\t{counts.get(t.annotator_id, 0)} answers")
    finally:
        store.close()
    return 0


def _interop_scales(args: argparse.Namespace, store: FeedbackStore) -> Scales:
    """The rating scale and label choices people answer on: the run's, as ``serve`` reads them."""
    from rlhfkit.feedback.interop import Scales

    settings, _ = _run_settings(args, store)
    return Scales(rating=settings.rating_scale, labels=settings.label_choices, ordinal=settings.label_ordinal)


def _export(args: argparse.Namespace) -> int:
    from rlhfkit.app.export_media import segment_renderer
    from rlhfkit.app.server import store_url_for
    from rlhfkit.feedback.interop import export_argilla, export_label_studio
    from rlhfkit.feedback.store import FeedbackStore

    out = Path(args.out)
    render = segment_renderer(args.run_dir)
    store = FeedbackStore(store_url_for(args.run_dir, args.db))
    try:
        scales = _interop_scales(args, store)
        if args.format == "labelstudio":
            report = export_label_studio(store, out, scales=scales, render=render, media_url=args.media_url)
            what = "Label Studio task"
            layout = "label_config.xml (its labelling interface) and tasks.json"
        else:
            report = export_argilla(store, out, scales=scales, render=render)
            what, layout = "Argilla record", "an Argilla dataset (rg.Dataset.from_disk loads it)"
    finally:
        store.close()
    n = report.total
    if not n:
        print(f"no pending queries: nothing written to {out}")
    else:
        per_project = ", ".join(f"{out / name} ({c})" for name, c in report.projects.items())
        print(f"wrote {n} {what}{'s' if n != 1 else ''}, one project per folder: {per_project}; each holds {layout}")
    if report.media and args.format == "labelstudio":
        print(
            f"{report.media} video{'s' if report.media != 1 else ''} in {out / 'media'}, referred to as "
            f"'{args.media_url}<generation id>.webm': Label Studio must reach them by that URL "
            "(serve the folder, e.g. as local files storage, and set --media-url)"
        )
    elif report.media:
        print(f"{report.media} video{'s' if report.media != 1 else ''} embedded in the records")
    if report.skipped:
        print(
            f"left out {len(report.skipped)} correction quer{'ies' if len(report.skipped) != 1 else 'y'} of control "
            f"segments ({', '.join(report.skipped[:5])}{', ...' if len(report.skipped) > 5 else ''}): "
            "neither tool can answer them; use `rlhfkit serve`"
        )
    return 0


def _import(args: argparse.Namespace) -> int:
    from rlhfkit.app.server import store_url_for
    from rlhfkit.feedback.interop import InteropError, import_label_studio
    from rlhfkit.feedback.store import FeedbackStore

    url = store_url_for(args.run_dir, args.db)
    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such file or folder")
    store = FeedbackStore(url)
    try:
        scales = _interop_scales(args, store)
        if args.format == "labelstudio":
            if data.is_dir():
                raise InteropError(f"{data}: a folder; give the JSON file that Label Studio exported")
            try:
                report = import_label_studio(data, store, scales)
            except UnicodeDecodeError as e:
                raise InteropError(f"{data}: not UTF-8 text (byte {e.start})") from None
        else:
            report = _import_argilla_folders(data, store, scales)
    finally:
        store.close()
    print(
        f"{data}: stored {report.stored} answer{'s' if report.stored != 1 else ''}, "
        f"{report.duplicates} duplicate{'s' if report.duplicates != 1 else ''} (already stored, left as they were); "
        f"annotators: {', '.join(report.annotators) or 'none'}"
    )
    return 0


def _import_argilla_folders(path: Path, store: FeedbackStore, scales: Scales) -> ImportReport:
    """Import one Argilla dataset, or every dataset in the folder ``rlhfkit export`` wrote; all or nothing."""
    from rlhfkit.feedback.interop import ImportReport, InteropError, import_argilla
    from rlhfkit.feedback.store import StoreError

    def is_dataset(p: Path) -> bool:
        return (p / "state.json").is_file() or (p / "dataset_dict.json").is_file()

    folders = [path]
    if path.is_dir() and not is_dataset(path):
        folders = sorted(p for p in path.iterdir() if p.is_dir() and is_dataset(p)) or [path]
    if len(folders) == 1:
        return import_argilla(folders[0], store, scales)
    held = _HeldBackStore(store)
    for folder in folders:  # every row of every dataset is checked before one answer is stored
        import_argilla(folder, cast("FeedbackStore", held), scales)
    if not held.records:
        return ImportReport(0, 0, ())
    try:
        results = store.record_batch(held.records, all_or_nothing=True)
    except StoreError as e:
        raise InteropError(f"nothing imported: {e}") from None
    for annotator in held.annotators.values():
        store.add_annotator(annotator)
    stored = sum(1 for r in results if r is True)
    return ImportReport(stored, len(results) - stored, tuple(sorted(held.annotators)))


class _HeldBackStore:
    """A store that reads through to ``store`` and holds back what an import would write to it."""

    def __init__(self, store: FeedbackStore) -> None:
        self._store = store
        self.records: list[Feedback] = []
        self.annotators: dict[str, Annotator] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record_batch(self, feedback: Sequence[Feedback], all_or_nothing: bool = False) -> list[bool]:
        self.records.extend(feedback)
        return [True] * len(feedback)

    def add_annotator(self, annotator: Annotator) -> None:
        self.annotators[annotator.id] = annotator


def _config_help(args: argparse.Namespace) -> int:
    from rlhfkit.config import RunConfig, describe
    from rlhfkit.loop_text import TEXT_TASKS, TextRunConfig

    control = "a built-in task (pendulum, cartpole, reacher, halfcheetah) or env:<gymnasium id>"
    lines = [f"# Control runs: task = {control}", *describe(RunConfig, domain="control"), ""]
    lines += [
        f"# Text runs: task = {' or '.join(repr(t) for t in TEXT_TASKS)}",
        *describe(TextRunConfig, domain="text"),
    ]
    print("\n".join(lines))
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhfkit", description="Reinforcement learning from human feedback.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a run from a TOML config, or resume one")
    run.add_argument("config", nargs="?", help="the run's TOML config (see `rlhfkit config-help`)")
    run.add_argument("--out", help="run folder to create (default: runs/CONFIG-TIMESTAMP)")
    run.add_argument("--seed", type=int, help="override the config's seed")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last finished round")
    run.set_defaults(func=_run)
    rep = sub.add_parser("report", help="write RUN_DIR/report.html with plots")
    rep.add_argument("run_dir")
    rep.set_defaults(func=_report)
    fr = sub.add_parser("fit-reward", help="fit a text reward model to a preference file")
    _add_preference_args(fr, "a save_pretrained folder, or the preset 'tiny'")
    fr.add_argument("--eval-data", help="held-out preference file (default: a share of the prompts)")
    fr.add_argument("--eval-frac", type=float, default=0.1, help="share of prompts held out without --eval-data")
    fr.add_argument("--epochs", type=int, default=1)
    fr.add_argument("--lr", type=float, default=5e-4)
    fr.add_argument("--max-tokens", type=int, default=4096, help="padded token positions per batch")
    fr.add_argument(
        "--max-pairs",
        type=int,
        default=32,
        help="labelled pairs per optimiser step; a prompt with more pairs is split across steps",
    )
    fr.add_argument("--seed", type=int, default=0)
    fr.set_defaults(func=_fit_reward)
    dp = sub.add_parser("dpo", help="train a language model directly on preferences (DPO or IPO)")
    _add_preference_args(dp, "a causal-LM save_pretrained folder, or the preset 'tiny'")
    dp.add_argument("--eval-data", help="held-out preference file for the implicit-reward accuracy")
    dp.add_argument("--loss", default="dpo", choices=["dpo", "ipo"])
    dp.add_argument("--beta", type=float, default=0.1, help="strength of the implicit KL to the reference model")
    dp.add_argument("--epochs", type=int, default=1)
    dp.add_argument("--lr", type=float, default=1e-6, help="1e-6 suits pre-trained models; the tiny preset wants ~1e-3")
    dp.add_argument("--seed", type=int, default=0)
    dp.set_defaults(func=_dpo)
    sv = sub.add_parser("serve", help="serve the annotation web app for a run folder")
    sv.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (its feedback.sqlite, media cache)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--db", metavar="URL", help="feedback store URL, e.g. postgresql://user:pw@host/db")
    sv.add_argument("--max-body", type=int, default=64 * 1024, help="largest request body in bytes (413 above)")
    sv.add_argument("--secure-cookies", action="store_true", help="mark the login cookie Secure (behind HTTPS)")
    sv.add_argument("--no-prerender", action="store_true", help="render control segments only when first viewed")
    _add_fallback_scale_args(sv)
    sv.set_defaults(func=_serve)
    an = sub.add_parser("annotators", help="add, list or revoke the people who answer in the web app")
    an.add_argument("action", choices=["add", "list", "revoke"])
    an.add_argument("name", nargs="?", metavar="NAME", help="annotator name (add, revoke)")
    an.add_argument("--admin", action="store_true", help="an admin: sees progress and agreement, pauses the loop")
    an.add_argument("--rotate", action="store_true", help="replace the live token of an existing annotator")
    an.add_argument("--run", default=".", metavar="RUN_DIR", help="the run folder (default: the current folder)")
    an.add_argument("--db", metavar="URL", help="feedback store URL instead of RUN_DIR/feedback.sqlite")
    an.set_defaults(func=_annotators)
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
    ex.set_defaults(func=_export)
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
    im.set_defaults(func=_import)
    ch = sub.add_parser("config-help", help="list every config field, its default and meaning")
    ch.set_defaults(func=_config_help)
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


if __name__ == "__main__":
    sys.exit(main())
