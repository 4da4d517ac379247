"""The account CLI: create-user, set-password, list-users, create-key, revoke-key, rotate-master-key."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from comfytavern.cli import main
from comfytavern.config import load_config
from comfytavern.kernel import Kernel
from comfytavern.services import CREDENTIALS
from comfytavern_testing import client_for

FAST = {"password_memory_kib": 64, "password_iterations": 1, "password_lanes": 1}
LOOPBACK = ("127.0.0.1", 50000)


def write_config(tmp_path: Path, mode: str) -> Path:
    config = {
        "data": {"root": str(tmp_path)},
        "nodes": {"custom_paths": []},
        "auth": {"mode": mode, "settings": {mode: FAST} if mode != "local" else {}},
        "storage": {"projects": None, "accounts": "sqlite", "runs": None},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def run(config: Path, *argv: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main([*argv, "--config", str(config)])


def kernel(config: Path) -> Kernel:
    return Kernel(load_config(config, environ={}))


def test_create_user_then_log_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "multi-user")
    assert run(config, "create-user", "Alice", "--admin", "--password-stdin", stdin="alice-password\n", monkeypatch=monkeypatch) == 0
    assert "created administrator 'Alice'" in capsys.readouterr().out
    assert run(config, "create-user", "alice", "--password-stdin", stdin="other-password\n", monkeypatch=monkeypatch) == 1
    assert "already taken" in capsys.readouterr().err
    assert run(config, "create-user", "bob", "--password-stdin", stdin="short\n", monkeypatch=monkeypatch) == 1
    assert "at least 8" in capsys.readouterr().err
    assert run(config, "create-user", "bob", monkeypatch=monkeypatch) == 1
    assert "--password-stdin" in capsys.readouterr().err
    assert run(config, "list-users", monkeypatch=monkeypatch) == 0
    listing = capsys.readouterr().out
    assert "Alice" in listing and "admin,password" in listing
    with client_for(kernel(config), client=LOOPBACK) as client:
        # The CLI-created administrator means the first-run registration is no longer offered.
        assert "adminRegistrationRequired" not in client.get("/api/auth/current").json()
        assert client.post("/api/auth/login", json={"username": "alice", "password": "alice-password"}).status_code == 200
        assert client.get("/api/auth/current").json()["currentUser"]["isAdmin"] is True


def test_set_the_access_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "local-password")
    assert run(config, "set-password", "--password-stdin", stdin="access-password\n", monkeypatch=monkeypatch) == 0
    assert "password set for '本地用户'" in capsys.readouterr().out
    with client_for(kernel(config), client=LOOPBACK) as client:
        assert client.get("/api/auth/current").json().get("globalPasswordSetupRequired") is None
        assert client.post("/api/auth/login", json={"password": "access-password"}).status_code == 200
    multi = write_config(tmp_path / "m", "multi-user")
    assert run(multi, "set-password", "--password-stdin", stdin="x" * 10 + "\n", monkeypatch=monkeypatch) == 1
    assert "name the user" in capsys.readouterr().err
    assert run(multi, "set-password", "ghost", "--password-stdin", stdin="x" * 10 + "\n", monkeypatch=monkeypatch) == 1
    assert "no user 'ghost'" in capsys.readouterr().err


def test_create_and_revoke_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "local")
    assert run(config, "create-key", "--name", "backup job", "--scope", "account:read", monkeypatch=monkeypatch) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("ctsk_")
    assert run(config, "create-key", "--scope", "bogus:read", monkeypatch=monkeypatch) == 1
    assert "unknown scope group" in capsys.readouterr().err
    headers = {"Authorization": f"Bearer {token}"}
    with client_for(kernel(config)) as client:
        listed = client.get("/api/users/me/service-keys", headers=headers)
        assert listed.status_code == 200
        assert listed.json()["keys"][0]["name"] == "backup job"
    assert run(config, "revoke-key", token[:17], monkeypatch=monkeypatch) == 0
    assert run(config, "revoke-key", token[:17], monkeypatch=monkeypatch) == 1
    with client_for(kernel(config)) as client:
        assert client.get("/api/users/me/service-keys", headers=headers).status_code == 401
    # By id, and by the whole key.
    assert run(config, "create-key", monkeypatch=monkeypatch) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert run(config, "revoke-key", second, monkeypatch=monkeypatch) == 0
    assert run(config, "create-key", monkeypatch=monkeypatch) == 0
    capsys.readouterr()
    with client_for(kernel(config)) as client:
        key_id = client.get("/api/users/me/service-keys").json()["keys"][0]["id"]
    assert run(config, "revoke-key", key_id, monkeypatch=monkeypatch) == 0


def test_rotate_the_master_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "local")
    with client_for(kernel(config)) as client:
        for name in ("openai", "anthropic"):
            assert client.post("/api/users/me/credentials", json={"serviceName": name, "credential": f"secret-for-{name}"}).status_code == 201
    key_file = tmp_path / "data" / "secret" / "master.key"
    before = json.loads(key_file.read_text())
    assert run(config, "rotate-master-key", monkeypatch=monkeypatch) == 0
    assert "re-encrypted 2 credential(s)" in capsys.readouterr().out
    after = json.loads(key_file.read_text())
    assert after["current"] != before["current"]
    assert set(after["keys"]) == {before["current"], after["current"]}
    assert (key_file.stat().st_mode & 0o777) == 0o600

    rotated = kernel(config)
    with client_for(rotated) as client:
        assert client.portal is not None

        async def key_ids() -> set[str]:
            rows = await rotated.storage.accounts.db.fetchall("SELECT ciphertext FROM external_credentials")
            return {row[0].split(":")[1] for row in rows}

        assert client.portal.call(key_ids) == {after["current"]}
        assert client.portal.call(rotated.services.require(CREDENTIALS), "default_user", "openai") == "secret-for-openai"

    assert run(config, "rotate-master-key", "--prune", monkeypatch=monkeypatch) == 0
    pruned = json.loads(key_file.read_text())
    assert list(pruned["keys"]) == [pruned["current"]]
    with client_for(kernel(config)) as client:
        assert client.portal is not None
        resolve: Any = client.app.state.kernel.services.require(CREDENTIALS)  # type: ignore[attr-defined]
        assert client.portal.call(resolve, "default_user", "anthropic") == "secret-for-anthropic"


def test_commands_need_an_accounts_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "local")
    data = json.loads(config.read_text())
    data["storage"]["accounts"] = None
    config.write_text(json.dumps(data))
    assert run(config, "list-users", monkeypatch=monkeypatch) == 1
    assert "storage.accounts is null" in capsys.readouterr().err
