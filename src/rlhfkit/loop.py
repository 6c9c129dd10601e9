"""The RLHF loop over any domain: collect feedback, fit the reward, optimise the policy; repeat.

One round ``k = 1..rounds``, the same for control, text and any other
:class:`~rlhfkit.domains.base.Domain`:

1. **collect feedback** (skipped, with step 2, where the domain's reward is fixed:
   a frozen reward model or a reward function, :meth:`~rlhfkit.domains.base.Domain.reward_model`)
   a. *sample*: the round's queries, split between ``feedback.kinds`` by their
      shares; the domain draws generations of its current policy for them, and
      both are stored as pending (a restarted round reuses what it stored);
   b. *ask*: the human answers every pending query, each answer committed to the
      store before anything uses it; with ``feedback.human = "web"`` people
      answer in ``rlhfkit serve RUN_DIR`` meanwhile, and the loop only waits
      until ``feedback.web_min_answers`` exist (an admin's pause holds it);
2. **model the reward**: one read of every usable stored answer with its queries
   and generations (:func:`~rlhfkit.feedback.answers.read_answers`), split into
   training and held-out answers, and the one reward fit
   (:func:`~rlhfkit.reward.fit.fit_reward`) of the domain's reward model;
3. **optimise the policy** on the learned reward minus ``beta * KL`` to the base
   (the domain's optimiser; ``[kl]`` is shared);
4. **evaluate** (true and learned return, KL to the base; the domain's samples for
   the report), then **checkpoint** everything needed to go on and rewrite
   ``metrics.jsonl`` (``human_minutes``: human time on every stored answer, at the
   ``feedback.effort`` costs).

Resuming (``rlhfkit run --resume RUN_DIR``) loads the last checkpoint and starts
the next round: no stored answer is lost, none is asked twice.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rlhfkit.config import RunConfig, config_to_toml, load_config
from rlhfkit.domains.base import Domain, DomainContext
from rlhfkit.domains.control import ControlDomain, probe_spec
from rlhfkit.domains.samples import write_samples
from rlhfkit.domains.text import TextDomain, check_text_parts
from rlhfkit.errors import ConfigError
from rlhfkit.feedback.answers import AnswerSet, read_answers
from rlhfkit.feedback.mix import KindTools, run_kind_setup, split_queries
from rlhfkit.feedback.schedule import queries_in_round
from rlhfkit.feedback.store import AnnotationSettings, FeedbackStore
from rlhfkit.feedback.teacher import Human, SimulatedHuman, TeacherConfig
from rlhfkit.feedback.web import WebHuman, open_run_store
from rlhfkit.feedback.win_rate import is_evaluation, write_win_rates
from rlhfkit.feedback_records import Comparison
from rlhfkit.files import atomic_torch_save, atomic_write_bytes
from rlhfkit.reward.fit import NoUsableFeedbackError, RewardMetrics, fit_reward
from rlhfkit.tasks import get_task
from rlhfkit.types import Query


def build_domain(config: RunConfig, run_dir: Path, progress: bool = True) -> Domain:
    """The domain the config's task belongs to, built from its section and the shared ones."""
    ctx = DomainContext(
        config.task, config.seed, config.rounds, config.reward, config.kl, run_dir, progress, config.feedback.selection
    )
    if config.text is not None:
        return TextDomain(ctx, config.text)
    assert config.control is not None
    return ControlDomain(ctx, config.control)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(run_dir: Path, round_: int, payload: dict[str, Any], history: list[dict[str, float]]) -> None:
    """Save round ``round_``'s checkpoint, point ``latest`` at it, then rewrite ``metrics.jsonl`` from ``history``.

    Each file is replaced atomically and in this order, so a kill at any point
    leaves the last finished round loadable and its metrics consistent.
    """
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    atomic_torch_save({**payload, "round": round_, "history": history}, ckpt_dir / f"round-{round_:04d}.pt")
    atomic_write_bytes(ckpt_dir / "latest", str(round_).encode())
    lines = "".join(json.dumps(_json_safe(h)) + "\n" for h in history)
    atomic_write_bytes(run_dir / "metrics.jsonl", lines.encode())


