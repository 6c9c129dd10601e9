"""Load benchmark of the annotation app: many annotators answering at once.

Starts ``rlhfkit serve`` (the real command, its default settings, access log
on) as a separate process on 127.0.0.1 over a fresh store holding
``answers / annotators`` pending comparison queries, then runs ``annotators``
concurrent annotators, each on its own keep-alive HTTP connection: it fetches
its queue once, then answers every query in it back to back (no think time,
the worst case), then sends ``retries`` of its answers a second time, as a
double click or a client retry would. Latency is measured per answer POST,
from sending the request to reading the whole reply.

Afterwards the store is read back: every answer must be stored exactly once
with the ``mu`` that was sent, and every retry must have been answered
``duplicate``. The run is bounded (``--timeout``) and the server is stopped
in any case.

Prints one JSON line: ``answers_per_s`` (stored answers / wall time of the
answering phase, retries not counted), ``p50_ms``, ``p99_ms`` (over every
answer POST, retries included), ``stored``, ``expected``, and a few details.

    .venv/bin/python bench/annotation_load.py                     # SQLite in a temporary run folder
    .venv/bin/python bench/annotation_load.py --db postgresql://user:pw@127.0.0.1:5432/db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from rlhfkit.app.auth import add_annotator
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.types import Generation, Query, Text

ANSWERS = ["A", "B", "equal", "graded", "incomparable"]


def prepare(store: FeedbackStore, n_queries: int, n_annotators: int) -> list[str]:
    gens, queries = [], []
    for i in range(n_queries):
        a = Generation(f"g{i}a", 1, "round-0", Text(f"prompt {i}", f"completion {i} a"))
        b = Generation(f"g{i}b", 1, "round-0", Text(f"prompt {i}", f"completion {i} b"))
        gens += [a, b]
        queries.append(Query(f"q{i:05d}", (a.id, b.id), 1, created_at=1000.0 + i))
    store.add_generations(gens)
    store.add_queries(queries)
    return [add_annotator(store, f"annotator{j:03d}") for j in range(n_annotators)]


def planned_answer(annotator: int, query: int) -> dict[str, object]:
    kind = ANSWERS[(annotator + query) % len(ANSWERS)]
    body: dict[str, object] = {"kind": "comparison", "query_id": f"q{query:05d}", "answer": kind}
    if kind == "graded":
        body["mu_a"] = round(0.05 + 0.9 * ((annotator * 31 + query * 17) % 19) / 18, 4)
    return body


class Connection:
    """A minimal HTTP/1.1 keep-alive client (the load generator must cost little CPU)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n"

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def annotator(
    j: int, host: str, port: int, token: str, retries: int, latencies: list[float], outcome: dict[str, int]
) -> None:
    conn = Connection(host, port, token)
    await conn.open()
    try:
        status, body = await conn.request("GET", "/api/queue?limit=100")
        if status != 200:
            raise RuntimeError(f"queue: HTTP {status} {body[:200]!r}")
        ids = [int(q["id"][1:]) for q in json.loads(body)["queries"]]
        plan = [planned_answer(j, i) for i in ids] + [planned_answer(j, i) for i in ids[:retries]]
        for n, answer in enumerate(plan):
            payload = json.dumps(answer).encode()
            t0 = time.perf_counter()
            status, body = await conn.request("POST", "/api/answers", payload)
            latencies.append(time.perf_counter() - t0)
            retry = n >= len(ids)
            expected = 200 if retry else 201
            if status != expected:
                outcome["unexpected"] += 1
                print(f"annotator {j}: HTTP {status} for {answer}: {body[:200]!r}", file=sys.stderr)
            elif retry and not json.loads(body)["duplicate"]:
                outcome["unexpected"] += 1
            outcome["retries" if retry else "answers"] += 1
    finally:
        conn.close()


def start_server(run_dir: Path, db: str | None, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    cmd = [sys.executable, "-m", "rlhfkit", "serve", str(run_dir), "--port", "0", "--no-prerender"]
    if db:
        cmd += ["--db", db]
    log = open(log_path, "wb")  # noqa: SIM115  # closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r"Uvicorn running on http://[\d.]+:(\d+)", log_path.read_text(errors="replace"))
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not start within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def check_store(store: FeedbackStore, n_annotators: int, n_queries: int) -> tuple[int, int]:
    """(stored answers, answers whose stored mu differs from the one sent)."""
    stored = store.comparisons()
    wrong = 0
    for c in stored:
        j, i = int(c.annotator_id.removeprefix("annotator")), int(c.query_id[1:])
        sent = planned_answer(j, i)
        mu_a = {"A": 1.0, "B": 0.0, "equal": 0.5, "incomparable": None}.get(str(sent["answer"]), sent.get("mu_a"))
        if c.answer.value != sent["answer"] or (None if c.mu is None else round(c.mu[0], 6)) != mu_a:
            wrong += 1
    with store.engine.connect() as conn:
        t = sa.table("feedback", sa.column("query_id"), sa.column("annotator_id"))
        distinct = conn.execute(
            sa.select(sa.func.count()).select_from(sa.select(t.c.query_id, t.c.annotator_id).distinct().subquery())
        ).scalar_one()
    if distinct != len(stored):
        wrong += len(stored) - int(distinct)
    return len(stored), wrong


async def load(host: str, port: int, tokens: list[str], retries: int) -> tuple[list[float], dict[str, int], float]:
    latencies: list[float] = []
    outcome = {"answers": 0, "retries": 0, "unexpected": 0}
    t0 = time.perf_counter()
    await asyncio.gather(*(annotator(j, host, port, tok, retries, latencies, outcome) for j, tok in enumerate(tokens)))
    return latencies, outcome, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answers", type=int, default=2000, help="answers in total (each stored once)")
    p.add_argument("--annotators", type=int, default=50, help="concurrent annotators")
    p.add_argument("--retries", type=int, default=2, help="answers each annotator sends a second time")
    p.add_argument("--db", help="store URL (default: SQLite in a temporary run folder)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before the run is abandoned")
    args = p.parse_args()
    if args.answers % args.annotators:
        p.error("--answers must be a multiple of --annotators (each annotator answers every query once)")
    n_queries = args.answers // args.annotators
    with tempfile.TemporaryDirectory(prefix="rlhfkit-load-") as tmp:
        run_dir = Path(tmp)
        url = args.db or f"sqlite:///{run_dir / 'feedback.sqlite'}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        store = FeedbackStore(url)
        if args.db:  # start from an empty database
            store.close()
            from rlhfkit.feedback.store import metadata

            metadata.drop_all(sa.create_engine(url))
            store = FeedbackStore(url)
        tokens = prepare(store, n_queries, args.annotators)
        proc, port = start_server(run_dir, args.db and url, run_dir / "server.log")
        try:
            latencies, outcome, wall = asyncio.run(
                asyncio.wait_for(load("127.0.0.1", port, tokens, args.retries), args.timeout)
            )
        finally:
            stop_server(proc)
        stored, wrong = check_store(store, args.annotators, n_queries)
        log = (run_dir / "server.log").read_text(errors="replace")
        store.close()
    ms = np.array(latencies) * 1000.0
    result = {
        "answers_per_s": round(outcome["answers"] / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "stored": stored,
        "expected": args.answers,
        "retries_sent": outcome["retries"],
        "unexpected_replies": outcome["unexpected"],
        "wrong_or_repeated_rows": wrong,
        "annotators": args.annotators,
        "db": url.split("://", 1)[0],
        "access_log_lines": log.count("POST /api/answers"),
    }
    print(json.dumps(result))
    ok = stored == args.answers and wrong == 0 and outcome["unexpected"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
