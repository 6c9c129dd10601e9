"""Token checks: a bounded memory of answers that a flood of made-up tokens cannot wipe."""

from __future__ import annotations

import secrets

from rlhfkit.app.auth import Principal, TokenVerifier, new_token
from rlhfkit.feedback.store import StoredToken


class CountingStore:
    """The one store method the verifier calls, counting the lookups (a real token for ``real``)."""

    def __init__(self) -> None:
        self.lookups: list[str] = []
        self.tokens: dict[str, StoredToken] = {}

    def add(self, name: str) -> str:
        token, selector, digest = new_token()
        self.tokens[selector] = StoredToken(selector, digest, name, "annotator", 0.0, None)
        return token

    def token(self, selector: str) -> StoredToken | None:
        self.lookups.append(selector)
        return self.tokens.get(selector)


def _made_up() -> str:
    return f"{secrets.token_hex(12)}.{secrets.token_urlsafe(32)}"


def test_a_flood_of_unknown_tokens_neither_grows_the_memory_nor_evicts_real_tokens() -> None:
    store = CountingStore()
    alice = store.add("alice")
    verifier = TokenVerifier(store, ttl_s=3600.0, max_known=100, max_unknown=64)  # type: ignore[arg-type]  # a stub
    assert verifier.verify(alice) == Principal("alice", "annotator")
    for _ in range(20_000):
        assert verifier.verify(_made_up()) is None
    assert len(store.lookups) == 20_001  # each made-up token was looked up once
    assert verifier.remembered() == (1, 64)  # bounded: the oldest unknown selectors were forgotten
    assert verifier.verify(alice) == Principal("alice", "annotator")
    assert len(store.lookups) == 20_001  # alice's answer is still remembered: no new lookup


def test_an_unknown_token_is_remembered_as_unknown_and_real_tokens_are_bounded_too() -> None:
    store = CountingStore()
    bogus = _made_up()
    verifier = TokenVerifier(store, ttl_s=3600.0, max_known=3, max_unknown=8)  # type: ignore[arg-type]  # a stub
    assert verifier.verify(bogus) is None and verifier.verify(bogus) is None
    assert store.lookups.count(bogus.split(".")[0]) == 1
    tokens = [store.add(f"p{i}") for i in range(5)]
    for token in tokens:
        assert verifier.verify(token) is not None
    assert verifier.remembered() == (3, 1)
    wrong = tokens[-1][:-1] + ("A" if tokens[-1][-1] != "A" else "B")
    assert verifier.verify(wrong) is None  # a known selector with a wrong secret
