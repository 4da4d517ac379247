"""Auth mode ``multi-user`` end to end, and two users who cannot see or touch each other's things."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from comfytavern import hookimpl
from comfytavern.auth import websocket_principal
from comfytavern.http import websocket_route
from comfytavern.services import CREDENTIALS
from comfytavern_testing import client_for, make_kernel

STORAGE = {"projects": None, "accounts": "sqlite", "runs": None}
FAST = {"password_memory_kib": 64, "password_iterations": 1, "password_lanes": 1}
LOOPBACK = ("127.0.0.1", 50000)


class WsProbe:
    name = "ws-probe"

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def probe(websocket: WebSocket) -> None:
            principal = await websocket_principal(websocket)
            if principal is None:
                return
            await websocket.accept()
            await websocket.send_json({"id": principal.id, "via": principal.via, "admin": principal.is_admin})
            await websocket.close()

        return [websocket_route("/ws-probe", probe, summary="test probe", auth="user")]


def make(tmp_path: Path, **settings: Any) -> Any:
    return make_kernel(
        tmp_path,
        plugins=[WsProbe()],
        storage=STORAGE,
        auth={"mode": "multi-user", "settings": {"multi-user": {**FAST, **settings}}},
    )


def register(client: TestClient, username: str, password: str = "password-123", headers: dict[str, str] | None = None, **extra: Any) -> Any:
    return client.post("/api/auth/register", json={"username": username, "password": password, **extra}, headers=headers)


def ws_identity(client: TestClient) -> dict[str, Any]:
    # The test client opens WebSockets on another host name, so the cookie is given by hand.
    with client.websocket_connect("/ws-probe", headers={"Cookie": f"ct_session={client.cookies['ct_session']}"}) as ws:
        return ws.receive_json()


def test_fresh_install_offers_the_first_registration(tmp_path: Path) -> None:
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        assert client.get("/api/auth/current").json() == {
            "mode": "MultiUser",
            "multiUserMode": True,
            "isAuthenticated": False,
            "currentUser": None,
            "adminRegistrationRequired": True,
            "registrationOpen": False,
        }
        assert client.get("/api/users/me/credentials").status_code == 401
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws-probe"):
                pass


def test_first_registration_creates_the_admin_then_registration_is_closed(tmp_path: Path) -> None:
    kernel = make(tmp_path)
    with client_for(kernel, client=("10.1.2.3", 1)) as remote:
        refused = register(remote, "mallory")
        assert refused.status_code == 403
        assert "this machine" in refused.json()["error"]
    with client_for(kernel, client=LOOPBACK) as admin, client_for(kernel, client=LOOPBACK) as stranger:
        created = register(admin, "Admin")
        assert created.status_code == 201
        assert created.json()["user"]["isAdmin"] is True
        body = admin.get("/api/auth/current").json()
        assert body["isAuthenticated"] is True
        assert body["currentUser"]["username"] == "Admin"
        assert body["currentUser"]["uid"].startswith("u_")
        assert "adminRegistrationRequired" not in body
        assert ws_identity(admin)["admin"] is True

        closed = register(stranger, "bob")
        assert closed.status_code == 403
        assert "registration is closed" in closed.json()["error"]
        # An administrator creates accounts without losing their own session.
        admin_cookie = admin.cookies["ct_session"]
        made = register(admin, "bob", isAdmin=False)
        assert made.status_code == 201
        assert made.json()["user"]["isAdmin"] is False
        assert admin.cookies["ct_session"] == admin_cookie
        assert register(admin, "BOB").status_code == 409
        assert stranger.post("/api/auth/login", json={"username": "Bob", "password": "password-123"}).status_code == 200
        assert ws_identity(stranger)["admin"] is False
        users = admin.get("/api/auth/users").json()["users"]
        assert [u["username"] for u in users] == ["Admin", "bob"]
        assert stranger.get("/api/auth/users").status_code == 403


def test_open_registration_logs_the_new_user_in(tmp_path: Path) -> None:
    kernel = make(tmp_path, registration="open")
    with client_for(kernel, client=LOOPBACK) as first, client_for(kernel, client=("10.0.0.9", 2)) as other:
        assert register(first, "admin").status_code == 201
        assert other.get("/api/auth/current").json()["registrationOpen"] is True
        joined = register(other, "carol", isAdmin=True)
        assert joined.status_code == 201
        assert joined.json()["user"]["isAdmin"] is False  # only administrators grant that
        assert other.get("/api/auth/current").json()["currentUser"]["username"] == "carol"
        assert register(other, "dave", password="short").status_code == 422
        assert register(other, " ", password="long enough").status_code == 422


def test_login_logout_and_throttling(tmp_path: Path) -> None:
    kernel = make(tmp_path, login_max_failures=2)
    with client_for(kernel, client=LOOPBACK) as client:
        assert register(client, "alice", "alice-password").status_code == 201
        client.post("/api/auth/logout")
        assert client.get("/api/auth/current").json()["isAuthenticated"] is False
        unknown = client.post("/api/auth/login", json={"username": "nobody", "password": "alice-password"})
        wrong = client.post("/api/auth/login", json={"username": "alice", "password": "wrong-password"})
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json() == wrong.json()  # no hint about which accounts exist
        assert client.post("/api/auth/login", json={"username": "ALICE", "password": "alice-password"}).status_code == 200
        client.post("/api/auth/logout")
        for _ in range(2):
            assert client.post("/api/auth/login", json={"username": "alice", "password": "wrong"}).status_code == 401
        blocked = client.post("/api/auth/login", json={"username": "alice", "password": "alice-password"})
        assert blocked.status_code == 429
        assert "retry-after" in blocked.headers


def test_failures_from_elsewhere_never_lock_the_owner_out_of_a_new_address(tmp_path: Path) -> None:
    """100 failures from one address (its own limits raised, so all 100 count) reach the account's
    limit; the right password from another address still logs in, slowed down, not refused."""
    kernel = make(tmp_path, login_max_failures=1000, login_max_failures_per_ip=1000)
    with client_for(kernel, client=LOOPBACK) as attacker:
        assert register(attacker, "alice", "alice-password").status_code == 201
        attacker.post("/api/auth/logout")
        for index in range(100):
            wrong = attacker.post("/api/auth/login", json={"username": "alice", "password": f"guess {index}"})
            assert wrong.status_code == 401
    with client_for(kernel, client=("127.0.0.2", 50000)) as owner:
        assert owner.post("/api/auth/login", json={"username": "alice", "password": "alice-password"}).status_code == 200


def test_first_registration_through_an_unlisted_proxy_is_not_from_this_machine(tmp_path: Path) -> None:
    """A reverse proxy on this machine that nobody listed in server.trusted_proxies relays anyone:
    its requests come from 127.0.0.1 but must not count as "this machine"."""
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        relayed = register(client, "admin", headers={"X-Forwarded-For": "203.0.113.7"})
        assert relayed.status_code == 403
        assert register(client, "admin").status_code == 201


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


def test_two_users_cannot_see_or_touch_each_others_keys_credentials_or_profile(tmp_path: Path) -> None:
    kernel = make(tmp_path, registration="open")
    with client_for(kernel, client=LOOPBACK) as alice, client_for(kernel, client=LOOPBACK) as bob:
        register(alice, "alice")
        register(bob, "bob")
        alice_id = alice.get("/api/auth/current").json()["currentUser"]["uid"]
        bob_id = bob.get("/api/auth/current").json()["currentUser"]["uid"]
        assert alice_id != bob_id

        # Service keys.
        key = alice.post("/api/users/me/service-keys", json={"name": "alice's"}).json()
        assert bob.get("/api/users/me/service-keys").json() == {"keys": []}
        assert bob.delete(f"/api/users/me/service-keys/{key['id']}").status_code == 404
        alice_key = {"Authorization": f"Bearer {key['secret']}"}
        assert bob.get("/api/auth/current", headers=alice_key).json()["currentUser"]["uid"] == alice_id
        assert [k["id"] for k in alice.get("/api/users/me/service-keys").json()["keys"]] == [key["id"]]

        # Credentials, through the routes and through the node-facing resolver.
        cred = alice.post("/api/users/me/credentials", json={"serviceName": "openai", "credential": "sk-alice-secret-value"}).json()
        assert bob.get("/api/users/me/credentials").json() == {"credentials": []}
        assert bob.delete(f"/api/users/me/credentials/{cred['id']}").status_code == 404
        resolve = kernel.services.require(CREDENTIALS)
        assert bob.portal is not None
        assert bob.portal.call(resolve, alice_id, "openai") == "sk-alice-secret-value"
        assert bob.portal.call(resolve, bob_id, "openai") is None
        bob.post("/api/users/me/credentials", json={"serviceName": "openai", "credential": "sk-bob-secret-value"})
        assert bob.portal.call(resolve, bob_id, "openai") == "sk-bob-secret-value"
        assert bob.portal.call(resolve, alice_id, "openai") == "sk-alice-secret-value"
        assert len(alice.get("/api/users/me/credentials").json()["credentials"]) == 1

        # Profile: names are unique, each changes only their own, avatars are private.
        assert bob.put("/api/users/me/username", json={"username": "ALICE"}).status_code == 409
        assert bob.put("/api/users/me/username", json={"username": "robert"}).status_code == 200
        assert alice.get("/api/auth/current").json()["currentUser"]["username"] == "alice"
        files = {"avatar": ("a.png", _png((255, 0, 0)), "image/png")}
        uploaded = alice.post("/api/users/me/avatar", files=files).json()
        assert uploaded["avatarUrl"].startswith(f"/avatars/{alice_id}.png?v=")
        assert alice.get(uploaded["avatarUrl"]).status_code == 200
        assert bob.get(f"/avatars/{alice_id}.png").status_code == 404
        assert bob.get(f"/avatars/{bob_id}.png").status_code == 200
        assert alice.get(f"/avatars/{bob_id}.png").status_code == 200  # alice is the administrator
        bob_avatar = bob.get(f"/avatars/{bob_id}.png").content
        assert Image.open(io.BytesIO(bob_avatar)).getpixel((0, 0)) != (255, 0, 0)

        # Bob's own key cannot reach Alice's things either.
        bob_key = {"Authorization": f"Bearer {bob.post('/api/users/me/service-keys', json={}).json()['secret']}"}
        assert bob.delete(f"/api/users/me/service-keys/{key['id']}", headers=bob_key).status_code == 404
        assert bob.get(f"/avatars/{alice_id}.png", headers=bob_key).status_code == 404


def test_the_editor_websocket_uses_the_same_identity_and_origin_rule(tmp_path: Path) -> None:
    """The real ``/ws`` (executions plugin): cookie accepted, no identity 4401, foreign Origin refused."""
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        register(client, "alice")
        cookie = {"Cookie": f"ct_session={client.cookies['ct_session']}"}
        with client.websocket_connect("/ws", headers={**cookie, "Origin": "http://localhost:5573"}) as ws:
            ws.send_json({"type": "PROMPT_REQUEST", "payload": {"nodes": [], "edges": []}})
            assert ws.receive_json()["type"] == "PROMPT_ACCEPTED_RESPONSE"
        client.cookies.clear()  # the jar would otherwise send alice's session along
        with pytest.raises(WebSocketDisconnect) as anonymous:
            with client.websocket_connect("/ws") as ws:
                ws.receive_json()
        assert anonymous.value.code == 4401
        with pytest.raises(WebSocketDisconnect) as foreign:
            with client.websocket_connect("/ws", headers={**cookie, "Origin": "http://evil.example"}):
                pass
        assert foreign.value.code == 1008
