"""Answers of every kind as index tensors into one table of generations: what the fit trains on.

:func:`build_fit_data` turns an :class:`~rlhfkit.feedback.answers.AnswerSet` into a
:class:`FitData`: each generation an answer is about gets one row in ``items``
(scored once per step however many answers touch it), and each kind's usable
answers become tensors of row indices with their labels. Answers stored but not
trained on (incomparable comparisons, "none of these" labels, utterances the
interpreter did not understand) are counted in ``skipped``. Corrections add their
``x'`` and ``M`` alternatives (other edits of ``x``, drawn once) to the table.

Each kind is one or more *kind keys* (``"comparison"``, ``"label:0"``, ...; labels
on different choice sets are different keys, each with its own thresholds): the
unit that minibatches, bootstrap counts and the loss terms work on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlhfkit.feedback.answers import AnswerSet
from rlhfkit.feedback.mix import KindTools
from rlhfkit.feedback_records import Comparison, Correction, Label, Language, Ranking, Rating
from rlhfkit.types import Content


@dataclass
class LabelGroup:
    """Labels that share one choice set (and so one set of thresholds or category parameters)."""

    choices: tuple[str, ...]
    ordinal: bool
    item: torch.Tensor
    label: torch.Tensor


@dataclass
class FitData:
    """Every usable answer as indices into one table of generations ``items``."""

    items: list[Content]
    comparison: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(a, b, mu (N, 2))."""
    ranking: tuple[torch.Tensor, torch.Tensor] | None = None
    """(items (N, K) best first, mask (N, K))."""
    rating: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(item, rating in [-1, 1], annotator index)."""
    annotators: list[str] = field(default_factory=list)
    labels: list[LabelGroup] = field(default_factory=list)
    correction: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(corrected, original, alternatives (N, M))."""
    language: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(a, b, mu (N, 2)) as interpreted."""
    counts: dict[str, int] = field(default_factory=dict)
    """Usable answers per kind."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Answers stored but not trained on: incomparable, "none of these", utterances not understood."""

    @property
    def n_answers(self) -> int:
        return sum(self.counts.values())

    def sizes(self) -> dict[str, int]:
        """Answers per kind key (labels: one key per choice set, ``"label:i"``)."""
        sizes: dict[str, int] = {}
        for name in ("comparison", "ranking", "rating", "correction", "language"):
            t = getattr(self, name)
            if t is not None:
                sizes[name] = len(t[0])
        for i, g in enumerate(self.labels):
            sizes[f"label:{i}"] = len(g.item)
        return sizes

    def touched(self, key: str, answers: torch.Tensor) -> torch.Tensor:
        """The item rows that the answers ``answers`` of kind key ``key`` are about (with repeats)."""
        if key.startswith("label:"):
            return self.labels[int(key.split(":")[1])].item[answers]
        if key == "rating":
            assert self.rating is not None
            return self.rating[0][answers]
        if key == "ranking":
            assert self.ranking is not None
            idx, mask = self.ranking
            return idx[answers][mask[answers]]
        t = getattr(self, key)
        parts = [t[0][answers], t[1][answers]]
        if key == "correction":
            parts.append(t[2][answers].flatten())
        return torch.cat(parts)

    def touched_by_answer(self, key: str) -> list[tuple[int, ...]]:
        """For each answer of kind key ``key``, the item rows it is about, first shown first."""
        if key.startswith("label:"):
            return [(i,) for i in self.labels[int(key.split(":")[1])].item.tolist()]
        if key == "rating":
            assert self.rating is not None
            return [(i,) for i in self.rating[0].tolist()]
        if key == "ranking":
            assert self.ranking is not None
            idx, mask = self.ranking
            return [
                tuple(i for i, m in zip(row, keep, strict=True) if m)
                for row, keep in zip(idx.tolist(), mask.tolist(), strict=True)
            ]
        t = getattr(self, key)
        if key == "correction":
            return [(c, o, *alts) for c, o, alts in zip(t[0].tolist(), t[1].tolist(), t[2].tolist(), strict=True)]
        return list(zip(t[0].tolist(), t[1].tolist(), strict=True))


