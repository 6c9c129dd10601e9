"""Real database failures for the web-app tests: a PostgreSQL server that goes away, a full or read-only SQLite.

- :class:`CuttableProxy` forwards TCP to the PostgreSQL server; ``cut()`` closes
  every connection and stops listening (clients get "connection refused", as
  when the server is down), ``restore()`` listens again on the same port.
- :func:`sqlite_limits` puts a pragma on every new connection of a store's engine
  (``max_page_count``: the disk fills up; ``query_only``: the file is read-only to
  us) and drops the pooled connections so that the next request opens new ones.

The driver raises its own errors either way; nothing in the app is mocked.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from rlhfkit.feedback.store import FeedbackStore


class CuttableProxy:
    """A TCP forwarder from ``127.0.0.1:port`` to ``target`` that a test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.restore()

    def restore(self) -> None:
        """Listen (again, on the same port)."""
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and close every forwarded connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            live, self._sockets = self._sockets, []
        for s in ([listener] if listener is not None else []) + live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


_PRAGMAS: dict[int, Callable[..., Any]] = {}


def sqlite_limits(store: FeedbackStore, pragma: str | None) -> None:
    """Run ``PRAGMA <pragma>`` on every connection the store opens from now on (None: stop), and reconnect."""
    engine = store.engine
    old = _PRAGMAS.pop(id(engine), None)
    if old is not None:
        sa.event.remove(engine, "connect", old)
    if pragma is not None:

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA {pragma}")

        sa.event.listen(engine, "connect", on_connect)
        _PRAGMAS[id(engine)] = on_connect
    engine.dispose()


def page_count(store: FeedbackStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
