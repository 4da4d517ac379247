"""Listening sockets kept open across a restart's re-exec, and the stand-in that answers on them
while no server does.

Without this a restart closes the port: from the moment uvicorn stops listening until the new
process serves (a fresh interpreter, plugins, node packs, storage: seconds) every connection is
refused, a second ``POST /api/server/restart`` included, which is documented to answer 409.
With it:

1. before uvicorn is told to stop, :func:`begin` duplicates its listening sockets and starts a
   :class:`StandIn` on them: a thread that accepts and answers each request at once, **409** for
   ``POST /api/server/restart`` (a restart is in progress) and **503** with ``Retry-After: 1``
   for anything else; uvicorn accepts no more and finishes the connections it has;
2. :func:`export_for_exec` makes the duplicates survive ``os.execv`` (inheritable, their numbers
   in ``CT_LISTEN_FDS``);
3. the new process :func:`adopt`\\ s them when they still match its configured address, runs a
   stand-in again while it starts, and gives them to uvicorn, which serves on the very same
   sockets. Connections arriving between two stand-ins wait in the socket's backlog.

Hand-written because no ASGI server can answer while the application is shut down or not yet
started; the HTTP/1.1 parsing is h11's (uvicorn's own parser). Blocking sockets in a daemon
thread: the event loop is gone or not yet there for most of this time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LISTEN_FDS_ENV", "StandIn", "adopt", "begin", "export_for_exec", "listening_sockets"]

log = logging.getLogger("comfytavern.restart")

#: The listening sockets' descriptor numbers, comma-separated, for the re-executed process.
LISTEN_FDS_ENV = "CT_LISTEN_FDS"
#: The restart route, the one request the stand-in answers differently.
RESTART_PATH = b"/api/server/restart"
#: Longest wait for a client's request head (a silent client must not hold the stand-in).
READ_TIMEOUT = 2.0
#: How often the stand-in looks at its stop condition.
POLL_SECONDS = 0.05

_RESTARTING = b'{"error":"the server is restarting; retry in a moment"}'
_IN_PROGRESS = b'{"error":"a restart is already in progress"}'


def listening_sockets(server: Any) -> list[socket.socket]:
    """Duplicates of the sockets a running ``uvicorn.Server`` listens on (empty if none)."""
    out: list[socket.socket] = []
    for srv in getattr(server, "servers", None) or []:
        for sock in srv.sockets or ():
            out.append(socket.socket(fileno=os.dup(sock.fileno())))
    return out


class StandIn:
    """Answers every request on ``sockets`` at once (409 restart, 503 otherwise) until stopped
    or until ``until()`` is true; works on duplicates of the sockets, so closing them is its own
    business."""

    def __init__(self, sockets: Sequence[socket.socket], *, until: Callable[[], bool] | None = None) -> None:
        self._sockets = [socket.socket(fileno=os.dup(s.fileno())) for s in sockets]
        for sock in self._sockets:
            sock.setblocking(False)
        self._until = until
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="restart-stand-in", daemon=True)
        #: Requests answered (for tests and the log).
        self.answered = 0

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _serve(self) -> None:
        try:
            while not self._stop.is_set() and not (self._until is not None and self._until()):
                try:
                    ready, _, _ = select.select(self._sockets, [], [], POLL_SECONDS)
                except (OSError, ValueError):
                    return
                for sock in ready:
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue  # the real server took it first
                    except OSError:
                        return
                    with conn:
                        self._answer(conn)
        finally:
            for sock in self._sockets:
                sock.close()
            if self.answered:
                log.info("restart: answered %d request(s) while no server was serving", self.answered)

    def _answer(self, conn: socket.socket) -> None:
        import h11  # only while restarting: not part of every start-up

        conn.settimeout(READ_TIMEOUT)
        http = h11.Connection(h11.SERVER)
        try:
            event = http.next_event()
            while event is h11.NEED_DATA:
                http.receive_data(conn.recv(65536))
                event = http.next_event()
            if not isinstance(event, h11.Request):
                return
            path = event.target.split(b"?", 1)[0]
            restart = event.method == b"POST" and path == RESTART_PATH
            body = _IN_PROGRESS if restart else _RESTARTING
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            if not restart:
                headers.append((b"retry-after", b"1"))
            conn.sendall(
                http.send(h11.Response(status_code=409 if restart else 503, headers=headers))
                + http.send(h11.Data(data=body))
                + http.send(h11.EndOfMessage())
            )
            self.answered += 1
        except (OSError, h11.ProtocolError):
            return


def begin(server: Any) -> tuple[list[socket.socket], StandIn | None]:
    """At the start of a restart: keep the server's listening sockets, answer on them, and stop
    the server accepting (it still finishes the connections it has). Call from the event loop."""
    sockets = listening_sockets(server)
    if not sockets:
        return [], None
    stand_in = StandIn(sockets).start()
    # From now on only the stand-in accepts: a connection uvicorn accepted but had not read yet
    # when it shuts down would be closed unanswered (a reset), so it must accept no more.
    for srv in getattr(server, "servers", None) or []:
        srv.close()
    return sockets, stand_in


def export_for_exec(sockets: Sequence[socket.socket]) -> None:
    """Let ``sockets`` survive ``os.execv`` and tell the new process where they are."""
    for sock in sockets:
        sock.set_inheritable(True)
    os.environ[LISTEN_FDS_ENV] = ",".join(str(sock.fileno()) for sock in sockets)


def adopt(host: str, port: int, environ: dict[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets a restarted process inherited, if they still listen on
    ``host:port`` (the configuration may have changed); otherwise they are closed and the
    server binds anew. The variable is consumed, so child processes never see it."""
    env = os.environ if environ is None else environ
    raw = env.pop(LISTEN_FDS_ENV, "")
    sockets: list[socket.socket] = []
    for part in filter(None, raw.split(",")):
        try:
            sock = socket.socket(fileno=int(part))
        except (ValueError, OSError):
            continue
        sock.set_inheritable(False)
        sockets.append(sock)
    if sockets and not all(_listens_on(sock, host, port) for sock in sockets):
        log.info("restart: the configured address changed; binding %s:%s anew", host, port)
        for sock in sockets:
            sock.close()
        return []
    return sockets


def _listens_on(sock: socket.socket, host: str, port: int) -> bool:
    with contextlib.suppress(OSError):
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return False
        bound = sock.getsockname()
        if bound[1] != port:
            return False
        wanted = {info[4][0] for info in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)}
        return bound[0] in wanted
    return False
