"""The restart's socket hand-off: the stand-in answers at once on a listening socket (409 for a
restart, 503 otherwise, nothing for garbage), and a restarted process adopts only sockets that
still listen where it is configured to."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from comfytavern.handoff import LISTEN_FDS_ENV, StandIn, adopt, export_for_exec


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


def test_stand_in_answers_restart_409_anything_else_503(listener: socket.socket) -> None:
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    stand_in = StandIn([listener]).start()
    try:
        restart = httpx.post(f"{base}/api/server/restart?x=1", timeout=5)
        assert restart.status_code == 409 and restart.json() == {"error": "a restart is already in progress"}
        for method, path in (("GET", "/healthz"), ("GET", "/api/server/restart"), ("POST", "/api/prompt")):
            other = httpx.request(method, f"{base}{path}", json={"a": 1} if method == "POST" else None, timeout=5)
            assert other.status_code == 503, (method, path)
            assert other.headers["retry-after"] == "1"
            assert "restarting" in other.json()["error"]
        # Garbage gets no answer, and the stand-in goes on answering.
        with socket.create_connection(listener.getsockname(), timeout=5) as raw:
            raw.sendall(b"\x16\x03\x01 not http\r\n\r\n")
            assert raw.recv(100) == b""
        with socket.create_connection(listener.getsockname(), timeout=5):
            # A client that sends nothing is given up after READ_TIMEOUT: the next one is answered.
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 503
        # The stand-in counts a request after its answer is sent: the client may read it first.
        deadline = time.monotonic() + 5
        while stand_in.answered < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stand_in.answered == 5
    finally:
        stand_in.stop()
    # The stand-in worked on duplicates: the listening socket itself is still open.
    assert listener.fileno() >= 0 and listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)


def test_stand_in_stops_when_told_to(listener: socket.socket) -> None:
    ready = [False]
    stand_in = StandIn([listener], until=lambda: ready[0]).start()
    ready[0] = True
    stand_in._thread.join(2)
    assert not stand_in._thread.is_alive()


def test_adopt_takes_matching_inherited_sockets_only(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    fd = os.dup(listener.fileno())
    env = {LISTEN_FDS_ENV: str(fd)}
    adopted = adopt("127.0.0.1", port, env)
    assert [s.fileno() for s in adopted] == [fd] and LISTEN_FDS_ENV not in env
    assert not adopted[0].get_inheritable()
    adopted[0].close()

    # The configuration moved to another port: the inherited socket is closed, not used.
    fd = os.dup(listener.fileno())
    assert adopt("127.0.0.1", port + 1 if port < 65535 else port - 1, {LISTEN_FDS_ENV: str(fd)}) == []
    with pytest.raises(OSError):
        os.fstat(fd)
    # Not a socket, not a number: ignored.
    with open(os.devnull, "rb") as devnull:
        assert adopt("127.0.0.1", port, {LISTEN_FDS_ENV: f"not-a-number,{devnull.fileno()}"}) == []


def test_export_for_exec_marks_the_sockets_inheritable(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    dup = listener.dup()
    try:
        monkeypatch.delenv(LISTEN_FDS_ENV, raising=False)
        export_for_exec([dup])
        assert os.environ[LISTEN_FDS_ENV] == str(dup.fileno()) and dup.get_inheritable()
    finally:
        monkeypatch.delenv(LISTEN_FDS_ENV, raising=False)
        dup.close()
