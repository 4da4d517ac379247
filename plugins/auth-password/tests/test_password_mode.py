"""Auth mode ``local-password`` end to end: first run, login, sessions, logout, throttling, WebSocket."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from comfytavern import ConfigError, hookimpl
from comfytavern.auth import websocket_principal
from comfytavern.http import websocket_route
from comfytavern.kernel import StartupError
from comfytavern_accounts.passwords import session_digest
from comfytavern_testing import client_for, make_kernel

STORAGE = {"projects": None, "accounts": "sqlite", "runs": None}
#: Cheap Argon2id so the suite stays fast (production defaults are 64 MiB, 3 passes).
FAST = {"password_memory_kib": 64, "password_iterations": 1, "password_lanes": 1}
LOOPBACK = ("127.0.0.1", 50000)
PASSWORD = "correct horse battery"
HOST = "127.0.0.1"


class WsProbe:
    name = "ws-probe"

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def probe(websocket: WebSocket) -> None:
            principal = await websocket_principal(websocket)
            if principal is None:
                return
            await websocket.accept()
            await websocket.send_json({"id": principal.id, "via": principal.via})
            await websocket.close()

        return [websocket_route("/ws-probe", probe, summary="test probe", auth="user")]


def make(tmp_path: Path, **settings: Any) -> Any:
    return make_kernel(
        tmp_path,
        plugins=[WsProbe()],
        storage=STORAGE,
        auth={"mode": "local-password", "settings": {"local-password": {**FAST, **settings}}},
    )


def replay(client: TestClient, token: str) -> int:
    """Status of a user-only request made with ``token`` as the only session cookie."""
    saved = client.cookies.get("ct_session")
    client.cookies.set("ct_session", token, domain=HOST)
    try:
        return client.get("/api/users/me/service-keys").status_code
    finally:
        client.cookies.delete("ct_session")
        if saved is not None:
            client.cookies.set("ct_session", saved, domain=HOST)


def setup_password(client: TestClient) -> None:
    response = client.post("/api/auth/setup", json={"password": PASSWORD})
    assert response.status_code == 201, response.text


def test_fresh_install_asks_for_a_password(tmp_path: Path) -> None:
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        body = client.get("/api/auth/current").json()
        assert body == {
            "mode": "SingleUser",
            "multiUserMode": False,
            "accessPasswordRequired": True,
            "isAuthenticated": False,
            "currentUser": None,
            "isAuthenticatedWithGlobalPassword": False,
            "globalPasswordSetupRequired": True,
        }
        assert client.get("/api/users/me/service-keys").status_code == 401
        assert client.post("/api/auth/login", json={"password": "anything"}).status_code == 409
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws-probe"):
                pass
        assert refused.value.code == 1008


def test_first_run_setup_is_for_this_machine_only(tmp_path: Path) -> None:
    kernel = make(tmp_path)
    with client_for(kernel, client=("192.168.1.20", 50000)) as remote:
        refused = remote.post("/api/auth/setup", json={"password": PASSWORD})
        assert refused.status_code == 403
        assert "this machine" in refused.json()["error"]
    with client_for(make(tmp_path, first_run_from="any"), client=("192.168.1.20", 50000)) as remote:
        setup_password(remote)


def test_setup_login_logout_cycle(tmp_path: Path) -> None:
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        short = client.post("/api/auth/setup", json={"password": "short"})
        assert short.status_code == 422
        response = client.post("/api/auth/setup", json={"password": PASSWORD})
        assert response.status_code == 201
        assert response.json()["user"] == {"uid": "default_user", "username": "本地用户", "isAdmin": True}
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("ct_session=")
        for attribute in ("HttpOnly", "SameSite=lax", "Path=/", "Max-Age="):
            assert attribute in cookie
        assert "Secure" not in cookie
        assert client.post("/api/auth/setup", json={"password": "another password"}).status_code == 409

        body = client.get("/api/auth/current").json()
        assert body["isAuthenticated"] is True
        assert body["isAuthenticatedWithGlobalPassword"] is True
        assert "globalPasswordSetupRequired" not in body
        assert body["currentUser"]["uid"] == "default_user"
        # (The test client opens WebSockets on another host name, so the cookie is given by hand.)
        cookie_header = {"Cookie": f"ct_session={client.cookies['ct_session']}"}
        with client.websocket_connect("/ws-probe", headers=cookie_header) as ws:
            assert ws.receive_json() == {"id": "default_user", "via": "session"}

        first_token = client.cookies["ct_session"]
        assert client.post("/api/auth/logout").json()["success"] is True
        assert "ct_session" not in client.cookies
        assert client.get("/api/auth/current").json()["isAuthenticated"] is False
        # The old cookie is dead on the server, not just forgotten by the browser.
        assert replay(client, first_token) == 401

        assert client.post("/api/auth/login", json={"password": "wrong password"}).status_code == 401
        login = client.post("/api/auth/login", json={"password": PASSWORD})
        assert login.status_code == 200
        assert client.cookies["ct_session"] != first_token
        assert client.get("/api/users/me/service-keys").status_code == 200


def test_login_issues_a_new_session_id_and_ends_the_presented_one(tmp_path: Path) -> None:
    kernel = make(tmp_path)
    with client_for(kernel, client=LOOPBACK) as client:
        setup_password(client)
        before = client.cookies["ct_session"]
        assert client.post("/api/auth/login", json={"password": PASSWORD}).status_code == 200
        after = client.cookies["ct_session"]
        assert after != before
        assert replay(client, before) == 401
        assert replay(client, after) == 200
        # An attacker-planted (unknown) cookie is simply replaced.
        client.cookies.set("ct_session", "planted-by-attacker", domain=HOST)
        assert client.post("/api/auth/login", json={"password": PASSWORD}).status_code == 200
        assert client.cookies["ct_session"] != "planted-by-attacker"

        async def stored_hashes() -> list[str]:
            rows = await kernel.storage.accounts.db.fetchall("SELECT id_hash FROM user_sessions")
            return [row[0] for row in rows]

        assert client.portal is not None
        hashes = client.portal.call(stored_hashes)
        assert session_digest(client.cookies["ct_session"]) in hashes
        assert client.cookies["ct_session"] not in hashes  # only digests are stored


def test_idle_and_expired_sessions_end(tmp_path: Path) -> None:
    kernel = make(tmp_path, session_idle_minutes=30)
    with client_for(kernel, client=LOOPBACK) as client:
        setup_password(client)
        digest = session_digest(client.cookies["ct_session"])
        store = kernel.storage.accounts

        async def age(minutes: int) -> None:
            found = await store.resolve_session(digest)
            assert found is not None
            await store.touch_session(digest, found[0].last_seen_at - timedelta(minutes=minutes))

        assert client.portal is not None
        client.portal.call(age, 20)
        assert client.get("/api/users/me/service-keys").status_code == 200  # refreshed the idle clock
        client.portal.call(age, 31)
        assert client.get("/api/users/me/service-keys").status_code == 401
        assert client.portal.call(store.resolve_session, digest) is None


def test_password_change_ends_other_sessions(tmp_path: Path) -> None:
    kernel = make(tmp_path)
    with client_for(kernel, client=LOOPBACK) as first, client_for(kernel, client=LOOPBACK) as second:
        setup_password(first)
        assert second.post("/api/auth/login", json={"password": PASSWORD}).status_code == 200
        old_first = first.cookies["ct_session"]
        wrong = first.put("/api/auth/password", json={"currentPassword": "nope nope", "newPassword": "a new password"})
        assert wrong.status_code == 403
        changed = first.put("/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": "a new password"})
        assert changed.status_code == 200
        assert first.cookies["ct_session"] != old_first
        assert first.get("/api/users/me/service-keys").status_code == 200
        assert second.get("/api/users/me/service-keys").status_code == 401
        assert second.post("/api/auth/login", json={"password": PASSWORD}).status_code == 401
        assert second.post("/api/auth/login", json={"password": "a new password"}).status_code == 200


def test_login_is_throttled(tmp_path: Path) -> None:
    with client_for(make(tmp_path, login_max_failures=3), client=LOOPBACK) as client:
        setup_password(client)
        client.post("/api/auth/logout")
        for _ in range(3):
            assert client.post("/api/auth/login", json={"password": "guess guess"}).status_code == 401
        blocked = client.post("/api/auth/login", json={"password": PASSWORD})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        assert blocked.json()["details"]["retryAfterSeconds"] == int(blocked.headers["retry-after"])
    # Another address is not locked out by someone else's guessing.
    with client_for(make(tmp_path, login_max_failures=3), client=("127.0.0.2", 1)) as other:
        assert other.post("/api/auth/login", json={"password": PASSWORD}).status_code == 200


def test_first_run_through_a_proxy_counts_only_when_the_proxy_is_trusted(tmp_path: Path) -> None:
    relayed = {"X-Forwarded-For": "203.0.113.7"}
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        # An unlisted proxy on this machine relays anyone: not "from this machine".
        assert client.post("/api/auth/setup", json={"password": PASSWORD}, headers=relayed).status_code == 403
    trusted = make_kernel(
        tmp_path / "trusted",
        storage=STORAGE,
        server={"trusted_proxies": ["127.0.0.1"]},
        auth={"mode": "local-password", "settings": {"local-password": FAST}},
    )
    with client_for(trusted, client=LOOPBACK) as client:
        # A listed proxy says who the client is: a remote one is refused, this machine is not.
        assert client.post("/api/auth/setup", json={"password": PASSWORD}, headers=relayed).status_code == 403
        local = {"X-Forwarded-For": "127.0.0.1"}
        assert client.post("/api/auth/setup", json={"password": PASSWORD}, headers=local).status_code == 201


def test_service_keys_work_without_a_session(tmp_path: Path) -> None:
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        setup_password(client)
        token = client.post("/api/users/me/service-keys", json={"scopes": ["account:read"]}).json()["secret"]
        client.post("/api/auth/logout")
        headers = {"Authorization": f"Bearer {token}"}
        body = client.get("/api/auth/current", headers=headers).json()
        assert body["isAuthenticated"] is True
        assert body["isAuthenticatedWithGlobalPassword"] is False
        with client.websocket_connect("/ws-probe", headers=headers) as ws:
            assert ws.receive_json() == {"id": "default_user", "via": "key"}


def test_cookie_requests_from_foreign_origins_are_refused(tmp_path: Path) -> None:
    with client_for(make(tmp_path), client=LOOPBACK) as client:
        setup_password(client)
        evil = {"Origin": "http://evil.example"}
        assert client.post("/api/auth/logout", headers=evil).status_code == 403
        assert client.post("/api/users/me/service-keys", json={}, headers=evil).status_code == 403
        assert client.post("/api/auth/login", json={"password": PASSWORD}, headers=evil).status_code == 403
        assert client.post("/api/users/me/service-keys", json={}, headers={"Origin": "http://localhost:5573"}).status_code == 201
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws-probe", headers={**evil, "Cookie": f"ct_session={client.cookies['ct_session']}"}):
                pass


def test_secure_cookie_setting(tmp_path: Path) -> None:
    with client_for(make(tmp_path, cookie_secure=True, cookie_samesite="strict"), client=LOOPBACK) as client:
        cookie = client.post("/api/auth/setup", json={"password": PASSWORD}).headers["set-cookie"]
        assert cookie.startswith("__Host-ct_session=")
        assert "Secure" in cookie and "SameSite=strict" in cookie


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$\.auth\.settings\.local-password: unknown setting\(s\) registration"):
        make(tmp_path, registration="open")
    with pytest.raises(ConfigError, match="session_idle_minutes"):
        make(tmp_path, session_idle_minutes=0)
    with pytest.raises(StartupError, match="storage.accounts"):
        make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None}, auth={"mode": "local-password"})
