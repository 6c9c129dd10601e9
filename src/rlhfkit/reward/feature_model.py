"""Text reward models on fixed features of the completion: bag of words, sentence embeddings.

:class:`TextFeatureRewardModel` is K MLPs on a fixed feature vector of each
completion: a cheap stand-in for the transformer reward model
(``reward/transformer.py``) that keeps the kind experiments and their tests fast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rlhfkit.reward.nets import mlp
from rlhfkit.types import Content, completion_text


class TextFeaturizer(Protocol):
    """Maps texts to fixed feature vectors ``(N, dim)``."""

    dim: int

    def __call__(self, items: Sequence[Content]) -> torch.Tensor: ...


_WORDS = re.compile(r"[a-z']+|[.,!?]")


class BagOfWords:
    """Counts of each vocabulary word in the completion, plus its length and whether it ends with ".".

    A cheap text representation: it sees which words are used, how often, and
    how long the answer is, but not their order.
    """

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.vocabulary = tuple(dict.fromkeys(w.lower() for w in vocabulary))
        self._pos = {w: i for i, w in enumerate(self.vocabulary)}
        self.dim = len(self.vocabulary) + 2

    @classmethod
    def fit(cls, items: Sequence[Content], max_words: int = 2000) -> BagOfWords:
        """The ``max_words`` most frequent words of the items' completions."""
        counts: dict[str, int] = {}
        for x in items:
            for w in _WORDS.findall(completion_text(x).lower()):
                counts[w] = counts.get(w, 0) + 1
        return cls(sorted(counts, key=lambda w: (-counts[w], w))[:max_words])

    def __call__(self, items: Sequence[Content]) -> torch.Tensor:
        out = torch.zeros((len(items), self.dim))
        for i, x in enumerate(items):
            words = _WORDS.findall(completion_text(x).lower())
            for w in words:
                j = self._pos.get(w)
                if j is not None:
                    out[i, j] += 1
            out[i, -2] = len(words)
            out[i, -1] = float(bool(words) and words[-1] == ".")
        return out


class SentenceEmbeddings:
    """Frozen all-MiniLM-L6-v2 embeddings of the completion (384 dimensions, offline)."""

    dim = 384

    def __init__(self, model: Any = None) -> None:
        from rlhfkit.feedback.language import load_sentence_model

        self.model = model if model is not None else load_sentence_model()

    def __call__(self, items: Sequence[Content]) -> torch.Tensor:
        texts = [completion_text(x) for x in items]
        return torch.as_tensor(np.asarray(self.model.encode(texts)), dtype=torch.float32)


class TextFeatureRewardModel(nn.Module):
    """K MLPs on a fixed feature vector of each completion (standardised with stats from the data)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, featurizer: TextFeaturizer, size: int = 1, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.members = nn.ModuleList(mlp(featurizer.dim, hidden, 1) for _ in range(size))
        self.register_buffer("mean", torch.zeros(featurizer.dim))
        self.register_buffer("std", torch.ones(featurizer.dim))

    @property
    def size(self) -> int:
        return len(self.members)

    def encode(self, items: Sequence[Content]) -> torch.Tensor:
        """``(N, dim)`` features of the items."""
        return self.featurizer(items)

    def set_stats(self, encoded: torch.Tensor) -> None:
        self.mean.copy_(encoded.mean(0))
        self.std.copy_(encoded.std(0).clamp_min(1e-3) if encoded.shape[0] > 1 else torch.ones_like(self.std))

    def returns(self, encoded: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(K, n)`` rewards of the rows ``idx`` (all when None)."""
        x = encoded if idx is None else encoded[idx]
        x = (x - self.mean) / self.std
        return torch.stack([m(x).squeeze(-1) for m in self.members])