def load_latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The last finished round's checkpoint, or None if the run stopped before its first one."""
    latest = run_dir / "checkpoints" / "latest"
    if not latest.exists():
        return None
    k = int(latest.read_text())
    ckpt: dict[str, Any] = torch.load(
        run_dir / "checkpoints" / f"round-{k:04d}.pt", map_location="cpu", weights_only=False
    )
    return ckpt


def _json_safe(row: dict[str, float]) -> dict[str, float | None]:
    """NaN and inf are not JSON: write them as null."""
    return {k: (v if np.isfinite(v) else None) for k, v in row.items()}


def new_run_folder(run_dir: str | Path, config: Any) -> Path:
    """Create a run folder holding ``config.toml``; refuses a folder that already holds a run."""
    d = Path(run_dir)
    if (d / "checkpoints").exists() and any((d / "checkpoints").iterdir()):
        raise FileExistsError(f"{d} already holds a run; use --resume {d} to continue it, or another --out")
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.toml").write_text(config_to_toml(config), encoding="utf-8")
    return d


def existing_run_folder(run_dir: str | Path) -> Path:
    """A run folder to resume (it must hold ``config.toml``)."""
    d = Path(run_dir)
    if not (d / "config.toml").exists():
        raise FileNotFoundError(f"{d} is not a run folder (no config.toml)")
    return d


def ask_pending(
    store: FeedbackStore, human: Human, queries: Sequence[Query], progress: bool, latency_s: float = 0.0
) -> int:
    """Ask ``human`` each of ``queries`` it has not answered yet, committing every answer; returns how many.

    A query answered before a stop is never asked again. A human that answers
    later (``answer`` returns None) leaves the query pending in the store.
    """
    pending_ids = {q.id for q in store.queries(pending_for=human.annotator_id)}
    pending = [q for q in queries if q.id in pending_ids]
    if not pending:
        return 0
    gens = store.generations([g for q in pending for g in q.generation_ids])
    stored = 0
    for q in tqdm(pending, desc="asking the human", leave=False, disable=not progress):
        if latency_s:
            time.sleep(latency_s)
        answer = human.answer(q, gens)
        if answer is not None:
            stored += store.record(answer)
    return stored


class NoSignalWarning(UserWarning):
    """The stored answers prefer nothing: the reward model has nothing to learn from them."""


def warn_if_no_signal(answers: AnswerSet, round_: int) -> None:
    """Warn (:class:`NoSignalWarning`) when every stored answer is a comparison that is a tie or skipped, some ties."""
    comparisons = [f for f in answers.feedback if isinstance(f, Comparison)]
    if not comparisons or len(comparisons) < len(answers.feedback):
        return
    ties = [f for f in comparisons if f.mu is not None]  # all skipped: the fit's own error says so
    if ties and all(f.mu == (0.5, 0.5) for f in ties):
        warnings.warn(
            f"round {round_}: every one of the {len(comparisons)} stored comparisons is a tie or skipped, so the "
            "reward model has nothing to learn from. A task whose reward is the same at every step (Acrobot-v1's -1) "
            "makes any two segments of one length tie; check the task's reward, feedback.teacher.equal_threshold "
            "and skip_threshold, or what people are asked (feedback.instructions)",
            NoSignalWarning,
            stacklevel=2,
        )


def kind_setup(config: RunConfig, return_scale: float) -> tuple[KindTools, TeacherConfig]:
    """What the configured feedback kinds need on the task, and the simulated human's config.

    Raises :class:`ConfigError` naming a kind the task cannot support.
    """
    fb = config.feedback
    try:
        # The built-in return ranges are for 50-step clips; a run's generations may be longer or shorter.
        return run_kind_setup(config.task, fb.kinds, fb.interpreter, fb.teacher, fb.human == "simulated", return_scale)
    except ValueError as e:
        raise ConfigError(f"feedback.{e}") from None


