"""uvicorn's h11 protocol, closing connections that never send a request.

uvicorn starts its keep-alive timer only after a response, so a connection that
is opened and left idle (a stalled client, hundreds of idle sockets) was held
forever, until the process ran out of file descriptors and /health stopped
answering. Here the same ``timeout_keep_alive`` also runs from the connection's
start, until its first bytes arrive.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

PROTOCOL = "deepfake_cli.serve.protocol:IdleClosingH11Protocol"


class IdleClosingH11Protocol(H11Protocol):
    """Also, at ``limit_concurrency`` connections, a new one closes the longest-idle ones (no
    request, or between requests) instead of every request getting 503 while idle sockets
    hold the places: with the limit under the file-descriptor limit, accept() never fails."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        if self.limit_concurrency and len(self.connections) >= self.limit_concurrency:
            idle = sorted(
                (c for c in self.connections if c is not self and _idle(c)), key=lambda c: getattr(c, "idle_since", 0.0)
            )
            for other in idle[: len(self.connections) - self.limit_concurrency + 1]:
                other.timeout_keep_alive_handler()

    def on_response_complete(self) -> None:
        self.idle_since = self.loop.time()
        super().on_response_complete()


def _idle(connection) -> bool:
    cycle = getattr(connection, "cycle", None)
    transport = getattr(connection, "transport", None)
    return (cycle is None or cycle.response_complete) and transport is not None and not transport.is_closing()


class AcceptErrorFilter:
    """Lets asyncio's "socket.accept() out of system resource" through once a minute: out of
    file descriptors, it is logged (with a traceback) at every retry, about 50 MB in 15 s."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.last = float("-inf")

    def filter(self, record) -> bool:
        import time

        if not str(record.msg).startswith("socket.accept() out of system resource"):
            return True
        now = time.monotonic()
        if now - self.last < self.every:
            return False
        self.last = now
        record.exc_info = None
        record.exc_text = None
        return True


# Characters of a query string kept in an access-log line.
ACCESS_LOG_QUERY_CHARS = 100


class AccessLogQueryFilter:
    """Cuts long query strings in uvicorn's access lines (``"GET /x?... HTTP/1.1" 200``): a
    client sending a huge URL would otherwise write it whole into the log on every request."""

    def filter(self, record) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            path, query = args[2].split("?", 1)
            if len(query) > ACCESS_LOG_QUERY_CHARS:
                cut = f"{path}?{query[:ACCESS_LOG_QUERY_CHARS]}...[{len(query) - ACCESS_LOG_QUERY_CHARS} more]"
                record.args = (*args[:2], cut, *args[3:])
        return True
