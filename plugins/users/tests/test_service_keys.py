"""Service API keys: format, shown once, keyed hash, lastUsedAt, scopes, revocation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern_accounts.passwords import parse_service_key, service_key_digest
from comfytavern_accounts.secrets import SECRETS
from comfytavern_testing import client_for, make_kernel

STORAGE = {"projects": None, "accounts": "sqlite", "runs": None}
KEY_RE = re.compile(r"^ctsk_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$")


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with client_for(make_kernel(tmp_path, storage=STORAGE)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_create_shows_the_secret_once_and_stores_only_a_keyed_hash(client: TestClient) -> None:
    created = client.post("/api/users/me/service-keys", json={"name": "  nightly script  ", "scopes": ["runs:write"]})
    assert created.status_code == 201
    body = created.json()
    assert KEY_RE.match(body["secret"])
    assert body["prefix"] == body["secret"][:17]
    assert body["name"] == "nightly script"
    assert body["scopes"] == ["runs:write"]
    assert body["createdAt"].endswith("Z")
    assert "lastUsedAt" not in body

    listed = client.get("/api/users/me/service-keys").json()["keys"]
    assert listed == [{k: v for k, v in body.items() if k != "secret"}]
    assert body["secret"] not in client.get("/api/auth/current").text

    kernel = client.app.state.kernel  # type: ignore[attr-defined]
    parts = parse_service_key(body["secret"])
    assert parts is not None

    async def row() -> Any:
        return await kernel.storage.accounts.db.fetchone("SELECT * FROM service_api_keys")

    assert client.portal is not None
    stored = dict(client.portal.call(row))
    assert parts.secret not in str(stored)
    pepper = client.portal.call(kernel.services.require(SECRETS).pepper)
    assert stored["key_hash"] == service_key_digest(pepper, parts.secret)


def test_defaults_list_order_and_trailing_slash(client: TestClient) -> None:
    first = client.post("/api/users/me/service-keys/", json={}).json()
    assert first["scopes"] == ["*"]
    assert "name" not in first
    second = client.post("/api/users/me/service-keys", json={"name": "b"}).json()
    ids = [k["id"] for k in client.get("/api/users/me/service-keys/").json()["keys"]]
    assert ids == [second["id"], first["id"]]


def test_use_sets_last_used_and_revocation_is_immediate(client: TestClient) -> None:
    key = client.post("/api/users/me/service-keys", json={"scopes": ["account:read"]}).json()
    assert client.get("/api/users/me/service-keys", headers=bearer(key["secret"])).status_code == 200
    listed = client.get("/api/users/me/service-keys").json()["keys"][0]
    assert listed["lastUsedAt"].endswith("Z")
    assert client.delete(f"/api/users/me/service-keys/{key['id']}").status_code == 204
    assert client.delete(f"/api/users/me/service-keys/{key['id']}").json() == {"error": "Service API Key not found or access denied."}
    assert client.get("/api/users/me/service-keys", headers=bearer(key["secret"])).status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "ctsk_short",
        "ctsk_AAAAAAAAAAAA_" + "B" * 43,  # well formed, unknown id
        "not-a-key",
        "ctsk_" + "A" * 12 + "_" + "B" * 44,
    ],
)
def test_wrong_keys_are_401(client: TestClient, token: str) -> None:
    response = client.get("/api/users/me/service-keys", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {"error": "authentication required"}


def test_right_id_wrong_secret_is_401(client: TestClient) -> None:
    secret = client.post("/api/users/me/service-keys", json={}).json()["secret"]
    forged = secret[:18] + ("x" if secret[18] != "x" else "y") + secret[19:]
    assert client.get("/api/users/me/service-keys", headers=bearer(forged)).status_code == 401


def test_scopes_are_enforced_per_route_group(client: TestClient) -> None:
    read_only = client.post("/api/users/me/service-keys", json={"scopes": ["account:read"]}).json()["secret"]
    runs_only = client.post("/api/users/me/service-keys", json={"scopes": ["runs:*"]}).json()["secret"]
    assert client.get("/api/users/me/credentials", headers=bearer(read_only)).status_code == 200
    denied = client.post("/api/users/me/credentials", json={"serviceName": "x", "credential": "y"}, headers=bearer(read_only))
    assert denied.status_code == 403
    assert denied.json()["error"] == "this API key lacks the scope 'account:write'"
    assert client.get("/api/users/me/credentials", headers=bearer(runs_only)).status_code == 403
    assert client.get("/kernel/plugins", headers=bearer(runs_only)).status_code == 403
    # Public routes need no scope.
    assert client.get("/api/auth/current", headers=bearer(runs_only)).json()["isAuthenticated"] is True


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"scopes": []}, "at least one scope"),
        ({"scopes": ["read"]}, "is not valid"),
        ({"scopes": ["nope:read"]}, "unknown scope group 'nope'"),
        ({"scopes": ["runs:delete"]}, "is not valid"),
        ({"scopes": "runs:read"}, "Expected `array | null`, got `str`"),
        ({"name": ""}, "between 1 and 100"),
        ({"name": "x" * 101}, "between 1 and 100"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_bad_create_bodies_are_422(client: TestClient, body: dict[str, Any], fragment: str) -> None:
    response = client.post("/api/users/me/service-keys", json=body)
    assert response.status_code == 422
    assert fragment in str(response.json()["details"])


def test_a_key_cannot_mint_a_stronger_key(client: TestClient) -> None:
    limited = client.post("/api/users/me/service-keys", json={"scopes": ["account:write", "runs:read"]}).json()["secret"]
    weaker = client.post("/api/users/me/service-keys", json={"scopes": ["account:read", "runs:read"]}, headers=bearer(limited))
    assert weaker.status_code == 201
    for scopes in (["*"], ["runs:write"], ["projects:read"]):
        stronger = client.post("/api/users/me/service-keys", json={"scopes": scopes}, headers=bearer(limited))
        assert stronger.status_code == 403, scopes
