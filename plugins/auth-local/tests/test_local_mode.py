"""Auth mode ``local`` end to end: HTTP, WebSocket, keys, the Origin rules, and no accounts store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocket, WebSocketDisconnect

from comfytavern import ConfigError, hookimpl
from comfytavern.auth import websocket_principal
from comfytavern.http import websocket_route
from comfytavern.kernel import StartupError
from comfytavern_testing import client_for, make_kernel

ACCOUNTS = {"projects": None, "accounts": "sqlite", "runs": None}
NO_ACCOUNTS = {"projects": None, "accounts": None, "runs": None}
EDITOR = "http://localhost:5573"


class WsProbe:
    """A tiny WebSocket route that reports who the kernel says the caller is."""

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


def kernel_for(tmp_path: Path, storage: dict[str, Any] = ACCOUNTS, **overrides: Any) -> Any:
    return make_kernel(tmp_path, plugins=[WsProbe()], storage=storage, **overrides)


def test_fresh_install_is_the_local_administrator(tmp_path: Path) -> None:
    with client_for(kernel_for(tmp_path)) as client:
        body = client.get("/api/auth/current").json()
        assert body["mode"] == "SingleUser"
        assert body["multiUserMode"] is False
        assert body["accessPasswordRequired"] is False
        assert body["isAuthenticated"] is True
        user = body["currentUser"]
        assert (user["uid"], user["username"], user["isAdmin"]) == ("default_user", "本地用户", True)
        assert user["createdAt"].endswith("Z")
        assert user["avatarUrl"] == "/avatars/default_user.png"
        assert user["serviceApiKeys"] == [] and user["externalCredentials"] == []
        assert "globalPasswordSetupRequired" not in body
        # No login routes in this mode.
        assert client.post("/api/auth/login", json={"password": "x"}).status_code in (404, 405)


def test_websocket_is_the_local_user_and_origin_is_checked(tmp_path: Path) -> None:
    with client_for(kernel_for(tmp_path)) as client:
        with client.websocket_connect("/ws-probe") as ws:
            assert ws.receive_json() == {"id": "default_user", "via": "local", "admin": True}
        with client.websocket_connect("/ws-probe", headers={"Origin": EDITOR}) as ws:
            assert ws.receive_json()["id"] == "default_user"
        same_origin = {"Origin": "http://127.0.0.1:3233", "Host": "127.0.0.1:3233"}
        with client.websocket_connect("/ws-probe", headers=same_origin) as ws:
            assert ws.receive_json()["id"] == "default_user"  # same origin as the server
        for origin in ("http://evil.example", "null", "http://localhost:5574"):
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect("/ws-probe", headers={"Origin": origin}):
                    pass
            assert refused.value.code == 1008


def test_cross_site_state_changes_are_refused(tmp_path: Path) -> None:
    with client_for(kernel_for(tmp_path)) as client:
        body = {"username": "Alice"}
        refused = client.put("/api/users/me/username", json=body, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
        assert refused.json()["error"] == "cross-site request refused"
        assert client.put("/api/users/me/username", json=body, headers={"Origin": "null"}).status_code == 403
        assert client.put("/api/users/me/username", json=body, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        # The editor's origin, this server's own origin, and non-browser clients are fine.
        assert client.put("/api/users/me/username", json=body, headers={"Origin": EDITOR}).status_code == 200
        same = client.put("/api/users/me/username", json=body, headers={"Origin": "http://127.0.0.1:3233"})
        assert same.status_code == 200
        assert client.put("/api/users/me/username", json=body).status_code == 200
        # Reading is not a state change: a GET with a foreign Origin is served (CORS decides who reads it).
        assert client.get("/api/auth/current", headers={"Origin": "http://evil.example"}).status_code == 200


def test_service_keys_work_and_bad_keys_get_no_fallback(tmp_path: Path) -> None:
    with client_for(kernel_for(tmp_path)) as client:
        created = client.post("/api/users/me/service-keys", json={"name": "script", "scopes": ["account:read"]})
        assert created.status_code == 201
        token = created.json()["secret"]
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/users/me/service-keys", headers=auth).status_code == 200
        # A key's request is not ambient: a foreign Origin does not matter, the scope does.
        refused = client.put("/api/users/me/username", json={"username": "x"}, headers={**auth, "Origin": "http://evil.example"})
        assert refused.status_code == 403
        assert "account:write" in refused.json()["error"]
        with client.websocket_connect("/ws-probe", headers=auth) as ws:
            assert ws.receive_json() == {"id": "default_user", "via": "key", "admin": True}
        for bad in ("Bearer ctsk_nope", "Bearer " + token[:-1] + ("A" if token[-1] != "A" else "B"), "Basic abc", "Bearer"):
            response = client.get("/api/users/me/service-keys", headers={"Authorization": bad})
            assert response.status_code == 401, bad
            with pytest.raises(WebSocketDisconnect):
                with client.websocket_connect("/ws-probe", headers={"Authorization": bad}):
                    pass


def test_keys_of_accounts_from_another_mode_are_not_accepted(tmp_path: Path) -> None:
    kernel = kernel_for(tmp_path)
    with client_for(kernel) as client:
        from comfytavern.storage.accounts import UserRecord, utc_now
        from comfytavern_users.keys import mint_key
        from comfytavern_users.service import accounts_for

        store = kernel.storage.accounts

        async def other_users_key() -> str:
            await store.create_user(UserRecord(id="u_other", username="Other", password_hash="x", created_at=utc_now()))
            return (await mint_key(accounts_for(kernel), store, "u_other", None, ("*",))).secret

        assert client.portal is not None
        token = client.portal.call(other_users_key)
        assert client.get("/api/users/me/service-keys", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_works_without_an_accounts_store(tmp_path: Path) -> None:
    with client_for(kernel_for(tmp_path, storage=NO_ACCOUNTS)) as client:
        body = client.get("/api/auth/current").json()
        assert body["isAuthenticated"] is True
        assert body["currentUser"]["uid"] == "default_user"
        assert body["currentUser"]["serviceApiKeys"] == []
        with client.websocket_connect("/ws-probe") as ws:
            assert ws.receive_json()["via"] == "local"
        unavailable = client.get("/api/users/me/service-keys")
        assert unavailable.status_code == 503
        assert "storage.accounts" in unavailable.json()["error"]
        assert client.get("/api/users/me/service-keys", headers={"Authorization": "Bearer ctsk_x"}).status_code == 401
        # The avatar still works: it lives in the user-data folder, not in the database.
        assert client.get("/avatars/default_user.png").headers["content-type"] == "image/png"
    assert not (tmp_path / "data" / "secret").exists()


def test_refuses_to_listen_beyond_this_machine_without_opt_in(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="only listens on this machine"):
        kernel_for(tmp_path, server={"host": "0.0.0.0"})
    kernel = kernel_for(tmp_path, server={"host": "0.0.0.0"}, auth={"mode": "local", "settings": {"local": {"allow_remote": True}}})
    assert kernel.auth is not None and kernel.auth.name == "local"
    with pytest.raises(ConfigError, match=r"\$\.auth\.settings\.local"):
        kernel_for(tmp_path, auth={"mode": "local", "settings": {"local": {"alow_remote": True}}})


def test_default_user_keeps_its_changed_name_across_restarts(tmp_path: Path) -> None:
    with client_for(kernel_for(tmp_path)) as client:
        assert client.put("/api/users/me/username", json={"username": "Alice"}).status_code == 200
    with client_for(kernel_for(tmp_path)) as client:
        assert client.get("/api/auth/current").json()["currentUser"]["username"] == "Alice"
