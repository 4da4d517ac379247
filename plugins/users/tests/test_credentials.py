"""External credentials: encrypted at rest, never returned, bound to owner and record, usable by nodes."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern.services import CREDENTIALS
from comfytavern_accounts.secrets import CredentialDecryptError, Keyring, KeyringError, key_fingerprint
from comfytavern_testing import client_for, make_kernel

STORAGE = {"projects": None, "accounts": "sqlite", "runs": None}
SECRET = "sk-test-1234567890abcdef"


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with client_for(make_kernel(tmp_path, storage=STORAGE)) as c:
        yield c


def kernel_of(client: TestClient) -> Any:
    return client.app.state.kernel  # type: ignore[attr-defined]


def create(client: TestClient, **body: Any) -> Any:
    return client.post("/api/users/me/credentials", json={"serviceName": "openai", "credential": SECRET, **body})


def test_works_in_the_default_configuration(client: TestClient, tmp_path: Path) -> None:
    created = create(client, displayName="main")
    assert created.status_code == 201
    body = created.json()
    assert body["serviceName"] == "openai"
    assert body["displayName"] == "main"
    assert body["displayHint"] == {"prefix": "sk-t", "suffix": "cdef"}
    assert body["createdAt"].endswith("Z")
    assert set(body) == {"id", "serviceName", "displayName", "displayHint", "createdAt"}
    key_file = tmp_path / "data" / "secret" / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert client.get("/api/users/me/credentials").json() == {"credentials": [body]}
    assert client.delete(f"/api/users/me/credentials/{body['id']}").status_code == 204
    assert client.delete(f"/api/users/me/credentials/{body['id']}").json() == {
        "error": "External Service Credential not found or access denied."
    }
    assert client.get("/api/users/me/credentials/").json() == {"credentials": []}


def test_the_plaintext_never_leaves_through_any_route(client: TestClient, tmp_path: Path) -> None:
    created = create(client).json()
    responses = [
        created,
        client.get("/api/users/me/credentials").text,
        client.get("/api/auth/current").text,
        client.get("/api/users/me/service-keys").text,
    ]
    for text in map(str, responses):
        assert SECRET not in text and SECRET[4:-4] not in text
    database = (tmp_path / "data" / "comfytavern.sqlite").read_bytes()
    wal = tmp_path / "data" / "comfytavern.sqlite-wal"
    stored = database + (wal.read_bytes() if wal.exists() else b"")
    assert SECRET.encode() not in stored


def test_nodes_get_the_owners_secret_by_service_name(client: TestClient) -> None:
    create(client)
    resolve = kernel_of(client).services.require(CREDENTIALS)
    assert client.portal is not None
    assert client.portal.call(resolve, "default_user", "openai") == SECRET
    assert client.portal.call(resolve, "default_user", "OpenAI") == SECRET
    assert client.portal.call(resolve, "default_user", "anthropic") is None
    assert client.portal.call(resolve, "someone_else", "openai") is None
    client.post("/api/users/me/credentials", json={"serviceName": "openai", "credential": "sk-newer-key-000000"})
    assert client.portal.call(resolve, "default_user", "openai") == "sk-newer-key-000000"


def test_tampered_or_moved_ciphertext_is_rejected(client: TestClient) -> None:
    created = create(client).json()
    kernel = kernel_of(client)
    db = kernel.storage.accounts.db
    resolve = kernel.services.require(CREDENTIALS)
    assert client.portal is not None

    async def ciphertext() -> str:
        row = await db.fetchone("SELECT ciphertext FROM external_credentials WHERE id = ?", (created["id"],))
        return str(row[0])

    original = client.portal.call(ciphertext)
    version, kid, nonce, sealed = original.split(":")
    raw = bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))
    raw[0] ^= 0x01
    flipped = ":".join((version, kid, nonce, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")))

    async def store(text: str, user: str = "default_user", service: str = "openai") -> None:
        await db.execute(
            "UPDATE external_credentials SET ciphertext = ?, user_id = ?, service_name = ?, service_key = ? WHERE id = ?",
            (text, user, service, service.casefold(), created["id"]),
        )

    client.portal.call(store, flipped)
    with pytest.raises(CredentialDecryptError, match="integrity"):
        client.portal.call(resolve, "default_user", "openai")

    # The untouched ciphertext moved to another service name (or user) fails too: AAD binds it.
    client.portal.call(store, original, "default_user", "anthropic")
    with pytest.raises(CredentialDecryptError):
        client.portal.call(resolve, "default_user", "anthropic")
    client.portal.call(
        db.execute,
        "INSERT INTO users (id, username, username_key, is_admin, created_at) VALUES ('u_x', 'x', 'x', 0, '2026-01-01T00:00:00.000000Z')",
    )
    client.portal.call(store, original, "u_x", "openai")
    with pytest.raises(CredentialDecryptError):
        client.portal.call(resolve, "u_x", "openai")
    client.portal.call(store, original)
    assert client.portal.call(resolve, "default_user", "openai") == SECRET


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"serviceName": "", "credential": "x"}, "$.serviceName"),
        ({"serviceName": "   ", "credential": "x"}, "$.serviceName"),
        ({"serviceName": "a\x00b", "credential": "x"}, "control characters"),
        ({"serviceName": "s" * 101, "credential": "x"}, "at most 100"),
        ({"serviceName": "openai", "credential": ""}, "$.credential"),
        ({"serviceName": "openai", "credential": "x" * 16385}, "at most 16384"),
        ({"serviceName": "openai", "credential": "x", "displayName": ""}, "$.displayName"),
        ({"serviceName": "openai"}, "credential"),
        ({"serviceName": "openai", "credential": "x", "other": 1}, "unknown field"),
    ],
)
def test_bad_bodies_are_422(client: TestClient, body: dict[str, Any], fragment: str) -> None:
    response = client.post("/api/users/me/credentials", json=body)
    assert response.status_code == 422
    assert fragment in str(response.json()["details"])


@pytest.mark.parametrize(
    ("secret", "hint"),
    [
        ("sk-test-1234567890abcdef", {"prefix": "sk-t", "suffix": "cdef"}),
        ("0123456789ab", {"prefix": "01", "suffix": "ab"}),
        ("short", None),
    ],
)
def test_display_hint_never_reveals_much(client: TestClient, secret: str, hint: Any) -> None:
    body = client.post("/api/users/me/credentials", json={"serviceName": "svc", "credential": secret}).json()
    assert body.get("displayHint") == hint


def test_master_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = os.urandom(32)
    monkeypatch.setenv("CT_MASTER_KEY", base64.b64encode(key).decode())
    with client_for(make_kernel(tmp_path, storage=STORAGE)) as client:
        created = create(client).json()

        async def ciphertext() -> str:
            row = await kernel_of(client).storage.accounts.db.fetchone("SELECT ciphertext FROM external_credentials")
            return str(row[0])

        assert client.portal is not None
        text = client.portal.call(ciphertext)
        assert Keyring.key_id_of(text) == key_fingerprint(key)
        ring = Keyring.single(key)
        assert ring.decrypt(text, user_id="default_user", record_id=created["id"], service="openai") == SECRET
    assert not (tmp_path / "data" / "secret" / "master.key").exists()


def test_a_malformed_master_key_stops_start_up_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_MASTER_KEY", "too-short")
    with pytest.raises(KeyringError, match="CT_MASTER_KEY must be 32 random bytes in base64"):
        with client_for(make_kernel(tmp_path, storage=STORAGE)):
            pass
