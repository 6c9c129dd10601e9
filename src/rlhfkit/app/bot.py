"""A simulated annotator that answers the app's pending queries through its HTTP API (tests and demos).

It stands in for a person at the other end of ``human = "web"``: the loop posts
queries to the store (:class:`rlhfkit.feedback.web.WebHuman`), the bot answers
them over HTTP like a browser would, and the loop reads the answers back from
the store.
"""

from __future__ import annotations

from rlhfkit.app.client import AnnotationClient
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.teacher import Human, TeacherConfig
from rlhfkit.feedback_records import Comparison, Correction, Label, Language, Ranking, Rating
from rlhfkit.types import Query, Text, completion_text


class WebBot:
    """A simulated annotator that answers pending queries through the app's HTTP API.

    It reads its queue with ``client``, judges each query with ``human`` (which
    needs the generations' contents: the bot reads them from ``store``, as a
    simulated teacher is allowed to), and sends the answers over HTTP. Used by
    the tests of the asynchronous loop and for demos.

    It answers every kind the app takes, on the app's rating scale and label
    choices (``GET /api/settings``: the run's, from its config): a simulated
    ``human`` whose scale or choices differ is refused before anything is sent,
    since its ratings and labels would mean something else. A correction of a
    control segment cannot be sent (the app's form edits text); such queries are
    left pending.
    """

    def __init__(self, client: AnnotationClient, human: Human, store: FeedbackStore) -> None:
        self.client = client
        self.human = human
        self.store = store

    def answer_pending(self, limit: int = 100, max_answers: int | None = None) -> int:
        """Answer up to ``max_answers`` of the oldest pending queries; returns how many were stored."""
        self._check_scale()
        queue = self.client.queue(limit=limit)
        stored = 0
        for q in queue.queries:
            if max_answers is not None and stored >= max_answers:
                break
            query = Query(q.id, tuple(i.generation_id for i in q.items), q.round, kind=q.kind)
            answer = self.human.answer(query, self.store.generations(query.generation_ids))
            if isinstance(answer, Comparison):
                mu_a = answer.mu[0] if answer.answer.value == "graded" and answer.mu is not None else None
                stored += self.client.answer(q.id, answer.answer.value, mu_a).stored
            elif isinstance(answer, Rating):
                stored += self.client.rate(q.id, answer.value).stored
            elif isinstance(answer, Label):
                stored += self.client.label(q.id, answer.label).stored
            elif isinstance(answer, Ranking):
                stored += self.client.rank(q.id, list(answer.ranked)).stored
            elif isinstance(answer, Language):
                stored += self.client.comment(q.id, answer.utterance).stored
            elif isinstance(answer, Correction) and isinstance(answer.corrected, Text):
                stored += self.client.correct(q.id, completion_text(answer.corrected)).stored
        return stored

    def _check_scale(self) -> None:
        """``ValueError`` if the simulated human rates or labels on another scale than the app's."""
        config = getattr(self.human, "config", None)
        if not isinstance(config, TeacherConfig):
            return
        app = self.client.settings()
        ours = (list(config.rating_scale), list(config.label_choices))
        theirs = (app["rating_scale"], app["label_choices"])
        if ours != theirs:
            raise ValueError(
                f"the simulated human rates on {ours[0]} with labels {ours[1]}, the app on {theirs[0]} with labels "
                f"{theirs[1]} (the run's feedback.teacher.rating_scale and label_choices); give it the app's"
            )
