"""Group commit: one writer thread stores the answers of many requests per transaction.

A web request that carries an answer hands it to :meth:`AnswerWriter.submit`
and waits; the writer thread takes every answer queued so far, stores them all
with one :meth:`~rlhfkit.feedback.store.FeedbackStore.record_batch` (one
transaction, one disk sync) and only then wakes each waiting request with its
own result. No request is answered before its answer is committed: the gain is
only that fifty answers arriving together share one ``fsync`` instead of
queueing for fifty.

With SQLite there is one writer at a time anyway; a single writer thread turns
lock contention between request threads into a queue that drains in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from dataclasses import dataclass

from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.store.database import database_problem
from rlhfkit.feedback_records import Feedback

log = logging.getLogger("rlhfkit.app")


@dataclass
class _Pending:
    answer: Feedback
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[bool]


_STOP = object()


class AnswerWriter:
    """A thread that commits queued answers in batches of at most ``max_batch``."""

    def __init__(self, store: FeedbackStore, max_batch: int = 256) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.answers = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rlhfkit-answer-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Store what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def submit(self, answer: Feedback) -> bool:
        """Store one answer; True if stored, False if already stored. Raises StoreError if refused."""
        if self._thread is None:
            raise RuntimeError("the answer writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.put(_Pending(answer, loop, future))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit([p for p in batch if isinstance(p, _Pending)])

    def _commit(self, batch: list[_Pending]) -> None:
        results: list[bool | BaseException]
        try:
            results = list(self.store.record_batch([p.answer for p in batch]))
        except Exception as e:  # the database is down or full: every waiting request hears it
            n = len(batch)
            log.warning("could not store %d answer%s: %s", n, "" if n == 1 else "s", database_problem(e))
            results = [e] * len(batch)
        self.batches += 1
        self.answers += len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool | BaseException]]] = {}
        for p, r in zip(batch, results, strict=True):
            by_loop.setdefault(p.loop, []).append((p.future, r))
        for loop, done in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that event loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: list[tuple[asyncio.Future[bool], bool | BaseException]]) -> None:
    for future, result in done:
        if future.cancelled():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