class Run:
    """A run folder and the loop over its rounds, for any domain.

    Create with :meth:`create` (a new folder) or :meth:`resume` (an existing one).
    ``domain`` replaces the one the config's task names (e.g. a domain of your own).
    """

    def __init__(self, run_dir: Path, config: RunConfig, progress: bool = True, domain: Domain | None = None) -> None:
        self.dir = run_dir
        self.config = config
        self.progress = progress
        fb = config.feedback
        seed_everything(config.seed)
        self.domain: Domain = domain if domain is not None else build_domain(config, run_dir, progress)
        self.store = open_run_store(run_dir, fb.store_url)
        # what people in the web app are asked, and on which scale: from this config, for `rlhfkit serve`
        instructions = fb.instructions or self.domain.instructions
        self.store.write_annotation_settings(AnnotationSettings.of_run(fb.teacher, instructions, config.task))
        self.tools, teacher = kind_setup(config, self.domain.return_scale)
        self.human: Human = (
            WebHuman(self.store, fb.web_min_answers, fb.web_poll_s, log=print if progress else None, run_dir=run_dir)
            if fb.human == "web"
            else SimulatedHuman(
                teacher,
                reward_fn=self.domain.teacher_reward,
                seed=config.seed + 7919,
                annotator_id=f"simulated-{config.seed}",
                features=self.tools.features,
                editor=self.tools.editor,
            )
        )
        self.round = 0
        self.history: list[dict[str, float]] = []

    # -- set-up ---------------------------------------------------------------------

    @classmethod
    def create(cls, config: RunConfig, run_dir: str | Path, progress: bool = True, domain: Domain | None = None) -> Run:
        """A new run folder for ``config``.

        An unusable env, a bad prompts file or a feedback kind the task cannot support fails before anything is
        written.
        """
        if domain is None and config.control is not None:
            probe_spec(get_task(config.task))
        if domain is None and config.text is not None:
            check_text_parts(config.text)
        kind_setup(config, 1.0)
        return cls(new_run_folder(run_dir, config), config, progress, domain)

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True, domain: Domain | None = None) -> Run:
        """The run in ``run_dir``, from its last checkpoint (a config of the older layout is read with a note)."""
        d = existing_run_folder(run_dir)
        notes: list[str] = []
        run = cls(d, load_config(d / "config.toml", notes=notes), progress, domain)
        for note in notes:
            print(note, file=sys.stderr, flush=True)
        run._load_latest_checkpoint()
        return run

    # -- checkpoints ------------------------------------------------------------------

    def _checkpoint(self) -> None:
        save_checkpoint(self.dir, self.round, self.domain.state_dict(), self.history)

    def _load_latest_checkpoint(self) -> None:
        ck = load_latest_checkpoint(self.dir)
        if ck is None:
            return  # killed before the first checkpoint: start over, reusing stored queries
        self.round = int(ck["round"])
        self.history = list(ck["history"])
        self.domain.load_state_dict(ck, self.round)
        seed_everything(self.config.seed + 1000 * self.round)

    # -- one round ----------------------------------------------------------------------

    def sample_queries(self, k: int) -> list[Query]:
        """Step 1a: this round's queries, reusing the stored ones after a restart."""
        stored = self.store.queries(round=k)
        if stored:
            return stored
        fb = self.config.feedback
        n = queries_in_round(fb.query_schedule, k, self.config.rounds, fb.initial_comparisons, fb.comparisons_per_round)
        if n == 0:
            return []
        rng = np.random.default_rng([self.config.seed, k])
        gens, queries = self.domain.sample(k, split_queries(n, fb.kinds), rng)
        self.store.add_generations(gens)
        self.store.add_queries(queries)
        return queries

    def ask(self, queries: Sequence[Query]) -> int:
        """Step 1b: ask the human each pending query; returns how many answers were stored."""
        return ask_pending(self.store, self.human, queries, self.progress, self.config.feedback.latency_s)

    def fit(self) -> RewardMetrics | None:
        """Step 2: fit the domain's reward model (warm start) on every stored answer of every kind; None where the
        domain's reward is fixed."""
        model = self.domain.reward_model()
        if model is None:
            return None
        rc = self.config.reward
        answers = read_answers(self.store)
        warn_if_no_signal(answers, self.round + 1)
        train, heldout = answers.split(rc.holdout_frac)
        config = dataclasses.replace(rc, seed=rc.seed + self.config.seed * 101 + self.round)
        try:
            return fit_reward(
                model,
                train,
                heldout,
                config,
                self.tools,
                true_return=self.domain.true_return,
                optimizer=self.domain.reward_optimizer,
            )
        except NoUsableFeedbackError as e:
            raise NoUsableFeedbackError(
                f"{self.dir}: {e}; check feedback.teacher.skip_threshold and the human's answers. "
                "Everything stored is kept."
            ) from None

    def ask_evaluation(self, k: int, now: bool) -> dict[str, float]:
        """After round ``k``'s evaluation: store the domain's comparisons of the policy against the base (once per
        round), ask them ``now`` (the simulated human; people answer in the app when they can), write the
        verdicts so far to ``win_rates.json``; returns ``people_win_rate_vs_base`` of round ``k`` where asked."""
        stored = [q for q in self.store.queries(round=k) if is_evaluation(q.id)]
        if not stored:
            gens, stored = self.domain.evaluation_queries(k, np.random.default_rng([self.config.seed, k, 1]))
            if not stored:
                return {}
            self.store.add_generations(gens)
            self.store.add_queries(stored)
        if now:
            self.ask(stored)
        rate = {r.round: r.win_rate for r in write_win_rates(self.dir, self.store)}.get(k, float("nan"))
        return {"people_win_rate_vs_base": rate}

    def human_minutes(self) -> float:
        """Human-minutes spent on every stored answer, by the configured effort costs."""
        return self.config.feedback.effort.total_minutes(self.store.feedback())

    def evaluate(self) -> dict[str, float]:
        """The policy's metrics now (the domain's evaluation)."""
        return self.domain.evaluate()[0]

    def _row(self, k: int, metrics: dict[str, float], rm: RewardMetrics | None) -> dict[str, float]:
        """A metrics.jsonl row; before the first fit (round 0) the reward model's accuracies are NaN (null)."""
        nan = float("nan")
        fit = {"rm_accuracy": nan, "rm_true_accuracy": nan, "rm_ece": nan}
        if rm is not None:
            fit = {
                "rm_accuracy": rm.heldout_accuracy,
                "rm_true_accuracy": rm.true_accuracy,
                "rm_ece": rm.ece,
                "rm_loss": rm.loss,
                "rm_train_pairs": rm.n_train,
                "n_incomparable": rm.n_incomparable,
            }
        row = {
            "round": k,
            "n_feedback": self.store.count_feedback(),
            "human_minutes": self.human_minutes(),
            **self.domain.counters(),
            **metrics,
            **fit,
            "beta": self.domain.beta,
        }
        return row

    def run_round(self) -> dict[str, float]:
        """One round: collect feedback, fit the reward, optimise the policy, evaluate, checkpoint."""
        k = self.round + 1
        t0 = time.time()
        web = self.human if isinstance(self.human, WebHuman) else None
        learns = self.domain.reward_model() is not None  # a fixed reward needs no answers
        # 1. collect feedback
        if web is not None:
            web.hold(k, "sampling queries")
        queries = self.sample_queries(k) if learns else []
        if web is None:
            self.ask(queries)
        elif learns:  # people answer in the app meanwhile; fit on what has arrived (at least web_min_answers)
            web.wait_for_answers(k)
        # 2. model the reward
        rm = self.fit()
        # 3. optimise the policy (an admin's pause takes effect between updates)
        self.domain.optimize(k, (lambda: web.hold(k)) if web is not None else (lambda: None))
        # 4. evaluate, checkpoint
        self.round = k
        metrics, samples = self.domain.evaluate()
        verdict = self.ask_evaluation(k, web is None)
        row = {**self._row(k, metrics, rm), **verdict, "seconds": time.time() - t0}
        self.history.append(row)
        write_samples(self.dir, k, samples)
        self._checkpoint()
        return row

    def run(self, on_round: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Run (or continue) until ``config.rounds`` rounds are done; returns the metrics history."""
        if not self.history:
            metrics, samples = self.domain.evaluate()
            self.history.append(self._row(0, metrics, None))
            write_samples(self.dir, 0, samples)
            self._checkpoint()
        bar = tqdm(total=self.config.rounds, initial=self.round, desc="rounds", disable=not self.progress)
        while self.round < self.config.rounds:
            row = self.run_round()
            bar.update(1)
            key = "true_return" if np.isfinite(row["true_return"]) else "objective_return"
            bar.set_postfix({key: f"{row[key]:.2f}", "kl": f"{row['kl_to_base']:.3f}"})
            if on_round is not None:
                on_round(row)
        bar.close()
        return self.history
