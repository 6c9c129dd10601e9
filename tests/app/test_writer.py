"""Group commit: answers that arrive while a commit is on disk are stored together in the next one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from apphelpers import Env

from rlhfkit.app.writer import AnswerWriter
from rlhfkit.feedback.store import FeedbackStore, StoreError
from rlhfkit.feedback_records import Comparison, Feedback


class SlowFirstCommit:
    """The real store, with its first ``record_batch`` held until the test releases it (a slow disk)."""

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store
        self.started = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []

    def record_batch(self, feedback: Sequence[Feedback]) -> list[bool | StoreError]:
        self.sizes.append(len(feedback))
        if len(self.sizes) == 1:
            self.started.set()
            assert self.release.wait(30)
        return self.store.record_batch(feedback)


def test_answers_that_arrive_during_a_commit_share_the_next_one(env: Env) -> None:
    store = SlowFirstCommit(env.store)
    writer = AnswerWriter(store)  # type: ignore[arg-type]  # the store's one method the writer calls
    people = ["alice", "bob", "carol", "dan", "erin", "fay", "gus"]

    async def main() -> list[bool]:
        first = asyncio.ensure_future(writer.submit(Comparison.make("q0", "A", "zed")))
        await asyncio.get_running_loop().run_in_executor(None, store.started.wait, 30)
        rest = [
            asyncio.ensure_future(writer.submit(Comparison.make(f"q{i % 4}", "B", p))) for i, p in enumerate(people)
        ]
        await asyncio.sleep(0.2)  # every one of them is queued behind the commit on disk
        store.release.set()
        return await asyncio.gather(first, *rest)

    writer.start()
    try:
        results = asyncio.run(main())
    finally:
        writer.stop()
    assert results == [True] * 8
    assert store.sizes == [1, 7] and writer.batches == 2 and writer.answers == 8
    assert len(env.store.comparisons()) == 8