def build_fit_data(
    answers: AnswerSet, tools: KindTools | None = None, n_alternatives: int = 6, seed: int = 0
) -> FitData:
    """Turn answers of any kinds into index tensors (see :class:`FitData`).

    ``tools.editor`` is needed for corrections (their alternatives, drawn with
    ``seed``), ``tools.interpreter`` and ``tools.features`` for language.
    """
    rng = np.random.default_rng(seed)
    tools = tools or KindTools()
    queries, generations = answers.queries, answers.generations
    items: list[Content] = []
    index: dict[str, int] = {}

    def item(gid: str) -> int:
        if gid not in index:
            index[gid] = len(items)
            items.append(generations[gid].content)
        return index[gid]

    def add(content: Content) -> int:
        items.append(content)
        return len(items) - 1

    by_kind: dict[str, list[Any]] = {}
    for f in answers.feedback:
        by_kind.setdefault(f.kind, []).append(f)
    data = FitData(items=items)
    skipped: dict[str, int] = {}

    comps = [c for c in by_kind.get(Comparison.kind, []) if c.usable]
    skipped["comparison"] = len(by_kind.get(Comparison.kind, [])) - len(comps)
    if comps:
        ids = [queries[c.query_id].generation_ids for c in comps]
        data.comparison = (
            torch.tensor([item(a) for a, _ in ids]),
            torch.tensor([item(b) for _, b in ids]),
            torch.tensor([c.mu for c in comps], dtype=torch.float32),
        )
    ranks: list[Ranking] = by_kind.get(Ranking.kind, [])
    if ranks:
        k = max(len(r.ranked) for r in ranks)
        idx = torch.zeros((len(ranks), k), dtype=torch.long)
        mask = torch.zeros((len(ranks), k), dtype=torch.bool)
        for i, r in enumerate(ranks):
            idx[i, : len(r.ranked)] = torch.tensor([item(g) for g in r.ranked])
            mask[i, : len(r.ranked)] = True
        data.ranking = (idx, mask)
    ratings: list[Rating] = by_kind.get(Rating.kind, [])
    if ratings:
        data.annotators = sorted({r.annotator_id for r in ratings})
        who = {a: j for j, a in enumerate(data.annotators)}
        data.rating = (
            torch.tensor([item(queries[r.query_id].generation_ids[0]) for r in ratings]),
            torch.tensor([2 * (r.value - r.scale[0]) / (r.scale[1] - r.scale[0]) - 1 for r in ratings]),
            torch.tensor([who[r.annotator_id] for r in ratings]),
        )
    labels: list[Label] = [x for x in by_kind.get(Label.kind, []) if x.usable]
    skipped["label"] = len(by_kind.get(Label.kind, [])) - len(labels)
    groups: dict[tuple[tuple[str, ...], bool], list[Label]] = {}
    for lab in labels:
        groups.setdefault((lab.choices, lab.ordinal), []).append(lab)
    for (choices, ordinal), group in groups.items():
        data.labels.append(
            LabelGroup(
                choices,
                ordinal,
                torch.tensor([item(queries[x.query_id].generation_ids[0]) for x in group]),
                torch.tensor([x.index for x in group]),
            )
        )
    corrections: list[Correction] = by_kind.get(Correction.kind, [])
    if corrections:
        if tools.editor is None:
            raise ValueError("corrections need an editor (tasks.features.editor(task)) to draw nearby alternatives")
        corr, orig, alts = [], [], []
        for c in corrections:
            x = queries[c.query_id].generation_ids[0]
            orig.append(item(x))
            corr.append(add(c.corrected))
            alts.append([add(a) for a in tools.editor.propose(generations[x].content, rng, n_alternatives)])
        data.correction = (
            torch.tensor(corr),
            torch.tensor(orig),
            torch.tensor(alts, dtype=torch.long).reshape(len(corr), n_alternatives),
        )
    said: list[Language] = by_kind.get(Language.kind, [])
    if said:
        data.language, skipped["language"] = _interpret(said, queries, generations, tools, item)
    data.counts = {
        "comparison": len(comps),
        "ranking": len(ranks),
        "rating": len(ratings),
        "label": len(labels),
        "correction": len(corrections),
        "language": 0 if data.language is None else len(data.language[0]),
    }
    data.counts = {k: v for k, v in data.counts.items() if v}
    data.skipped = {k: v for k, v in skipped.items() if v}
    return data


def _interpret(
    said: list[Language], queries: Mapping[str, Any], generations: Mapping[str, Any], tools: KindTools, item: Any
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, int]:
    """Language answers as comparisons: the side with more (or less) of the named feature, at the stated confidence."""
    interpreter, features = tools.interpreter, tools.features
    if interpreter is None or features is None:
        raise ValueError("language feedback needs an interpreter and the task's features")
    many = getattr(interpreter, "interpret_many", None)
    meanings = many([s.utterance for s in said]) if many else [interpreter.interpret(s.utterance) for s in said]
    la, lb, lmu = [], [], []
    for s, m in zip(said, meanings, strict=True):
        if m is None:
            continue
        a, b = queries[s.query_id].generation_ids
        fn = features[m.feature].fn
        side = m.direction * (fn(generations[a].content) - fn(generations[b].content))
        if side == 0:
            continue  # the named feature does not tell these two apart
        p = max(m.confidence, 0.5)
        la.append(item(a))
        lb.append(item(b))
        lmu.append((p, 1 - p) if side > 0 else (1 - p, p))
    if not la:
        return None, len(said)
    return (torch.tensor(la), torch.tensor(lb), torch.tensor(lmu, dtype=torch.float32)), len(said) - len(la)


def unusable(answers: AnswerSet) -> dict[str, int]:
    """Stored answers that no fit can use, per kind: incomparable comparisons and "none of these" labels."""
    out: dict[str, int] = {}
    for f in answers.feedback:
        if not getattr(f, "usable", True):
            out[f.kind] = out.get(f.kind, 0) + 1
    return out
