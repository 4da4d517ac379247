"""comfytavern_accounts.secrets: the AES-GCM keyring and the 0600 secret files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from comfytavern_accounts.secrets import (
    CredentialDecryptError,
    Keyring,
    KeyringError,
    ServerSecrets,
    decode_key,
    key_fingerprint,
)


def test_keyring_binds_owner_record_and_service() -> None:
    ring = Keyring.single(os.urandom(32))
    blob = ring.encrypt("sk-live", user_id="u1", record_id="r1", service="openai")
    assert blob.startswith(f"v1:{ring.current}:")
    assert "sk-live" not in blob
    assert ring.decrypt(blob, user_id="u1", record_id="r1", service="openai") == "sk-live"
    assert ring.encrypt("sk-live", user_id="u1", record_id="r1", service="openai") != blob  # fresh nonce
    for wrong in ({"user_id": "u2"}, {"record_id": "r2"}, {"service": "anthropic"}):
        context = {"user_id": "u1", "record_id": "r1", "service": "openai", **wrong}
        with pytest.raises(CredentialDecryptError, match="integrity"):
            ring.decrypt(blob, **context)
    version, kid, nonce, sealed = blob.split(":")
    tampered = f"{version}:{kid}:{nonce}:{'A' if sealed[0] != 'A' else 'B'}{sealed[1:]}"
    with pytest.raises(CredentialDecryptError):
        ring.decrypt(tampered, user_id="u1", record_id="r1", service="openai")
    with pytest.raises(CredentialDecryptError, match="not loaded"):
        Keyring.single(os.urandom(32)).decrypt(blob, user_id="u1", record_id="r1", service="openai")
    with pytest.raises(CredentialDecryptError, match="unknown format"):
        ring.decrypt("plaintext", user_id="u1", record_id="r1", service="openai")


def test_decode_key_forms() -> None:
    key = os.urandom(32)
    assert decode_key(base64.b64encode(key).decode(), what="k") == key
    assert decode_key(base64.urlsafe_b64encode(key).decode().rstrip("="), what="k") == key
    assert decode_key(key.hex(), what="k") == key
    for bad in ("", "abc", base64.b64encode(os.urandom(16)).decode(), "!" * 44):
        with pytest.raises(KeyringError, match="32 random bytes"):
            decode_key(bad, what="k")


def test_secret_files_are_created_private_and_reused(tmp_path: Path) -> None:
    secrets = ServerSecrets(tmp_path / "secret", environ={})
    ring = secrets.keyring_sync()
    pepper = secrets.pepper_sync()
    key_file = tmp_path / "secret" / "master.key"
    for path in (key_file, tmp_path / "secret" / "service-key.pepper"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o700
    again = ServerSecrets(tmp_path / "secret", environ={})
    assert again.keyring_sync().keys == ring.keys
    assert again.pepper_sync() == pepper

    rotated = again.add_file_key()
    assert rotated.current != ring.current and set(rotated.keys) == {ring.current, rotated.current}
    assert json.loads(key_file.read_text())["current"] == rotated.current
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pruned = again.prune_file_keys(set())
    assert list(pruned.keys) == [rotated.current]

    key_file.write_text("{not json")
    with pytest.raises(KeyringError, match="not a valid keyring"):
        ServerSecrets(tmp_path / "secret", environ={}).keyring_sync()


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    current, old, pepper = os.urandom(32), os.urandom(32), os.urandom(32)
    env = {
        "CT_MASTER_KEY": base64.b64encode(current).decode(),
        "CT_MASTER_KEY_PREVIOUS": f" {base64.b64encode(old).decode()} ,",
        "CT_SERVICE_KEY_PEPPER": base64.b64encode(pepper).decode(),
    }
    secrets = ServerSecrets(tmp_path / "secret", environ=env)
    ring = secrets.keyring_sync()
    assert ring.current == key_fingerprint(current)
    assert set(ring.keys) == {key_fingerprint(current), key_fingerprint(old)}
    assert secrets.pepper_sync() == pepper
    assert not (tmp_path / "secret").exists()
    with pytest.raises(KeyringError, match="environment"):
        secrets.add_file_key()
    explicit = ServerSecrets(tmp_path / "unused", environ={"CT_MASTER_KEY_FILE": str(tmp_path / "elsewhere.key")})
    explicit.keyring_sync()
    assert (tmp_path / "elsewhere.key").exists()
