"""Open ``/ws`` sockets end with their credential: real server on loopback, real WebSockets, real
accounts (SQLite), production password hashing.

A key revoked, a logout, a password change, a deleted account: the sockets opened with that
credential are closed with 4401 at once (the announcement on ``kernel.revocations``), and a change
that no announcement reaches (the CLI in another process) is caught before the socket's next
message, which is refused. Sockets of other credentials and other users stay open and keep working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

import comfytavern_testnodes as testnodes
from comfytavern import hookimpl, route
from comfytavern.app import create_app
from comfytavern.config import load_config
from comfytavern.http import json_response
from comfytavern.kernel import Kernel
from comfytavern.revocation import Revocation
from comfytavern_testing import live_server

FINAL = {"complete", "error", "interrupted"}
RUN = {"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": 7}}], "edges": []}
ALICE_PASSWORD = "alice's long password"
BOB_PASSWORD = "bob's long password"


class DeleteUser:
    """A stand-in for an account-deletion feature (none is built in yet): what one must do is
    delete the account from the store, then announce it."""

    name = "test-delete-user"

    def __init__(self, announce: bool) -> None:
        self.announce = announce

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def delete(request: Any) -> Any:
            user_id = request.path_params["user_id"]
            deleted = await kernel.storage.accounts.delete_user(user_id)
            if deleted and self.announce:
                await kernel.revocations.announce(Revocation.user(user_id))
            return json_response({"deleted": deleted})

        return [route("/test/users/{user_id}", delete, methods=["DELETE"], auth="admin", summary="test only")]


def write_config(root: Path, mode: str) -> Path:
    """Production defaults (password hashing included); only storage is narrowed to SQLite."""
    config = {
        "data": {"root": str(root)},
        "nodes": {"custom_paths": []},
        "auth": {"mode": mode},
        "storage": {"projects": None, "accounts": "sqlite", "runs": "sqlite"},
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@contextmanager
def serve(root: Path, mode: str, *plugins: Any) -> Iterator[str]:
    kernel = Kernel(load_config(write_config(root, mode), environ={}), plugins=plugins, node_packs=[testnodes])
    with live_server(create_app(kernel)) as base:
        yield base


# -- clients ------------------------------------------------------------------------------------
def login(base: str, password: str, username: str | None = None) -> httpx.Client:
    """A client holding a fresh session cookie."""
    client = httpx.Client(base_url=base, timeout=30)
    body = {"password": password} if username is None else {"username": username, "password": password}
    response = client.post("/api/auth/login", json=body)
    assert response.status_code == 200, response.text
    return client


def new_key(client: httpx.Client, scopes: tuple[str, ...] = ("runs:*",)) -> tuple[str, str]:
    response = client.post("/api/users/me/service-keys", json={"scopes": list(scopes)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"]), str(response.json()["secret"])


def ws_with(base: str, *, session: httpx.Client | None = None, key: str | None = None) -> ClientConnection:
    headers: dict[str, str] = {}
    if session is not None:
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return connect(base.replace("http", "ws", 1) + "/ws", additional_headers=headers, open_timeout=10)


def send(ws: ClientConnection, type_: str, payload: Any) -> None:
    ws.send(json.dumps({"type": type_, "payload": payload}))


def runs_to_completion(ws: ClientConnection) -> str:
    """Submit a workflow on ``ws``; its final status (the socket works)."""
    send(ws, "PROMPT_REQUEST", RUN)
    while True:
        message = json.loads(ws.recv(timeout=20))
        payload = message["payload"]
        assert message["type"] != "error", payload
        if message["type"] == "EXECUTION_STATUS_UPDATE" and payload["status"] in FINAL:
            return str(payload["status"])


def closed_with(ws: ClientConnection) -> tuple[int, str, list[dict[str, Any]]]:
    """Wait for the server to close ``ws``: (code, reason, frames received before)."""
    frames = []
    try:
        while True:
            frames.append(json.loads(ws.recv(timeout=20)))
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "the connection dropped without a close frame"
        return exc.rcvd.code, exc.rcvd.reason, frames
    except TimeoutError:
        raise AssertionError(f"the socket is still open; received {[f['type'] for f in frames]}") from None


def run_count(client: httpx.Client) -> int:
    return int(client.get("/api/history").json()["total"])


# -- multi-user ---------------------------------------------------------------------------------
@pytest.fixture
def multi_user(tmp_path: Path) -> Iterator[tuple[str, httpx.Client, httpx.Client]]:
    """A multi-user server with the administrator alice and the user bob, each logged in."""
    with serve(tmp_path, "multi-user", DeleteUser(announce=True)) as base:
        with httpx.Client(base_url=base, timeout=30) as first:
            assert first.post("/api/auth/register", json={"username": "alice", "password": ALICE_PASSWORD}).status_code == 201
            assert first.post("/api/auth/register", json={"username": "bob", "password": BOB_PASSWORD}).status_code == 201
        alice, bob = login(base, ALICE_PASSWORD, "alice"), login(base, BOB_PASSWORD, "bob")
        with closing(alice), closing(bob):
            yield base, alice, bob


def test_a_revoked_key_closes_its_sockets_and_no_other(multi_user: tuple[str, httpx.Client, httpx.Client]) -> None:
    base, alice, bob = multi_user
    revoked_id, revoked = new_key(alice)
    _, kept = new_key(alice)
    _, bobs = new_key(bob)
    with ws_with(base, key=revoked) as ws_revoked, ws_with(base, key=kept) as ws_kept, \
            ws_with(base, session=alice) as ws_session, ws_with(base, key=bobs) as ws_bob:
        assert runs_to_completion(ws_revoked) == "complete"
        assert alice.delete(f"/api/users/me/service-keys/{revoked_id}").status_code == 204
        code, reason, _ = closed_with(ws_revoked)
        assert (code, reason) == (4401, "the API key was revoked")
        for ws in (ws_kept, ws_session, ws_bob):
            assert runs_to_completion(ws) == "complete"
        assert run_count(bob) == 1
    # A new socket with the revoked key is refused at once, as HTTP is.
    with ws_with(base, key=revoked) as ws:
        assert closed_with(ws)[:2] == (4401, "authentication required")
    assert httpx.post(f"{base}/api/prompt", json=RUN, headers={"Authorization": f"Bearer {revoked}"}).status_code == 401


def test_logout_closes_the_sockets_of_that_session_only(multi_user: tuple[str, httpx.Client, httpx.Client]) -> None:
    base, alice, bob = multi_user
    with closing(login(base, ALICE_PASSWORD, "alice")) as other_tab:
        _, key = new_key(alice)
        with ws_with(base, session=alice) as ws_a1, ws_with(base, session=alice) as ws_a2, \
                ws_with(base, session=other_tab) as ws_other, ws_with(base, key=key) as ws_key, \
                ws_with(base, session=bob) as ws_bob:
            assert alice.post("/api/auth/logout").status_code == 200
            assert closed_with(ws_a1)[:2] == (4401, "the session ended (logged out)")
            assert closed_with(ws_a2)[:2] == (4401, "the session ended (logged out)")
            for ws in (ws_other, ws_key, ws_bob):
                assert runs_to_completion(ws) == "complete"


def test_a_password_change_closes_every_session_socket_of_the_user(multi_user: tuple[str, httpx.Client, httpx.Client]) -> None:
    base, alice, bob = multi_user
    with closing(login(base, ALICE_PASSWORD, "alice")) as other_tab:
        _, key = new_key(alice)
        with ws_with(base, session=alice) as ws_changer, ws_with(base, session=other_tab) as ws_other, \
                ws_with(base, key=key) as ws_key, ws_with(base, session=bob) as ws_bob:
            changed = alice.put("/api/auth/password", json={"currentPassword": ALICE_PASSWORD, "newPassword": "a new long password"})
            assert changed.status_code == 200, changed.text
            assert closed_with(ws_other)[:2] == (4401, "the password changed; log in again")
            # The changing tab got a new session id, so its socket (opened with the old one) ends too;
            # a socket opened with the new cookie works.
            assert closed_with(ws_changer)[0] == 4401
            with ws_with(base, session=alice) as ws_new:
                assert runs_to_completion(ws_new) == "complete"
            for ws in (ws_key, ws_bob):  # keys survive a password change; bob is someone else
                assert runs_to_completion(ws) == "complete"


def test_many_sockets_two_revocations_at_once_close_exactly_theirs(multi_user: tuple[str, httpx.Client, httpx.Client]) -> None:
    """30 sockets of a key being revoked, 30 of another key, 10 of bob's session being logged out
    and 10 of alice's session: the key deletion and bob's logout run in parallel."""
    base, alice, bob = multi_user
    revoked_id, revoked = new_key(alice)
    _, kept = new_key(alice)
    with ExitStack() as stack:
        open_ = lambda **kw: stack.enter_context(ws_with(base, **kw))  # noqa: E731
        doomed = [open_(key=revoked) for _ in range(30)] + [open_(session=bob) for _ in range(10)]
        spared = [open_(key=kept) for _ in range(30)] + [open_(session=alice) for _ in range(10)]
        with ThreadPoolExecutor(2) as pool:
            deleting = pool.submit(alice.delete, f"/api/users/me/service-keys/{revoked_id}")
            logging_out = pool.submit(bob.post, "/api/auth/logout")
            assert deleting.result().status_code == 204 and logging_out.result().status_code == 200
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda ws: closed_with(ws)[0], doomed))
        assert codes == [4401] * 40
        for ws in spared:  # every other socket still answers
            send(ws, "NOPE", {})
        for ws in spared:
            reply = json.loads(ws.recv(timeout=20))
            while reply["type"] != "error":
                reply = json.loads(ws.recv(timeout=20))
            assert reply["payload"]["message"] == "Unknown message type: NOPE"
        assert runs_to_completion(spared[0]) == "complete" and runs_to_completion(spared[-1]) == "complete"


def test_a_new_login_over_an_old_session_closes_the_old_sessions_sockets(multi_user: tuple[str, httpx.Client, httpx.Client]) -> None:
    base, alice, _ = multi_user
    with ws_with(base, session=alice) as old:
        assert alice.post("/api/auth/login", json={"username": "alice", "password": ALICE_PASSWORD}).status_code == 200
        assert closed_with(old)[:2] == (4401, "the session ended (logged out)")
        with ws_with(base, session=alice) as new:  # the new cookie
            assert runs_to_completion(new) == "complete"


def test_a_deleted_account_closes_all_its_sockets(multi_user: tuple[str, httpx.Client, httpx.Client]) -> None:
    base, alice, bob = multi_user
    _, bobs_key = new_key(bob)
    bob_id = bob.get("/api/auth/current").json()["currentUser"]["uid"]
    with ws_with(base, session=bob) as ws_session, ws_with(base, key=bobs_key) as ws_key, ws_with(base, session=alice) as ws_alice:
        assert runs_to_completion(ws_session) == "complete"
        assert alice.delete(f"/test/users/{bob_id}").json() == {"deleted": True}
        assert closed_with(ws_session)[:2] == (4401, "the account was deleted")
        assert closed_with(ws_key)[:2] == (4401, "the account was deleted")
        assert runs_to_completion(ws_alice) == "complete"


def test_an_unannounced_deletion_is_caught_before_the_next_message(tmp_path: Path) -> None:
    """No announcement (the row went by another way): the next message is refused and closes."""
    with serve(tmp_path, "multi-user", DeleteUser(announce=False)) as base:
        with httpx.Client(base_url=base, timeout=30) as first:
            assert first.post("/api/auth/register", json={"username": "alice", "password": ALICE_PASSWORD}).status_code == 201
            assert first.post("/api/auth/register", json={"username": "bob", "password": BOB_PASSWORD}).status_code == 201
        with closing(login(base, ALICE_PASSWORD, "alice")) as alice, closing(login(base, BOB_PASSWORD, "bob")) as bob:
            bob_id = bob.get("/api/auth/current").json()["currentUser"]["uid"]
            with ws_with(base, session=bob) as ws_bob, ws_with(base, session=alice) as ws_alice:
                assert alice.delete(f"/test/users/{bob_id}").json() == {"deleted": True}
                send(ws_bob, "PROMPT_REQUEST", RUN)
                code, _, frames = closed_with(ws_bob)
                assert code == 4401
                assert [f["type"] for f in frames] == ["error"]
                assert frames[0]["payload"]["details"] == {"status": 401, "type": "PROMPT_REQUEST"}
                assert runs_to_completion(ws_alice) == "complete"


# -- local-password -----------------------------------------------------------------------------
def cli(config: Path, *argv: str, stdin: str = "") -> str:
    """The real command line, in its own process (as an operator runs it next to the server)."""
    done = subprocess.run(
        [sys.executable, "-m", "comfytavern", *argv, "--config", str(config)],
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_local_password_logout_password_change_and_key_revocation(tmp_path: Path) -> None:
    with serve(tmp_path, "local-password") as base:
        with httpx.Client(base_url=base, timeout=30) as setup:
            assert setup.post("/api/auth/setup", json={"password": ALICE_PASSWORD}).status_code == 201
            key_id, key = new_key(setup)
        tab1, tab2, tab3 = (login(base, ALICE_PASSWORD) for _ in range(3))
        with closing(tab1), closing(tab2), closing(tab3), ws_with(base, session=tab1) as ws1, ws_with(base, session=tab2) as ws2, \
                ws_with(base, session=tab3) as ws3, ws_with(base, key=key) as ws_key:
            assert tab1.post("/api/auth/logout").status_code == 200
            assert closed_with(ws1)[:2] == (4401, "the session ended (logged out)")
            assert runs_to_completion(ws2) == "complete"
            assert tab2.put("/api/auth/password", json={"currentPassword": ALICE_PASSWORD, "newPassword": BOB_PASSWORD}).status_code == 200
            assert closed_with(ws3)[:2] == (4401, "the password changed; log in again")
            assert closed_with(ws2)[0] == 4401
            assert runs_to_completion(ws_key) == "complete"
            assert tab2.delete(f"/api/users/me/service-keys/{key_id}").status_code == 204
            assert closed_with(ws_key)[:2] == (4401, "the API key was revoked")


@pytest.mark.slow  # two CLI processes
def test_the_cli_in_another_process_revokes_at_the_next_message(tmp_path: Path) -> None:
    """``set-password`` and ``revoke-key`` run in their own process: no announcement reaches this
    server (no bus), so the socket's next message is refused, the socket closed, and no run made."""
    config = write_config(tmp_path, "local-password")
    with serve(tmp_path, "local-password") as base:
        with httpx.Client(base_url=base, timeout=30) as setup:
            assert setup.post("/api/auth/setup", json={"password": ALICE_PASSWORD}).status_code == 201
            key_id, key = new_key(setup)
            _, other_key = new_key(setup)
        with closing(login(base, ALICE_PASSWORD)) as tab, ws_with(base, session=tab) as ws_session, \
                ws_with(base, key=key) as ws_key, ws_with(base, key=other_key) as ws_other:
            assert runs_to_completion(ws_session) == "complete"
            cli(config, "set-password", "--password-stdin", stdin=BOB_PASSWORD + "\n")
            cli(config, "revoke-key", key_id)
            for ws in (ws_session, ws_key):
                send(ws, "PROMPT_REQUEST", RUN)
                code, _, frames = closed_with(ws)
                # (a SYSTEM_QUEUE_UPDATE of the first run may come first)
                assert code == 4401 and [f["type"] for f in frames if f["type"] != "SYSTEM_QUEUE_UPDATE"] == ["error"]
                assert frames[-1]["payload"]["details"]["status"] == 401
            assert runs_to_completion(ws_other) == "complete"
            with closing(login(base, BOB_PASSWORD)) as fresh:
                assert run_count(fresh) == 2  # the first run and ws_other's: nothing after the revocations


# -- local --------------------------------------------------------------------------------------
def test_local_mode_key_revocation_closes_only_that_keys_socket(tmp_path: Path) -> None:
    with serve(tmp_path, "local") as base, httpx.Client(base_url=base, timeout=30) as local:
        key_id, key = new_key(local)
        with ws_with(base, key=key) as ws_key, ws_with(base) as ws_local:
            assert local.delete(f"/api/users/me/service-keys/{key_id}").status_code == 204
            assert closed_with(ws_key)[:2] == (4401, "the API key was revoked")
            assert runs_to_completion(ws_local) == "complete"
